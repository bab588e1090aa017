"""posteriordb ``logmesquite`` (mesquite): log weight of mesquite bushes on log dimensions, flat priors.

    log_x = log(x) for weight, diam1, diam2, canopy_height, total_height, density   (transformed data)
    beta flat (7),  sigma flat, sigma > 0
    log_weight ~ normal(beta[1] + beta[2] log_diam1 + beta[3] log_diam2 + beta[4] log_canopy_height
                        + beta[5] log_total_height + beta[6] log_density + beta[7] group, sigma)
"""

from pyro.distributions import constraints

from deepprob.models.posteriordb.stan import columns, flat, regression

PREDICTORS = ("diam1", "diam2", "canopy_height", "total_height", "density")


def model(data):
    X = columns(1.0, *(data[name].log() for name in PREDICTORS), data["group"])
    beta = flat("beta", constraints.real, (7,))
    sigma = flat("sigma", constraints.positive)
    regression("log_weight", X, beta, sigma, data["weight"].log())
