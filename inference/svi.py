"""One fitting function for every Pyro model and guide: SVI with Trace_ELBO and Adam.

Guides own their parameters (Pyro's ``module_local_params`` setting), so fitting several guides in one
process never mixes their parameters through the global param store.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import pyro
import torch
from pyro.infer import ELBO, Trace_ELBO
from tqdm.auto import tqdm

from deepprob.errors import FitDivergedError, InputError

pyro.settings.set(module_local_params=True)

NAN_HINT = "lower --lr, raise --num-particles, or check the data for extreme values"


@dataclass
class FitResult:
    """What :func:`fit_svi` returns.

    Attributes:
        guide: the fitted guide; for guides with a ``finalize`` step (``laplace``) the guide it returned.
        losses: the loss (negative ELBO estimate) at every step, shape (steps,).
        seconds: wall time of the optimisation (and of ``finalize``).
    """

    guide: Callable
    losses: np.ndarray
    seconds: float
    extras: dict = field(default_factory=dict)

    @property
    def elbo(self) -> float:
        """The final ELBO: mean of ``-loss`` over the last tenth of the steps (a less noisy estimate)."""
        tail = self.losses[-max(1, len(self.losses) // 10):]
        return float(-tail.mean())


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


def check_loss(loss: float, step: int) -> None:
    """Stop a fit whose loss is NaN or infinite, naming the step."""
    if not math.isfinite(loss):
        raise FitDivergedError(f"the loss became {loss} at step {step}; {NAN_HINT}")


def fit_svi(
    model: Callable,
    guide: Callable,
    *args,
    steps: int = 2000,
    lr: float = 0.01,
    num_particles: int = 1,
    loss: ELBO | None = None,
    final_lr_fraction: float = 0.1,
    progress: bool = True,
    desc: str = "SVI",
    **kwargs,
) -> FitResult:
    """Maximise the ELBO of ``guide`` for ``model(*args, **kwargs)`` by stochastic gradient ascent.

    The estimator is Pyro's ``Trace_ELBO`` (``num_particles`` samples a step, vectorised), unless
    ``loss`` gives another ELBO. Parameters of the guide, and of the model when it is an ``nn.Module``
    (or a method of one, as in the VAE), are trained by Adam whose learning rate decays exponentially
    from ``lr`` to ``lr * final_lr_fraction``. Data and parameters stay on the device of ``args``.

    Raises:
        InputError: ``steps`` < 1 or a bad learning rate.
        FitDivergedError: the loss became NaN or infinite (the message names the step).
    """
    if steps < 1:
        raise InputError(f"--steps {steps}: expected at least 1 step")
    if loss is None:
        loss = Trace_ELBO(num_particles=num_particles, vectorize_particles=num_particles > 1)
    start = time.perf_counter()
    with torch.no_grad():
        guide(*args, **kwargs)  # create the guide's parameters (on the data's device)
    params = collect_parameters(guide, model)
    if not params:
        raise InputError("guide: it has no trainable parameters")
    optimizer, scheduler = make_optimizer(params, lr=lr, steps=steps, final_lr_fraction=final_lr_fraction)
    losses = np.empty(steps)
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False, dynamic_ncols=True)
    every = max(1, steps // 200)
    for step in bar:
        optimizer.zero_grad(set_to_none=True)
        value = loss.differentiable_loss(model, guide, *args, **kwargs)
        value.backward()
        losses[step] = value.item()
        check_loss(losses[step], step)
        optimizer.step()
        scheduler.step()
        if step % every == 0:
            bar.set_postfix(elbo=f"{-losses[max(0, step - every + 1):step + 1].mean():.4g}", refresh=False)
    bar.close()
    finalize = getattr(guide, "finalize", None)
    if finalize is not None:
        guide = finalize(*args, **kwargs)
    return FitResult(guide=guide, losses=losses, seconds=time.perf_counter() - start)
