"""The shared data layer: used by the Pyro models and by the plain torch modules alike."""

from deepprob.datasets.images import (
    ImageSet,
    binarize,
    load_digits,
    load_image_splits,
    load_mnist,
    load_mnist_splits,
    read_idx,
)
from deepprob.datasets.points import (
    PointCloud,
    correlated_gaussian,
    load_modes_csv,
    load_points_csv,
    read_numeric_csv,
    ring,
    ring_metz,
)
from deepprob.datasets.synthetic import cubic_regression, onehot, sine_regression, two_classes, two_moons
from deepprob.datasets.tables import Table, check_binary, check_finite, load_csv

__all__ = [
    "Table", "check_binary", "check_finite", "cubic_regression", "load_csv", "sine_regression",
    "two_classes", "two_moons",
    "ImageSet", "binarize", "load_digits", "load_image_splits", "load_mnist", "load_mnist_splits", "onehot",
    "read_idx",
    "PointCloud", "correlated_gaussian", "load_modes_csv", "load_points_csv", "read_numeric_csv", "ring", "ring_metz",
]
