"""Stochastic volatility with 100 latent log-volatilities, non-centred, built in a loop over time: ``h_std[t]``.

The Stan User's Guide's model (2.5, "Stochastic volatility models"), as its loop reads when carried to Pyro:
``h[1] = h_std[1] * sigma / sqrt(1 - phi^2)``, ``h[t] = h_std[t] * sigma + mu + phi * (h[t-1] - mu)``."""

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
    h = [mu + h_std[0] * sigma / torch.sqrt(1 - phi**2)]
    for t in range(1, T):
        h.append(mu + h_std[t] * sigma + phi * (h[t - 1] - mu))
    h = torch.stack(h)
    pyro.sample("y", dist.Normal(0.0, torch.exp(h / 2)).to_event(1), obs=y)


def broadcasting(data):
    y = data["y"]
    T = len(y)
    mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
    phi = pyro.sample("phi", dist.Uniform(-1.0, 1.0))
    sigma = pyro.sample("sigma", dist.HalfCauchy(5.0))
    h_std = pyro.sample("h_std", dist.Normal(0.0, 1.0).expand([T]).to_event(1))
    h = [mu + h_std[..., 0] * sigma / torch.sqrt(1 - phi**2)]
    for t in range(1, T):
        h.append(mu + h_std[..., t] * sigma + phi * (h[t - 1] - mu))
    h = torch.stack(h, -1)
    pyro.sample("y", dist.Normal(0.0, torch.exp(h / 2)).to_event(1), obs=y)


def data(seed=0, T=100):
    rng = np.random.default_rng(seed)
    mu, phi, sigma = -1.0, 0.9, 0.4
    h = np.empty(T)
    h[0] = mu + rng.normal() * sigma / np.sqrt(1 - phi**2)
    for t in range(1, T):
        h[t] = mu + phi * (h[t - 1] - mu) + sigma * rng.normal()
    return {"y": torch.tensor(rng.normal(size=T) * np.exp(h / 2))}
