"""posteriordb (stan-dev/posteriordb): posteriors by name, with their data, Stan code and reference draws.

A database folder is the ``posterior_database`` folder of a clone of the database (or the copy in
``../shared/data/posteriordb/``, or the few posteriors bundled here, :data:`BUNDLED`), laid out as

    posteriors/NAME.json                              the model, data and reference of posterior NAME
    models/stan/MODEL.stan, models/info/MODEL.info.json
    data/data/DATA.json.zip, data/info/DATA.info.json
    reference_posteriors/draws/draws/NAME.json.zip    gold-standard draws: a list of chains {"param[i]": [...]}
    reference_posteriors/draws/info/NAME.info.json    how they were made, and their checks

posteriordb is BSD-3 licensed (the bundled copy carries its notice, ``bundled/posteriordb/LICENCE.md``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from deepprob.datasets.stan_json import load_model_data, read_draws
from deepprob.errors import InputError

# the posteriors the tour uses, bundled (data, draws, Stan code and info), in the database's own layout
BUNDLED = Path(__file__).resolve().parent / "bundled" / "posteriordb" / "posterior_database"
LAYOUT = ("posteriors", "models", "data", "reference_posteriors")


@dataclass
class Posterior:
    """One posterior of the database: its name, model, data and reference draws' names, and their files."""

    name: str
    model_name: str
    data_name: str
    reference_name: str | None
    database: PosteriorDatabase

    @property
    def data_file(self) -> Path:
        return self.database.root / "data" / "data" / f"{self.data_name}.json.zip"

    @property
    def draws_file(self) -> Path:
        return self.database.root / "reference_posteriors" / "draws" / "draws" / f"{self.reference_name}.json.zip"

    @property
    def stan_file(self) -> Path:
        return self.database.root / "models" / "stan" / f"{self.model_name}.stan"

    def data(self, dtype: torch.dtype | None = None) -> dict:
        """The data object: numbers as Python numbers, arrays as float tensors of ``dtype``."""
        return load_model_data(self.data_file, dtype, option=f"posterior {self.name}: data")

    def reference_draws(self) -> dict[str, np.ndarray]:
        """The gold-standard draws, {name: (chains, draws)}."""
        if self.reference_name is None:
            raise InputError(f"posterior {self.name}: posteriordb has no reference draws for it")
        return read_draws(self.draws_file, option=f"posterior {self.name}: reference draws")

    def reference_info(self) -> dict:
        path = self.database.root / "reference_posteriors" / "draws" / "info" / f"{self.reference_name}.info.json"
        return json.loads(path.read_text()) if path.is_file() else {}


class PosteriorDatabase:
    """The database in folder ``root`` (see the module's docstring); ``option`` names it in errors.

    Raises:
        InputError: ``root`` is not a folder with the database's layout.
    """

    def __init__(self, root: str | Path = BUNDLED, option: str = "--posteriordb"):
        self.root, self.option = Path(root), option
        missing = [part for part in LAYOUT if not (self.root / part).is_dir()]
        if missing:
            hint = (" (it has a posterior_database folder: give that)" if (self.root / "posterior_database").is_dir()
                    else "")
            raise InputError(f"{option} {root}: not a posteriordb folder, expected the folders {', '.join(LAYOUT)} "
                             f"in it (missing {', '.join(missing)}){hint}")

    def names(self) -> list[str]:
        """Every posterior of the database, sorted."""
        return sorted(p.stem for p in (self.root / "posteriors").glob("*.json"))

    def posterior(self, name: str, available: list[str] | None = None) -> Posterior:
        """Posterior ``name``; an unknown name is an InputError listing ``available`` (default: every one)."""
        path = self.root / "posteriors" / f"{name}.json"
        if not path.is_file():
            choices = available if available is not None else self.names()
            raise InputError(f"--posterior {name!r}: no such posterior in {self.root}; available: {', '.join(choices)}")
        try:
            info = json.loads(path.read_text())
            return Posterior(name, info["model_name"], info["data_name"], info.get("reference_posterior_name"), self)
        except (json.JSONDecodeError, KeyError) as err:
            raise InputError(f"{self.option} {self.root}: posteriors/{name}.json is not a posterior's record "
                             f"({err})") from None
