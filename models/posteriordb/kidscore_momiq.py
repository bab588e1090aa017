"""posteriordb ``kidscore_momiq`` (kidiq): a kid's test score on the mother's IQ, flat priors on the line.

    beta flat (2),   sigma ~ cauchy(0, 2.5), sigma > 0,   kid_score ~ normal(beta[1] + beta[2] * mom_iq, sigma)
"""

import pyro
import pyro.distributions as dist
from pyro.distributions import constraints

from deepprob.models.posteriordb.stan import columns, flat, regression


def model(data):
    mom_iq = data["mom_iq"]
    beta = flat("beta", constraints.real, (2,))
    sigma = pyro.sample("sigma", dist.HalfCauchy(mom_iq.new_tensor(2.5)))
    regression("kid_score", columns(1.0, mom_iq), beta, sigma, data["kid_score"])
