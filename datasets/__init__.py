"""The shared data layer: used by the Pyro models and by the plain torch modules alike."""

from deepprob.datasets.synthetic import cubic_regression, sine_regression, two_classes, two_moons
from deepprob.datasets.tables import Table, check_binary, check_finite, load_csv

__all__ = [
    "Table", "check_binary", "check_finite", "cubic_regression", "load_csv", "sine_regression",
    "two_classes", "two_moons",
]
