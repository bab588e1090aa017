"""A changepoint in a rate: the coal-mining disasters model, with a continuous switch point.

PyMC's and Pyro's classic (a Poisson rate ``early`` before the switch point ``tau``, ``late`` after), with the
switch smoothed so that it has a gradient: ``rate = early + (late - early) * sigmoid((t - tau) / 0.5)``. The
counts are one event-shaped vector, as a user writes it without a plate."""

import numpy as np
import pyro
import pyro.distributions as dist
import torch


def model(data):
    counts = data["counts"]
    t = torch.arange(len(counts), dtype=counts.dtype)
    tau = pyro.sample("tau", dist.Uniform(0.0, float(len(counts))))
    early = pyro.sample("early", dist.Exponential(1.0))
    late = pyro.sample("late", dist.Exponential(1.0))
    rate = early + (late - early) * torch.sigmoid((t - tau) / 0.5)
    pyro.sample("counts", dist.Poisson(rate).to_event(1), obs=counts)


def broadcasting(data):
    counts = data["counts"]
    t = torch.arange(len(counts), dtype=counts.dtype)
    tau = pyro.sample("tau", dist.Uniform(0.0, float(len(counts))))
    early = pyro.sample("early", dist.Exponential(1.0))
    late = pyro.sample("late", dist.Exponential(1.0))
    rate = early[..., None] + (late - early)[..., None] * torch.sigmoid((t - tau[..., None]) / 0.5)
    pyro.sample("counts", dist.Poisson(rate).to_event(1), obs=counts)


def data(seed=0, T=60):
    rng = np.random.default_rng(seed)
    rate = np.where(np.arange(T) < 25, 3.0, 1.0)
    return {"counts": torch.tensor(rng.poisson(rate), dtype=torch.float64)}
