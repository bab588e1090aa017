"""KL divergences between an approximation and a reference posterior."""

from __future__ import annotations

import math

import torch
from torch.distributions import (
    Distribution,
    Independent,
    LowRankMultivariateNormal,
    MultivariateNormal,
    Normal,
)


def as_multivariate_normal(d: Distribution) -> MultivariateNormal | None:
    """``d`` as a MultivariateNormal if it is a Gaussian over a vector (diagonal, low-rank or full), else None."""
    if isinstance(d, MultivariateNormal):
        return d
    if isinstance(d, LowRankMultivariateNormal):
        return MultivariateNormal(d.loc, covariance_matrix=d.covariance_matrix)
    if isinstance(d, Independent) and isinstance(d.base_dist, Normal) and d.reinterpreted_batch_ndims == 1:
        return MultivariateNormal(d.mean, scale_tril=torch.diag_embed(d.stddev))
    return None


def kl_to_reference(q: Distribution, p: Distribution, num_samples: int = 20000) -> float:
    """KL(q || p) over vectors (event shape (D,)).

    In closed form when both are Gaussian:
        KL = 1/2 [tr(S_p^{-1} S_q) + (m_p - m_q)^T S_p^{-1} (m_p - m_q) - D + log det S_p - log det S_q];
    otherwise by Monte Carlo, mean over z ~ q of log q(z) - log p(z) (``num_samples`` draws).
    Both are computed in float64.
    """
    with torch.no_grad():
        return _kl(q, p, num_samples)


def _kl(q: Distribution, p: Distribution, num_samples: int) -> float:
    q_gauss, p_gauss = as_multivariate_normal(q), as_multivariate_normal(p)
    if q_gauss is not None and p_gauss is not None:
        q64 = MultivariateNormal(q_gauss.mean.double(), covariance_matrix=q_gauss.covariance_matrix.double())
        p64 = MultivariateNormal(p_gauss.mean.double(), covariance_matrix=p_gauss.covariance_matrix.double())
        return float(torch.distributions.kl_divergence(q64, p64))
    z = q.sample((num_samples,))
    # a Monte Carlo mean of log q - log p can fall below 0 where q is close to p; a KL cannot
    return max(0.0, float((q.log_prob(z).double() - p.log_prob(z.to(p.mean.dtype)).double()).mean()))


def kl_of_guide(guide, p: Distribution, num_samples: int = 20000) -> float:
    """KL(q || p) of a fitted guide over the latent vector (:func:`kl_to_reference`); +inf for a guide whose q is a
    point mass or a set of particles (``q_density``): a measure without a density is infinitely far from one with a
    density in KL (in ``--json``, ``null``, as every infinite number)."""
    from deepprob.guides.protocol import declared

    if declared(guide).q_density != "density":
        return math.inf
    return kl_to_reference(guide.get_posterior(), p, num_samples)
