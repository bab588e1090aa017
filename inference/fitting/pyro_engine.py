"""Pyro's engine: each SVI step traces the model and guide through Pyro's ``Trace_ELBO`` (or the objective's
loss), then one Adam step (:func:`optimise`, the same Adam, decay and averaging as the compiled engine's)."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pyro
import torch
from pyro.infer import ELBO

from deepprob.inference.fitting.result import FitResult, FitRun, finish, invalid_values_at, minibatch_extras
from deepprob.inference.fitting.settings import FitSettings
from deepprob.optim import ExponentialDecay, make_adam
from deepprob.subsample import on_batch
from deepprob.training import TrainingLoop


def optimise(
    params: list[torch.nn.Parameter],
    loss_at: Callable[[int], torch.Tensor],
    settings: FitSettings,
    step_scales: list[torch.Tensor | None] | None = None,
) -> np.ndarray:
    """Minimise the scalar ``loss_at(step)`` over ``params`` by Adam; returns the loss at every step (steps,).

    ``settings`` (:class:`~deepprob.inference.fitting.settings.FitSettings`): ``steps``; the learning rate
    decays exponentially from ``lr`` to ``lr * final_lr_fraction`` (:class:`~deepprob.optim.ExponentialDecay`);
    ``progress`` and ``desc``, the bar. ``step_scales`` (one per parameter, or None) multiply
    Adam's steps elementwise: a per-coordinate learning rate (Adam's step is proportional to it, its
    moments do not depend on it). Over the last ``average_fraction`` of the steps the iterates are
    averaged (Polyak-Ruppert) and ``params`` end at their mean. A loss that is not finite stops the loop
    with a FitDivergedError naming the step.
    """
    steps = settings.steps
    decay = ExponentialDecay(settings.lr, steps, settings.final_lr_fraction)
    scaled = [(p, scale) for p, scale in zip(params, step_scales or []) if scale is not None]
    optimizer = make_adam(params, settings.lr)
    losses = np.empty(steps)
    loop = TrainingLoop(settings.desc, steps, progress=settings.progress, every=max(1, steps // 200),
                        postfix=lambda window: f"elbo {-losses[window].mean():.4g}")
    average_from = steps - int(settings.average_fraction * steps)
    averages = [torch.zeros_like(p) for p in params]
    for step in loop:
        decay.apply(optimizer, step)
        optimizer.zero_grad(set_to_none=True)
        with invalid_values_at(step):
            value = loss_at(step)
        value.backward()
        losses[step] = value.item()
        loop.record(step, loss=losses[step])
        before = [p.detach().clone() for p, _ in scaled]
        optimizer.step()
        with torch.no_grad():
            for (p, scale), old in zip(scaled, before):
                p.copy_(old + (p - old) * scale)
        if step >= average_from:
            with torch.no_grad():
                for average, p in zip(averages, params):
                    average.add_(p, alpha=1.0 / (steps - average_from))
    loop.close(f"elbo {-losses[-max(1, steps // 20):].mean():.4g}")
    if average_from < steps:
        with torch.no_grad():
            for average, p in zip(averages, params):
                p.copy_(average)
    return losses


def fit_pyro(run: FitRun, params: list[torch.nn.Parameter], loss: ELBO | None, fallback: str | None) -> FitResult:
    """The fit's steps on Pyro's engine: ``loss`` (None: the objective's, of ``num_particles`` vectorised draws),
    or the guide's own loss on the model's log density (SVGD's)."""
    s, structure, model, guide, args, kwargs = run.settings, run.structure, run.model, run.guide, run.args, run.kwargs
    batches = run.batches
    if loss is None:
        loss = s.parsed_objective.pyro_loss(s.num_particles, structure.nesting)
    program = structure.broadcasting(model)  # the particles run in a plate of draws

    own_loss = run.family.own_loss  # svgd: a loss of its own, on the model's log density
    if own_loss is not None:  # (of the full data: its particles' kernel couples them, not the rows)
        own_loss, batches = own_loss(structure.log_joint_unconstrained(model, *args, **kwargs)), None
        named = dict(guide.named_parameters())

    def loss_at(step: int) -> torch.Tensor:
        # distribution arguments are validated on the first step only: it is a sizeable share of the
        # cost of a small model's step, and a NaN later on is caught by the loop's check anyway
        with pyro.validation_enabled(step == 0 and run.validate):
            if own_loss is not None:
                return own_loss(named)
            batch = batches.next() if batches is not None else None
            return loss.differentiable_loss(on_batch(program, batch), on_batch(guide, batch), *args, **kwargs)

    loop_start = time.perf_counter()
    losses = optimise(params, loss_at, s, step_scales=run.step_scales(params))
    extras = {"engine": "pyro", "compiled_by": None, "compile_seconds": 0.0,
              "steps_per_second": s.steps / (time.perf_counter() - loop_start), "fallback": fallback,
              "batching": structure.batching,
              "gradient_evaluations": s.steps * run.family.gradients_per_step(getattr(loss, "num_particles", 1)),
              **minibatch_extras(batches)}
    return finish(run, losses, extras)
