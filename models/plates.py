"""The data plate of the regression models, full or subsampled (Pyro's plate subsampling).

    with data_plate(N, batch_size) as rows:
        pyro.sample("y", dist.Bernoulli(logits=take(X, rows) @ w), obs=take(y, rows))

With ``batch_size`` B < N the plate draws B of the N rows and scales their log-likelihood by N / B, an
unbiased estimate of the full data's (the fit chooses the rows, :mod:`deepprob.subsample`); otherwise
it is the plain plate over all N rows, and ``rows`` is None (no copy of the data).
"""

from __future__ import annotations

import contextlib

import pyro
import torch


@contextlib.contextmanager
def data_plate(size: int, batch_size: int | None = None, name: str = "data"):
    """``pyro.plate(name, size, subsample_size=batch_size)``, yielding the rows (B,), or None for all of them."""
    if batch_size is None or batch_size >= size:
        with pyro.plate(name, size):
            yield None
    else:
        with pyro.plate(name, size, subsample_size=batch_size) as rows:
            yield rows


def take(values: torch.Tensor | None, rows: torch.Tensor | None) -> torch.Tensor | None:
    """The rows ``rows`` of ``values`` (first dimension); all of them where ``rows`` is None."""
    return values if values is None or rows is None else values[rows]

