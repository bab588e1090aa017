"""posteriordb ``nes`` (nes2000): party identification on ideology, race, age group, education, gender and
income, flat priors.

    age30_44 = age_discrete == 2,  age45_64 = age_discrete == 3,  age65up = age_discrete == 4  (transformed data)
    beta flat (9),  sigma flat, sigma > 0
    partyid7 ~ normal(beta[1] + beta[2] real_ideo + beta[3] race_adj + beta[4] age30_44 + beta[5] age45_64
                      + beta[6] age65up + beta[7] educ1 + beta[8] gender + beta[9] income, sigma)
"""

from pyro.distributions import constraints

from deepprob.models.posteriordb.stan import columns, flat, regression


def model(data):
    age = data["age_discrete"]
    dummies = [(age == level).to(age.dtype) for level in (2, 3, 4)]
    X = columns(1.0, data["real_ideo"], data["race_adj"], *dummies, data["educ1"], data["gender"], data["income"])
    beta = flat("beta", constraints.real, (9,))
    sigma = flat("sigma", constraints.positive)
    regression("partyid7", X, beta, sigma, data["partyid7"])
