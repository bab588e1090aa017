"""Guides as pure functions of their parameters and of standard noise, for the compiled SVI engine.

Every guide of the registry is a distribution q(z) over one unconstrained latent vector z (D,), drawn by
reparameterisation from noise that does not depend on the parameters. Here each is written as

    draw(params, noise) -> Draw(z (S, D), log_q (S,), ...)

a pure torch function of a dict of the guide's trainable tensors (its ``named_parameters``, the raw
leaves Adam trains) and of the noise of S particles, which ``noise(params, S)`` draws in the order
Pyro's own ``rsample`` draws it: with the same RNG state, Pyro's guide and ``draw`` give the same z.

The pure form of each guide class is registered in :data:`FORMS` (Pyro's autoguides and our mixture);
a guide class of a user's may instead have a method ``reparameterised()`` returning such an object.
Guides themselves do not import this module: the engine reads their parameters (the raw leaves of
``named_parameters`` and the constraints of their ``PyroParam`` s, :func:`_constrained`) from outside.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from pyro.distributions import constraints
from pyro.infer.autoguide import (
    AutoDiagonalNormal,
    AutoLaplaceApproximation,
    AutoLowRankMultivariateNormal,
    AutoMultivariateNormal,
)
from torch.distributions import LowRankMultivariateNormal, transform_to

from deepprob.guides.flow import FlowGuide
from deepprob.guides.mixture import AutoGaussianMixture, MixtureOfGaussians, leave_one_out

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


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


class Reparameterised:
    """Base class: ``latent_dim``, ``noise(params, S)`` and ``draw(params, noise)`` of one guide."""

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


def _constrained(guide, name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The map from the raw tensor ``<name>_unconstrained`` to the guide's ``<name>`` (a PyroParam).

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


class DiagonalNormal(Reparameterised):
    """``AutoDiagonalNormal``: z = loc + scale * eps."""

    def draw(self, params, noise):
        (eps,) = noise
        scale = _constrained(self.guide, "scale")(params["scale_unconstrained"])
        return Draw(params["loc"] + eps * scale, gaussian_log_q(eps, scale.log().sum()))


class MultivariateNormal(Reparameterised):
    """``AutoMultivariateNormal``: z = loc + L eps, L = diag(scale) scale_tril."""

    def draw(self, params, noise):
        (eps,) = noise
        scale = _constrained(self.guide, "scale")(params["scale_unconstrained"])
        L = scale[..., None] * _constrained(self.guide, "scale_tril")(params["scale_tril_unconstrained"])
        return Draw(params["loc"] + eps @ L.T, gaussian_log_q(eps, L.diagonal().log().sum()))


class LowRankNormal(Reparameterised):
    """``AutoLowRankMultivariateNormal``: z = loc + W eps_W + d^(1/2) eps_D, covariance W W^T + diag(d)."""

    def noise(self, params, num_particles):
        like = params["loc"]
        rank = params["cov_factor"].shape[-1]
        # torch's LowRankMultivariateNormal.rsample draws eps_W first, then eps_D
        return (torch.randn(num_particles, rank, dtype=like.dtype, device=like.device),
                torch.randn(num_particles, self.latent_dim, dtype=like.dtype, device=like.device))

    def draw(self, params, noise):
        eps_w, eps_d = noise
        scale = _constrained(self.guide, "scale")(params["scale_unconstrained"])
        factor = params["cov_factor"] * scale.unsqueeze(-1)
        z = params["loc"] + eps_w @ factor.T + scale * eps_d
        q = LowRankMultivariateNormal(params["loc"], factor, scale * scale, validate_args=False)
        return Draw(z, q.log_prob(z))


class PointMass(Reparameterised):
    """``AutoLaplaceApproximation`` while it is fitted: a point mass at ``loc`` (MAP in unconstrained space)."""

    stochastic = False

    def noise(self, params, num_particles):
        return ()

    def draw(self, params, noise):
        z = params["loc"].unsqueeze(0)
        return Draw(z, z.new_zeros(1))


class NoNoise(Reparameterised):
    """A guide whose loss draws no noise (svgd's particles): its steps are deterministic."""

    stochastic = False

    def noise(self, params, num_particles):
        return ()


class FlowDraw(Reparameterised):
    """:class:`~deepprob.guides.flow.FlowGuide`: u = A(F_L(... F_1(eps))), its transforms' parameters swapped
    in by ``torch.func.functional_call`` (the guide's ``push``), so that the flows' own code is the pure form."""

    def draw(self, params, noise):
        (eps,) = noise
        z, log_q = torch.func.functional_call(_Push(self.guide), {f"guide.{k}": v for k, v in params.items()},
                                              (eps,))
        return Draw(z, log_q)


class _Push(torch.nn.Module):
    def __init__(self, guide):
        super().__init__()
        self.guide = guide

    def forward(self, eps):
        return self.guide.push(eps)


class MixtureDraw(Reparameterised):
    """:class:`~deepprob.guides.mixture.AutoGaussianMixture`: noise = (components k (S,), eps (S, D)).

    The same estimator as ``MixtureOfGaussians.score_parts`` gives ``Trace_ELBO``: pathwise in the
    locations and Cholesky factors, the score function (leave-one-out baseline) for the weights.
    """

    def noise(self, params, num_particles):
        # as MixtureOfGaussians.rsample draws them (Categorical.sample's multinomial call on its
        # probabilities, without building a distribution each step), then the standard normals
        logits = params["logits"].detach()
        probs = torch.softmax(logits - logits.logsumexp(-1, keepdim=True), -1)
        k = torch.multinomial(probs.unsqueeze(0), num_particles, True).T.reshape(num_particles)
        like = params["locs"]
        return k, torch.randn(num_particles, self.latent_dim, dtype=like.dtype, device=like.device)

    def draw(self, params, noise):
        k, eps = noise
        scales = transform_to(constraints.softplus_positive)(params["scales_unconstrained"])
        unit_trils = transform_to(constraints.unit_lower_cholesky)(params["scale_trils_unconstrained"])
        trils = scales.unsqueeze(-1) * unit_trils
        q = MixtureOfGaussians(params["logits"], params["locs"], trils)
        z = params["locs"][k] + (trils[k] @ eps.unsqueeze(-1)).squeeze(-1)
        log_weights = q.log_weights
        score = leave_one_out(log_weights[k])
        return Draw(z, q._log_prob(z, log_weights), q._log_prob(z, log_weights.detach()), score)


# guide class -> its pure form, for the exact classes (a subclass may change the family)
FORMS: dict[type, type[Reparameterised]] = {
    AutoDiagonalNormal: DiagonalNormal,
    AutoMultivariateNormal: MultivariateNormal,
    AutoLowRankMultivariateNormal: LowRankNormal,
    AutoLaplaceApproximation: PointMass,
    AutoGaussianMixture: MixtureDraw,
    FlowGuide: FlowDraw,
}


def reparameterised(guide) -> Reparameterised | None:
    """The pure form of ``guide``, or None when it has none (then SVI runs through Pyro)."""
    own = getattr(guide, "reparameterised", None)
    if own is not None:
        return own()
    for cls in type(guide).__mro__:
        if cls in FORMS:
            # our subclasses that only add a finalize step (the laplace guide) keep the family
            if cls is type(guide) or not _overrides_family(type(guide), cls):
                return FORMS[cls](guide)
            return None
    return None


def _overrides_family(subclass: type, base: type) -> bool:
    """Whether a class between ``subclass`` and ``base`` redefines the distribution (a class that declares
    ``keeps_family``, one that only sets where the guide starts, does not)."""
    return any(name in vars(klass) for klass in subclass.__mro__[:subclass.__mro__.index(base)]
               if not vars(klass).get("keeps_family")
               for name in ("get_posterior", "_setup_prototype", "forward", "__call__"))
