"""Two-dimensional point clouds: the GAN and density-ratio examples' data.

Each set is a :class:`PointCloud`: a way to draw fresh samples (from a known distribution, or by
resampling a user's CSV), a fixed sample for plots, and what is known of the truth (density, mean,
covariance, mode centres and their standard deviation) for the metrics.

- :func:`correlated_gaussian`: a correlated 2-D Normal (the seed's first GAN, and the density-ratio
  example's default data).
- :func:`ring`: the seed's eight Gaussians at (0, ±8), (±8, 0), (±4, ±4), σ = 0.5.
- :func:`ring_metz`: eight Gaussians evenly spaced on a circle of radius 2, σ = 0.02 (Metz et al.
  2017, "Unrolled generative adversarial networks").
- :func:`ring_pacgan`: eight Gaussians on the unit circle, σ = 0.01 (PacGAN's and VEEGAN's "2D-ring").
- :func:`grid`: 25 Gaussians with means {−4, −2, 0, 2, 4}², σ = 0.05 (PacGAN's and VEEGAN's "2D-grid").
- :func:`load_points_csv`, :func:`load_modes_csv`: any 2-D point cloud and its mode centres.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.distributions import Categorical, Distribution, Independent, MixtureSameFamily, MultivariateNormal, Normal

from deepprob.errors import InputError


@dataclass
class PointCloud:
    """A 2-D data distribution with what is known about it.

    Attributes:
        name: a short name for reports.
        points: a fixed sample, shape (N, 2) float32 (the whole data set for a CSV).
        dist: the true distribution (``event_shape == (2,)``), or None for a CSV (then :meth:`sample`
            resamples ``points`` with replacement).
        centres: the mode centres, shape (K, 2), or None when there are no modes to count.
        mode_sigma: the standard deviation of each mode (the "3σ" rule of the mode metrics), or None.
        mode_cov: for a single elongated mode (the correlated Normal), its covariance (2, 2): the 3σ
            rule then uses the Mahalanobis distance. None otherwise.
    """

    name: str
    points: torch.Tensor
    dist: Distribution | None = None
    centres: torch.Tensor | None = None
    mode_sigma: float | None = None
    mode_cov: torch.Tensor | None = None

    @property
    def mean(self) -> torch.Tensor:
        """The true mean (2,) when the distribution is known, else the sample mean of ``points``."""
        return self.dist.mean if self.dist is not None else self.points.mean(0)

    @property
    def covariance(self) -> torch.Tensor:
        """The true covariance (2, 2) when known, else the sample covariance of ``points``."""
        if self.dist is not None:
            return _covariance(self.dist)
        return torch.cov(self.points.T)

    def sample(self, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        """``n`` fresh points, shape (n, 2), on ``device``.

        Mixtures of isotropic Gaussians are drawn as ``centre[k] + sigma * eps`` and Normals as
        ``mean + L eps`` directly (a few tensor operations, cheap enough for every training step, and
        honouring ``generator``); a CSV by resampling its rows with replacement.
        """
        device = torch.device("cpu") if device is None else torch.device(device)
        if self.dist is None:
            index = torch.randint(len(self.points), (n,), generator=generator, device=device)
            return self.points.to(device)[index]
        if self.centres is not None and self.mode_sigma is not None and len(self.centres) > 1:
            centres = self.centres.to(device)
            k = torch.randint(len(centres), (n,), generator=generator, device=device)
            eps = torch.randn(n, 2, generator=generator, device=device)
            return torch.addcmul(centres[k], eps, torch.tensor(self.mode_sigma, device=device))
        if isinstance(self.dist, MultivariateNormal):
            eps = torch.randn(n, 2, generator=generator, device=device)
            return self.dist.loc.to(device) + eps @ self.dist.scale_tril.to(device).T
        return self.dist.sample((n,)).to(device)


def _covariance(dist: Distribution) -> torch.Tensor:
    if isinstance(dist, MultivariateNormal):
        return dist.covariance_matrix
    if isinstance(dist, MixtureSameFamily):
        # law of total covariance: E[Cov(x | k)] + Cov(E[x | k])
        w = dist.mixture_distribution.probs
        means = dist.component_distribution.mean
        variances = dist.component_distribution.variance
        centred = means - (w[:, None] * means).sum(0)
        return torch.diag((w[:, None] * variances).sum(0)) + (
            w[:, None, None] * centred[:, :, None] * centred[:, None, :]
        ).sum(0)
    raise TypeError(f"no covariance for {type(dist).__name__}")


def gaussian_mixture_2d(centres: torch.Tensor, sigma: float, weights: torch.Tensor | None = None) -> MixtureSameFamily:
    """p(x) = Σ_k w_k N(x; c_k, σ² I) over x in R², as a torch distribution (event shape (2,)).

    Args:
        centres: (K, 2) mode centres.
        sigma: the common standard deviation of each coordinate.
        weights: (K,) mixture weights (default uniform).
    """
    centres = torch.as_tensor(centres, dtype=torch.float32)
    k = centres.shape[0]
    weights = torch.full((k,), 1.0 / k) if weights is None else torch.as_tensor(weights, dtype=torch.float32)
    return MixtureSameFamily(
        Categorical(probs=weights), Independent(Normal(centres, torch.full_like(centres, sigma)), 1)
    )


GAUSSIAN_MEAN = (1.0, 2.0)
GAUSSIAN_COV = ((2.0, 1.2), (1.2, 1.0))  # correlation 1.2 / sqrt(2) = 0.85


def correlated_gaussian(n: int = 5000, seed: int = 0) -> PointCloud:
    """N(μ, Σ) with μ = (1, 2), Σ = [[2, 1.2], [1.2, 1]] (correlation 0.85); ``n`` fixed points."""
    dist = MultivariateNormal(torch.tensor(GAUSSIAN_MEAN), covariance_matrix=torch.tensor(GAUSSIAN_COV))
    points = _fixed_sample(dist, n, seed)
    return PointCloud(
        "gaussian", points, dist, centres=dist.mean[None], mode_sigma=1.0, mode_cov=dist.covariance_matrix
    )


RING_CENTRES = ((0.0, 8.0), (0.0, -8.0), (8.0, 0.0), (-8.0, 0.0), (4.0, 4.0), (4.0, -4.0), (-4.0, 4.0), (-4.0, -4.0))


def ring(n: int = 5000, seed: int = 0) -> PointCloud:
    """The seed's eight Gaussians: centres (0, ±8), (±8, 0), (±4, ±4), σ = 0.5, equal weights."""
    centres = torch.tensor(RING_CENTRES)
    dist = gaussian_mixture_2d(centres, 0.5)
    return PointCloud("ring", _fixed_sample(dist, n, seed), dist, centres, 0.5)


