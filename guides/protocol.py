"""What a guide declares it can do: the one protocol every guide of the registry honours.

Inference asks a guide these questions, and nothing else (no probing for optional attributes):

======================================  ===================================================================
``q_density``                           what log q of its draws is: ``"density"``, ``"point mass"`` or
                                        ``"particles"`` (no density: no ELBO, infinite k-hat)
``discrete_choice``                     a draw picks a discrete component: the ELBO only (no Rényi, IWAE)
``fits_itself`` / ``fit_without_svi``   fitted by an optimisation of its own (Pathfinder), not SVI steps
``pure_form()``                         its draw as a pure torch function of (params, noise), for the compiled
                                        engine (:class:`PureForm`); None: Pyro's engine fits it
``untraceable``                         why the compiled engine cannot trace it as it is now, or None
``own_loss(log_joint)``                 a loss of its own on the model's log density (SVGD), or None: the ELBO
``gradients_per_step(particles)``       gradients of log p one SVI step takes
``gradient_evaluations``                gradients of log p its own work took (a search for the mode, a Hessian)
``step_scales``                         per-coordinate learning rates: parameter name -> tensor, or None
``finalize(*args, **kwargs)``           the guide a fit hands back after its steps (Laplace's Gaussian), or None
``start_jitter``                        set, not asked: a restart's start: a draw of the Laplace Gaussian
                                        (the trust checks'; families without a Laplace start ignore it)
======================================  ===================================================================

A new guide is one file (its family: a class with :class:`Family` among its bases, its pure form beside it,
its ``build(model, options)``) and one line in :data:`deepprob.guides.registry.GUIDES`;
``tests/test_guide_protocol.py`` checks every registered guide against this protocol. A guide that is not a
:class:`Family` (a Pyro autoguide of a user's) is read through :func:`declared`: the defaults, on Pyro's engine.

The pure form (the compiled engine's): every family is a distribution q(u) over the model's unconstrained latent
vector u (D,), drawn by reparameterisation from noise that does not depend on the parameters::

    draw(params, noise) -> Draw(z (S, D), log_q (S,), ...)

a pure function of a dict of the guide's trainable tensors (its ``named_parameters``, the raw leaves Adam trains)
and of the noise of S particles, which ``noise(params, S)`` draws in the order Pyro's own ``rsample`` draws it:
with the same RNG state, Pyro's guide and ``draw`` give the same z.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.distributions import transform_to

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
#: what the log q of a guide's draws is: a density ("density"), or none, for a point mass ("point mass", whose
#: importance weights p/q are 0 almost everywhere: k-hat is infinite) or particles ("particles": undefined)
Q_DENSITIES = ("density", "point mass", "particles")


@dataclass
class Draw:
    """S particles of a guide.

    Attributes:
        z: (S, D) unconstrained latent vectors.
        log_q: (S,) log q(z).
        log_q_path: (S,) log q(z) as the surrogate loss sees it (default ``log_q``); the mixture detaches
            its weights here (their gradient comes from ``score``).
        score: (S,) or None: the score-function term of a discrete choice made in drawing z, multiplied
            in the surrogate loss by the detached ``log p - log q`` of its particle.
    """

    z: torch.Tensor
    log_q: torch.Tensor
    log_q_path: torch.Tensor | None = None
    score: torch.Tensor | None = None


class PureForm:
    """A guide's draw as a pure function: ``latent_dim``, ``noise(params, S)`` and ``draw(params, noise)``.

    The default noise is S standard normal vectors (S, D), as Pyro's Gaussian guides draw theirs.
    """

    #: whether the draw is random (a point mass is not: one particle is as good as many)
    stochastic = True

    def __init__(self, guide):
        self.guide = guide
        self.latent_dim = guide.latent_dim

    def noise(self, params: dict, num_particles: int) -> tuple[torch.Tensor, ...]:
        like = next(iter(params.values()))
        return (torch.randn(num_particles, self.latent_dim, dtype=like.dtype, device=like.device),)

    def draw(self, params: dict, noise: tuple[torch.Tensor, ...]) -> Draw:
        raise NotImplementedError


class NoNoise(PureForm):
    """A guide whose loss draws no noise (SVGD's particles): its steps are deterministic."""

    stochastic = False

    def noise(self, params, num_particles):
        return ()


def constrained(guide, name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The map from the raw tensor ``<name>_unconstrained`` to the guide's ``<name>`` (a ``PyroParam``).

    ``PyroModule._pyro_params`` (name -> (constraint, event dim)) is Pyro's private record of the
    constraints, read here only; ``tests/test_fast_svi.py`` checks every form's loss and gradients
    against ``Trace_ELBO``'s and fails if it changes.
    """
    return transform_to(guide._pyro_params[name][0])


def gaussian_log_q(eps: torch.Tensor, log_det_scale: torch.Tensor) -> torch.Tensor:
    """log N(z; m, L L^T) at z = m + L eps, in closed form in eps: -|eps|^2/2 - log|det L| - D/2 log 2 pi.

    The same value and the same gradients (in m and L, through z) as ``MultivariateNormal.log_prob(z)``.
    """
    return -0.5 * eps.pow(2).sum(-1) - log_det_scale - eps.shape[-1] * HALF_LOG_2PI


class Family:
    """The protocol of a guide (see the module's table), with the defaults of a Gaussian family fitted by SVI.

    A mixin: a family is ``class MyFamily(SomePyroAutoGuide, Family)``, overriding what differs.
    """

    q_density: str = "density"
    discrete_choice: bool = False
    fits_itself: bool = False
    untraceable: str | None = None
    gradient_evaluations: int = 0
    step_scales: dict[str, torch.Tensor] | None = None
    start_jitter: float = 0.0
    #: None (the ELBO), or a method ``own_loss(log_joint) -> (params -> loss)`` on the model's log density
    #: ``log_joint`` (u (S, D) -> (S,)): a loss of the guide's own (SVGD's)
    own_loss: Callable[[Callable], Callable[[dict], torch.Tensor]] | None = None

    def pure_form(self) -> PureForm | None:
        """The compiled engine's draw of this guide, or None (Pyro's engine fits it)."""
        return None

    def gradients_per_step(self, particles: int) -> int:
        """Gradients of the log density one step takes with ``particles`` draws."""
        return particles

    def finalize(self, *args, **kwargs) -> Family | None:
        """The guide the fit hands back after its steps (of the model's full data), or None: this one."""
        return None

    def fit_without_svi(self, *args, progress: bool = False, desc: str = "", **kwargs):
        """For ``fits_itself`` guides: ``(fitted guide, losses, extras)``."""
        raise NotImplementedError(f"{type(self).__name__} is fitted by SVI steps")


class Foreign(Family):
    """A guide that is not a :class:`Family` (a Pyro autoguide of a user's, say), read with the defaults: a density,
    fitted by Pyro's engine (it has no pure form), nothing of its own to finalize."""

    def __init__(self, guide):
        self.guide = guide


def declared(guide) -> Family:
    """The protocol of ``guide``: the guide itself for a :class:`Family`, else the defaults (:class:`Foreign`)."""
    return guide if isinstance(guide, Family) else Foreign(guide)
