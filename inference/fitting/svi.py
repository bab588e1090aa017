"""One fitting function for every Pyro model and guide: SVI with Trace_ELBO and Adam.

- :func:`fit`: a guide by name from the registry (or a guide object), fitted: ``deepprob.fit``.
- :func:`fit_svi`: the fit itself, on Pyro's engine or the compiled one (the same estimator), from one
  :class:`~deepprob.inference.fitting.settings.FitSettings`.
- :func:`fit_map`: the MAP point of every latent site.

What a fit asks of its guide is the guide's protocol (:mod:`deepprob.guides.protocol`), read through
:func:`~deepprob.guides.protocol.declared`.

Guides own their parameters (Pyro's ``module_local_params`` setting), so fitting several guides in one
process never mixes their parameters through the global param store.
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
from pyro.infer import ELBO, Trace_ELBO
from pyro.infer.util import is_validation_enabled

from deepprob.errors import NAN_HINT, FitDivergedError, InputError
from deepprob.guides.protocol import declared
from deepprob.guides.registry import GuideOptions, build_guide
from deepprob.inference.fitting.engines import will_compile
from deepprob.inference.fitting.settings import MAP, NAMES, FitSettings
from deepprob.logdensity import ModelStructure
from deepprob.optim import ExponentialDecay, collect_parameters, make_adam
from deepprob.progress import report_once
from deepprob.seeds import rng_untouched
from deepprob.subsample import MinibatchIndices, describe, full_data, on_batch
from deepprob.training import TrainingLoop

pyro.settings.set(module_local_params=True)


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


def fit_svi(model: Callable, guide: Callable, *args, settings: FitSettings | None = None, loss: ELBO | None = None,
            **kwargs) -> FitResult:
    """Maximise the ELBO of ``guide`` for ``model(*args, **kwargs)`` by stochastic gradient ascent.

    ``settings``: a :class:`~deepprob.inference.fitting.settings.FitSettings` (default: its defaults); any of its
    fields given as keywords (``steps=5000``, ``lr=0.02``, ...) change it; the other keywords are the model's.

    The estimator is Pyro's ``Trace_ELBO`` (``num_particles`` samples a step, vectorised), unless
    ``loss`` gives another ELBO. Parameters of the guide, and of the model when it is an ``nn.Module``
    (or a method of one, as in the VAE), are trained by Adam whose learning rate decays exponentially
    from ``lr`` to ``lr * final_lr_fraction``. Over the last ``average_fraction`` of the steps the
    iterates are averaged (Polyak-Ruppert) and the guide ends at their mean: the noise of the gradient
    estimates averages out instead of being frozen into the final parameters. Data and parameters stay
    on the device of ``args``. The returned ``elbo`` is a fresh estimate with ``elbo_particles`` draws
    from the final guide (for ``laplace``, of its Gaussian, not of the MAP point).

    ``objective`` (:mod:`~deepprob.inference.fitting.objectives`): ``"elbo"``, ``"renyi:ALPHA"`` (Pyro's
    ``RenyiELBO`` with ``num_particles`` draws) or ``"iwae:K"`` (the importance-weighted bound, K draws a
    step); the returned ``elbo`` is the ELBO whatever the objective. Guides that make a discrete choice
    (the mixture) take the ELBO only.

    ``engine`` picks how the steps run: ``"pyro"``, through Pyro's ``Trace_ELBO`` each step;
    ``"compiled"``, the same estimator and optimiser compiled into one function per step
    (:mod:`deepprob.inference.compiled`: tens of microseconds a step instead of a millisecond or two,
    after a compile of about a second); ``"auto"`` (default), compiled when the guide and model allow
    it (no custom ``loss``, a guide with a pure form, a model without parameters of its own) and the
    fit is long enough (``steps >= AUTO_COMPILE_STEPS``) to repay the compile. A fall-back from the
    engine asked for is reported once on stderr and in ``extras["fallback"]``.

    Raises:
        InputError: ``steps`` < 1, a bad learning rate, an unknown ``engine``, or ``engine="compiled"``
            for a model or guide it does not support.
        FitDivergedError: the loss became NaN or infinite (the message names the step).
    """
    settings = FitSettings.of(settings, **{name: kwargs.pop(name) for name in NAMES if name in kwargs})
    s, family, objective = settings, declared(guide), settings.parsed_objective
    if not objective.is_elbo and family.discrete_choice:
        raise InputError(f"--objective {objective}: the {type(guide).__name__} guide draws a discrete component, "
                         "which the Renyi and IWAE bounds do not take (Pyro's RenyiELBO neither); use elbo")
    start = time.perf_counter()
    structure = ModelStructure.of(model, *args, **kwargs).check()  # a model that cannot be fitted fails here, fast
    # Pyro's checks, where they apply: they refuse batch dims outside a plate, which a model may have (one
    # distribution for a vector of observations) and which the draws' plate is put left of
    validate = is_validation_enabled() and not structure.unplated
    if structure.batching_note:
        report_once(structure.batching_note)
    if family.fits_itself:  # pathfinder: an optimisation of its own, no SVI steps
        return _fit_itself(model, family, args, kwargs, start, s)
    with torch.no_grad(), invalid_values_at(0):
        guide(*args, **kwargs)  # create the guide's parameters (on the data's device)
    params = collect_parameters(guide, model)
    if not params:
        raise InputError("guide: it has no trainable parameters")
    batches = minibatches(structure, params[0].device)
    fallback = None
    if s.engine != "pyro" and will_compile(s.engine, s.steps):
        from deepprob.inference.fitting.svi_steps import compiled_path_problem

        problem = "a custom loss was given" if loss is not None else compiled_path_problem(model, guide, args, kwargs)
        if s.engine == "compiled" and problem:
            raise InputError(f"--engine compiled: not possible here, {problem} (use --engine pyro or auto)")
        if problem is None:
            return _fit_compiled(model, guide, args, kwargs, s, start=start, validate=validate, batches=batches)
        if loss is None:
            fallback = report_once(f"the compiled engine cannot fit this: {problem}; Pyro's engine fits it")
    nesting = structure.nesting
    if loss is None:
        loss = objective.pyro_loss(s.num_particles, nesting)
    program = structure.broadcasting(model)  # the particles run in a plate of draws

    own_loss = family.own_loss  # svgd: a loss of its own, on the model's log density
    if own_loss is not None:  # (of the full data: its particles' kernel couples them, not the rows)
        own_loss, batches = own_loss(structure.log_joint_unconstrained(model, *args, **kwargs)), None
        named = dict(guide.named_parameters())

    def loss_at(step: int) -> torch.Tensor:
        # distribution arguments are validated on the first step only: it is a sizeable share of the
        # cost of a small model's step, and a NaN later on is caught by the loop's check anyway
        with pyro.validation_enabled(step == 0 and validate):
            if own_loss is not None:
                return own_loss(named)
            batch = batches.next() if batches is not None else None
            return loss.differentiable_loss(on_batch(program, batch), on_batch(guide, batch), *args, **kwargs)

    loop_start = time.perf_counter()
    losses = optimise(params, loss_at, s, step_scales=_step_scales(guide, params))
    extras = {"engine": "pyro", "compiled_by": None, "compile_seconds": 0.0,
              "steps_per_second": s.steps / (time.perf_counter() - loop_start), "fallback": fallback,
              "batching": structure.batching,
              "gradient_evaluations": s.steps * family.gradients_per_step(getattr(loss, "num_particles", 1)),
              **minibatch_extras(batches)}
    return _finish(model, guide, args, kwargs, losses, start, s, extras, nesting)


def minibatches(structure: ModelStructure, device) -> MinibatchIndices | None:
    """The rows each step sees, for a model whose plates subsample (:mod:`deepprob.subsample`), else None (also
    for a model run draw by draw, which runs over the full data)."""
    if structure.subsampled and structure.batching != "plate":
        report_once(f"model {structure.name} is run draw by draw: its plates run over the full data (no minibatches)")
        return None
    return MinibatchIndices(structure.subsampled, device) if structure.subsampled else None


def minibatch_extras(batches: MinibatchIndices | None) -> dict:
    """``batch_size`` (None: full batch) and ``minibatch`` (which plates subsample, how) for a fit's extras."""
    if batches is None:
        return {"batch_size": None, "minibatch": None}
    return {"batch_size": max(b for _, b in batches.plates.values()), "minibatch": describe(batches.plates)}


