"""Negative-binomial regression of counts with an exposure offset: ``mu = exp(log(exposure) + alpha + x @ beta)``.

Stan's and NumPyro's count regressions (the roaches data of Gelman and Hill, "offset = log(exposure2)");
``GammaPoisson`` is Pyro's negative binomial with mean ``mu`` and dispersion ``phi``."""

import numpy as np
import pyro
import pyro.distributions as dist
import torch


def model(data):
    x, y, exposure = data["x"], data["y"], data["exposure"]
    alpha = pyro.sample("alpha", dist.Normal(0.0, 2.5))
    beta = pyro.sample("beta", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    phi = pyro.sample("phi", dist.Exponential(1.0))
    mu = torch.exp(torch.log(exposure) + alpha + x @ beta)
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.GammaPoisson(phi, phi / mu), obs=y)


def broadcasting(data):
    x, y, exposure = data["x"], data["y"], data["exposure"]
    alpha = pyro.sample("alpha", dist.Normal(0.0, 2.5))
    beta = pyro.sample("beta", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    phi = pyro.sample("phi", dist.Exponential(1.0))
    mu = torch.exp(torch.log(exposure) + alpha + (x * beta).sum(-1))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.GammaPoisson(phi, phi / mu), obs=y)


def data(seed=0):
    rng = np.random.default_rng(seed)
    n = 150
    x = rng.normal(size=(n, 2))
    exposure = rng.uniform(0.5, 2.0, n)
    mu = np.exp(np.log(exposure) + 1.0 + x @ np.array([0.5, -0.3]))
    y = rng.negative_binomial(3.0, 3.0 / (3.0 + mu))
    return {"x": torch.tensor(x), "y": torch.tensor(y, dtype=torch.float64), "exposure": torch.tensor(exposure)}
