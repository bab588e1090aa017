"""``svgd``: Stein variational gradient descent (Liu and Wang 2016) over the unconstrained latent vector.

N particles u_1..u_N move along the direction that most decreases KL(q || p) in the kernel's RKHS,

    phi(u_i) = 1/N sum_j [ k(u_j, u_i) grad log p(u_j) + grad_{u_j} k(u_j, u_i) ]

(attraction towards high density, repulsion between particles), with the RBF kernel of Liu and Wang:
k(u, v) = exp(-|u - v|^2 / h), h the median of the particles' squared distances over log(N + 1) (in one
dimension, Pyro's ``RBFSteinKernel``; Pyro's ``multivariate`` mode takes a bandwidth per dimension and sums
them, which in ten dimensions makes every k(u_i, u_j) about e^-39: no repulsion, and the particles collapse
onto the mode). As in Pyro's ``SVGD``, the fit's optimiser (here the Adam of
every fit, with its decay and per-coordinate step sizes) takes -phi as the particles' gradient: ``own_loss``
is a scalar whose gradient is -phi and whose value is minus the particles' mean log density. It is written
on the model's log density, so one step runs the model once for all particles, on either engine.

The particles are the draws (:class:`~deepprob.guides.fixed.Particles`); they have no density, so there is
no ELBO nor k-hat to report.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from pyro.infer.autoguide import AutoContinuous

from deepprob.guides.fixed import Particles
from deepprob.guides.protocol import Family, NoNoise
from deepprob.guides.start import StartsAtLaplace
from deepprob.logdensity import init_median


def rbf_kernel(particles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(K (N, N), repulsion (N, D)): K_ij = k(u_i, u_j) and sum_j grad_{u_j} k(u_j, u_i), with one bandwidth
    from the median squared distance (Pyro's ``RBFSteinKernel`` in one dimension: the tests check it), and
    without data-dependent indexing, so that the step can be traced and compiled."""
    n = particles.shape[0]
    delta = particles.unsqueeze(0) - particles.unsqueeze(1)  # delta[i, j] = u_j - u_i, (N, N, D)
    squared = delta.pow(2).sum(-1)  # (N, N)
    i, j = torch.triu_indices(n, n, 1, device=particles.device)
    h = squared[i, j].median() / math.log(n + 1)
    kernel = (-squared / h).exp()
    # grad_{u_j} k(u_j, u_i) = -2 (u_j - u_i) / h k(u_i, u_j)
    repulsion = -(kernel.unsqueeze(-1) * 2.0 * delta / h).sum(1)
    return kernel, repulsion


def stein_direction(log_joint: Callable, particles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(phi (N, D), log p at the particles (N,)): the SVGD update of ``particles`` for ``log_joint``."""

    def total(u):
        log_p = log_joint(u)
        return log_p.sum(), log_p

    grad_log_p, log_p = torch.func.grad(total, has_aux=True)(particles.detach())
    kernel, repulsion = rbf_kernel(particles.detach())
    return (kernel @ grad_log_p + repulsion) / particles.shape[0], log_p


class SteinParticles(AutoContinuous, Family):
    """N particles over the unconstrained latent vector (D,), moved by SVGD.

    Args:
        model: the Pyro model.
        particles: N >= 2.
        init_loc_fn, init_scale: Pyro's start: the particles at the initial point plus ``init_scale`` noise.

    Parameter after the first call: ``particles`` (N, D).
    """

    q_density = "particles"

    def __init__(self, model, particles: int = 50, init_loc_fn=init_median, init_scale: float = 0.1):
        if particles < 2:
            raise ValueError(f"particles: expected >= 2, got {particles}")
        self.num_particles, self._init_scale = particles, init_scale
        super().__init__(model, init_loc_fn=init_loc_fn)

    def _setup_prototype(self, *args, **kwargs):
        super()._setup_prototype(*args, **kwargs)
        loc = self._init_loc()
        self.particles = torch.nn.Parameter(loc + self._init_scale * torch.randn(self.num_particles, len(loc),
                                                                                 dtype=loc.dtype, device=loc.device))

    def get_posterior(self, *args, **kwargs):
        return Particles(self.particles.detach())

    def pure_form(self):
        return NoNoise(self)  # its loss (own_loss) draws nothing

    def own_loss(self, log_joint: Callable) -> Callable[[dict], torch.Tensor]:
        """``params -> loss``: value -mean log p(particles), gradient -phi (:func:`stein_direction`)."""

        def loss(params: dict) -> torch.Tensor:
            u = params["particles"]
            phi, log_p = stein_direction(log_joint, u)
            surrogate = -(phi.detach() * u).sum()
            return -log_p.detach().mean() + surrogate - surrogate.detach()

        return loss

    def gradients_per_step(self, particles: int) -> int:
        return self.num_particles  # one for each of its own particles


class SteinFromLaplace(StartsAtLaplace, SteinParticles):
    """The particles start as draws of the Laplace approximation N(mode, H^{-1})."""

    def start_from(self, start):
        L = torch.linalg.cholesky(start.covariance)
        eps = torch.randn(self.num_particles, len(start.loc), dtype=start.loc.dtype, device=start.loc.device)
        self.particles.copy_(start.loc + eps @ L.T)
        self.step_scales = {"particles": start.sds}


def build(model, options):
    family = SteinFromLaplace if options.start == "laplace" else SteinParticles
    return family(model, particles=options.particles, init_scale=options.init_scale, **options.loc_kwargs())
