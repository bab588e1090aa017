"""Multivariate normal data with an LKJ prior on the correlations: ``torch.mm(torch.diag(theta.sqrt()), L_omega)``.

Pyro's own ``LKJCholesky`` example (its docstring: ``L_Omega = pyro.sample("L_omega", LKJCholesky(d, eta))``,
``L_Omega = torch.mm(torch.diag(theta.sqrt()), L_omega)``), with the observations in a plate."""

import numpy as np
import pyro
import pyro.distributions as dist
import torch


def model(data):
    y = data["y"]
    d = y.shape[1]
    theta = pyro.sample("theta", dist.HalfCauchy(torch.ones(d, dtype=y.dtype)).to_event(1))
    L_omega = pyro.sample("L_omega", dist.LKJCholesky(d, torch.tensor(2.0, dtype=y.dtype)))
    L_Omega = torch.mm(torch.diag(theta.sqrt()), L_omega)
    mu = pyro.sample("mu", dist.Normal(torch.zeros(d, dtype=y.dtype), 5.0).to_event(1))
    with pyro.plate("observations", len(y)):
        pyro.sample("obs", dist.MultivariateNormal(mu, scale_tril=L_Omega), obs=y)


def data(seed=0, n=80):
    rng = np.random.default_rng(seed)
    cov = np.array([[1.0, 0.6, -0.3], [0.6, 2.0, 0.2], [-0.3, 0.2, 0.5]])
    return {"y": torch.tensor(rng.multivariate_normal([0.5, -1.0, 0.0], cov, size=n))}
