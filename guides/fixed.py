"""A guide whose distribution over the unconstrained latent vector is given, not trained: what a method
that fits outside SVI hands back (the Laplace approximation, Pathfinder's Gaussian or mixture, a set of
particles), usable wherever a guide is (draws through the model, InferenceData, compare).

- :class:`FixedPosterior`: an ``AutoContinuous`` guide over a given torch distribution of u (D,).
- :class:`Particles`: the empirical distribution of N particles (N, D): a draw is one of them, uniformly.
  It has no density: ``log_prob`` is 0 and guides built on it say so (``q_density = "particles"``,
  :mod:`deepprob.guides.protocol`).
"""

from __future__ import annotations

import torch
from pyro.distributions import TorchDistribution, constraints
from pyro.infer.autoguide import AutoContinuous

from deepprob.guides.protocol import Q_DENSITIES, Family
from deepprob.logdensity import init_median


class Particles(TorchDistribution):
    """Uniform over the rows of ``particles`` (N, D): an empirical distribution (no density; log_prob 0)."""

    arg_constraints = {}
    support = constraints.real_vector

    def __init__(self, particles: torch.Tensor, batch_shape=(), validate_args=None):
        self.particles = particles
        super().__init__(torch.Size(batch_shape), particles.shape[-1:], validate_args=False)

    def expand(self, batch_shape, _instance=None):
        return Particles(self.particles, batch_shape)

    def sample(self, sample_shape=()):
        shape = torch.Size(sample_shape) + self.batch_shape
        index = torch.randint(len(self.particles), shape, device=self.particles.device)
        return self.particles[index]

    def log_prob(self, value):
        return value.new_zeros(value.shape[:-1])

    @property
    def mean(self):
        return self.particles.mean(0).expand(self.batch_shape + self.event_shape)

    @property
    def variance(self):
        return self.particles.var(0).expand(self.batch_shape + self.event_shape)


class FixedPosterior(AutoContinuous, Family):
    """An ``AutoContinuous`` guide whose latent vector u (D,) follows ``posterior`` (a torch distribution
    with event shape (D,)), packed as every guide over the unconstrained vector packs the model's sites.

    Args:
        model: the Pyro model.
        posterior: the distribution of u; it has no trainable parameters here.
        q_density: ``"density"``, or ``"point mass"`` / ``"particles"`` where ``posterior.log_prob`` is no
            density (:data:`Q_DENSITIES`).
        args, kwargs: the model's arguments, to set up the packing at once.
    """

    def __init__(self, model, posterior, *args, q_density: str = "density", **kwargs):
        if q_density not in Q_DENSITIES:
            raise ValueError(f"q_density {q_density!r}: expected one of {Q_DENSITIES}")
        super().__init__(model, init_loc_fn=init_median)
        self._setup_prototype(*args, **kwargs)
        self.posterior, self.q_density = posterior, q_density

    def get_posterior(self, *args, **kwargs):
        return self.posterior

    def _loc_scale(self, *args, **kwargs):
        return self.posterior.mean, self.posterior.variance.sqrt()
