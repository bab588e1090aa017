"""What every fit ends with, whichever engine took its steps: the guide's own last step, a fresh ELBO estimate,
:class:`FitResult`; and what both engines share (:class:`FitRun`: the fit being run; the guide's step scales).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyro
import torch
from pyro.infer import Trace_ELBO

from deepprob.errors import NAN_HINT, FitDivergedError
from deepprob.guides.protocol import Family, declared
from deepprob.inference.fitting.settings import FitSettings
from deepprob.logdensity import ModelStructure
from deepprob.subsample import MinibatchIndices, describe, full_data


@dataclass
class FitResult:
    """What :func:`fit_svi` returns.

    Attributes:
        guide: the fitted guide; for guides with a ``finalize`` step (``laplace``) the guide it returned.
        losses: the loss (negative ELBO estimate) at every step, shape (steps,).
        seconds: wall time of the optimisation (and of ``finalize``).
        elbo: the ELBO of the final guide, estimated afresh with many particles (:func:`estimate_elbo`).
        extras: how it ran: ``engine`` (``"pyro"``, ``"compiled"``, or ``"eager"`` where compiling
            failed), ``compiled_by`` (``"c"``, ``"inductor"`` or None), ``compile_seconds``,
            ``steps_per_second``, and ``fallback`` (why it is not the engine asked for, or None).
        model, args, kwargs: what was fitted (for :func:`~deepprob.inference.evaluation.arviz_data.to_inference_data`).
    """

    guide: Callable
    losses: np.ndarray
    seconds: float
    elbo: float
    extras: dict = field(default_factory=dict)
    model: Callable | None = None
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)


@dataclass
class FitRun:
    """One fit as the engines see it: what is fitted, how (``settings``), and what :func:`fit_svi` found out before
    the steps (the model's ``structure``, whether Pyro's checks apply, the minibatches, when it started)."""

    model: Callable
    guide: Callable
    args: tuple
    kwargs: dict
    settings: FitSettings
    structure: ModelStructure
    validate: bool
    batches: MinibatchIndices | None
    start: float

    @property
    def family(self) -> Family:
        return declared(self.guide)

    def step_scales(self, params: list) -> list[torch.Tensor | None]:
        """The guide's per-coordinate learning rates (its ``step_scales``: parameter name -> tensor, a guide that
        starts at the Laplace approximation gives its locations the posterior's sds there), in ``params``' order."""
        scales = self.family.step_scales
        if not scales:  # none (a guide of the user's, perhaps a function: it has no named parameters to look up)
            return [None] * len(params)
        names = {id(p): name for name, p in self.guide.named_parameters()}
        return [scales.get(names.get(id(p))) for p in params]


@contextlib.contextmanager
def invalid_values_at(step: int):
    """Turn a distribution's complaint about NaN/inf arguments into a FitDivergedError naming the step."""
    try:
        yield
    except ValueError as err:
        if "invalid values" not in str(err):
            raise
        raise FitDivergedError(f"non-finite values at step {step} ({str(err).splitlines()[0][:160]}); "
                               f"{NAN_HINT}") from err


def estimate_elbo(model: Callable, guide: Callable, *args, num_particles: int = 1000, chunk: int = 100,
                  **kwargs) -> float:
    """E_q[log p(x, z) - log q(z)] by Monte Carlo with ``num_particles`` draws (vectorised, ``chunk`` at a time;
    a model that does not broadcast is run draw by draw, :mod:`deepprob.batching`)."""
    structure = ModelStructure.of(model, *args, **kwargs)
    program = structure.broadcasting(model)
    total, done = 0.0, 0
    # unchecked, as the steps after the first: a draw far out (an overflowing scale) is a log density of -inf,
    # which the estimate says, not an error
    with torch.no_grad(), pyro.validation_enabled(False):
        while done < num_particles:
            n = min(chunk, num_particles - done)
            elbo = Trace_ELBO(num_particles=n, vectorize_particles=n > 1, max_plate_nesting=structure.nesting)
            total += -elbo.loss(program, guide, *args, **kwargs) * n
            done += n
    return total / num_particles


def minibatch_extras(batches: MinibatchIndices | None) -> dict:
    """``batch_size`` (None: full batch) and ``minibatch`` (which plates subsample, how) for a fit's extras."""
    if batches is None:
        return {"batch_size": None, "minibatch": None}
    return {"batch_size": max(b for _, b in batches.plates.values()), "minibatch": describe(batches.plates)}


def finish(run: FitRun, losses: np.ndarray, extras: dict, guide=None, elbo_fn=None) -> FitResult:
    """Every engine's ending: the guide's ``finalize`` step, then a fresh ELBO estimate (``elbo_fn(n)``, the
    compiled engine's, or :func:`estimate_elbo`), both of the full data where the model's plates subsample.
    ``guide``: the fitted guide where it is not ``run.guide`` (Pathfinder's).

    ``extras["gradient_evaluations"]`` counts the log density's gradients the fit took: those of its
    steps (one a particle), and the guide's own (a mixture's search for modes, Laplace's Hessian).
    """
    model, args, kwargs = run.model, run.args, run.kwargs
    guide = run.guide if guide is None else guide
    extras["gradient_evaluations"] = extras["gradient_evaluations"] + declared(guide).gradient_evaluations
    with full_data():
        final = declared(guide).finalize(*args, **kwargs)
    if final is not None:
        guide, elbo_fn = final, None
        extras["gradient_evaluations"] += final.gradient_evaluations
    seconds = time.perf_counter() - run.start
    elbo_particles = run.settings.elbo_particles
    if not elbo_particles or declared(guide).q_density != "density":
        elbo = math.nan  # particles or a point mass: log q is no density, E_q[log p - log q] no ELBO
    elif elbo_fn is not None:
        elbo = elbo_fn(elbo_particles)
    else:
        with full_data():
            elbo = estimate_elbo(model, guide, *args, num_particles=elbo_particles, **kwargs)
    return FitResult(guide=guide, losses=losses, seconds=seconds, elbo=elbo, extras=extras, model=model,
                     args=args, kwargs=kwargs)