def _fit_itself(model, guide, args, kwargs, start, settings: FitSettings) -> FitResult:
    """A guide fitted by an optimisation of its own (``guide.fit_without_svi``: pathfinder)."""
    fitted, losses, extras = guide.fit_without_svi(*args, progress=settings.progress, desc=settings.desc, **kwargs)
    extras = {"engine": type(guide).__name__, "compiled_by": None, "compile_seconds": 0.0, "fallback": None,
              "batching": ModelStructure.of(model, *args, **kwargs).batching, **extras}
    extras["steps_per_second"] = None
    nesting = ModelStructure.of(model, *args, **kwargs).nesting
    return _finish(model, fitted, args, kwargs, losses, start, settings, extras, nesting)


def _step_scales(guide, params: list) -> list[torch.Tensor | None]:
    """The guide's per-coordinate learning rates (its ``step_scales``: parameter name -> tensor, a guide that
    starts at the Laplace approximation gives its locations the posterior's sds there), in ``params``' order."""
    scales = declared(guide).step_scales or {}
    names = {id(p): name for name, p in guide.named_parameters()}
    return [scales.get(names.get(id(p))) for p in params]


def _finish(model, guide, args, kwargs, losses, start, settings: FitSettings, extras, nesting,
            elbo_fn=None) -> FitResult:
    """Both engines' ending: the guide's ``finalize`` step, then a fresh ELBO estimate, both of the full data
    where the model's plates subsample.

    ``extras["gradient_evaluations"]`` counts the log density's gradients the fit took: those of its
    steps (one a particle), and the guide's own (a mixture's search for modes, Laplace's Hessian).
    """
    extras["gradient_evaluations"] = extras["gradient_evaluations"] + declared(guide).gradient_evaluations
    with full_data():
        final = declared(guide).finalize(*args, **kwargs)
    if final is not None:
        guide, elbo_fn = final, None
        extras["gradient_evaluations"] += final.gradient_evaluations
    seconds = time.perf_counter() - start
    elbo_particles = settings.elbo_particles
    if not elbo_particles or declared(guide).q_density != "density":
        elbo = math.nan  # particles or a point mass: log q is no density, E_q[log p - log q] no ELBO
    elif elbo_fn is not None:
        elbo = elbo_fn(elbo_particles)
    else:
        with full_data():
            elbo = estimate_elbo(model, guide, *args, num_particles=elbo_particles, **kwargs)
    return FitResult(guide=guide, losses=losses, seconds=seconds, elbo=elbo, extras=extras, model=model,
                     args=args, kwargs=kwargs)


