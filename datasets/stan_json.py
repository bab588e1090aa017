"""Data and draws in the JSON of Stan and posteriordb: a model's data as one object, draws as a list of chains.

- :func:`read_json`: a ``.json`` file, or a ``.json.zip`` holding one (posteriordb ships its data so).
- :func:`model_data`: that object as a model's argument, numbers as Python numbers, arrays as tensors.
- :func:`read_draws`: posteriordb's reference draws, a list of chains ``[{"mu": [...], "theta[1]": [...]}, ...]``,
  as ``{name: array (chains, draws)}``.

Every problem with a file is one :class:`~deepprob.errors.InputError` naming the option and the file.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import torch

from deepprob.errors import InputError


def read_json(path: str | Path, option: str = "--data"):
    """The JSON value in ``path`` (``.json``, or a zip archive holding one ``.json`` member)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{option} {path}: no such file")
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                members = [m for m in archive.namelist() if m.endswith(".json") and not m.startswith("__MACOSX")]
                if len(members) != 1:
                    raise InputError(f"{option} {path}: expected a zip archive holding one .json file, found "
                                     f"{len(members)} ({', '.join(members[:4])})")
                text = archive.read(members[0]).decode("utf-8")
        else:
            text = path.read_text(encoding="utf-8")
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"{option} {path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})") \
            from None
    except (UnicodeDecodeError, zipfile.BadZipFile, OSError) as err:
        raise InputError(f"{option} {path}: unreadable ({err})") from None


def _array(name: str, value: list, dtype: torch.dtype, option: str, path) -> torch.Tensor:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError):
        raise InputError(f"{option} {path}: {name!r} is not a rectangular array of numbers") from None
    return torch.as_tensor(array, dtype=dtype)


def model_data(value: dict, dtype: torch.dtype | None = None, option: str = "--data", path="") -> dict:
    """A JSON object as a model's data: numbers stay Python numbers, arrays (lists, nested) become float
    tensors of ``dtype`` (default torch's), strings and nested objects stay as they are."""
    if not isinstance(value, dict):
        raise InputError(f"{option} {path}: expected a JSON object {{name: value}}, got a {type(value).__name__}")
    dtype = dtype or torch.get_default_dtype()
    return {name: _array(name, v, dtype, option, path) if isinstance(v, list) else v for name, v in value.items()}


def load_model_data(path: str | Path, dtype: torch.dtype | None = None, option: str = "--data") -> dict:
    """:func:`model_data` of the JSON object in ``path``."""
    return model_data(read_json(path, option), dtype, option, path)


def read_draws(path: str | Path, option: str = "--reference-draws") -> dict[str, np.ndarray]:
    """posteriordb's draws (a list of chains, each {name: [draws]}, every chain naming the same parameters
    with the same number of draws) as {name: array (chains, draws)}."""
    chains = read_json(path, option)
    if isinstance(chains, dict):  # one chain, as a bare object
        chains = [chains]
    if not isinstance(chains, list) or not chains or not all(isinstance(c, dict) and c for c in chains):
        raise InputError(f"{option} {path}: expected a list of chains, each an object {{\"name\": [draws]}}")
    names = list(chains[0])
    for i, chain in enumerate(chains[1:], start=2):
        if set(chain) != set(names):
            differ = sorted(set(chain) ^ set(names))
            raise InputError(f"{option} {path}: chain {i} names other parameters than chain 1 "
                             f"({', '.join(differ[:4])})")
    out = {}
    for name in names:
        columns = [chain[name] for chain in chains]
        if not all(isinstance(c, list) and all(isinstance(v, (int, float)) for v in c) for c in columns):
            raise InputError(f"{option} {path}: {name!r} is not a list of numbers in every chain")
        lengths = {len(c) for c in columns}
        if len(lengths) != 1:
            raise InputError(f"{option} {path}: the chains have different numbers of draws of {name!r} "
                             f"({sorted(lengths)})")
        out[name] = np.asarray(columns, dtype=np.float64)
    lengths = {a.shape[1] for a in out.values()}
    if len(lengths) != 1:
        raise InputError(f"{option} {path}: the parameters have different numbers of draws ({sorted(lengths)})")
    return out


def read_npz_draws(path: str | Path, option: str = "--reference-draws") -> dict[str, np.ndarray]:
    """Draws saved by NumPy (``np.savez``: one array (chains, draws, ...) a site, as
    ``bench/corpus_reference.py`` ships them) as {name: float64 array}; entries that are not numbers (the run's
    checks, as text) are left out."""
    if not Path(path).is_file():
        raise InputError(f"{option} {path}: no such file")
    try:
        with np.load(path) as saved:
            out = {k: saved[k].astype(np.float64) for k in saved.files if saved[k].dtype.kind in "fiu"}
    except (OSError, ValueError) as err:
        raise InputError(f"{option} {path}: not a NumPy .npz file ({err})") from None
    if not out or any(a.ndim < 2 for a in out.values()):
        raise InputError(f"{option} {path}: expected arrays (chains, draws, ...) of numbers, one a site")
    return out
