"""The compiled engine's fit: the whole SVI step (the model's log density, the guide's pure form, the gradient,
Adam) traced once and compiled (:mod:`~deepprob.inference.fitting.svi_steps`, :mod:`deepprob.compiler`). The same
estimator, the same noise and the same steps as Pyro's engine, from the same seed."""

from __future__ import annotations

import time

import pyro
import torch
from pyro.infer import Trace_ELBO

from deepprob.inference.fitting import svi_steps
from deepprob.inference.fitting.result import FitResult, FitRun, finish, invalid_values_at, minibatch_extras
from deepprob.seeds import rng_untouched
from deepprob.subsample import full_data


def fit_compiled(run: FitRun) -> FitResult:
    """The fit's steps on the compiled engine (:class:`~deepprob.inference.fitting.svi_steps.SVISteps`)."""
    model, guide, args, kwargs, settings = run.model, run.guide, run.args, run.kwargs, run.settings
    batches = run.batches
    objective = settings.parsed_objective
    num_particles = objective.draws(settings.num_particles)
    params = svi_steps.guide_parameters(guide)
    # the set-up draws no random numbers that count: the steps see the noise the Pyro engine's steps see
    with rng_untouched(next(iter(params.values())).device):
        with pyro.validation_enabled(False):
            loss = svi_steps.svi_loss_fn(model, guide, *args, objective=objective, batches=batches, **kwargs)
            # the fit's ELBO is the ELBO of the full data, whatever the objective trained
            elbo_loss = (loss if objective.is_elbo and batches is None
                         else svi_steps.svi_loss_fn(model, guide, *args, **kwargs))
        if run.validate:  # Pyro's checks of the model and guide, once, as the first step of the Pyro engine does
            with invalid_values_at(0), torch.no_grad(), full_data():
                Trace_ELBO(max_plate_nesting=loss.structure.nesting).differentiable_loss(model, guide, *args,
                                                                                        **kwargs)
    with pyro.validation_enabled(False):
        runner = svi_steps.SVISteps(loss, params, settings, step_scales=run.step_scales(list(params.values())))
        loop_start = time.perf_counter()
        losses = runner.run(num_particles, progress=settings.progress, desc=settings.desc)
        loop_seconds = time.perf_counter() - loop_start - runner.compile_seconds
    particles = num_particles if loss.form.stochastic else 1
    extras = {"engine": "compiled" if runner.compiled else "eager", "compiled_by": runner.compiled_by,
              "compile_seconds": runner.compile_seconds, "batching": loss.structure.batching,
              "steps_per_second": settings.steps / max(loop_seconds, 1e-9), "fallback": runner.fallback,
              "gradient_evaluations": settings.steps * run.family.gradients_per_step(particles),
              **minibatch_extras(batches)}

    def elbo_fn(n):
        with pyro.validation_enabled(False):
            return svi_steps.fast_elbo_estimate(elbo_loss, params, n)

    return finish(run, losses, extras, elbo_fn=elbo_fn)
