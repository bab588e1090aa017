"""How a guide is fitted: one validated settings object for every fit, and every default with the rule that picks it.

:class:`FitSettings` is made once, where a fit is asked for (the shell's options, ``deepprob.fit``'s or
``deepprob.compare``'s keywords), checked there, and passed whole to ``fit_svi``, its engines and the training
loop. Light (no torch): the shell's ``--help`` reads its defaults.

The defaults, each set here once:

- ``deepprob.fit`` / ``fit_svi``: :class:`FitSettings`'s own (2,000 steps, lr 0.01, one particle);
- ``fit_map``: :data:`MAP` (lr 0.05, no ELBO estimate);
- ``deepprob.compare`` and the shell's ``compare --model``: :data:`COMPARE` (10,000 steps, 4 particles), the
  learning rate by :func:`compare_lr` of the guides' start and the steps;
- the regression examples (``deepprob linreg|logreg|bnn`` and ``compare`` of them): :data:`EXAMPLES`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from deepprob.errors import InputError
from deepprob.inference.fitting.engines import check_engine
from deepprob.inference.fitting.objectives import Objective, parse_objective


@dataclass(frozen=True)
class FitSettings:
    """Every setting of an SVI fit, checked when made.

    Attributes:
        steps: optimisation steps (>= 1).
        lr: Adam's initial learning rate; it decays exponentially to ``lr * final_lr_fraction`` at the last step
            (:class:`~deepprob.optim.ExponentialDecay`).
        final_lr_fraction: in (0, 1].
        average_fraction: the last share of the steps whose iterates are averaged (Polyak-Ruppert), in [0, 1).
        num_particles: draws of the guide a step (vectorised); the IWAE objective's K replaces it.
        objective: ``"elbo"``, ``"renyi:ALPHA"`` or ``"iwae:K"`` (:mod:`~deepprob.inference.fitting.objectives`).
        engine: ``"auto"``, ``"pyro"`` or ``"compiled"`` (:mod:`~deepprob.inference.fitting.engines`).
        elbo_particles: draws of the fresh ELBO estimate of the fitted guide (0: none).
        progress: a progress bar (a line a step group where the output is not a terminal).
        desc: the bar's label.
    """

    steps: int = 2000
    lr: float = 0.01
    final_lr_fraction: float = 0.1
    average_fraction: float = 0.25
    num_particles: int = 1
    objective: str = "elbo"
    engine: str = "auto"
    elbo_particles: int = 1000
    progress: bool = True
    desc: str = "SVI"

    def __post_init__(self):
        if not self.steps >= 1:
            raise InputError(f"--steps {self.steps}: expected at least 1 step")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise InputError(f"--lr {self.lr}: expected a finite learning rate > 0")
        if not 0 < self.final_lr_fraction <= 1:
            raise InputError(f"final_lr_fraction {self.final_lr_fraction}: expected a number in (0, 1]")
        if not 0 <= self.average_fraction < 1:
            raise InputError(f"average_fraction {self.average_fraction}: expected a number in [0, 1)")
        if not self.num_particles >= 1:
            raise InputError(f"--num-particles {self.num_particles}: expected at least 1")
        if self.elbo_particles < 0:
            raise InputError(f"elbo_particles {self.elbo_particles}: expected 0 (no estimate) or more")
        check_engine(self.engine)
        object.__setattr__(self, "objective", str(parse_objective(self.objective)))

    @property
    def parsed_objective(self) -> Objective:
        return parse_objective(self.objective)

    def replace(self, **changes) -> FitSettings:
        """A copy with ``changes`` (checked again)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def of(cls, settings: FitSettings | None = None, **changes) -> FitSettings:
        """``settings`` (default: the defaults) with the settings named in ``changes``; a name that is not a
        setting raises a TypeError listing them."""
        unknown = sorted(set(changes) - set(NAMES))
        if unknown:
            raise TypeError(f"unexpected keyword argument(s) {', '.join(unknown)}; the fit's settings are "
                            f"{', '.join(NAMES)}")
        return (settings or cls()).replace(**changes) if changes else (settings or cls())


NAMES = tuple(f.name for f in dataclasses.fields(FitSettings))


def settings_from(settings: FitSettings | None, keywords: dict) -> FitSettings:
    """``settings`` with the fields named in ``keywords`` taken out of it (the rest are the model's keywords)."""
    return FitSettings.of(settings, **{name: keywords.pop(name) for name in NAMES if name in keywords})

#: fit_map: the MAP point by SVI steps of a point mass (its ELBO is not needed)
MAP = FitSettings(lr=0.05, elbo_particles=1, progress=False, desc="MAP")

#: compare (and a user's model from the shell): posteriors of any scale; the compiled engine makes the steps cheap
COMPARE = {"steps": 10000, "num_particles": 4}

#: the regression examples' settings (compare of them too, but for bnn: 2000 steps keep five guides and NUTS
#: within a few minutes on two CPU cores)
EXAMPLES = {
    # 6000 steps: the noise precision follows the data (about 18 on the embedded data), and at 3000 the
    # full-rank fit of that narrower posterior stopped at KL 0.02 from the exact one (0.001 at 6000)
    "linreg": {"steps": 6000, "lr": 0.05, "num_particles": 8},
    # 5000 steps: on classes that barely overlap the weights are large, a long walk at a decaying learning
    # rate; at 2000 the posterior means were still off by up to 1.5 posterior sds on some seeds
    "logreg": {"steps": 5000, "lr": 0.05, "num_particles": 4},
    "bnn": {"steps": 3000, "lr": 0.02, "num_particles": 4},
}
COMPARE_EXAMPLES = {"bnn": {"steps": 2000}}

# compare's learning rate by the guides' start. From the prior a fit has far to go: 0.02. From the Laplace
# approximation it starts near its optimum, and smaller steps leave less noise in it (on diamonds' 26
# correlated coefficients, full rank's worst sd error was 0.46 with 0.02 and 0.08 with 0.005), but where
# the Laplace approximation is far off (eight schools' tau, whose curvature at the mode is no guide to
# its spread) the fit still has to travel: the steps' total, steps x lr, is kept at LAPLACE_TRAVEL
# (0.005 over 10,000 steps; 0.0167 over 3,000, where 0.005 left full rank 1.4 sds off on tau), between
# 0.005 and 0.02.
START_LR = {"laplace": (0.005, 0.02), "prior": (0.02, 0.02)}
LAPLACE_TRAVEL = 50.0


def compare_lr(start: str, steps: int) -> float:
    """compare's SVI learning rate for guides that start at ``start`` and take ``steps`` steps."""
    low, high = START_LR[start]
    return min(high, max(low, LAPLACE_TRAVEL / max(steps, 1)))


def compare_settings(start: str, settings: FitSettings | None = None, **changes) -> FitSettings:
    """compare's fits: ``settings`` where given, else :data:`COMPARE`'s with the learning rate by
    :func:`compare_lr` of ``start`` and the steps; ``changes`` (fields; None: the default) on top."""
    changes = {k: v for k, v in changes.items() if v is not None}
    if settings is None:
        steps = changes.get("steps", COMPARE["steps"])
        changes = {**COMPARE, "lr": compare_lr(start, steps) if steps >= 1 else 1.0, **changes}
    return FitSettings.of(settings, **changes)
