"""Tabular data: a design matrix and a target, from the embedded generators or a user's CSV."""

from __future__ import annotations

import csv
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


def load_csv(path: str | Path, target: str, features: list[str] | None = None) -> Table:
    """Read a CSV with a header row into a :class:`Table` (float32).

    ``target`` names the column to predict; ``features`` the predictors (default: every other column). A
    missing or non-numeric value in a used column (a column of names, say) is an error that names its row and
    column.

    The file is parsed once by pandas' C parser, column by column into numbers: a million rows of eleven
    columns take about a second and a peak of a few hundred MB, not the gigabytes of Python strings a
    row-by-row reader makes.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise InputError(f"--data {path}: no such file")
    with path.open(newline="") as f:
        header = [h.strip() for h in next(csv.reader(f), [])]
    try:
        # only empty fields are missing values: "NA" or "nan" in a numeric column is an error that says so
        frame = pd.read_csv(path, keep_default_na=False, na_values=[""], skipinitialspace=True, dtype=None,
                            engine="c")
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame(columns=header)
    except pd.errors.ParserError as err:
        raise InputError(f"--data {path}: {_field_count_error(path, header) or str(err).strip()}") from None
    if len(frame) < 1:
        raise InputError(f"--data {path}: expected a header row and at least one data row")
    frame.columns = header
    if target is None:
        raise InputError(f"--target: required with --data (columns: {', '.join(header)})")
    if target not in frame.columns:
        raise InputError(f"--target {target!r}: no such column in {path} (columns: {', '.join(header)})")
    numbers = {name: frame[name] if pd.api.types.is_numeric_dtype(frame[name])
               else pd.to_numeric(frame[name], errors="coerce") for name in header}
    if features is None:
        features = [name for name in header if name != target]
        text = [name for name in features if not numbers[name].notna().all()]
        if text:  # not dropped silently: the model would be fitted on other columns than the user thinks
            numeric = [name for name in features if name not in text]
            first_bad = int(numbers[text[0]].isna().argmax())
            problem = _bad_value(path, header, text[0], first_bad)
            raise InputError(f"--data {path}: {problem}; expected numbers in every feature column: encode it as "
                             f"numbers, or choose the columns with --features {','.join(numeric) or '...'}")
    else:
        for name in features:
            if name not in frame.columns:
                raise InputError(f"--features {name!r}: no such column in {path} (columns: {', '.join(header)})")
    if not features:
        raise InputError(f"--data {path}: no numeric feature columns besides the target {target!r}")

    def column(name: str) -> torch.Tensor:
        values = torch.from_numpy(numbers[name].to_numpy(dtype="float64", na_value=float("nan"), copy=True))
        bad = ~torch.isfinite(values)
        if bad.any():
            row = int(bad.nonzero()[0])
            raise InputError(f"--data {path}: {_bad_value(path, header, name, row)}")
        return values.float()

    X = torch.stack([column(name) for name in features], 1) if len(features) > 1 else column(features[0])[:, None]
    return Table(X.contiguous(), column(target), list(features), target, source=str(path))


def _line(path: Path, row: int) -> list[str]:
    """The fields of data row ``row`` (0-based, line row + 2 of the file)."""
    with path.open(newline="") as f:
        reader = csv.reader(f)
        for i, fields in enumerate(reader):
            if i == row + 1:
                return [v.strip() for v in fields]
    return []


def _bad_value(path: Path, header: list[str], name: str, row: int) -> str:
    fields = _line(path, row)
    if len(fields) != len(header):
        return f"line {row + 2} has {len(fields)} fields, the header has {len(header)}"
    text = fields[header.index(name)]
    what = "a missing value" if text == "" else f"non-numeric value {text!r}"
    return f"{what} in column {name!r} at line {row + 2}"


def _field_count_error(path: Path, header: list[str]) -> str | None:
    """The first line whose number of fields is not the header's, as a message (None if there is none)."""
    with path.open(newline="") as f:
        for i, fields in enumerate(csv.reader(f)):
            if fields and len(fields) != len(header):
                return f"line {i + 1} has {len(fields)} fields, the header has {len(header)}"
    return None
