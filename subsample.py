"""Plate subsampling: minibatches where the SVI step is taken, the full data everywhere else.

A model declares a minibatch the Pyro way, ``with pyro.plate("data", N, subsample_size=B) as idx``,
indexes its data by ``idx``, and Pyro scales the plate's log-likelihood by N / B: an unbiased estimate
of the full data's. Two things follow here:

- The fit chooses the indices (:class:`MinibatchIndices`): B rows drawn uniformly, so that a step costs
  O(B) however large N is (Pyro's own plate draws ``randperm(N)`` every step) and both engines see the
  same batches. The compiled step takes them as an input.
- Everything else sees the full data (:func:`full_data`, :class:`FullData`): the fresh ELBO estimate,
  the Laplace approximation, the guides' start at the mode, NUTS, the draws' log-likelihoods and
  importance weights. Within :func:`full_data` every subsampled plate runs over all of its rows with
  scale 1.

Pyro has no public switch for the second: the plate checks ``subsample_size`` against the indices it is
given, so conditioning its subsample site on ``arange(N)`` fails. :func:`full_data` therefore wraps
``SubsampleMessenger._subsample``, Pyro's private helper that reads ``subsample_size``; this module is the
one place that touches it, and ``tests/test_minibatch.py`` fails loudly if it changes.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable

import torch
from pyro import poutine
from pyro.poutine.subsample_messenger import SubsampleMessenger

_ORIGINAL_SUBSAMPLE = SubsampleMessenger.__dict__["_subsample"]  # a staticmethod


class _State:
    depth = 0  # nesting of full_data() contexts
    seen: dict[str, tuple[int, int]] | None = None  # plates met while recording: name -> (size, subsample size)


def _full_subsample(name, size=None, subsample_size=None, subsample=None, use_cuda=None, device=None):
    if size is not None and subsample is None and subsample_size is not None:
        if _State.seen is not None and subsample_size < size:
            _State.seen[name] = (int(size), int(subsample_size))
        subsample_size = None  # Pyro's plate then takes every row, with scale 1
    return _ORIGINAL_SUBSAMPLE.__func__(name, size, subsample_size, subsample, use_cuda, device)


@contextlib.contextmanager
def full_data(record: dict[str, tuple[int, int]] | None = None):
    """Within this context every ``pyro.plate(name, N, subsample_size=B)`` runs over all N rows (scale 1).

    ``record``: a dict that gets {name: (N, B)} of every plate met that subsamples.
    """
    if _State.depth == 0:
        SubsampleMessenger._subsample = staticmethod(_full_subsample)
    _State.depth += 1
    previous = _State.seen
    if record is not None:
        _State.seen = record
    try:
        yield
    finally:
        _State.seen = previous
        _State.depth -= 1
        if _State.depth == 0:
            SubsampleMessenger._subsample = _ORIGINAL_SUBSAMPLE


class FullData:
    """``model`` run within :func:`full_data`: the model of the whole data set, for evaluation and references."""

    def __init__(self, model: Callable):
        self.model = model
        functools.update_wrapper(self, model, updated=())

    def __call__(self, *args, **kwargs):
        with full_data():
            return self.model(*args, **kwargs)


class MinibatchIndices:
    """The rows of each subsampled plate a step sees: B rows drawn uniformly, with replacement.

    ``next()`` gives {plate: LongTensor (B,)} on ``device``, from torch's global generator (``--seed``).
    Each row is in a step's batch with the same probability, so the plate's N / B scaling keeps the
    likelihood's estimate unbiased; drawing with replacement costs O(B) a step, whatever N (an epoch's
    ``randperm(N)``, as Pyro's plate draws, costs tens of microseconds a step at N = 10^6, as much as the
    step itself), and for B << N the batches are as good as without replacement.
    """

    def __init__(self, plates: dict[str, tuple[int, int]], device: torch.device | str = "cpu"):
        self.plates, self.device = dict(plates), torch.device(device)

    def next(self) -> dict[str, torch.Tensor]:
        return {name: torch.randint(size, (batch,), device=self.device) for name, (size, batch) in self.plates.items()}

    def example(self) -> dict[str, torch.Tensor]:
        """Rows of the batches' shape that are not drawn (to trace a step with)."""
        return {name: torch.arange(batch, device=self.device) for name, (_, batch) in self.plates.items()}


def on_batch(fn: Callable, batch: dict[str, torch.Tensor] | None) -> Callable:
    """``fn`` (a model or a guide) with its subsampled plates conditioned on the rows ``batch``."""
    return fn if not batch else poutine.condition(fn, data=batch)


def describe(plates: dict[str, tuple[int, int]]) -> str:
    """``"data: 1024 of 1000000 rows"`` for a report."""
    return ", ".join(f"{name}: {b} of {n} rows (likelihood scaled by {n / b:.4g})" for name, (n, b) in plates.items())


