r"""Density ratios from a classifier: the trick inside every GAN discriminator.

A classifier D trained to tell data x ~ p (label 1) from reference points x ~ u (label 0), in equal
numbers, converges to :math:`D^*(x) = p(x) / (p(x) + u(x))`, hence

.. math::
    \frac{p(x)}{u(x)} = \frac{D^*(x)}{1 - D^*(x)} = \exp f(x), \qquad p(x) ≈ u(x)\, e^{f(x)},

with f the classifier's logit. With u uniform on a box B, :math:`\log p(x) ≈ f(x) - \log |B|` on B.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from deepprob.adversarial.nets import Affine, mlp
from deepprob.errors import InputError
from deepprob.optim import ExponentialDecay, make_adam
from deepprob.training import minimise


class UniformBox:
    """The uniform distribution on the box [low, high] (D,), with ``sample`` and ``log_prob``."""

    def __init__(self, low: torch.Tensor, high: torch.Tensor):
        self.low, self.high = torch.as_tensor(low, dtype=torch.float32), torch.as_tensor(high, dtype=torch.float32)
        if not bool((self.high > self.low).all()):
            raise InputError(
                f"box: expected high > low in every dimension, got low {self.low.tolist()}, high {self.high.tolist()}"
            )
        self.log_volume = float((self.high - self.low).log().sum())

    @classmethod
    def around(cls, points: torch.Tensor, margin: float = 0.1) -> UniformBox:
        """The bounding box of ``points`` (N, D), widened by ``margin`` of its size on every side."""
        lo, hi = points.min(0).values, points.max(0).values
        pad = margin * (hi - lo).clamp_min(1e-6)
        return cls(lo - pad, hi + pad)

    def sample(self, n: int, device=None) -> torch.Tensor:
        low, high = self.low.to(device), self.high.to(device)
        return low + (high - low) * torch.rand(n, low.shape[0], device=device)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """−log|B| inside the box, −inf outside; shape x.shape[:-1]."""
        inside = ((x >= self.low.to(x.device)) & (x <= self.high.to(x.device))).all(-1)
        return torch.where(inside, -self.log_volume, -math.inf)


class RatioDensity(nn.Module):
    """A classifier between data and a :class:`UniformBox` reference, read as a density.

    ``logit(x)`` is the classifier's f(x) (N,); ``log_density(x)`` = log u(x) + f(x) (N,).

    Args:
        reference: the box u.
        hidden: hidden layer sizes of the MLP.
        activation: a smooth one by default (``silu``): log p of smooth data is smooth, and a ReLU net
            would give a piecewise-linear log density with creases.
    """

    def __init__(self, reference: UniformBox, hidden: Sequence[int] = (64, 64), activation: str = "silu"):
        super().__init__()
        self.reference = reference
        centre = (reference.low + reference.high) / 2
        half = (reference.high - reference.low) / 2
        self.net = nn.Sequential(Affine.standardize(centre, half), mlp(reference.low.shape[0], hidden, 1, activation))

    def logit(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)

    def log_density(self, x: torch.Tensor) -> torch.Tensor:
        return self.reference.log_prob(x) + self.logit(x)


def fit_ratio(
    model: RatioDensity,
    data: torch.Tensor,
    *,
    steps: int = 3000,
    batch_size: int = 512,
    lr: float = 3e-3,
    weight_decay: float = 1e-4,
    progress: bool = True,
) -> list[float]:
    """Train ``model``'s classifier: each step a minibatch of ``batch_size`` data points (label 1) and
    as many fresh reference points (label 0), binary cross-entropy on the logits, Adam with a 10x
    learning-rate decay. Equal numbers of both make the prior odds 1, so e^f estimates p/u itself.

    Returns:
        the loss every 50 steps.
    """
    if len(data) < 2:
        raise InputError(f"data: expected at least 2 points, got {len(data)}")
    device = data.device
    optimizer = make_adam(model.parameters(), lr, weight_decay=weight_decay)
    decay = ExponentialDecay(lr, steps)
    target = torch.cat([torch.ones(batch_size, device=device), torch.zeros(batch_size, device=device)])

    def loss_at(step: int) -> torch.Tensor:
        x = torch.cat(
            [data[torch.randint(len(data), (batch_size,), device=device)], model.reference.sample(batch_size, device)]
        )
        return F.binary_cross_entropy_with_logits(model.logit(x), target)

    return minimise(loss_at, optimizer, steps, desc="ratio", progress=progress, record_every=50, decay=decay)


def evaluate_on_grid(model: RatioDensity, resolution: int = 200, true_log_prob=None, device=None) -> dict:
    """The recovered density on a ``resolution`` x ``resolution`` grid of cell midpoints over the box.

    Returns a dict with ``x``, ``y`` (R,), ``density`` (R, R) (indexed [y, x]), ``integral`` (the
    midpoint rule: Σ p̂ · cell area, ≈ 1 when the ratio is right), and when ``true_log_prob`` is given
    ``truth`` (R, R), ``mae`` = mean ``|p̂ − p|`` over the grid and ``tv`` = ½ Σ ``|p̂ − p|`` · cell area
    (the total variation distance on the box).
    """
    low, high = model.reference.low, model.reference.high
    edges = [torch.linspace(float(low[d]), float(high[d]), resolution + 1) for d in range(2)]
    mids = [(e[:-1] + e[1:]) / 2 for e in edges]
    yy, xx = torch.meshgrid(mids[1], mids[0], indexing="ij")
    points = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    cell = float((high - low).prod()) / resolution**2
    with torch.no_grad():
        density = model.log_density(points.to(device)).exp().cpu().double().reshape(resolution, resolution)
    out = {"x": mids[0], "y": mids[1], "density": density, "integral": float(density.sum() * cell)}
    if true_log_prob is not None:
        with torch.no_grad():
            truth = true_log_prob(points).exp().double().reshape(resolution, resolution)
        diff = (density - truth).abs()
        out.update(truth=truth, mae=float(diff.mean()), tv=float(0.5 * diff.sum() * cell))
    return out
