"""Log densities read off Pyro traces, and a model run for S draws at once.

- :func:`sample_sites`, :func:`site_log_prob`: a trace's sample sites and their scaled, masked log densities.
- :func:`per_draw`, :func:`log_prob_sum`, :func:`log_weights`: sums of them, per draw or in all.
- :func:`run_model`: a model traced for S draws at once, in a plate of draws left of its own plates (as
  ``Trace_ELBO`` vectorises particles), replaying a guide's trace or conditioned on values.
- :func:`draws_first`, :func:`in_plate_layout`: a site's values and log densities between the plate's layout
  (S, 1, ..., *shape) and the draws-first one (S, *shape).

A model that does not broadcast over the draws' plate runs through its broadcasting twin
(:mod:`deepprob.batching`); the functions here do not need to know.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import pyro
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.poutine.util import site_is_subsample

from deepprob.subsample import full_data, on_batch

DRAWS_PLATE = "_deepprob_draws"


def sample_sites(trace) -> Iterator[tuple[str, dict]]:
    """The sample sites of ``trace`` (observed or not), without the subsample sites of plates."""
    for name, site in trace.nodes.items():
        if site["type"] == "sample" and not site_is_subsample(site):
            yield name, site


def site_log_prob(site) -> torch.Tensor:
    """log p of a sample site's value, summed over its event dims, scaled and masked as Pyro does."""
    return scale_and_mask(site["fn"].log_prob(site["value"]), site["scale"], site["mask"])


def per_draw(log_prob: torch.Tensor, draws: int, nesting: int) -> torch.Tensor:
    """A site's log density summed over every dim but the draws' (dim -(nesting + 1)): shape (draws,).

    A site outside the draws' plate (it does not depend on them) counts the same for every draw.
    """
    log_prob = log_prob.reshape((1,) * max(0, nesting + 1 - log_prob.dim()) + log_prob.shape)
    # the dims up to the draws' one kept, the plates' dims right of it summed
    log_prob = log_prob.reshape(log_prob.shape[: log_prob.dim() - nesting] + (-1,)).sum(-1).reshape(-1)
    return log_prob.expand(draws) if log_prob.numel() == 1 else log_prob.reshape(draws)


def log_prob_sum(trace, draws: int | None = None, nesting: int = 0, batch: bool = False,
                 sites: Callable[[str, dict], bool] | None = None) -> torch.Tensor:
    """The sum of :func:`site_log_prob` over the sample sites of ``trace`` (those ``sites`` accepts).

    ``draws``: per draw, shape (draws,), the draws in dim -(nesting + 1) (:func:`run_model`).
    ``batch``: the site log densities broadcast together, batch dims kept (a VAE's (K, N) weights).
    Otherwise: one number.
    """
    total = None
    for name, site in sample_sites(trace):
        if sites is not None and not sites(name, site):
            continue
        lp = site_log_prob(site)
        lp = per_draw(lp, draws, nesting) if draws is not None else lp if batch else lp.sum()
        total = lp if total is None else total + lp
    if total is None:
        return torch.zeros(draws) if draws is not None else torch.zeros(())
    return total


def run_model(model: Callable, args: tuple, kwargs: dict, *, draws: int, nesting: int, guide: Callable | None = None,
              values: dict[str, torch.Tensor] | None = None, batch: dict[str, torch.Tensor] | None = None):
    """``(model_trace, guide_trace)`` for ``draws`` draws at once, in a plate at dim -(nesting + 1).

    With ``guide``: the guide is traced and the model replays it (``guide_trace`` is returned); with
    ``values`` ({site: tensor broadcastable in the plate, see :meth:`ModelStructure.broadcastable`}) the
    model is conditioned on them (``guide_trace`` is None). Gradients flow as the caller's context says.
    Subsampled plates run over the full data, or over the rows ``batch`` ({plate: indices},
    :mod:`deepprob.subsample`) where given. ``model`` must broadcast over the plate of draws
    (:meth:`~deepprob.logdensity.ModelStructure.broadcasting` gives one that does).
    """
    data = full_data() if not batch else contextlib.nullcontext()
    model, guide = on_batch(model, batch), guide if guide is None else on_batch(guide, batch)
    with data, poutine.block(), pyro.plate(DRAWS_PLATE, draws, dim=-nesting - 1):
        if guide is not None:
            guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
            program = poutine.replay(model, trace=guide_trace)
        else:
            guide_trace, program = None, poutine.condition(model, values or {})
        model_trace = poutine.trace(program).get_trace(*args, **kwargs)
    return model_trace, guide_trace


def log_weights(model_trace, guide_trace, draws: int | None = None, nesting: int = 0,
                batch: bool = False) -> torch.Tensor:
    """log p(x, z) - log q(z) of a guide's trace and the model's trace replaying it (see :func:`log_prob_sum`).

    For an ``AutoContinuous`` guide, log q(z) of the constrained z: its auxiliary vector's log q(u)
    plus its ``Delta`` sites' log |det dz/du|^{-1}.
    """
    return (log_prob_sum(model_trace, draws, nesting, batch) - log_prob_sum(guide_trace, draws, nesting, batch))


def draws_first(value: torch.Tensor, draws: int, shape: torch.Size) -> torch.Tensor:
    """A site's value or log density in a trace of ``draws`` draws (the plate's layout (draws, 1, ..., *shape),
    or ``shape`` itself where it does not depend on the draws, or one draw's) as (draws, *shape)."""
    if value.numel() == math.prod(shape):
        return value.reshape(shape).expand((draws,) + tuple(shape))
    return value.reshape((draws,) + tuple(shape))


def in_plate_layout(value: torch.Tensor, batch_dims: int, nesting: int) -> torch.Tensor:
    """Draws-first values (S, *batch, *event) of a site with ``batch_dims`` batch dims (its plates'), laid out for
    the plate of draws at dim -(nesting + 1): (S, 1, ..., *batch, *event)."""
    return value.reshape(value.shape[:1] + (1,) * max(0, nesting - batch_dims) + value.shape[1:])
