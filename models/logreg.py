"""Bayesian logistic regression with a bias column.

    w ~ N(0, alpha^{-1} I_{D+1}),    y_n | w ~ Bernoulli(sigmoid([1, x_n]^T w))

As in linear regression, the model samples the weights in standardised coordinates
(:mod:`deepprob.models.standardise`) and records ``weight`` in the original ones.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch

from deepprob.errors import InputError
from deepprob.models.plates import data_plate, take
from deepprob.models.standardise import Standardisation, linear_predictor, standardised_weights


def with_bias(X: torch.Tensor) -> torch.Tensor:
    """[1, X]: the design matrix (N, D+1) with the bias column first."""
    return torch.cat([torch.ones_like(X[:, :1]), X], dim=1)


class LogisticRegression:
    """The model ``model(X1_s, y)``; ``X1_s`` (N, D+1) = ``standardisation.features(with_bias(X))``,
    ``y`` (N,) in {0, 1} or None.

    Latent site ``weight_std`` (D+1,); deterministic ``weight`` (D+1,), bias first, in the original
    coordinates; observed site ``y`` in the plate ``data``, which subsamples ``batch_size`` rows when
    that is given and smaller than N (:mod:`deepprob.models.plates`).
    """

    def __init__(self, standardisation: Standardisation, alpha: float = 1.0, batch_size: int | None = None):
        if not alpha > 0:
            raise InputError(f"--alpha {alpha}: expected a prior precision > 0")
        self.standardisation, self.alpha, self.batch_size = standardisation, alpha, batch_size

    def model(self, X1_s: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        w_s = standardised_weights(self.standardisation, self.alpha)
        with data_plate(X1_s.shape[0], self.batch_size) as rows:
            logits = linear_predictor(take(X1_s, rows), w_s)  # (B,), or (..., B) under particles
            return pyro.sample("y", dist.Bernoulli(logits=logits), obs=take(y, rows))

    __call__ = model
