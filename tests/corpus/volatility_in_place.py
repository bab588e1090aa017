"""Stochastic volatility written as array code: a state vector filled in place, ``h[t] = ...``.

How a model comes over from NumPy or from a Stan loop written without vectors: ``h = torch.zeros(T)`` then
``h[t] = mu + phi * (h[t - 1] - mu) + sigma * h_std[t]``. An in-place write of a latent value into another
tensor cannot be batched by ``vmap``: it runs draw by draw in a Python loop."""

import numpy as np
import pyro
import pyro.distributions as dist
import torch


def model(data):
    y = data["y"]
    T = len(y)
    mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
    phi = pyro.sample("phi", dist.Uniform(-1.0, 1.0))
    sigma = pyro.sample("sigma", dist.HalfCauchy(5.0))
    h_std = pyro.sample("h_std", dist.Normal(0.0, 1.0).expand([T]).to_event(1))
    h = torch.zeros(T, dtype=y.dtype)
    h[0] = mu + h_std[0] * sigma / torch.sqrt(1 - phi**2)
    for t in range(1, T):
        h[t] = mu + phi * (h[t - 1] - mu) + sigma * h_std[t]
    pyro.sample("y", dist.Normal(0.0, torch.exp(h / 2)).to_event(1), obs=y)


def data(seed=0, T=30):
    rng = np.random.default_rng(seed)
    h = np.empty(T)
    h[0] = -1.0 + rng.normal() * 0.4 / np.sqrt(1 - 0.9**2)
    for t in range(1, T):
        h[t] = -1.0 + 0.9 * (h[t - 1] + 1.0) + 0.4 * rng.normal()
    return {"y": torch.tensor(rng.normal(size=T) * np.exp(h / 2))}
