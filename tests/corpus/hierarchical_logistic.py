"""Hierarchical logistic regression, varying intercepts by group: ``logits = a[g] + x @ beta``.

The idiom of NumPyro's and Pyro's hierarchical regressions (the radon and baseball examples index group
effects ``a[county]``; the Bayesian regression tutorials write ``x @ beta``)."""

import numpy as np
import pyro
import pyro.distributions as dist
import torch


def model(data):
    x, y, g = data["x"], data["y"], data["g"].long()
    mu_a = pyro.sample("mu_a", dist.Normal(0.0, 1.0))
    sigma_a = pyro.sample("sigma_a", dist.HalfNormal(1.0))
    with pyro.plate("groups", data["groups"]):
        a = pyro.sample("a", dist.Normal(mu_a, sigma_a))
    beta = pyro.sample("beta", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    logits = a[g] + x @ beta
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Bernoulli(logits=logits), obs=y)


def broadcasting(data):
    x, y, g = data["x"], data["y"], data["g"].long()
    mu_a = pyro.sample("mu_a", dist.Normal(0.0, 1.0))
    sigma_a = pyro.sample("sigma_a", dist.HalfNormal(1.0))
    with pyro.plate("groups", data["groups"]):
        a = pyro.sample("a", dist.Normal(mu_a, sigma_a))
    beta = pyro.sample("beta", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    logits = a[..., g] + (x * beta).sum(-1)
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Bernoulli(logits=logits), obs=y)


def data(seed=0):
    rng = np.random.default_rng(seed)
    n, groups = 200, 5
    x = rng.normal(size=(n, 3))
    g = rng.integers(0, groups, n)
    a = rng.normal(0.5, 1.0, groups)
    y = (rng.random(n) < 1 / (1 + np.exp(-(a[g] + x @ np.array([1.0, -0.5, 0.3]))))).astype(float)
    return {"x": torch.tensor(x), "y": torch.tensor(y), "g": torch.tensor(g, dtype=torch.float64), "groups": groups}