def ring_metz(n: int = 5000, seed: int = 0, modes: int = 8, radius: float = 2.0, sigma: float = 0.02) -> PointCloud:
    """``modes`` Gaussians evenly spaced on a circle of ``radius``, σ = ``sigma`` (Metz et al. 2017)."""
    angle = torch.arange(modes, dtype=torch.float64) * (2 * math.pi / modes)
    centres = (radius * torch.stack([angle.cos(), angle.sin()], 1)).float()
    dist = gaussian_mixture_2d(centres, sigma)
    return PointCloud("ring-metz", _fixed_sample(dist, n, seed), dist, centres, sigma)


def ring_pacgan(n: int = 5000, seed: int = 0) -> PointCloud:
    """Eight Gaussians on the unit circle, σ = 0.01: the "2D-ring" of VEEGAN and PacGAN (Lin et al. 2018)."""
    cloud = ring_metz(n, seed, modes=8, radius=1.0, sigma=0.01)
    cloud.name = "ring-pacgan"
    return cloud


def ring16(n: int = 5000, seed: int = 0) -> PointCloud:
    """Sixteen Gaussians on a circle of radius 4, σ = 0.05: twice the modes of the usual ring, on the grid's
    scale and spread (adjacent modes 31σ apart, the grid's 40σ)."""
    cloud = ring_metz(n, seed, modes=16, radius=4.0, sigma=0.05)
    cloud.name = "ring16"
    return cloud


