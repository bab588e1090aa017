"""One fitting function for every Pyro model and guide: SVI with Trace_ELBO and Adam.

Guides own their parameters (Pyro's ``module_local_params`` setting), so fitting several guides in one
process never mixes their parameters through the global param store.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.infer import ELBO, Trace_ELBO
from pyro.infer.util import is_validation_enabled
from tqdm.auto import tqdm

from deepprob.errors import FitDivergedError, InputError
from deepprob.runtime import rng_untouched

pyro.settings.set(module_local_params=True)

# fits at least this long take the compiled engine by themselves (its compile costs a few seconds)
AUTO_COMPILE_STEPS = 2000

NAN_HINT = "lower --lr, raise --num-particles, or check the data for extreme values"


@dataclass
class FitResult:
    """What :func:`fit_svi` returns.

    Attributes:
        guide: the fitted guide; for guides with a ``finalize`` step (``laplace``) the guide it returned.
        losses: the loss (negative ELBO estimate) at every step, shape (steps,).
        seconds: wall time of the optimisation (and of ``finalize``).
        elbo: the ELBO of the final guide, estimated afresh with many particles (:func:`estimate_elbo`).
    """

    guide: Callable
    losses: np.ndarray
    seconds: float
    elbo: float
    extras: dict = field(default_factory=dict)


def collect_parameters(*modules) -> list[torch.nn.Parameter]:
    """The distinct trainable parameters of ``modules`` (nn.Modules, or bound methods of one)."""
    seen, params = set(), []
    for module in modules:
        module = getattr(module, "__self__", module)  # a model given as a method of an nn.Module
        if isinstance(module, torch.nn.Module):
            for p in module.parameters():
                if p.requires_grad and id(p) not in seen:
                    seen.add(id(p))
                    params.append(p)
    return params


def make_optimizer(
    params: Iterable[torch.nn.Parameter], *, lr: float, steps: int, final_lr_fraction: float = 0.1
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Adam with an exponential decay from ``lr`` to ``lr * final_lr_fraction`` over ``steps``."""
    if not lr > 0 or not math.isfinite(lr):
        raise InputError(f"--lr {lr}: expected a finite learning rate > 0")
    if not 0 < final_lr_fraction <= 1:
        raise InputError(f"final_lr_fraction {final_lr_fraction}: expected a number in (0, 1]")
    optimizer = torch.optim.Adam(list(params), lr=lr)
    gamma = final_lr_fraction ** (1.0 / max(1, steps))
    return optimizer, torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma)


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


def check_loss(loss: float, step: int) -> None:
    """Stop a fit whose loss is NaN or infinite, naming the step."""
    if not math.isfinite(loss):
        raise FitDivergedError(f"the loss became {loss} at step {step}; {NAN_HINT}")


def estimate_elbo(model: Callable, guide: Callable, *args, num_particles: int = 1000, chunk: int = 100,
                  **kwargs) -> float:
    """E_q[log p(x, z) - log q(z)] by Monte Carlo with ``num_particles`` draws (vectorised, ``chunk`` at a time)."""
    total, done = 0.0, 0
    with torch.no_grad():
        while done < num_particles:
            n = min(chunk, num_particles - done)
            elbo = Trace_ELBO(num_particles=n, vectorize_particles=n > 1)
            total += -elbo.loss(model, guide, *args, **kwargs) * n
            done += n
    return total / num_particles


