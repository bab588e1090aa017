"""Every guide on every posterior of posteriordb, scored against its gold-standard draws: ``deepprob scoreboard``.

For each posterior :func:`~deepprob.inference.evaluation.compare.compare` fits every guide (and Pyro's NUTS on a short
budget, what a user would otherwise run) and measures each against the reference draws. The board keeps,
per (posterior, method): the worst error of a posterior mean and of a posterior sd in reference sds, the
2-Wasserstein distance in reference sds beside the reference's own noise floor (two halves of its draws),
PSIS k-hat, the seconds and the gradient evaluations of the log density.

**Is k-hat telling the truth?** A fit is *accurate* when its worst mean error and worst sd error are both
at most 0.2 reference sds; k-hat < 0.7 says "fine". :meth:`Scoreboard.khat_table` counts the four cases
and names the pairs where k-hat says fine but the fit is not accurate.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from deepprob.datasets.posteriordb import PosteriorDatabase
from deepprob.devices import default_dtype
from deepprob.errors import InputError
from deepprob.files import jsonable
from deepprob.guides.registry import AUTO, DEFAULT_GUIDES, GuideOptions
from deepprob.inference.evaluation.compare import Comparison, compare
from deepprob.inference.evaluation.nuts import NUTSBudget
from deepprob.inference.evaluation.posteriors import load_posterior, translated
from deepprob.inference.fitting.settings import FitSettings, compare_settings

ACCURATE = 0.2  # worst mean and sd errors, in reference sds, of an accurate fit
GOAL = 0.1      # ... of the best guide on every posterior
KHAT_FINE = 0.7
# NUTS as a user runs it to look before they leap: two short chains, trees capped at 2^8 steps
SHORT_NUTS = NUTSBudget(chains=2, warmup=300, samples=300, max_tree_depth=8, target_accept=0.8, until_converged=False)
ENTRIES = ("mean_err_sd", "sd_err_sd", "w2", "khat", "seconds", "gradient_evaluations", "mean_err_est", "sd_err_est",
           "trust", "family")


@dataclass
class Scoreboard:
    """What :func:`scoreboard` returns: each posterior's :class:`~deepprob.inference.evaluation.compare.Comparison`."""

    comparisons: dict[str, Comparison]
    failed: dict[str, str]
    seconds: float
    settings: dict = field(default_factory=dict)

    def entries(self) -> dict[str, dict[str, dict]]:
        """{posterior: {method: {mean_err_sd, sd_err_sd, w2, w2_floor, khat, seconds, gradient_evaluations, the
        estimated errors, trust, and auto's family}}}."""
        out = {}
        for name, result in self.comparisons.items():
            floor = result.reference_stats.get("w2_floor")
            out[name] = {method: {**{k: row.get(k) for k in ENTRIES}, "w2_floor": floor}
                         for method, row in result.rows.items() if "error" not in row}
        return out

    @property
    def table(self):
        """A pandas DataFrame indexed by (posterior, method)."""
        import pandas as pd

        rows = {(name, method): values for name, methods in self.entries().items()
                for method, values in methods.items()}
        frame = pd.DataFrame.from_dict(rows, orient="index")
        frame.index.names = ["posterior", "method"]
        return frame

    def best(self) -> dict[str, dict]:
        """Per posterior the guide whose worse error (of mean and sd) is smallest, its errors, and whether it
        meets the goal (both at most :data:`GOAL`)."""
        out = {}
        for name, methods in self.entries().items():
            guides = {m: v for m, v in methods.items()
                      if m != "nuts" and not m.endswith("+psis") and v["mean_err_sd"] is not None}
            if not guides:
                continue
            method = min(guides, key=lambda m: max(guides[m]["mean_err_sd"], guides[m]["sd_err_sd"]))
            values = guides[method]
            out[name] = {"guide": method, "mean_err_sd": values["mean_err_sd"], "sd_err_sd": values["sd_err_sd"],
                         "meets_goal": max(values["mean_err_sd"], values["sd_err_sd"]) <= GOAL}
        return out

    def khat_table(self) -> dict:
        """The two-by-two of k-hat < 0.7 against accurate (both errors <= 0.2), over the (posterior, guide) pairs,
        and the pairs where k-hat says fine but the fit is not accurate."""
        counts = {"fine_accurate": 0, "fine_inaccurate": 0, "flagged_accurate": 0, "flagged_inaccurate": 0}
        misled = []
        for name, methods in self.entries().items():
            for method, v in methods.items():
                if not _a_guides_own(method) or v["khat"] is None or v["mean_err_sd"] is None:
                    continue
                fine = v["khat"] < KHAT_FINE
                accurate = v["mean_err_sd"] <= ACCURATE and v["sd_err_sd"] <= ACCURATE
                counts[("fine_" if fine else "flagged_") + ("accurate" if accurate else "inaccurate")] += 1
                if fine and not accurate:
                    misled.append({"posterior": name, "guide": method, "khat": v["khat"],
                                   "mean_err_sd": v["mean_err_sd"], "sd_err_sd": v["sd_err_sd"]})
        return {**counts, "khat_fine_but_wrong": misled}

    def trust_table(self) -> dict:
        """The two-by-twos of the verdict against accurate (both measured errors <= 0.2): the guides' ``"yes"``, and
        the ``+psis`` rows of the guides whose verdict is ``"corrected"`` (measured on their corrected draws); with the
        rows where ``"yes"`` was wrong, and how far each ``"yes"`` row's estimates were from its measured errors."""
        table = {"yes": [0, 0], "not_yes": [0, 0], "corrected": [0, 0]}  # [accurate, not accurate]
        wrong, gaps = [], []
        for name, methods in self.entries().items():
            for method, v in methods.items():
                if not _a_guides_own(method) or v["mean_err_sd"] is None or v.get("trust") is None:
                    continue
                accurate = v["mean_err_sd"] <= ACCURATE and v["sd_err_sd"] <= ACCURATE
                if method.endswith("+psis"):
                    table["corrected"][0 if accurate else 1] += 1
                    continue
                table["yes" if v["trust"] == "yes" else "not_yes"][0 if accurate else 1] += 1
                if v["trust"] == "yes":
                    gaps.append(max(abs(v["mean_err_est"] - v["mean_err_sd"]), abs(v["sd_err_est"] - v["sd_err_sd"])))
                    if not accurate:
                        wrong.append(f"{name}/{method}")
        return {key: {"accurate": a, "not_accurate": b} for key, (a, b) in table.items()} | {
            "yes_but_wrong": wrong, "yes_estimate_gaps": sorted(gaps)}

    def to_dict(self) -> dict:
        return jsonable({"posteriors": self.entries(), "best": self.best(), "khat": self.khat_table(),
                         "trust": self.trust_table(),
                         "failed": self.failed, "seconds": self.seconds, "settings": self.settings})

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def report(self) -> list[str]:
        """The board as text: a line per (posterior, method), the best guides, the k-hat two-by-two."""
        head = (f"{'posterior':<40} {'method':<15} {'mean err':>8} {'sd err':>7} {'W2':>6} {'(floor)':>7} "
                f"{'k-hat':>6} {'mean est':>8} {'sd est':>7} {'trust':>9} {'s':>6} {'grad evals':>10}")
        lines = [head]
        for name, methods in self.entries().items():
            for method, v in methods.items():
                lines.append(f"{name:<40} {method:<15} {_cell(v['mean_err_sd'], 8, 3)} {_cell(v['sd_err_sd'], 7, 3)} "
                             f"{_cell(v['w2'], 6, 3)} {_cell(v['w2_floor'], 7, 3)} {_cell(v['khat'], 6, 2)} "
                             f"{_cell(v['mean_err_est'], 8, 3)} {_cell(v['sd_err_est'], 7, 3)} "
                             f"{v.get('trust') or '-':>9} {_cell(v['seconds'], 6, 1)} "
                             f"{_cell(v['gradient_evaluations'], 10, 0)}")
        lines.append("mean est, sd est: the errors estimated from each guide's own PSIS-weighted draws (no reference); "
                     "trust: yes (within 0.1 sds, the checks agree), corrected (its +psis row stands in for it), no")
        for name, error in self.failed.items():
            lines.append(f"{name:<40} failed: {error}")
        lines.append(f"best guide per posterior (goal: both errors <= {GOAL} reference sds):")
        for name, b in self.best().items():
            lines.append(f"  {name:<40} {b['guide']:<10} mean {b['mean_err_sd']:.3f}  sd {b['sd_err_sd']:.3f}"
                         f"  {'meets the goal' if b['meets_goal'] else 'MISSES the goal'}")
        k = self.khat_table()
        lines += [f"k-hat < {KHAT_FINE} against accurate (both errors <= {ACCURATE}), over (posterior, guide) pairs:",
                  "                 accurate  not accurate",
                  f"  k-hat < {KHAT_FINE}   {k['fine_accurate']:8d}  {k['fine_inaccurate']:12d}",
                  f"  k-hat >= {KHAT_FINE}  {k['flagged_accurate']:8d}  {k['flagged_inaccurate']:12d}"]
        if k["khat_fine_but_wrong"]:
            lines.append("k-hat says fine, the fit is not accurate: " + "; ".join(
                f"{m['posterior']}/{m['guide']} (k-hat {m['khat']:.2f}, mean {m['mean_err_sd']:.2f}, "
                f"sd {m['sd_err_sd']:.2f})" for m in k["khat_fine_but_wrong"]))
        t = self.trust_table()
        lines += [f"the verdict against accurate (both errors <= {ACCURATE}):",
                  "                 accurate  not accurate"]
        lines += [f"  {label:<15}{t[key]['accurate']:8d}  {t[key]['not_accurate']:12d}"
                  for key, label in (("yes", "trust yes"), ("not_yes", "trust not yes"), ("corrected", "+psis rows"))]
        if t["yes_estimate_gaps"]:
            gaps = t["yes_estimate_gaps"]
            lines.append(f"  where yes: estimated against measured worst errors differ by at most {gaps[-1]:.3f} "
                         f"(median {gaps[len(gaps) // 2]:.3f})")
        lines.append(f"{len(self.comparisons)} posteriors in {self.seconds / 60:.1f} minutes")
        return lines

    def figure(self, out: str | Path) -> Path:
        """A heat map of the worst mean and sd errors, posterior by method, in reference sds."""
        from deepprob.inference.evaluation.scoreboard_figure import heat_map

        return heat_map(self, Path(out))


