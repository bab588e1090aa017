"""Bayesian linear regression on a basis expansion, with its exact conjugate posterior.

    w ~ N(0, alpha^{-1} I),    y_n | w ~ N(phi(x_n)^T w, beta^{-1})

The posterior is Gaussian, N(mu, Sigma) with Sigma = (alpha I + beta Phi^T Phi)^{-1} and
mu = beta Sigma Phi^T y (:func:`deepprob.inference.evaluation.exact.conjugate_posterior`).

For the optimiser, the model samples the weights in *standardised* coordinates
(:mod:`deepprob.models.standardise`): a cubic basis has columns whose scales differ by orders of
magnitude, which makes the posterior ill-conditioned in plain coordinates, and stochastic-gradient
guides crawl. The prior is mapped exactly, ``weight`` is recorded in the original coordinates, and KL
divergences are invariant under the map, so nothing is approximated by it.
"""

from __future__ import annotations

import re

import pyro
import pyro.distributions as dist
import torch

from deepprob.errors import InputError
from deepprob.models.plates import data_plate, take
from deepprob.models.standardise import Standardisation, linear_predictor, standardised_weights


def parse_basis(spec: str) -> tuple[str, int]:
    """``"poly:K"`` -> ("poly", K); ``"identity"`` -> ("identity", 1). Raises InputError otherwise."""
    match = re.fullmatch(r"poly:(\d+)", spec)
    if match and int(match.group(1)) >= 1:
        return "poly", int(match.group(1))
    if spec == "identity":
        return "identity", 1
    raise InputError(f"--basis {spec!r}: expected 'poly:K' with K >= 1 (one input column) or 'identity'")


def expand_basis(X: torch.Tensor, spec: str) -> tuple[torch.Tensor, list[str]]:
    """The design matrix Phi (N, D) of ``X`` (N, F), intercept first, and the names of its columns.

    ``poly:K`` needs one input column x and gives [1, x, ..., x^K]; ``identity`` gives [1, X].
    """
    kind, degree = parse_basis(spec)
    ones = torch.ones_like(X[:, :1])
    if kind == "identity":
        return torch.cat([ones, X], dim=1), ["intercept"] + [f"x{j}" for j in range(X.shape[1])]
    if X.shape[1] != 1:
        raise InputError(f"--basis {spec}: a polynomial basis needs one feature, got {X.shape[1]}; "
                         "use --basis identity")
    powers = torch.arange(degree + 1, dtype=X.dtype, device=X.device)
    return X**powers, ["intercept"] + [f"x^{k}" if k > 1 else "x" for k in range(1, degree + 1)]


class LinearRegression:
    """The model ``model(Phi_s, y)``; ``Phi_s`` (N, D) standardised features, ``y`` (N,) or None.

    Latent site ``weight_std`` (D,); deterministic site ``weight`` (D,) in original coordinates;
    observed site ``y`` in the plate ``data``, which subsamples ``batch_size`` rows when that is given and
    smaller than N (:mod:`deepprob.models.plates`).
    """

    def __init__(self, standardisation: Standardisation, alpha: float = 1.0, beta: float = 2.5,
                 batch_size: int | None = None):
        if not alpha > 0:
            raise InputError(f"--alpha {alpha}: expected a prior precision > 0")
        if not beta > 0:
            raise InputError(f"--beta {beta}: expected a noise precision > 0")
        self.standardisation = standardisation
        self.alpha, self.beta, self.batch_size = alpha, beta, batch_size

    def model(self, Phi_s: torch.Tensor, y: torch.Tensor | None = None) -> None:
        w_s = standardised_weights(self.standardisation, self.alpha)
        with data_plate(Phi_s.shape[0], self.batch_size) as rows:
            mean = linear_predictor(take(Phi_s, rows), w_s)  # (B,), or (..., B) under particles
            pyro.sample("y", dist.Normal(mean, self.beta**-0.5), obs=take(y, rows))

    __call__ = model
