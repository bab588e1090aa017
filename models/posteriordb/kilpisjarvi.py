"""posteriordb ``kilpisjarvi`` (kilpisjarvi_mod): a linear trend of summer temperatures on the raw year.

    alpha ~ normal(pmualpha, psalpha),   beta ~ normal(pmubeta, psbeta),   sigma flat, sigma > 0
    y ~ normal(alpha + beta * x, sigma)

With x near 4,000 the intercept and the slope are almost perfectly correlated a posteriori.
"""

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints

from deepprob.models.posteriordb.stan import columns, flat, regression


def model(data):
    x = data["x"]
    alpha = pyro.sample("alpha", dist.Normal(x.new_tensor(float(data["pmualpha"])), float(data["psalpha"])))
    beta = pyro.sample("beta", dist.Normal(x.new_tensor(float(data["pmubeta"])), float(data["psbeta"])))
    sigma = flat("sigma", constraints.positive)
    regression("y", columns(1.0, x), torch.stack([alpha, beta], -1), sigma, data["y"])
