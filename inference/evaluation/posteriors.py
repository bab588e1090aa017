"""posteriordb's posteriors as problems for :func:`~.compare.compare`: the Pyro translation of
the model (:mod:`deepprob.models.posteriordb`), the data, and the gold-standard draws as the reference."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from deepprob.datasets.posteriordb import BUNDLED, PosteriorDatabase
from deepprob.models.posteriordb import TRANSLATIONS, translation


@dataclass
class PosteriorProblem:
    """A posterior ready to compare against: ``compare(problem.model, problem.data, reference=problem.draws,
    reference_latents=problem.reference_latents)``."""

    name: str
    model: Callable
    data: dict
    draws: dict[str, np.ndarray]
    reference_latents: Callable[[dict], dict] | None
    info: dict = field(default_factory=dict)


def database(path: str | Path | None = None, option: str = "--posteriordb") -> PosteriorDatabase:
    """The database at ``path`` (default: the posteriors bundled with deepprob)."""
    return PosteriorDatabase(BUNDLED if path is None else path, option)


def translated(db: PosteriorDatabase) -> list[str]:
    """The posteriors of ``db`` whose model has a translation."""
    return [name for name in db.names() if db.posterior(name).model_name in TRANSLATIONS]


def load_posterior(name: str, db: PosteriorDatabase, dtype: torch.dtype = torch.float64) -> PosteriorProblem:
    """Posterior ``name`` of ``db``: an unknown one is an InputError listing those that can be compared."""
    posterior = db.posterior(name, available=translated(db))
    module = translation(posterior.model_name)
    data = posterior.data(dtype)
    latents = getattr(module, "reference_latents", None)
    return PosteriorProblem(name, module.model, data, posterior.reference_draws(),
                            functools.partial(latents, data=data) if latents is not None else None,
                            posterior.reference_info())
