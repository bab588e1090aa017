"""A latent Gaussian process with Poisson counts, written centred, as a kernel matrix and ``MultivariateNormal``.

NumPyro's ``examples/gp.py`` kernel (``var * exp(-0.5 * (X[:, None] - X) ** 2 / length)``) under a log link to
counts, as in Stan's User's Guide (10.3, "Latent variable GP", Poisson outcomes). Few counts at each point leave the
latent values close to their prior: a funnel between the kernel's variance and ``f``, which no Gaussian covers.

Its reference (``bench/corpus_reference.py latent_gp``) is NUTS on ``whitened``, the same posterior written
non-centred (``f = L f_white``), whose draws ``model_sites`` maps to this model's sites: on the centred form the
reference NUTS diverged (57-118 divergences a chain at target acceptance 0.95), the funnel it is known for."""

import numpy as np
import pyro
import pyro.distributions as dist
import torch


def kernel(X, var, length, jitter=1.0e-6):
    k = var * torch.exp(-0.5 * (X[:, None] - X) ** 2 / length)
    return k + jitter * torch.eye(X.shape[0], dtype=X.dtype)


def model(data):
    X, counts = data["X"], data["counts"]
    var = pyro.sample("kernel_var", dist.LogNormal(0.0, 1.0))
    length = pyro.sample("kernel_length", dist.LogNormal(0.0, 1.0))
    offset = pyro.sample("offset", dist.Normal(0.0, 2.0))
    f = pyro.sample("f", dist.MultivariateNormal(torch.zeros(X.shape[0], dtype=X.dtype), covariance_matrix=kernel(
        X, var, length)))
    pyro.sample("counts", dist.Poisson(torch.exp(offset + f)).to_event(1), obs=counts)


def whitened(data):
    X, counts = data["X"], data["counts"]
    var = pyro.sample("kernel_var", dist.LogNormal(0.0, 1.0))
    length = pyro.sample("kernel_length", dist.LogNormal(0.0, 1.0))
    offset = pyro.sample("offset", dist.Normal(0.0, 2.0))
    f_white = pyro.sample("f_white", dist.Normal(torch.zeros(X.shape[0], dtype=X.dtype), 1.0).to_event(1))
    f = torch.linalg.cholesky(kernel(X, var, length)) @ f_white
    pyro.sample("counts", dist.Poisson(torch.exp(offset + f)).to_event(1), obs=counts)


def model_sites(latents, data):
    """``whitened``'s draws (S, ...) as ``model``'s sites: f = L f_white, draw by draw."""
    L = torch.linalg.cholesky(torch.stack([kernel(data["X"], v, l) for v, l in zip(latents["kernel_var"],
                                                                                    latents["kernel_length"])]))
    f = (L @ latents["f_white"].unsqueeze(-1)).squeeze(-1)
    return {"kernel_var": latents["kernel_var"], "kernel_length": latents["kernel_length"],
            "offset": latents["offset"], "f": f}


def data(seed=0, N=30):
    rng = np.random.default_rng(seed)
    X = np.sort(rng.uniform(0.0, 10.0, N))
    k = 0.8 * np.exp(-0.5 * (X[:, None] - X) ** 2 / 2.0) + 1e-6 * np.eye(N)
    f = np.linalg.cholesky(k) @ rng.normal(size=N)
    return {"X": torch.tensor(X), "counts": torch.tensor(rng.poisson(np.exp(0.3 + f)), dtype=torch.float64)}
