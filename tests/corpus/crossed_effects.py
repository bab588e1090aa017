"""Crossed random effects: each observation belongs to one of several raters and one of several items,
``y ~ Normal(mu + a[rater] + b[item], sigma)``.

The crossed-effects model of lme4's ``(1 | rater) + (1 | item)`` as NumPyro's and Pyro's hierarchical examples
write group effects, indexing a vector of effects by an integer column."""

import numpy as np
import pyro
import pyro.distributions as dist
import torch


def model(data):
    y, rater, item = data["y"], data["rater"].long(), data["item"].long()
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    sigma_a = pyro.sample("sigma_a", dist.HalfNormal(1.0))
    sigma_b = pyro.sample("sigma_b", dist.HalfNormal(1.0))
    sigma = pyro.sample("sigma", dist.HalfNormal(1.0))
    with pyro.plate("raters", data["raters"]):
        a = pyro.sample("a", dist.Normal(0.0, sigma_a))
    with pyro.plate("items", data["items"]):
        b = pyro.sample("b", dist.Normal(0.0, sigma_b))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(mu + a[rater] + b[item], sigma), obs=y)


def broadcasting(data):
    y, rater, item = data["y"], data["rater"].long(), data["item"].long()
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    sigma_a = pyro.sample("sigma_a", dist.HalfNormal(1.0))
    sigma_b = pyro.sample("sigma_b", dist.HalfNormal(1.0))
    sigma = pyro.sample("sigma", dist.HalfNormal(1.0))
    with pyro.plate("raters", data["raters"]):
        a = pyro.sample("a", dist.Normal(0.0, sigma_a))
    with pyro.plate("items", data["items"]):
        b = pyro.sample("b", dist.Normal(0.0, sigma_b))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(mu + a[..., rater] + b[..., item], sigma), obs=y)


def data(seed=0):
    rng = np.random.default_rng(seed)
    raters, items, n = 6, 8, 120
    rater, item = rng.integers(0, raters, n), rng.integers(0, items, n)
    y = 2.0 + rng.normal(0, 0.8, raters)[rater] + rng.normal(0, 0.5, items)[item] + rng.normal(0, 0.6, n)
    return {"y": torch.tensor(y), "rater": torch.tensor(rater, dtype=torch.float64),
            "item": torch.tensor(item, dtype=torch.float64), "raters": raters, "items": items}
