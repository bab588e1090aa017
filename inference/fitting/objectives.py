"""Variational objectives, by name: ``elbo``, ``renyi:ALPHA``, ``iwae:K`` (``--objective``).

From S draws z_s ~ q with log weights log w_s = log p(x, z_s) - log q(z_s):

    elbo:        L_1     = mean_s log w_s                                    (Trace_ELBO)
    renyi:ALPHA: L_alpha = 1/(1 - alpha) log mean_s w_s^(1 - alpha)          (Li & Turner 2016; RenyiELBO)
    iwae:K:      L_0     = log mean_k w_k  over K draws                       (Burda et al. 2016)

For alpha in [0, 1) the Renyi bound lies between the ELBO and log p(x) and grows with S; alpha = 0 is the
importance-weighted bound, which tends to log p(x) as K grows. ``iwae:K`` is ``renyi:0`` with K draws a
step. Their gradients are those of the bound itself (pathwise; the draws' weights normalised and
detached, as Pyro's ``RenyiELBO`` has them), so they need reparameterised guides.

:meth:`Objective.bound` reduces log weights over the draws' dim, for SVI (a whole model's weights,
(S,)) and for the VAE (one bound per image, (K, N) -> (N,)) alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from deepprob.errors import InputError

if TYPE_CHECKING:  # torch is imported where a bound is computed: the shell's options parse without it
    import torch


@dataclass(frozen=True)
class Objective:
    """One objective: ``alpha`` = 1 is the ELBO; ``particles`` the draws a step (None: the fit's own)."""

    name: str = "elbo"
    alpha: float = 1.0
    particles: int | None = None

    @property
    def is_elbo(self) -> bool:
        return self.alpha == 1.0

    def draws(self, num_particles: int) -> int:
        """The draws a step takes: the objective's own K, else the fit's ``num_particles``."""
        return self.particles or num_particles

    def bound(self, log_w: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """The bound from log weights with the draws along ``dim`` (that dim reduced)."""
        import torch

        if self.is_elbo:
            return log_w.mean(dim)
        s = log_w.shape[dim]
        scaled = (1.0 - self.alpha) * log_w
        return (torch.logsumexp(scaled, dim) - math.log(s)) / (1.0 - self.alpha)

    def pyro_loss(self, num_particles: int, max_plate_nesting: int):
        """The Pyro engine's estimator: ``Trace_ELBO`` for the ELBO, else :class:`BoundLoss` (the same value and
        gradients as Pyro's ``RenyiELBO``, which has no ``differentiable_loss``), vectorised over the draws."""
        from pyro.infer import Trace_ELBO

        n = self.draws(num_particles)
        if self.is_elbo:
            return Trace_ELBO(num_particles=n, vectorize_particles=n > 1, max_plate_nesting=max_plate_nesting)
        return BoundLoss(self, n, max_plate_nesting)

    def __str__(self) -> str:
        return {"elbo": "elbo", "renyi": f"renyi:{self.alpha:g}", "iwae": f"iwae:{self.particles}"}[self.name]


@dataclass(frozen=True)
class BoundLoss:
    """Minus ``objective``'s bound of ``num_particles`` vectorised draws of a guide (reparameterised sites):
    ``differentiable_loss(model, guide, *args, **kwargs)``, as Pyro's ELBOs have it."""

    objective: Objective
    num_particles: int
    max_plate_nesting: int

    def differentiable_loss(self, model, guide, *args, **kwargs):
        from deepprob.traces import log_weights, run_model

        model_trace, guide_trace = run_model(model, args, kwargs, draws=self.num_particles,
                                             nesting=self.max_plate_nesting, guide=guide)
        log_w = log_weights(model_trace, guide_trace, self.num_particles, self.max_plate_nesting)
        return -self.objective.bound(log_w)


ELBO = Objective()
FORMS = "elbo | renyi:ALPHA (ALPHA >= 0, not 1) | iwae:K (K >= 1)"


def parse_objective(text: str | Objective | None) -> Objective:
    """``"elbo"``, ``"renyi:0.5"``, ``"iwae:50"`` (or an :class:`Objective`) as an Objective.

    Raises:
        InputError: anything else, naming ``--objective`` and the forms expected.
    """
    if text is None:
        return ELBO
    if isinstance(text, Objective):
        return text
    name, _, value = str(text).strip().partition(":")
    try:
        if name == "elbo" and not value:
            return ELBO
        if name == "renyi" and value:
            alpha = float(value)
            if math.isfinite(alpha) and alpha >= 0 and alpha != 1:
                return Objective("renyi", alpha)
        if name == "iwae" and value and int(value) >= 1:
            return Objective("iwae", 0.0, int(value))
    except ValueError:
        pass
    raise InputError(f"--objective {text!r}: expected {FORMS}")
