"""Exact answers for conjugate models: the posterior and predictive of Bayesian linear regression."""

from __future__ import annotations

import torch
from torch.distributions import MultivariateNormal, Normal


def conjugate_posterior(Phi: torch.Tensor, y: torch.Tensor, alpha: float, beta: float) -> MultivariateNormal:
    """p(w | y) = N(mu, Sigma),  Sigma = (alpha I + beta Phi^T Phi)^{-1},  mu = beta Sigma Phi^T y.

    Args:
        Phi: design matrix (N, D).  y: targets (N,).  alpha: prior precision.  beta: noise precision.
    Computed in float64 through a Cholesky factor of the precision.
    """
    Phi64, y64 = Phi.double(), y.double()
    precision = alpha * torch.eye(Phi.shape[1], dtype=torch.float64, device=Phi.device) + beta * Phi64.T @ Phi64
    chol = torch.linalg.cholesky(precision)
    mean = beta * torch.cholesky_solve((Phi64.T @ y64)[:, None], chol)[:, 0]
    return MultivariateNormal(mean, precision_matrix=precision)


def conjugate_predictive(Phi_star: torch.Tensor, posterior: MultivariateNormal, beta: float) -> Normal:
    """p(y* | x*, y) = N(mu^T phi*, 1/beta + phi*^T Sigma phi*) for each row phi* of ``Phi_star`` (M, D)."""
    Phi64 = Phi_star.double()
    mean = Phi64 @ posterior.mean
    var = 1.0 / beta + ((Phi64 @ posterior.covariance_matrix) * Phi64).sum(-1)
    return Normal(mean, var.sqrt())


def conjugate_log_evidence(Phi: torch.Tensor, y: torch.Tensor, alpha: float, beta: float) -> float:
    """log p(y) = log N(y; 0, beta^{-1} I + alpha^{-1} Phi Phi^T), the marginal likelihood."""
    Phi64, y64 = Phi.double(), y.double()
    cov = torch.eye(len(y64), dtype=torch.float64, device=Phi.device) / beta + Phi64 @ Phi64.T / alpha
    return float(MultivariateNormal(torch.zeros_like(y64), covariance_matrix=cov).log_prob(y64))