def _fit_compiled(model, guide, args, kwargs, settings: FitSettings, *, start, validate, batches=None) -> FitResult:
    """``fit_svi`` through :mod:`deepprob.inference.fitting.svi_steps` (the same estimator, compiled)."""
    from deepprob.inference.fitting import svi_steps

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
        nesting = loss.structure.nesting
        if validate:  # Pyro's checks of the model and guide, once, as the first step of the Pyro engine does
            with invalid_values_at(0), torch.no_grad(), full_data():
                Trace_ELBO(max_plate_nesting=nesting).differentiable_loss(model, guide, *args, **kwargs)
    with pyro.validation_enabled(False):
        runner = svi_steps.SVISteps(loss, params, settings, step_scales=_step_scales(guide, list(params.values())))
        loop_start = time.perf_counter()
        losses = runner.run(num_particles, progress=settings.progress, desc=settings.desc)
        loop_seconds = time.perf_counter() - loop_start - runner.compile_seconds
    particles = num_particles if loss.form.stochastic else 1
    extras = {"engine": "compiled" if runner.compiled else "eager", "compiled_by": runner.compiled_by,
              "compile_seconds": runner.compile_seconds, "batching": loss.structure.batching,
              "steps_per_second": settings.steps / max(loop_seconds, 1e-9), "fallback": runner.fallback,
              "gradient_evaluations": settings.steps * declared(guide).gradients_per_step(particles),
              **minibatch_extras(batches)}

    def elbo_fn(n):
        with pyro.validation_enabled(False):
            return svi_steps.fast_elbo_estimate(elbo_loss, params, n)

    return _finish(model, guide, args, kwargs, losses, start, settings, extras, nesting, elbo_fn)


def fit(model: Callable, *args, guide="fullrank", options: GuideOptions | None = None,
        settings: FitSettings | None = None, model_kwargs: dict | None = None, **svi_options) -> FitResult:
    """Fit a guide to ``model(*args, **model_kwargs)`` by SVI: ``deepprob.fit``.

    Args:
        guide: a name of the registry (``deepprob.guides.GUIDES``: ``laplace``, ``meanfield``,
            ``fullrank``, ``lowrank``, ``mixture``) or a guide object (an ``AutoGuide`` of Pyro's, say).
        options: the registry guide's options (:class:`~deepprob.guides.registry.GuideOptions`: the
            initialisation, the mixture's components, the low-rank guide's rank).
        settings: the fit's :class:`~deepprob.inference.fitting.settings.FitSettings`; ``svi_options``, any of its
            fields as keywords (``steps``, ``lr``, ``num_particles``, ``engine``, ...), change it.

    Returns:
        :class:`FitResult`: the fitted guide, the loss at every step, the time, a fresh ELBO estimate.

        >>> fit = deepprob.fit(model, data, guide="meanfield", steps=5000)
        >>> fit.elbo, fit.guide.median(data)
    """
    loss = svi_options.pop("loss", None)
    try:
        settings = FitSettings.of(settings, **svi_options)
    except TypeError as err:
        raise TypeError(f"fit() got an {err} (model keywords go in model_kwargs)") from None
    if isinstance(guide, str):
        guide = build_guide(guide, model, options)
    return fit_svi(model, guide, *args, settings=settings, loss=loss, **(model_kwargs or {}))


def fit_map(model: Callable, *args, settings: FitSettings = MAP, **kwargs) -> dict[str, torch.Tensor]:
    """The MAP estimate of every latent site: ``fit_svi`` of a point mass at one unconstrained vector (``settings``:
    :data:`~deepprob.inference.fitting.settings.MAP`, lr 0.05; any of its fields as keywords change it)."""
    from deepprob.guides.delta import PointMass

    settings = FitSettings.of(settings, **{name: kwargs.pop(name) for name in NAMES if name in kwargs})
    guide = PointMass(model, **GuideOptions(start="prior").loc_kwargs())
    fit_svi(model, guide, *args, settings=settings, **kwargs)
    with torch.no_grad():
        return {name: value.detach() for name, value in guide(*args, **kwargs).items()}  # a point mass: its draw
