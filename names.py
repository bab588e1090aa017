"""Scalar parameter names as Stan and posteriordb write them: ``mu``, ``theta[1]``, ``beta[2,3]`` (1-based).

Draws of sites, {site: (S, *shape)}, become one matrix (S, P) with a label per column
(:func:`flatten`), and draws named by such labels become sites again (:func:`to_sites`), so that a
model's draws and a reference's are compared parameter by parameter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from deepprob.errors import InputError

_INDEXED = re.compile(r"^(?P<name>[^\[\]]+)\[(?P<index>\s*\d+\s*(?:,\s*\d+\s*)*)\]$")


def labels_of(name: str, shape: Sequence[int], coords: Sequence | None = None) -> list[str]:
    """The labels of a site's scalars, row-major: ``[name]`` for a scalar, ``name[1]``.. (1-based) for
    an array, or ``name[label]`` with the labels ``coords`` of a vector's one dim."""
    shape = tuple(shape)
    if not shape:
        return [name]
    if coords is not None and len(shape) == 1 and len(coords) == shape[0]:
        return [f"{name}[{label}]" for label in coords]
    return [f"{name}[{','.join(str(i + 1) for i in index)}]" for index in np.ndindex(*shape)]


def parse_label(label: str) -> tuple[str, tuple[int, ...]]:
    """``"theta[2]"`` -> ("theta", (1,)) (0-based); ``"mu"`` -> ("mu", ())."""
    match = _INDEXED.match(label)
    if match is None:
        return label, ()
    return match["name"], tuple(int(i) - 1 for i in match["index"].split(","))


def flatten(values: Mapping[str, torch.Tensor], coords: Mapping | None = None,
            dims: Mapping | None = None) -> tuple[torch.Tensor, list[str]]:
    """Draws of sites {name: (S, *shape)} as one matrix (S, P) (float64) and the labels of its columns.

    A vector site with one dim in ``dims`` whose labels are in ``coords`` is labelled by them.
    """
    columns, labels = [], []
    for name, value in values.items():
        site_dims = (dims or {}).get(name) or []
        site_coords = (coords or {}).get(site_dims[0]) if len(site_dims) == 1 else None
        columns.append(value.reshape(len(value), -1).double())
        labels += labels_of(name, value.shape[1:], site_coords)
    if not columns:
        return torch.zeros(0, 0, dtype=torch.float64), []
    return torch.cat(columns, 1), labels


def to_sites(columns: Mapping[str, np.ndarray], shapes: Mapping[str, tuple[int, ...]],
             what: str = "reference draws") -> dict[str, np.ndarray]:
    """Draws named by labels or by site names, {label: (*lead, ...)}, as sites {name: (*lead, *shape)}.

    ``shapes`` gives each site's shape (the model's latent and deterministic sites). A value named by a
    site has trailing dims of the site's shape; one named ``name[i,...]`` is one scalar of it. Every
    scalar of a site must be given, once.

    Raises:
        InputError: a name the model does not record, a scalar out of the site's range, a missing one,
            or values of the wrong shape (the message names them).
    """
    unknown = sorted({label for label in columns if parse_label(label)[0] not in shapes})
    if unknown:
        raise InputError(f"{what}: the model records no site {', '.join(repr(u) for u in unknown[:8])}"
                         f"{' ...' if len(unknown) > 8 else ''}; its sites are {', '.join(shapes)}")
    grouped: dict[str, dict[tuple, np.ndarray]] = {}
    for label, value in columns.items():
        name, index = parse_label(label)
        shape = tuple(shapes[name])
        value = np.asarray(value, dtype=np.float64)
        if index:
            if len(index) != len(shape) or any(not 0 <= i < n for i, n in zip(index, shape)):
                raise InputError(f"{what}: {label!r} is outside the site {name!r} of shape {list(shape)}")
            grouped.setdefault(name, {})[index] = value
        else:
            if shape and tuple(value.shape[-len(shape):]) != shape:
                raise InputError(f"{what}: {label!r} has shape {list(value.shape)}; expected draws of the site's "
                                 f"shape {list(shape)} (the last dims)")
            grouped.setdefault(name, {})[()] = value
    sites = {}
    for name, parts in grouped.items():
        shape = tuple(shapes[name])
        if () in parts:
            sites[name] = parts[()]
            continue
        missing = [labels_of(name, shape)[i] for i, index in enumerate(np.ndindex(*shape)) if index not in parts]
        if missing:
            raise InputError(f"{what}: {name!r} is given in part; missing {', '.join(missing[:5])}"
                             f"{' ...' if len(missing) > 5 else ''}")
        leads = {v.shape for v in parts.values()}
        if len(leads) != 1:
            raise InputError(f"{what}: the scalars of {name!r} have different numbers of draws: {sorted(leads)}")
        (lead,) = leads
        stacked = np.stack([parts[index] for index in np.ndindex(*shape)], -1)
        sites[name] = stacked.reshape(lead + shape)
    return sites
