"""Bayesian neural network: two layers with tanh, every weight a sample site.

    W1 ~ N(0, alpha^{-1}) (D, H),  b1 ~ N(0, alpha^{-1}) (H,),  W2 ~ N(0, alpha^{-1}) (H,),  b2 ~ N(0, alpha^{-1}) (1,)
    f(x) = tanh(x W1 + b1) W2 + b2
    classification: y_n ~ Bernoulli(sigmoid(f(x_n)))
    regression:     y_n ~ N(m + s f(x_n), sigma^2), sigma fixed, or sigma ~ HalfNormal(s) when learned

The inputs should have unit scale (the examples standardise them); for regression the network's output
is put on the target's scale by m and s (``target_location``, ``target_scale``: the examples take the
training targets' mean and sd), so that the unit priors suit a target in any units.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch

from deepprob.errors import InputError
from deepprob.models.plates import data_plate, take


class BayesianNeuralNetwork:
    """The model ``model(X, y)``; ``X`` (N, D), ``y`` (N,) or None.

    Args:
        num_features: D.  hidden: H (width of the tanh layer).  alpha: prior precision of every weight.
        task: ``"classification"`` or ``"regression"``.
        noise: regression only: a fixed noise sd, or ``None`` to learn it (site ``sigma``).
        target_location, target_scale: regression only: m and s above (the target's units).
        batch_size: rows of the plate ``data`` a step sees (its plate subsamples them when smaller than N,
            :mod:`deepprob.models.plates`); None: all.
    """

    def __init__(self, num_features: int, hidden: int = 5, alpha: float = 1.0, task: str = "classification",
                 noise: float | None = None, target_location: float = 0.0, target_scale: float = 1.0,
                 batch_size: int | None = None):
        if hidden < 1:
            raise InputError(f"--hidden {hidden}: expected a width >= 1")
        if not alpha > 0:
            raise InputError(f"--alpha {alpha}: expected a prior precision > 0")
        if task not in ("classification", "regression"):
            raise InputError(f"--task {task!r}: expected 'classification' or 'regression'")
        if noise is not None and not noise > 0:
            raise InputError(f"--noise {noise}: expected a noise sd > 0, or 'learned'")
        if not target_scale > 0:
            raise InputError(f"target_scale {target_scale}: expected a scale > 0")
        self.num_features, self.hidden, self.alpha, self.task, self.noise = num_features, hidden, alpha, task, noise
        self.target_location, self.target_scale = float(target_location), float(target_scale)
        self.batch_size = batch_size

    def weights(self, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The sample sites W1 (D, H), b1 (H,), W2 (H,), b2 (1,), with ``like``'s dtype and device."""
        D, H, scale = self.num_features, self.hidden, self.alpha**-0.5
        normal = lambda *shape: dist.Normal(like.new_zeros(shape), scale).to_event(len(shape))  # noqa: E731
        # b2 has shape (..., 1) rather than a scalar, to broadcast like W2
        return (pyro.sample("W1", normal(D, H)), pyro.sample("b1", normal(H)), pyro.sample("W2", normal(H)),
                pyro.sample("b2", normal(1)))

    def forward(self, X: torch.Tensor, weights: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
        """f(X) with ``weights`` (default: drawn from the current trace): shape (..., N), ``...`` the particle dims."""
        W1, b1, W2, b2 = self.weights(X) if weights is None else weights
        hidden = torch.tanh(X @ W1 + b1.unsqueeze(-2))           # (..., N, H)
        f = (hidden @ W2.unsqueeze(-1)).squeeze(-1) + b2  # (..., N); a matrix product, not a broadcast sum
        # Vectorised particles give the weights batch dims (P, 1), the 1 standing for the data plate;
        # f then has shape (P, 1, N) and must be (P, N) to line up with that plate.
        return f.squeeze(-2) if f.dim() > 1 else f

    def model(self, X: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        weights = self.weights(X)
        if self.task == "regression":
            # a learned sigma has batch dims (..., 1) under particles, which line up with f's (..., N)
            scale = self.target_scale
            sigma = self.noise if self.noise is not None else pyro.sample("sigma", dist.HalfNormal(X.new_tensor(scale)))
        with data_plate(X.shape[0], self.batch_size) as rows:
            f = self.forward(take(X, rows), weights)
            if self.task == "regression":
                likelihood = dist.Normal(self.target_location + scale * f, sigma)
            else:
                likelihood = dist.Bernoulli(logits=f)
            return pyro.sample("y", likelihood, obs=take(y, rows))

    __call__ = model
