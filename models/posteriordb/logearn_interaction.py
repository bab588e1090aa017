"""posteriordb ``logearn_interaction`` (earnings): log earnings on height, sex and their interaction, flat priors.

    log_earn = log(earn),  inter = height .* male        (transformed data)
    beta flat (4),  sigma flat, sigma > 0
    log_earn ~ normal(beta[1] + beta[2] * height + beta[3] * male + beta[4] * inter, sigma)
"""

from pyro.distributions import constraints

from deepprob.models.posteriordb.stan import columns, flat, regression


def model(data):
    height, male = data["height"], data["male"]
    log_earn, inter = data["earn"].log(), height * male
    beta = flat("beta", constraints.real, (4,))
    sigma = flat("sigma", constraints.positive)
    regression("log_earn", columns(1.0, height, male, inter), beta, sigma, log_earn)
