"""Stan's conventions, in Pyro, for the translations of posteriordb's models.

- :func:`flat`: the improper uniform prior Stan gives a parameter declared without one, on its declared
  support (``ImproperUniform``: log density 0, never sampled);
- :func:`regression`: ``y ~ normal(X * beta, sigma)`` over a plate of the rows, for draws vectorised in a
  plate left of it (the mean is a matrix product, one BLAS call).
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints

from deepprob.models.standardise import linear_predictor


def flat(name: str, support=constraints.real, shape: tuple[int, ...] = ()) -> torch.Tensor:
    """A parameter with Stan's flat prior on ``support``: sample site ``name`` of an ``ImproperUniform``."""
    if shape:
        support = constraints.independent(support, len(shape)) if support is not constraints.ordered_vector \
            else support
    return pyro.sample(name, dist.ImproperUniform(support, (), shape))


def columns(*vectors: torch.Tensor) -> torch.Tensor:
    """The design matrix (N, K) of the vectors (N,) each (a number broadcasts: 1.0 for an intercept)."""
    n = next(v.shape[0] for v in vectors if isinstance(v, torch.Tensor))
    like = next(v for v in vectors if isinstance(v, torch.Tensor))
    return torch.stack([v if isinstance(v, torch.Tensor) else like.new_full((n,), float(v)) for v in vectors], 1)


def regression(name: str, X: torch.Tensor, beta: torch.Tensor, sigma: torch.Tensor, y: torch.Tensor,
               offset: torch.Tensor | float = 0.0) -> None:
    """``y ~ normal(offset + X * beta, sigma)``, the rows of ``X`` (N, K) in a plate ``data``."""
    with pyro.plate("data", X.shape[0]):
        pyro.sample(name, dist.Normal(offset + linear_predictor(X, beta), sigma), obs=y)
