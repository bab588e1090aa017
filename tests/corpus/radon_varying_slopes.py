"""Radon: varying intercepts and slopes by county, ``a[county] + b[county] * floor``.

Gelman and Hill's radon model, as Pyro's and NumPyro's partial-pooling examples write it (NumPyro's
"Bayesian hierarchical linear regression"), non-centred group effects scaled inside the model."""

import numpy as np
import pyro
import pyro.distributions as dist
import torch


def model(data):
    y, floor, county = data["log_radon"], data["floor"], data["county"].long()
    mu_a = pyro.sample("mu_a", dist.Normal(0.0, 5.0))
    sigma_a = pyro.sample("sigma_a", dist.HalfNormal(1.0))
    mu_b = pyro.sample("mu_b", dist.Normal(0.0, 5.0))
    sigma_b = pyro.sample("sigma_b", dist.HalfNormal(1.0))
    with pyro.plate("counties", data["counties"]):
        a_raw = pyro.sample("a_raw", dist.Normal(0.0, 1.0))
        b_raw = pyro.sample("b_raw", dist.Normal(0.0, 1.0))
    a = mu_a + sigma_a * a_raw
    b = mu_b + sigma_b * b_raw
    sigma = pyro.sample("sigma", dist.HalfNormal(1.0))
    with pyro.plate("houses", len(y)):
        pyro.sample("log_radon", dist.Normal(a[county] + b[county] * floor, sigma), obs=y)


def broadcasting(data):
    y, floor, county = data["log_radon"], data["floor"], data["county"].long()
    mu_a = pyro.sample("mu_a", dist.Normal(0.0, 5.0))
    sigma_a = pyro.sample("sigma_a", dist.HalfNormal(1.0))
    mu_b = pyro.sample("mu_b", dist.Normal(0.0, 5.0))
    sigma_b = pyro.sample("sigma_b", dist.HalfNormal(1.0))
    with pyro.plate("counties", data["counties"]):
        a_raw = pyro.sample("a_raw", dist.Normal(0.0, 1.0))
        b_raw = pyro.sample("b_raw", dist.Normal(0.0, 1.0))
    a = mu_a + sigma_a * a_raw
    b = mu_b + sigma_b * b_raw
    sigma = pyro.sample("sigma", dist.HalfNormal(1.0))
    with pyro.plate("houses", len(y)):
        pyro.sample("log_radon", dist.Normal(a[..., county] + b[..., county] * floor, sigma), obs=y)


def data(seed=0, counties=8, n=160):
    rng = np.random.default_rng(seed)
    county = rng.integers(0, counties, n)
    floor = rng.integers(0, 2, n).astype(float)
    a, b = rng.normal(1.3, 0.4, counties), rng.normal(-0.6, 0.2, counties)
    y = a[county] + b[county] * floor + rng.normal(0, 0.7, n)
    return {"log_radon": torch.tensor(y), "floor": torch.tensor(floor),
            "county": torch.tensor(county, dtype=torch.float64), "counties": counties}