def optimise(
    params: list[torch.nn.Parameter],
    loss_at: Callable[[int], torch.Tensor],
    *,
    steps: int,
    lr: float,
    final_lr_fraction: float = 0.1,
    average_fraction: float = 0.25,
    progress: bool = True,
    desc: str = "SVI",
) -> np.ndarray:
    """Minimise the scalar ``loss_at(step)`` over ``params`` by Adam; returns the loss at every step (steps,).

    The learning rate decays exponentially from ``lr`` to ``lr * final_lr_fraction``. Over the last
    ``average_fraction`` of the steps the iterates are averaged (Polyak-Ruppert) and ``params`` end at
    their mean. A loss that is not finite stops the loop with a FitDivergedError naming the step.
    """
    optimizer, scheduler = make_optimizer(params, lr=lr, steps=steps, final_lr_fraction=final_lr_fraction)
    losses = np.empty(steps)
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False, dynamic_ncols=True)
    every = max(1, steps // 200)
    average_from = steps - int(average_fraction * steps)
    averages = [torch.zeros_like(p) for p in params]
    for step in bar:
        optimizer.zero_grad(set_to_none=True)
        with invalid_values_at(step):
            value = loss_at(step)
        value.backward()
        losses[step] = value.item()
        check_loss(losses[step], step)
        optimizer.step()
        scheduler.step()
        if step >= average_from:
            with torch.no_grad():
                for average, p in zip(averages, params):
                    average.add_(p, alpha=1.0 / (steps - average_from))
        if step % every == 0:
            bar.set_postfix(elbo=f"{-losses[max(0, step - every + 1):step + 1].mean():.4g}", refresh=False)
    bar.close()
    if average_from < steps:
        with torch.no_grad():
            for average, p in zip(averages, params):
                p.copy_(average)
    return losses


def will_compile(engine: str, steps: int) -> bool:
    """Whether ``fit_svi(engine=engine, steps=steps)`` compiles its step where the model and guide allow it."""
    return engine == "compiled" or (engine == "auto" and steps >= AUTO_COMPILE_STEPS)


def fit_svi(
    model: Callable,
    guide: Callable,
    *args,
    steps: int = 2000,
    lr: float = 0.01,
    num_particles: int = 1,
    loss: ELBO | None = None,
    final_lr_fraction: float = 0.1,
    average_fraction: float = 0.25,
    elbo_particles: int = 1000,
    progress: bool = True,
    desc: str = "SVI",
    engine: str = "auto",
    **kwargs,
) -> FitResult:
    """Maximise the ELBO of ``guide`` for ``model(*args, **kwargs)`` by stochastic gradient ascent.

    The estimator is Pyro's ``Trace_ELBO`` (``num_particles`` samples a step, vectorised), unless
    ``loss`` gives another ELBO. Parameters of the guide, and of the model when it is an ``nn.Module``
    (or a method of one, as in the VAE), are trained by Adam whose learning rate decays exponentially
    from ``lr`` to ``lr * final_lr_fraction``. Over the last ``average_fraction`` of the steps the
    iterates are averaged (Polyak-Ruppert) and the guide ends at their mean: the noise of the gradient
    estimates averages out instead of being frozen into the final parameters. Data and parameters stay
    on the device of ``args``. The returned ``elbo`` is a fresh estimate with ``elbo_particles`` draws
    from the final guide (for ``laplace``, of its Gaussian, not of the MAP point).

    ``engine`` picks how the steps run: ``"pyro"``, through Pyro's ``Trace_ELBO`` each step;
    ``"compiled"``, the same estimator and optimiser compiled into one kernel per step
    (:mod:`deepprob.inference.fast_svi`: tens of microseconds a step instead of a millisecond or two,
    after a compile of a few seconds); ``"auto"`` (default), compiled when the guide and model allow
    it (no custom ``loss``, a guide of the registry, a model without parameters of its own) and the fit
    is long enough (``steps >= AUTO_COMPILE_STEPS``) to repay the compile. ``extras`` records the
    engine used, the compile time and the steps per second of the loop.

    Raises:
        InputError: ``steps`` < 1, a bad learning rate, an unknown ``engine``, or ``engine="compiled"``
            for a model or guide it does not support.
        FitDivergedError: the loss became NaN or infinite (the message names the step).
    """
    from deepprob.inference import fast_svi

    if steps < 1:
        raise InputError(f"--steps {steps}: expected at least 1 step")
    fast_svi.check_engine(engine)
    start = time.perf_counter()
    validate = is_validation_enabled()
    with torch.no_grad(), invalid_values_at(0):
        guide(*args, **kwargs)  # create the guide's parameters (on the data's device)
    params = collect_parameters(guide, model)
    if not params:
        raise InputError("guide: it has no trainable parameters")
    if engine != "pyro":
        problem = "a custom loss was given" if loss is not None else fast_svi.fast_path_problem(model, guide, args,
                                                                                                kwargs)
        if engine == "compiled" and problem:
            raise InputError(f"--engine compiled: not possible here, {problem} (use --engine pyro or auto)")
        if problem is None and will_compile(engine, steps):
            return _fit_compiled(model, guide, args, kwargs, start=start, steps=steps, lr=lr,
                                 num_particles=num_particles, final_lr_fraction=final_lr_fraction,
                                 average_fraction=average_fraction, elbo_particles=elbo_particles,
                                 progress=progress, desc=desc, validate=validate)
    if loss is None:
        loss = Trace_ELBO(num_particles=num_particles, vectorize_particles=num_particles > 1)
        # Pyro guesses the plate nesting by running the model and guide once, drawing random numbers:
        # done here, off the record, the steps of both engines draw the same noise from the same seed
        with rng_untouched(params[0].device), poutine.block():
            loss._guess_max_plate_nesting(model, guide, args, kwargs)

    def loss_at(step: int) -> torch.Tensor:
        # distribution arguments are validated on the first step only: it is a sizeable share of the
        # cost of a small model's step, and a NaN later on is caught by check_loss anyway
        with pyro.validation_enabled(step == 0 and validate):
            return loss.differentiable_loss(model, guide, *args, **kwargs)

    loop_start = time.perf_counter()
    losses = optimise(params, loss_at, steps=steps, lr=lr, final_lr_fraction=final_lr_fraction,
                      average_fraction=average_fraction, progress=progress, desc=desc)
    extras = {"engine": "pyro", "compiled_by": None, "compile_seconds": 0.0,
              "steps_per_second": steps / (time.perf_counter() - loop_start)}
    return _finish(model, guide, args, kwargs, losses, start, elbo_particles, extras)


def _finish(model, guide, args, kwargs, losses, start, elbo_particles, extras, elbo_fn=None) -> FitResult:
    """Both engines' ending: the guide's ``finalize`` step, then a fresh ELBO estimate."""
    finalize = getattr(guide, "finalize", None)
    if finalize is not None:
        guide, elbo_fn = finalize(*args, **kwargs), None
    seconds = time.perf_counter() - start
    if not elbo_particles:
        elbo = math.nan
    elif elbo_fn is not None:
        elbo = elbo_fn(elbo_particles)
    else:
        elbo = estimate_elbo(model, guide, *args, num_particles=elbo_particles, **kwargs)
    return FitResult(guide=guide, losses=losses, seconds=seconds, elbo=elbo, extras=extras)


def _fit_compiled(model, guide, args, kwargs, *, start, steps, lr, num_particles, final_lr_fraction,
                  average_fraction, elbo_particles, progress, desc, validate) -> FitResult:
    """``fit_svi`` through :mod:`deepprob.inference.fast_svi` (the same estimator, compiled)."""
    from deepprob.inference import fast_svi

    params = fast_svi.guide_parameters(guide)
    # the set-up draws no random numbers that count: the steps see the noise the Pyro engine's steps see
    with rng_untouched(next(iter(params.values())).device):
        if validate:  # Pyro's checks of the model and guide, once, as the first step of the Pyro engine does
            with invalid_values_at(0), torch.no_grad():
                Trace_ELBO().differentiable_loss(model, guide, *args, **kwargs)
        with pyro.validation_enabled(False):
            loss = fast_svi.svi_loss_fn(model, guide, *args, **kwargs)
    with pyro.validation_enabled(False):
        runner = fast_svi.SVISteps(loss, params, steps=steps, lr=lr, final_lr_fraction=final_lr_fraction,
                                   average_fraction=average_fraction)
        loop_start = time.perf_counter()
        losses = runner.run(num_particles, progress=progress, desc=desc)
        loop_seconds = time.perf_counter() - loop_start - runner.compile_seconds
    extras = {"engine": "compiled" if runner.compiled else "eager", "compiled_by": runner.compiled_by,
              "compile_seconds": runner.compile_seconds,
              "steps_per_second": steps / max(loop_seconds, 1e-9)}

    def elbo_fn(n):
        with pyro.validation_enabled(False):
            return fast_svi.fast_elbo_estimate(loss, params, n)

    return _finish(model, guide, args, kwargs, losses, start, elbo_particles, extras, elbo_fn)


def fit_map(model: Callable, *args, steps: int = 2000, lr: float = 0.05, progress: bool = False,
            **kwargs) -> dict[str, torch.Tensor]:
    """The MAP estimate of every latent site: ``fit_svi`` of a point mass at one unconstrained vector."""
    from pyro.infer.autoguide import AutoLaplaceApproximation

    guide = AutoLaplaceApproximation(model)  # fitted as a point mass; its Laplace step is not needed here
    fit_svi(model, guide, *args, steps=steps, lr=lr, elbo_particles=1, progress=progress, desc="MAP", **kwargs)
    with torch.no_grad():
        return {name: value.detach() for name, value in guide(*args, **kwargs).items()}  # a point mass: its draw
