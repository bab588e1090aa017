"""An AR(2) time series, its mean built in a loop over time from the data's own lags.

NumPyro's ``examples/ar2.py`` ("the AR(2) model with a for loop", its ``ar2_for_loop``), carried to Pyro: the
latent coefficients meet the data one time step at a time; the likelihood is one sample site per step."""

import numpy as np
import pyro
import pyro.distributions as dist
import torch


def model(data):
    y = data["y"]
    alpha_1 = pyro.sample("alpha_1", dist.Normal(0.0, 1.0))
    alpha_2 = pyro.sample("alpha_2", dist.Normal(0.0, 1.0))
    const = pyro.sample("const", dist.Normal(0.0, 1.0))
    sigma = pyro.sample("sigma", dist.HalfNormal(1.0))
    for t in range(2, len(y)):
        m = const + alpha_1 * y[t - 1] + alpha_2 * y[t - 2]
        pyro.sample(f"y_{t}", dist.Normal(m, sigma), obs=y[t])


def data(seed=0, T=60):
    rng = np.random.default_rng(seed)
    y = np.zeros(T)
    for t in range(2, T):
        y[t] = 0.3 + 0.6 * y[t - 1] - 0.3 * y[t - 2] + 0.5 * rng.normal()
    return {"y": torch.tensor(y)}