def _a_guides_own(method: str) -> bool:
    """Whether a board's row is a guide's own (or its +psis row): not NUTS's, nor auto's, which repeat the rows of
    the family it chose."""
    return method != "nuts" and method.split("+")[0] != AUTO


def _cell(value, width: int, digits: int) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-".rjust(width)
    return f"{value:{width}.{digits}f}" if digits else f"{int(value):{width}d}"


def scoreboard(db: PosteriorDatabase, posteriors: list[str] | None = None, guides: list[str] | None = None, *,
               nuts: NUTSBudget | None = SHORT_NUTS, settings: FitSettings | None = None, draws: int = 2000,
               seed: int = 0, jobs: int = 1, progress: bool = False, out: str | Path | None = None,
               dtype: torch.dtype = torch.float64, options: GuideOptions | None = None, restarts: int = 0,
               **fit_options) -> Scoreboard:
    """Every guide (and NUTS on the budget ``nuts``; None: none) on every posterior of ``db`` that has a
    translation (or those of ``posteriors``), against its reference draws, in ``dtype`` (Stan's float64).
    ``options``: the guides' (default: starting at the Laplace approximation); ``settings`` and ``fit_options``:
    the fits', as :func:`~deepprob.inference.evaluation.compare.compare` takes them; ``restarts``: its restart
    check of each guide.

    Raises:
        InputError: a posterior name that ``db`` does not have, or whose model has no translation.
    """
    available = translated(db)
    names = posteriors or available
    unknown = [n for n in names if n not in available]
    if unknown:
        raise InputError(f"--posteriors {','.join(unknown)}: not in {db.root} with a translated model; available: "
                         f"{', '.join(available)}")
    options = options or GuideOptions()
    fit = compare_settings(options.start, settings, **fit_options)
    start = time.perf_counter()
    comparisons, failed = {}, {}
    for i, name in enumerate(names, start=1):
        if progress:
            print(f"scoreboard {i}/{len(names)}: {name}", file=sys.stderr, flush=True)
        with default_dtype(dtype):
            problem = load_posterior(name, db, dtype)
            try:
                comparisons[name] = compare(
                    problem.model, problem.data, guides=guides or list(DEFAULT_GUIDES), reference=problem.draws,
                    options=options, reference_latents=problem.reference_latents, nuts_row=nuts, settings=fit,
                    draws=draws, seed=seed, jobs=jobs, name=name, restarts=restarts,
                    out=None if out is None else Path(out) / name)
            except (InputError, RuntimeError, ValueError) as err:  # one posterior's failure is reported, not fatal
                failed[name] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
    asked = {"guides": guides or list(DEFAULT_GUIDES), "start": options.start, "steps": fit.steps, "lr": fit.lr,
             "num_particles": fit.num_particles, "objective": fit.objective, "draws": draws, "seed": seed,
             "nuts": None if nuts is None else vars(nuts), "database": str(db.root), "restarts": restarts}
    return Scoreboard(comparisons, failed, time.perf_counter() - start, asked)
