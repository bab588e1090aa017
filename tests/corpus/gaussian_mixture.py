"""A mixture of two Gaussians, its component marginalised: ``MixtureSameFamily(Categorical(weights), Normal(...))``.

Pyro's Gaussian mixture tutorial enumerates the assignment; a user without enumeration writes the
marginal likelihood with ``MixtureSameFamily`` (as NumPyro's mixture examples do), here with ordered locations
so that the two components cannot swap."""

import numpy as np
import pyro
import pyro.distributions as dist
import torch


def model(data):
    y = data["y"]
    weights = pyro.sample("weights", dist.Dirichlet(torch.ones(2, dtype=y.dtype)))
    low = pyro.sample("low", dist.Normal(0.0, 5.0))
    gap = pyro.sample("gap", dist.HalfNormal(5.0))
    scale = pyro.sample("scale", dist.HalfNormal(2.0))
    locs = torch.stack([low, low + gap], -1)
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.MixtureSameFamily(dist.Categorical(weights), dist.Normal(locs, scale[..., None])),
                    obs=y)


def data(seed=0, n=120):
    rng = np.random.default_rng(seed)
    y = np.where(rng.random(n) < 0.3, rng.normal(-1.5, 0.5, n), rng.normal(2.0, 0.5, n))
    return {"y": torch.tensor(y)}
