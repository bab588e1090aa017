"""Gaussian process regression with a kernel matrix: ``k = var * exp(-0.5 * (X[:, None] - X) ** 2 / length)``.

NumPyro's ``examples/gp.py`` (its ``kernel`` function and ``MultivariateNormal(covariance_matrix=k)``),
carried to Pyro."""

import numpy as np
import pyro
import pyro.distributions as dist
import torch


def kernel(X, Z, var, length, noise, jitter=1.0e-6, include_noise=True):
    deltaXsq = (X[:, None] - Z) ** 2
    k = var * torch.exp(-0.5 * deltaXsq / length)
    if include_noise:
        k = k + (noise + jitter) * torch.eye(X.shape[0], dtype=X.dtype)
    return k


def model(data):
    X, Y = data["X"], data["Y"]
    var = pyro.sample("kernel_var", dist.LogNormal(0.0, 1.0))
    noise = pyro.sample("kernel_noise", dist.LogNormal(0.0, 1.0))
    length = pyro.sample("kernel_length", dist.LogNormal(0.0, 1.0))
    k = kernel(X, X, var, length, noise)
    pyro.sample("Y", dist.MultivariateNormal(torch.zeros(X.shape[0], dtype=X.dtype), covariance_matrix=k), obs=Y)


def broadcasting(data):
    X, Y = data["X"], data["Y"]
    var = pyro.sample("kernel_var", dist.LogNormal(0.0, 1.0))
    noise = pyro.sample("kernel_noise", dist.LogNormal(0.0, 1.0))
    length = pyro.sample("kernel_length", dist.LogNormal(0.0, 1.0))
    deltaXsq = (X[:, None] - X) ** 2
    k = var[..., None, None] * torch.exp(-0.5 * deltaXsq / length[..., None, None])
    k = k + (noise[..., None, None] + 1.0e-6) * torch.eye(X.shape[0], dtype=X.dtype)
    pyro.sample("Y", dist.MultivariateNormal(torch.zeros(X.shape[0], dtype=X.dtype), covariance_matrix=k), obs=Y)


def data(seed=0, n=25):
    rng = np.random.default_rng(seed)
    X = np.linspace(-1, 1, n)
    Y = np.sin(3 * X) + 0.2 * rng.normal(size=n)
    return {"X": torch.tensor(X), "Y": torch.tensor(Y)}
