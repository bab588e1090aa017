"""Standardised coordinates for linear predictors, with the prior mapped exactly.

A design matrix Phi (N, D) with an intercept column 0 is replaced by Phi_s = Phi T^{-1}, whose other
columns are centred with unit sd (the intercept absorbs the centring), and the weights by w_s = T w,
so that Phi w = Phi_s w_s. A prior w ~ N(0, alpha^{-1} I) becomes w_s ~ N(0, alpha^{-1} T T^T): the
model is unchanged, only its coordinates, which are far better conditioned for gradient-based fits
when the columns' scales or means differ (a cubic basis, features far from zero).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch


@dataclass
class Standardisation:
    """The linear map w_s = T w of a design matrix with an intercept column 0: Phi w = Phi_s w_s."""

    T: torch.Tensor        # (D, D)
    T_inv: torch.Tensor    # (D, D)

    @classmethod
    def of(cls, Phi: torch.Tensor) -> Standardisation:
        mean, sd = Phi[:, 1:].mean(0), Phi[:, 1:].std(0)
        sd = torch.where(sd > 0, sd, torch.ones_like(sd))
        T = torch.eye(Phi.shape[1], dtype=Phi.dtype, device=Phi.device)
        T[0, 1:] = mean
        T[1:, 1:] = torch.diag(sd)
        return cls(T, torch.linalg.inv(T))

    def features(self, Phi: torch.Tensor) -> torch.Tensor:
        """Phi_s = Phi T^{-1}: centred, unit-sd columns (the intercept stays 1)."""
        return Phi @ self.T_inv

    def to_original(self, w_s: torch.Tensor) -> torch.Tensor:
        """w = T^{-1} w_s for weights of shape (..., D)."""
        return w_s @ self.T_inv.T

    def prior_scale_tril(self, alpha: float) -> torch.Tensor:
        """Cholesky factor of alpha^{-1} T T^T, the prior covariance of w_s."""
        return torch.linalg.cholesky(self.T @ self.T.T / alpha)


def standardised_weights(standardisation: Standardisation, alpha: float) -> torch.Tensor:
    """Sample site ``weight_std`` (D,) with its mapped prior, and record ``weight`` = T^{-1} w_s (D,)."""
    scale_tril = standardisation.prior_scale_tril(alpha)
    prior = dist.MultivariateNormal(scale_tril.new_zeros(len(scale_tril)), scale_tril=scale_tril)
    w_s = pyro.sample("weight_std", prior)
    pyro.deterministic("weight", standardisation.to_original(w_s), event_dim=1)
    return w_s


def linear_predictor(X: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """X w for a design matrix ``X`` (N, D) and weights ``w`` (D,), or (..., 1, D) under vectorised
    particles (the 1 stands for the data plate): shape (N,), or (..., N).

    A matrix product rather than a broadcast product and sum: one BLAS call, and its gradient another,
    where the broadcast form makes an (..., N, D) temporary that compiled kernels reduce badly.
    """
    out = w @ X.T
    return out.squeeze(-2) if w.dim() > 1 else out

