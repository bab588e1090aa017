"""The embedded synthetic data sets of the tutorial (generated from a seed, never downloaded)."""

from __future__ import annotations

import numpy as np
import torch

from deepprob.datasets.tables import Table


def cubic_regression(n: int = 40, noise_sd: float = 0.3, seed: int = 0) -> Table:
    """x ~ U(-3, 5), y = 0.1 x^3 - 3x + 2 + N(0, noise_sd^2): the seed's regression data."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, generator=g, dtype=torch.float64) * 8 - 3
    y = 0.1 * x**3 - 3 * x + 2 + noise_sd * torch.randn(n, generator=g, dtype=torch.float64)
    return Table(x[:, None].float(), y.float(), ["x"], "y", meta={"truth": "0.1x^3 - 3x + 2"})


def two_classes(n: int = 2000, class_sep: float = 3.0, seed: int = 0) -> Table:
    """Two well separated classes in 2-D (scikit-learn ``make_classification``), labels 0/1."""
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=n, n_features=2, n_informative=2, n_redundant=0, n_repeated=0, n_classes=2,
        n_clusters_per_class=1, class_sep=class_sep, random_state=seed,
    )
    return Table(torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32),
                 ["x1", "x2"], "label")


def two_moons(n: int = 400, noise: float = 0.15, seed: int = 0) -> Table:
    """Two interleaved half circles (scikit-learn ``make_moons``): a non-linear classification task."""
    from sklearn.datasets import make_moons

    X, y = make_moons(n_samples=n, noise=noise, random_state=seed)
    return Table(torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32),
                 ["x1", "x2"], "label")


def sine_regression(n: int = 100, noise_sd: float = 0.1, seed: int = 0) -> Table:
    """x in two clusters on [-3, 3] with a gap in the middle, y = sin(x) + noise: regression with a hole."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.uniform(-3, -1, n // 2), rng.uniform(1, 3, n - n // 2)])
    y = np.sin(x) + noise_sd * rng.standard_normal(n)
    return Table(torch.as_tensor(x[:, None], dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32), ["x"], "y")


def onehot(n: int = 2000, k: int = 4, seed: int = 0) -> Table:
    """``n`` one-hot vectors of length ``k``, classes balanced and shuffled: the seed's VAE toy.

    ``X`` (n, k) holds the vectors and ``y`` (n,) the class (the position of the one). A VAE with a
    2-D latent should map the ``k`` classes to ``k`` separate clusters of latent means.
    """
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n)[torch.randperm(n, generator=g)] % k
    X = torch.nn.functional.one_hot(labels, k).float()
    return Table(X, labels.float(), [f"x{i}" for i in range(k)], "class")
