"""Tabular data: a design matrix and a target, from the embedded generators or a user's CSV."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from deepprob.errors import InputError


@dataclass
class Table:
    """Features ``X`` (N, D) and target ``y`` (N,), float tensors, with column names."""

    X: torch.Tensor
    y: torch.Tensor
    feature_names: list[str]
    target_name: str = "y"
    source: str = "embedded"
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.X.ndim != 2:
            raise InputError(f"X: expected a 2-D (N, D) array, got shape {tuple(self.X.shape)}")
        if self.y.shape != (self.X.shape[0],):
            raise InputError(f"y: expected shape ({self.X.shape[0]},) to match X, got {tuple(self.y.shape)}")
        if len(self.feature_names) != self.X.shape[1]:
            raise InputError(f"feature_names: expected {self.X.shape[1]} names, got {len(self.feature_names)}")
        check_finite("X", self.X)
        check_finite("y", self.y)

    def __len__(self) -> int:
        return self.X.shape[0]

    def to(self, device=None, dtype=None) -> Table:
        """A copy on ``device`` with floating point ``dtype``."""
        return Table(
            self.X.to(device=device, dtype=dtype), self.y.to(device=device, dtype=dtype),
            list(self.feature_names), self.target_name, self.source, dict(self.meta),
        )


def check_finite(name: str, values: torch.Tensor) -> None:
    """Raise :class:`InputError` naming ``name`` and the first bad entry if ``values`` has NaN or inf."""
    bad = ~torch.isfinite(values)
    if bad.any():
        index = tuple(int(i) for i in bad.nonzero()[0])
        raise InputError(f"{name}: expected finite numbers, found {values[index].item()} at index {index}")


def check_binary(name: str, labels: torch.Tensor) -> None:
    """Raise :class:`InputError` unless every label is 0 or 1."""
    bad = (labels != 0) & (labels != 1)
    if bad.any():
        values = sorted({float(v) for v in labels[bad][:5].tolist()})
        raise InputError(f"{name}: expected binary labels 0/1, found {values} (e.g. at row {int(bad.nonzero()[0])})")


def _parse(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def load_csv(path: str | Path, target: str, features: list[str] | None = None) -> Table:
    """Read a CSV with a header row into a :class:`Table`.

    ``target`` names the column to predict; ``features`` the predictors (default: every other column
    whose values are numbers; columns of text only, such as names, are skipped). A missing or
    non-numeric value in a used column is an error that names its row and column.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--data {path}: no such file")
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        raise InputError(f"--data {path}: expected a header row and at least one data row")
    header = [h.strip() for h in rows[0]]
    body = rows[1:]
    for i, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise InputError(f"--data {path}: line {i} has {len(row)} fields, the header has {len(header)}")
    columns = {name: [row[j].strip() for row in body] for j, name in enumerate(header)}

    if target is None:
        raise InputError(f"--target: required with --data (columns: {', '.join(header)})")
    if target not in columns:
        raise InputError(f"--target {target!r}: no such column in {path} (columns: {', '.join(header)})")
    if features is None:
        features = [
            name for name in header
            if name != target and any(_parse(v) is not None for v in columns[name])
        ]
    else:
        for name in features:
            if name not in columns:
                raise InputError(f"--features {name!r}: no such column in {path} (columns: {', '.join(header)})")
    if not features:
        raise InputError(f"--data {path}: no numeric feature columns besides the target {target!r}")

    def numeric(name: str) -> list[float]:
        values = []
        for i, text in enumerate(columns[name]):
            value = _parse(text)
            if value is None:
                what = "a missing value" if text == "" else f"non-numeric value {text!r}"
                raise InputError(f"--data {path}: {what} in column {name!r} at line {i + 2}")
            values.append(value)
        return values

    X = torch.tensor([numeric(name) for name in features], dtype=torch.float64).T.contiguous()
    y = torch.tensor(numeric(target), dtype=torch.float64)
    return Table(X.float(), y.float(), list(features), target, source=str(path))
