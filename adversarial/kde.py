r"""A Gaussian kernel density estimate: the density of a cloud of samples from a model with no density.

.. math::
    \hat p(x) = \frac{1}{n} \sum_{i=1}^{n} N(x; x_i, h^2 I),

with the bandwidth h chosen by likelihood cross-validation (the h of a log-spaced set that gives held-out
samples the highest mean log density), which, unlike Scott's rule for one Gaussian, follows a cloud of
narrow modes far apart. Used to score GAN samples and implicit encoders' codes on the scale of the known
densities.
"""

from __future__ import annotations

import math

import torch

from deepprob.errors import InputError


class GaussianKDE:
    """p̂ of ``points`` (n, d) with bandwidth ``bandwidth`` (a float: the same in every coordinate)."""

    def __init__(self, points: torch.Tensor, bandwidth: float):
        if points.dim() != 2 or len(points) < 2:
            raise InputError(f"KDE: expected (n >= 2, d) points, got shape {tuple(points.shape)}")
        if not bandwidth > 0:
            raise InputError(f"KDE: bandwidth {bandwidth}: expected a number > 0")
        self.points, self.bandwidth = points.detach().float(), float(bandwidth)

    @torch.no_grad()
    def log_prob(self, x: torch.Tensor, block: int = 2**22) -> torch.Tensor:
        """log p̂(x) for x (m, d): shape (m,); in blocks of ``block`` pairwise distances."""
        x = x.detach().float().to(self.points.device)
        n, d = self.points.shape
        const = -math.log(n) - d * (math.log(self.bandwidth) + 0.5 * math.log(2 * math.pi))
        step = max(1, block // n)
        out = [torch.logsumexp(-0.5 * torch.cdist(x[i:i + step], self.points).square() / self.bandwidth**2, 1)
               for i in range(0, len(x), step)]
        return torch.cat(out) + const

    @classmethod
    def fitted(cls, points: torch.Tensor, candidates: torch.Tensor | None = None, fold: int = 4000,
               held_out: int = 1000) -> GaussianKDE:
        """The KDE of all ``points`` (n, d), its bandwidth chosen by likelihood cross-validation.

        A KDE of the first ``fold`` points scores the next ``held_out`` ones for each candidate bandwidth
        (default: 25 values, log-spaced from 1/1000 to 1 of the points' RMS spread); the best is rescaled
        from ``fold`` to n points by the optimal bandwidth's rate, (fold / n)^(1 / (d + 4)).
        """
        n, d = points.shape
        fold = min(fold, n * 4 // 5)
        train, test = points[:fold].double(), points[fold:fold + held_out].double()
        if candidates is None:
            spread = float(train.std(0).pow(2).mean().sqrt())
            candidates = spread * torch.logspace(-3, 0, 25, dtype=torch.float64)
        squared = torch.cdist(test, train).square()  # once for every candidate
        scores = [float(torch.logsumexp(-0.5 * squared / float(h) ** 2, 1).mean()) - d * math.log(float(h))
                  for h in candidates]
        best = float(candidates[max(range(len(scores)), key=scores.__getitem__)])
        return cls(points, best * (fold / n) ** (1 / (d + 4)))
