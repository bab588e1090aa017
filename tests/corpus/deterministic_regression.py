"""Linear regression that records its mean and a derived quantity as ``pyro.deterministic`` sites.

NumPyro's tutorials' idiom (``numpyro.deterministic("mu", ...)``, the Bayesian regression tutorial's
``x @ beta``) in Pyro: the deterministic sites appear in the InferenceData's posterior and are compared."""

import numpy as np
import pyro
import pyro.distributions as dist
import torch


def model(data):
    x, y = data["x"], data["y"]
    alpha = pyro.sample("alpha", dist.Normal(0.0, 10.0))
    beta = pyro.sample("beta", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    sigma = pyro.sample("sigma", dist.HalfNormal(2.0))
    mu = pyro.deterministic("mu", alpha + x @ beta)
    pyro.deterministic("slope_ratio", beta[0] / beta[1])
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(mu, sigma), obs=y)


def broadcasting(data):
    x, y = data["x"], data["y"]
    alpha = pyro.sample("alpha", dist.Normal(0.0, 10.0))
    beta = pyro.sample("beta", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    sigma = pyro.sample("sigma", dist.HalfNormal(2.0))
    mu = pyro.deterministic("mu", alpha + (x * beta).sum(-1))
    pyro.deterministic("slope_ratio", beta[..., 0] / beta[..., 1])
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(mu, sigma), obs=y)


def data(seed=0, n=50):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    return {"x": torch.tensor(x), "y": torch.tensor(1.0 + x @ np.array([2.0, -1.0]) + 0.5 * rng.normal(size=n))}
