"""posteriordb ``low_dim_gauss_mix``: a two-component Gaussian mixture with ordered means.

    mu ordered (2) ~ normal(0, 2),   sigma > 0 (2) ~ normal(0, 2),   theta ~ beta(5, 5)
    y[n] ~ theta normal(mu[1], sigma[1]) + (1 - theta) normal(mu[2], sigma[2])     (log_mix)

The ordered means: a flat prior on the ordered support with the normal(0, 2) density added, as Stan's
``mu ~ normal(0, 2)`` on an ``ordered[2]`` adds it.
"""

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints

from deepprob.models.posteriordb.stan import flat


def model(data):
    y = data["y"]
    mu = flat("mu", constraints.ordered_vector, (2,))
    pyro.factor("mu_prior", dist.Normal(y.new_tensor(0.0), 2.0).log_prob(mu).sum(-1))
    sigma = pyro.sample("sigma", dist.HalfNormal(y.new_full((2,), 2.0)).to_event(1))
    theta = pyro.sample("theta", dist.Beta(y.new_tensor(5.0), 5.0))
    weights = torch.stack([theta, 1 - theta], -1)
    with pyro.plate("data", data["N"]):
        mixture = dist.MixtureSameFamily(dist.Categorical(probs=weights), dist.Normal(mu, sigma))
        pyro.sample("y", mixture, obs=y)
