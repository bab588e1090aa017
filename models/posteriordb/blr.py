"""posteriordb ``blr`` (sblri-blr): Bayesian linear regression with vague priors.

    beta ~ normal(0, 10)  (D),   sigma ~ normal(0, 10), sigma > 0,   y ~ normal(X * beta, sigma)
"""

import pyro
import pyro.distributions as dist

from deepprob.models.posteriordb.stan import regression


def model(data):
    X, y = data["X"], data["y"]
    beta = pyro.sample("beta", dist.Normal(X.new_zeros(X.shape[1]), 10.0).to_event(1))
    sigma = pyro.sample("sigma", dist.HalfNormal(X.new_tensor(10.0)))
    regression("y", X, beta, sigma, y)