GRID_LEVELS = (-4.0, -2.0, 0.0, 2.0, 4.0)


def grid(n: int = 5000, seed: int = 0, sigma: float = 0.05) -> PointCloud:
    """25 Gaussians with means {−4, −2, 0, 2, 4}², σ = ``sigma``, equal weights: the "2D-grid" of VEEGAN
    (Srivastava et al. 2017) and PacGAN (Lin et al. 2018)."""
    levels = torch.tensor(GRID_LEVELS)
    centres = torch.cartesian_prod(levels, levels)
    dist = gaussian_mixture_2d(centres, sigma)
    return PointCloud("grid", _fixed_sample(dist, n, seed), dist, centres, sigma)


POINT_SETS = {"gaussian": correlated_gaussian, "ring": ring, "ring-metz": ring_metz, "ring-pacgan": ring_pacgan,
              "ring16": ring16, "grid": grid}


def _fixed_sample(dist: Distribution, n: int, seed: int) -> torch.Tensor:
    # A sample that depends on ``seed`` only, not on the global RNG (figures stay comparable across runs).
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        return dist.sample((n,))
    finally:
        torch.random.set_rng_state(state)


def read_numeric_csv(path: str | Path, option: str, columns: int = 2) -> torch.Tensor:
    """The rows of a CSV of ``columns`` numeric columns as a (N, columns) float32 tensor.

    A first row that is not numeric is taken as a header. Blank lines are skipped.

    Raises:
        InputError: no such file, no data rows, a row with another number of fields, or a value
            that is not a finite number (the message names ``option``, the file, the line and the value).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{option} {path}: no such file")
    with path.open(newline="") as f:
        rows = [(i, row) for i, row in enumerate(csv.reader(f), start=1) if any(cell.strip() for cell in row)]
    if rows and not all(_is_number(cell) for cell in rows[0][1]):
        rows = rows[1:]  # a header row
    if not rows:
        raise InputError(f"{option} {path}: expected rows of {columns} numbers, found no data rows")
    values = []
    for line, row in rows:
        if len(row) != columns:
            raise InputError(
                f"{option} {path}: expected {columns} numeric columns (x, y), line {line} has {len(row)} field(s)"
            )
        for cell in row:
            if not _is_number(cell):
                raise InputError(f"{option} {path}: expected finite numbers, line {line} has {cell.strip()!r}")
        values.append([float(cell) for cell in row])
    return torch.tensor(values, dtype=torch.float32)


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def load_points_csv(path: str | Path, modes: str | Path | None = None, mode_sigma: float | None = None) -> PointCloud:
    """A user's 2-D point cloud (``--data``), with optional mode centres (``--modes``) and their σ.

    Without ``mode_sigma`` the modes' standard deviation is estimated from the data: the RMS
    per-coordinate distance of each point to its nearest centre.

    Raises:
        InputError: a CSV that is not two numeric columns, fewer than 2 points, a modes file with
            the wrong shape, or a non-positive ``mode_sigma``.
    """
    points = read_numeric_csv(path, "--data")
    if len(points) < 2:
        raise InputError(f"--data {path}: expected at least 2 points, got {len(points)}")
    if mode_sigma is not None and not (mode_sigma > 0 and math.isfinite(mode_sigma)):
        raise InputError(f"--mode-sigma {mode_sigma}: expected a finite number > 0")
    if modes is None:
        if mode_sigma is not None:
            raise InputError("--mode-sigma: only meaningful with --modes CENTRES.csv")
        return PointCloud(Path(path).stem, points)
    centres = load_modes_csv(modes)
    if mode_sigma is None:
        nearest = torch.cdist(points, centres).min(1).values
        mode_sigma = float(nearest.pow(2).mean().div(2).sqrt())
    return PointCloud(Path(path).stem, points, centres=centres, mode_sigma=mode_sigma)


def load_modes_csv(path: str | Path) -> torch.Tensor:
    """Mode centres from a CSV of two numeric columns (x, y), one row a mode: shape (K, 2)."""
    return read_numeric_csv(path, "--modes")
