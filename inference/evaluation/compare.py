"""Every guide against a reference posterior, for any Pyro model with continuous latents: ``deepprob.compare``.

    result = deepprob.compare(model, data, reference="nuts")
    result.table                      # pandas: one row per guide
    result.inference_data["fullrank"] # ArviZ InferenceData of each fit (and of the reference)
    result.figures("runs/mine")       # forest plot, pair plots, ELBO traces
    result.to_json()

Each guide of the registry (or of ``guides``) is fitted on the same data from the same seed, as is the
reference, and its fit reduced to draws put back through the model (:mod:`deepprob.inference.evaluation.draws`).
Per guide the table has:

- the ELBO and the fit's time (and how it ran: the engine, the compiler);
- the distance to the reference, on the parameters that the model's sample and deterministic sites
  share with it (vector sites flattened ``name[1]``..``name[K]``, as Stan and posteriordb name them):
  the worst error of a posterior mean and of a posterior sd in units of the reference sd, the
  2-Wasserstein distance of the draws in reference sds (with the reference's own noise floor), the
  MMD, and KL(q || p) in closed form where the reference is an exact Gaussian (Monte Carlo for the
  mixture);
- PSIS k-hat of the importance weights log p(y, z) - log q(z), z ~ q (Yao et al. 2018): below 0.5
  q is close to the posterior, 0.5-0.7 usable, above 0.7 q misses posterior mass;
- PSIS-LOO elpd of the observed sites, and whatever ``metrics`` computes from the draws;
- with or without a reference, the guide's errors estimated from its own PSIS-weighted draws and the verdict
  ``trust`` (:mod:`.trust`): ``yes``, ``corrected`` (then a ``<guide>+psis`` row of its resampled draws) or ``no``,
  checked against the other trusted families, and, on request, against ``restarts`` and VSBC (``vsbc``).

``"auto"`` among the guides is the ladder of :mod:`.auto`, a row of its own naming the family it chose.

The reference is ``"nuts"`` (:func:`~.nuts.run_nuts`: started at the mode, run until R-hat < 1.01,
bulk and tail ESS >= 400 and no divergence, within a time budget; a loud warning where it cannot get there),
``None`` (no distances), draws made elsewhere (a dict of site or Stan-style names to arrays, or an
ArviZ InferenceData: posteriordb's gold-standard draws, say), or an exact posterior (a torch
distribution over the latent vector, or :class:`~deepprob.inference.evaluation.references.Exact`).

The guides and the reference are fitted side by side in ``jobs`` worker processes (forks of this one);
each starts from the seed, so the numbers are the same for any ``jobs``.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyro
import torch

from deepprob.errors import FitDivergedError, InputError, ModelError, model_raised, raised_at
from deepprob.files import jsonable
from deepprob.guides.protocol import declared
from deepprob.guides.registry import AUTO, DEFAULT_GUIDES, GuideOptions, Rung, build_guide, checked_guides
from deepprob.inference.evaluation.arviz_data import az, save_inference_data, summary_text, to_inference_data
from deepprob.inference.evaluation.auto import climb
from deepprob.inference.evaluation.diagnostics import (
    guide_khat,
    loo,
    mmd2,
    moment_errors,
    relative_efficiency,
    wasserstein2,
)
from deepprob.inference.evaluation.draws import Draws, draws_from_guide, draws_from_latents, first_float
from deepprob.inference.evaluation.kl import kl_of_guide
from deepprob.inference.evaluation.nuts import NUTSBudget, advice_for, convergence, failed_checks, run_nuts
from deepprob.inference.evaluation.references import Exact, check_convergence, exact_latents, given_draws
from deepprob.inference.evaluation.trust import (
    RESAMPLING_POOL,
    RESTART_JITTER,
    corrected_indices,
    downgraded,
    outvoted,
    restart_spread,
    trust_row,
)
from deepprob.inference.evaluation.vsbc import vsbc as run_vsbc
from deepprob.inference.fitting.engines import will_compile
from deepprob.inference.fitting.settings import FitSettings, compare_settings
from deepprob.inference.fitting.svi import FitResult, fit_svi
from deepprob.logdensity import ModelStructure
from deepprob.names import flatten
from deepprob.pool import map_forked, resolve_jobs
from deepprob.progress import report_once

DISTANCE_DRAWS = 1000  # draws per sample for W2 and MMD (W2 solves an assignment problem of this size)

COLUMNS = [  # (key, header, format): the shell's table, and the DataFrame's first columns in this order
    ("elbo", "ELBO", "{:10.2f}"),
    ("seconds", "fit s", "{:6.1f}"),
    ("kl_to_exact", "KL(q||p)", "{:9.2g}"),
    ("mean_err_sd", "mean err", "{:8.3f}"),
    ("sd_err_sd", "sd err", "{:7.3f}"),
    ("w2", "W2", "{:6.3f}"),
    ("khat", "k-hat", "{:6.2f}"),
    ("mean_err_est", "mean est", "{:8.3f}"),
    ("sd_err_est", "sd est", "{:7.3f}"),
    ("trust", "trust", "{:>9}"),
    ("family", "family", "{:>9}"),
    ("elpd_loo", "elpd_loo", "{:9.2f}"),
    ("accuracy", "acc", "{:6.3f}"),
    ("log_loss", "log-loss", "{:8.4f}"),
    ("rmse", "rmse", "{:7.4f}"),
    ("test_loglik", "test ll", "{:7.3f}"),
    ("far_point", "p(far)", "{:6.3f}"),
]

COLUMN_NOTES = {  # what each column means, with its units (the tour's page shows them)
    "elbo": "evidence lower bound E_q[log p(y, z) - log q(z)], nats, of the final guide (higher is better)",
    "seconds": "wall time of the fit, seconds",
    "kl_to_exact": "KL(q || exact posterior), nats (0: exact); where the posterior is known in closed form",
    "mean_err_sd": "largest error of a posterior mean over the compared quantities, in reference sds",
    "sd_err_sd": "largest relative error of a posterior sd, |sd_q - sd_ref| / sd_ref (0.5: half or 1.5 times)",
    "w2": "Wasserstein-2 distance to the reference draws, in standardised coordinates",
    "khat": "Pareto k-hat of the importance weights p/q (PSIS): below 0.5 good, above 0.7 unreliable",
    "mean_err_est": "largest error of a posterior mean estimated without a reference, from the guide's own "
                    "PSIS-weighted draws, in posterior sds (as mean err; null where the weights estimate nothing)",
    "sd_err_est": "largest relative error of a posterior sd estimated the same way (as sd err)",
    "trust": "yes: estimated within 0.1 posterior sds with its Monte Carlo error, and k-hat < 0.7; corrected: not "
             "shown within 0.1, but its PSIS-resampled draws stand in for it; no: k-hat >= 0.7, no density, too few "
             "effective draws, restarts that disagree, or too far from most of the other trusted guides (trust_reason "
             "says which)",
    "family": "the rung guide auto chose (its family, and how the rung trains it): the first of its ladder trusted",
    "elpd_loo": "expected log predictive density by PSIS leave-one-out, nats (higher is better)",
    "accuracy": "share of correctly predicted labels (Bayesian predictive, threshold 0.5)",
    "log_loss": "mean negative log predictive probability of the labels, nats per point",
    "rmse": "root mean square error of the predictive mean, in the target's units",
    "test_loglik": "mean log predictive density of held-out points, nats per point",
    "far_point": "Bayesian predictive p(y=1 | x*) at a point far from the data (0.5: honest uncertainty)",
}


@dataclass
class GuideRun:
    """One guide's fit and what it leaves for the comparison."""

    fit: FitResult       # its ``guide`` is None when it was fitted in a worker process
    draws: Draws
    idata: az.InferenceData
    compared: tuple[torch.Tensor, list[str]]  # the compared quantities (S, P) and their labels
    row: dict            # its line of the table, less the distances to the reference
    path: Path | None = None  # its NetCDF file
    corrected: GuideRun | None = None  # its PSIS-resampled draws, where its verdict is "corrected"


@dataclass
class ReferenceRun:
    method: str
    draws: Draws | None  # None when the given draws do not name every latent site
    idata: az.InferenceData
    compared: tuple[torch.Tensor, list[str]]
    stats: dict
    path: Path | None = None


@dataclass
class Settings:
    """What :func:`compare` was asked (kept with its result)."""

    name: str
    guides: list[str]
    reference: str
    draws: int
    steps: int
    lr: float
    num_particles: int
    engine: str
    seed: int
    start: str = "laplace"
    objective: str = "elbo"
    jobs: int = 1
    observations: int = 0
    compared_on: str = ""
    batching: str = "plate"  # how the model runs at many draws at once (deepprob.batching): plate, vmap or loop
    batching_note: str | None = None
    restarts: int = 0
    vsbc: int = 0


@dataclass
class Comparison:
    """What :func:`compare` returns: per guide its fit, draws, InferenceData and row of the table.

    Attributes:
        runs: each guide's :class:`GuideRun` (those that fitted).
        failed: each guide that failed, with why (a diverged fit).
        reference: the :class:`ReferenceRun`, or None.
        rows: each guide's metrics (the table's rows, per-parameter errors included).
        settings: what was asked.
    """

    runs: dict[str, GuideRun]
    failed: dict[str, str]
    reference: ReferenceRun | None
    rows: dict[str, dict]
    settings: Settings
    files: list[Path] = field(default_factory=list)

    @property
    def table(self):
        """A pandas DataFrame, one row per guide (index: the guide), the scalar metrics as columns."""
        import pandas as pd

        scalars = {name: {k: v for k, v in row.items() if not isinstance(v, (dict, list))}
                   for name, row in self.rows.items()}
        frame = pd.DataFrame.from_dict(scalars, orient="index")
        first = [key for key, _, _ in COLUMNS if key in frame.columns]
        frame = frame[first + [c for c in frame.columns if c not in first]]
        frame.index.name = "guide"
        return frame

    @property
    def inference_data(self) -> dict[str, az.InferenceData]:
        """Each fit's InferenceData by guide, and the reference's as ``"reference"``."""
        out = {name: run.idata for name, run in self.runs.items()}
        if self.reference is not None:
            out["reference"] = self.reference.idata
        return out

    def to_dict(self) -> dict:
        """Plain values: the rows (per-parameter errors too), the reference's stats and the settings."""
        return jsonable({"model": self.settings.name, "reference": self.settings.reference,
                         "reference_stats": self.reference_stats, "guides": self.rows,
                         "settings": vars(self.settings), "files": [str(f) for f in self.files]})

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @property
    def reference_stats(self) -> dict:
        return self.reference.stats if self.reference is not None else {"method": "none"}

    def report(self, summary: bool = True) -> list[str]:
        """The shell's report: the table, the noise of the errors, the reference's checks, k-hat's reading."""
        s, stats = self.settings, self.reference_stats
        lines = [f"compare {s.name}: {s.observations} observations, {s.draws} draws per guide, {s.steps} SVI steps "
                 f"(lr {s.lr:g}, from the {s.start} start), seed {s.seed}; errors in reference sds, on "
                 f"{s.compared_on or 'no reference'}"]
        ref_name = f"reference ({stats['method']})"
        lines += format_table(self.rows, (ref_name, stats) if self.reference is not None else None)
        if "w2_floor" in stats:
            lines.append(f"Monte Carlo noise of one error: about {stats['mean_err_noise']:.3f} (mean), "
                         f"{stats['sd_err_noise']:.3f} (sd); W2 of the reference against itself (two halves): "
                         f"{stats['w2_floor']:.3f}")
        if stats["method"] == "nuts":
            rounds = f", {stats['rounds']} rounds" if stats.get("rounds", 1) > 1 else ""
            lines.append(f"NUTS: {stats['chains']} chains x {stats['samples']} draws ({stats['warmup']} warmup"
                         f"{rounds}), {stats['seconds']:.0f} s; R-hat max {stats['rhat_max']:.3f}, ESS bulk min "
                         f"{stats['ess_bulk_min']:.0f}, tail min {stats['ess_tail_min']:.0f}, "
                         f"{stats['divergences']} divergences: " + ("converged" if stats["converged"] else
                                                                    "NOT CONVERGED"))
        elif "rhat_max" in stats:
            lines.append(f"{stats['method']}: {stats['chains']} chains, {stats['draws']} draws; R-hat max "
                         f"{stats['rhat_max']:.3f}, ESS bulk min {stats['ess_bulk_min']:.0f}")
        if "log_evidence" in stats:
            lines.append(f"log evidence log p(y) = {stats['log_evidence']:.3f} (ELBO = log p(y) - KL(q || p))")
        lines.append("k-hat: < 0.5 q is close to the posterior; 0.5-0.7 usable with Pareto smoothing; > 0.7 q misses "
                     "posterior mass (too narrow or the wrong shape)")
        lines.append("mean est, sd est: the guide's errors estimated from its own PSIS-weighted draws, no reference "
                     "needed; trust: yes (within 0.1 sds), corrected (its +psis row stands in for it), no "
                     "(--json's trust_reason says why)")
        if summary and self.reference is not None:
            names = list(self.reference.idata.posterior.data_vars)
            lines += [f"az.summary of the reference ({stats['method']}):",
                      summary_text(self.reference.idata, names, mcmc=stats.get("chains", 1) > 1)]
        return lines

    def figures(self, out, name: str | None = None) -> list[Path]:
        """The forest plot (every fit on one axis), a pair plot of each guide over the reference, the ELBO
        traces; PNG files in ``out``, named after ``name`` (default: the model's)."""
        from deepprob.inference.evaluation.compare_figures import comparison_figures

        paths = comparison_figures(self, Path(out), name or self.settings.name)
        self.files += paths
        return paths


def format_table(rows: dict[str, dict], reference: tuple[str, dict] | None) -> list[str]:
    """One line per guide (and the reference last), the columns some row has."""
    every = list(rows.values()) + ([reference[1]] if reference else [])
    columns = [c for c in COLUMNS if any(c[0] in row for row in every)]
    widths = [max(len(header), len(fmt.format(0.0))) for _, header, fmt in columns]
    name_width = max([len(n) for n in rows] + [len(reference[0]) if reference else 0, 5])
    lines = [f"{'guide':<{name_width}}  " + " ".join(f"{h:>{w}}" for (_, h, _), w in zip(columns, widths))]
    for name, row in list(rows.items()) + ([reference] if reference else []):
        if "error" in row:
            lines.append(f"{name:<{name_width}}  failed: {row['error']}")
            continue
        cells = [fmt.format(row[key]).rjust(w) if _number(row.get(key)) or isinstance(row.get(key), str)
                 else "-".rjust(w) for (key, _, fmt), w in zip(columns, widths)]
        lines.append(f"{name:<{name_width}}  " + " ".join(cells))
    return lines


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# --- what is compared ----------------------------------------------------------------------------


@dataclass
class _Setup:
    """Everything the tasks share (inherited by forked workers, never pickled)."""

    model: Callable
    args: tuple
    kwargs: dict
    structure: ModelStructure
    settings: Settings
    options: GuideOptions
    var_names: list[str] | None
    quantities: Callable[[Draws], dict[str, torch.Tensor]] | None
    metrics: Callable[[Draws], dict] | None
    coords: dict | None
    dims: dict | None
    constant_data: dict | None
    out: Path | None
    keep_guides: bool
    progress: bool
    fit: FitSettings
    reference_latents: Callable[[dict], dict] | None = None

    def compared_values(self, draws: Draws) -> tuple[torch.Tensor, list[str]]:
        if self.quantities is not None:
            return flatten(self.quantities(draws))
        sites = draws.sites()
        names = list(sites) if self.var_names is None else [n for n in self.var_names if n in sites]
        return flatten({name: sites[name] for name in names}, self.coords, self.dims)

    def inference_data(self, draws: Draws, attrs: dict) -> az.InferenceData:
        return to_inference_data(draws, var_names=self.var_names, coords=self.coords, dims=self.dims,
                                 constant_data=self.constant_data,
                                 attrs={"model": self.settings.name, **attrs})

    def own_metrics(self, draws: Draws, idata) -> dict:
        """What needs no reference: PSIS-LOO of the observed sites, and the caller's ``metrics``."""
        row = {}
        if draws.log_lik:
            reff = 1.0
            if draws.chains > 1:  # MCMC draws: ArviZ's relative efficiency of the latent sites' draws
                reff = relative_efficiency(flatten(draws.latents)[0].numpy(), draws.chains)
            result = loo(draws.pointwise_log_lik(), reff)
            row.update({key: result[key] for key in ("elpd_loo", "elpd_loo_se", "loo_khat_max")})
        if self.metrics is not None:
            row.update(self.metrics(draws))
        return row

    def save(self, idata, label: str) -> Path | None:
        if self.out is None:
            return None
        return save_inference_data(idata, self.out / f"{self.settings.name}_{label}.nc")


def _fit_guide(setup: _Setup, rung: Rung, restart: int = 0) -> FitResult | FitDivergedError | ModelError:
    """The guide of ``rung`` (a family of the registry, as the rung changes its options and fit) fitted from the seed
    (a restart: from the seed + ``restart``, its start displaced)."""
    s = setup.settings
    pyro.set_rng_seed(s.seed + restart)
    options = rung.guide_options(setup.options)
    options = options if not restart else replace(options, start_jitter=RESTART_JITTER)
    guide = build_guide(rung.family, setup.model, options)
    what = f"{rung.label} restart {restart}" if restart else rung.label
    try:
        fit = rung.settings(setup.fit)
        settings = fit.replace(objective=_objective_for(guide, fit.objective), desc=f"compare {s.name}/{what}")
        return fit_svi(setup.model, guide, *setup.args, settings=settings, **setup.kwargs)
    except FitDivergedError as err:
        return err
    except (InputError, KeyboardInterrupt):
        raise
    except Exception as err:  # noqa: BLE001 - the model raised at a point the fit reached: this guide's row says so
        if not raised_at(err, setup.model):
            raise  # not the model's: deepprob's own error, with its traceback
        return model_raised(setup.model, err, f"(while fitting {what})")


def _run_guide(setup: _Setup, rung: Rung, exact) -> GuideRun | FitDivergedError | ModelError:
    """Fit ``rung``'s guide from the seed, draw from it, measure what needs no reference (the results do not
    depend on the order of the guides, nor on the process that runs them); with ``restarts``, fit it again that
    many times from displaced starts, and check that they agree."""
    if rung.family == AUTO:
        return _run_auto(setup, exact)
    s, name = setup.settings, rung.label
    fit = _fit_guide(setup, rung)
    if isinstance(fit, (FitDivergedError, ModelError)):
        return fit
    draws = draws_from_guide(setup.model, fit.guide, *setup.args, num_samples=s.draws, **setup.kwargs)
    idata = setup.inference_data(draws, {"guide": name})
    row = {"elbo": fit.elbo, "seconds": fit.seconds, "engine": fit.extras.get("engine"),
           "compiled_by": fit.extras.get("compiled_by"), "gradient_evaluations": fit.extras["gradient_evaluations"],
           "khat": guide_khat(fit.guide, draws.log_weights)}
    compared = setup.compared_values(draws)
    row.update(trust_row(declared(fit.guide).q_density, compared, draws.log_weights))
    if "density_evaluations" in fit.extras:
        row["density_evaluations"] = fit.extras["density_evaluations"]
    if fit.extras.get("fallback"):
        row["fallback"] = fit.extras["fallback"]
    if exact is not None:
        row["kl_to_exact"] = kl_of_guide(fit.guide, exact.over_latent_vector(setup.structure))
    row.update(setup.own_metrics(draws, idata))
    if setup.settings.restarts:
        row = _restart_check(setup, rung, compared[0], row)
    if setup.settings.vsbc:
        row = _vsbc_check(setup, rung, row)
    pool = None
    if row["trust"] == "corrected":  # its corrected draws are resampled from a larger pool of the guide's draws
        more = draws_from_guide(setup.model, fit.guide, *setup.args, num_samples=(RESAMPLING_POOL - 1) * s.draws,
                                **setup.kwargs)
        pool = draws.joined(more)
    if not setup.keep_guides:
        fit.guide = None  # fitted in a worker: the guide (its model, perhaps a closure) stays there
    run = GuideRun(fit, draws, idata, compared, row, setup.save(idata, name))
    if pool is not None:
        run.corrected = _corrected_run(setup, name, run, pool)
    return run


def _restart_check(setup: _Setup, rung: Rung, values: torch.Tensor, row: dict) -> dict:
    """``row`` with the spread of ``restarts`` more fits of ``rung`` (:func:`~.trust.restart_spread`), and its verdict
    "no" where they disagree; a restart that fails counts as a disagreement."""
    began, runs = time.perf_counter(), [values]
    for k in range(1, setup.settings.restarts + 1):
        fit = _fit_guide(setup, rung, restart=k)
        if isinstance(fit, (FitDivergedError, ModelError)):
            runs = None
            break
        draws = draws_from_guide(setup.model, fit.guide, *setup.args, num_samples=setup.settings.draws,
                                 **setup.kwargs)
        runs.append(setup.compared_values(draws)[0])
    row = downgraded(row, restart=math.inf if runs is None else restart_spread(runs))
    row["restart_seconds"] = time.perf_counter() - began
    return row


def _vsbc_check(setup: _Setup, rung: Rung, row: dict) -> dict:
    """``row`` with VSBC of ``rung``'s guide on ``vsbc`` data sets the model simulates (:mod:`.vsbc`), its verdict
    "no" where VSBC shows a bias."""
    began = time.perf_counter()
    try:
        result = run_vsbc(setup.model, *setup.args, guide=rung.family, datasets=setup.settings.vsbc,
                          settings=rung.settings(setup.fit), draws=min(setup.settings.draws, 1000),
                          options=rung.guide_options(setup.options), seed=setup.settings.seed,
                          model_kwargs=setup.kwargs, progress=setup.progress)
        row = downgraded(row, vsbc=(result.flagged, min(result.pvalues.values())))
    except (FitDivergedError, ModelError) as err:  # a fit to a simulated data set failed: no calibration shown
        row = downgraded(row, vsbc=([f"a simulated data set ({err})"], 0.0))
    row["vsbc_seconds"] = time.perf_counter() - began
    return row


def _run_auto(setup: _Setup, exact) -> GuideRun | FitDivergedError | ModelError:
    """The row ``auto``: the ladder (:mod:`.auto`) climbed with :func:`_run_guide`, the run of the family it chose,
    named by ``family``, timed from the first rung to the last."""
    try:
        chosen = climb(lambda rung: _run_guide(setup, rung, exact), lambda run: run.row)
    except (FitDivergedError, ModelError) as err:
        return err
    run = chosen.result
    run.row.update(family=chosen.family, trust_reason=f"{chosen.reason}: {run.row['trust_reason']}",
                   seconds=chosen.seconds, auto_tried=chosen.tried,
                   gradient_evaluations=sum(t["gradient_evaluations"] or 0 for t in chosen.tried))
    return run


def _corrected_run(setup: _Setup, name: str, run: GuideRun, pool: Draws) -> GuideRun:
    """The row ``<name>+psis``: as many draws as the guide's row has, resampled by their PSIS-smoothed weights from
    ``pool`` (:data:`~.trust.RESAMPLING_POOL` times as many draws of the guide; from a generator of the seed's own, so
    the other rows' random numbers are untouched)."""
    index = corrected_indices(pool.log_weights, len(run.draws), torch.Generator().manual_seed(setup.settings.seed))
    draws = pool.take(index)
    label = f"{name}+psis"
    idata = setup.inference_data(draws, {"guide": label})
    row = {"seconds": run.row["seconds"], "engine": run.row.get("engine"), "trust": "corrected",
           "trust_reason": f"{name}'s draws resampled by their PSIS weights from {len(pool)} (k-hat "
                           f"{run.row['khat']:.2f})",
           "corrects": name, **setup.own_metrics(draws, idata)}
    fit = FitResult(guide=None, losses=np.zeros(0), seconds=run.fit.seconds, elbo=math.nan,
                    extras={"corrects": name}, model=run.fit.model, args=run.fit.args, kwargs=run.fit.kwargs)
    return GuideRun(fit, draws, idata, setup.compared_values(draws), row, setup.save(idata, label))


def _objective_for(guide, objective: str) -> str:
    """The comparison's objective for ``guide``: the ELBO for those that take no other (the mixture)."""
    return "elbo" if declared(guide).discrete_choice else objective


def _run_reference(setup: _Setup, reference, budget: NUTSBudget) -> ReferenceRun:
    """The reference draws, their checks and the metrics that need no other fit."""
    s = setup.settings
    pyro.set_rng_seed(s.seed)
    start = time.perf_counter()
    structure = setup.structure
    given = None
    if s.reference == "nuts":
        run = run_nuts(setup.model, *setup.args, budget=budget, seed=s.seed, progress=setup.progress,
                       desc=f"compare {s.name}/reference NUTS", **setup.kwargs)
        latents, chains = run.latents, run.chains
        stats = {"method": "nuts", "chains": run.chains, "warmup": budget.warmup, "samples": run.draws,
                 "rounds": run.rounds, "seconds": run.seconds, "divergences": sum(run.divergences),
                 "gradient_evaluations": run.gradient_evaluations, "compiled_by": run.compiled_by,
                 "target_accept": run.target_accept, "problems": run.problems}
    elif s.reference == "exact":
        latents, chains = exact_latents(reference.posterior, structure, s.draws), 1
        stats = {"method": "exact"}
        if reference.log_evidence is not None:
            stats["log_evidence"] = reference.log_evidence
    else:
        given, chains = given_draws(reference, structure)
        if setup.reference_latents is not None:  # the draws name other parameters than the model samples
            latents = setup.reference_latents(dict(given))
        else:
            latents = given if set(structure.latent) <= set(given) else None
        stats = {"method": "draws", "chains": chains}
    draws = None
    if latents is not None:
        draws = draws_from_latents(setup.model, latents, *setup.args, chains=chains, **setup.kwargs)
        values, labels = setup.compared_values(draws)
    else:
        values, labels = torch.zeros(len(next(iter(given.values()))), 0, dtype=torch.float64), []
    if given is not None and setup.quantities is None:
        # the reference is what the draws name, as they name it (not what the model computes from them)
        values, labels = flatten({k: v for k, v in given.items() if setup.var_names is None or k in setup.var_names},
                                 setup.coords, setup.dims)
    stats["draws"] = len(values)
    if draws is not None:
        idata = setup.inference_data(draws, {"reference": s.reference})
    else:
        idata = az.from_dict(posterior={name: value.reshape((chains, -1) + value.shape[1:]).numpy()
                                        for name, value in given.items()}, attrs={"reference": s.reference})
    if chains > 1 or s.reference == "nuts":  # MCMC draws (one NUTS chain: ESS, and a warning for no R-hat)
        _check_chains(setup, stats, values, labels, chains, draws, budget if s.reference == "nuts" else None)
    ess = stats.get("ess_bulk_min", len(values))
    # Monte Carlo sd of one mean error (and of one relative sd error, for Gaussian draws): the
    # guide's S independent draws against the reference's effective sample size
    stats["mean_err_noise"] = float(np.sqrt(1 / s.draws + 1 / ess))
    stats["sd_err_noise"] = float(np.sqrt(0.5 / s.draws + 0.5 / ess))
    if draws is not None:
        stats.update(setup.own_metrics(draws, idata))
    stats.setdefault("seconds", time.perf_counter() - start)
    return ReferenceRun(s.reference, draws, idata, (values, labels), stats, setup.save(idata, "reference"))


def _run_nuts_row(setup: _Setup, budget: NUTSBudget) -> GuideRun:
    """NUTS on a budget, measured as a guide is (what a user would otherwise run): row ``nuts``."""
    s = setup.settings
    pyro.set_rng_seed(s.seed)
    run = run_nuts(setup.model, *setup.args, budget=budget, seed=s.seed, progress=setup.progress,
                   desc=f"compare {s.name}/nuts", **setup.kwargs)
    draws = draws_from_latents(setup.model, run.latents, *setup.args, chains=run.chains, **setup.kwargs)
    idata = setup.inference_data(draws, {"sampler": "nuts"})
    values, labels = setup.compared_values(draws)
    row = {"seconds": run.seconds, "engine": "nuts", "gradient_evaluations": run.gradient_evaluations,
           "divergences": sum(run.divergences), "chains": run.chains, "warmup": budget.warmup,
           "samples": run.draws}
    if run.chains > 1 and labels:
        data = az.from_dict(posterior={"compared": values.reshape(run.chains, -1, values.shape[1]).numpy()})
        row.update({f"nuts_{k}": v for k, v in convergence(data).items()})
    row.update(setup.own_metrics(draws, idata))
    fit = FitResult(guide=None, losses=np.zeros(0), seconds=run.seconds, elbo=math.nan,
                    extras={"engine": "nuts", "gradient_evaluations": run.gradient_evaluations})
    return GuideRun(fit, draws, idata, (values, labels), row, setup.save(idata, "nuts"))


def _check_chains(setup: _Setup, stats: dict, values: torch.Tensor, labels: list[str], chains: int,
                  draws: Draws | None, budget: NUTSBudget | None = None) -> None:
    """R-hat and ESS of a multi-chain reference on the compared values, into ``stats``; warn when poor (with what
    to try, for NUTS run on ``budget``)."""
    if not labels:
        return
    data = az.from_dict(posterior={"compared": values.reshape(chains, -1, values.shape[1]).numpy()})
    stats.update(convergence(data))
    method = "NUTS" if stats["method"] == "nuts" else "given"
    divergences = stats.get("divergences", 0)
    advice = advice_for(failed_checks(stats, divergences), budget) if budget is not None else ""
    stats["converged"] = check_convergence(stats, _describe(labels, setup.quantities is not None), divergences,
                                           method, advice)
    if setup.quantities is not None and draws is not None:
        sites = az.from_dict(posterior={k: v.reshape((chains, -1) + v.shape[1:]).numpy()
                                        for k, v in draws.sites().items()})
        stats["rhat_max_sites"] = convergence(sites)["rhat_max"]
        if not stats["rhat_max_sites"] < 1.01:
            print(f"WARNING: R-hat of the model's sites is {stats['rhat_max_sites']:.3f}: the chains sit in different "
                  "modes (a network's weights are symmetric under permutations of its hidden units, say); the "
                  "comparison uses the quantities given, which such symmetries leave unchanged.",
                  file=sys.stderr, flush=True)


def distance_split(reference: torch.Tensor, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two disjoint random halves of the reference draws, n each (MCMC draws are autocorrelated in order)."""
    order = torch.randperm(len(reference), generator=torch.Generator().manual_seed(seed))
    return reference[order[:n]], reference[order[n:2 * n]]


def _shared(compared: tuple[torch.Tensor, list[str]], labels: list[str]) -> torch.Tensor:
    values, own = compared
    index = {label: i for i, label in enumerate(own)}
    return values[:, [index[label] for label in labels]]


def distances(compared: tuple[torch.Tensor, list[str]], reference: tuple[torch.Tensor, list[str]],
              labels: list[str], seed: int) -> dict:
    """How far a fit's compared values are from the reference's, on the shared ``labels``."""
    values, ref_values = _shared(compared, labels), _shared(reference, labels)
    mean_err, sd_err = moment_errors(values, ref_values)
    row = {"mean_err_sd": float(mean_err.max()), "sd_err_sd": float(sd_err.max()),
           "mean_err_sd_each": dict(zip(labels, mean_err.tolist())),
           "sd_err_sd_each": dict(zip(labels, sd_err.tolist()))}
    n = min(DISTANCE_DRAWS, len(ref_values) // 2, len(values))
    half, _ = distance_split(ref_values, n, seed)
    row["w2"] = wasserstein2(values[:n], half, ref_values)
    row["mmd2"] = mmd2(values[:n], half, ref_values)
    return row


# --- the function --------------------------------------------------------------------------------


def _reference_kind(reference) -> tuple[str, object]:
    if reference is None or reference == "none":
        return "none", None
    if isinstance(reference, str):
        if reference != "nuts":
            raise InputError(f"reference {reference!r}: expected 'nuts', None, draws (a dict or an InferenceData) "
                             "or an exact posterior")
        return "nuts", None
    if isinstance(reference, Exact):
        return "exact", reference
    if isinstance(reference, torch.distributions.Distribution):
        return "exact", Exact(reference)
    if isinstance(reference, dict) and reference and all(
            isinstance(v, torch.distributions.Distribution) for v in reference.values()):
        return "exact", Exact(reference)
    return "draws", reference


def compare(
    model: Callable,
    *args,
    guides: Sequence[str] | None = None,
    reference="nuts",
    draws: int = 2000,
    var_names: Sequence[str] | None = None,
    settings: FitSettings | None = None,
    options: GuideOptions | None = None,
    nuts: NUTSBudget | dict | None = None,
    seed: int = 0,
    jobs: int = 1,
    progress: bool = False,
    out: str | Path | None = None,
    name: str = "model",
    quantities: Callable[[Draws], dict[str, torch.Tensor]] | None = None,
    metrics: Callable[[Draws], dict] | None = None,
    coords: dict | None = None,
    dims: dict | None = None,
    constant_data: dict | None = None,
    model_kwargs: dict | None = None,
    reference_latents: Callable[[dict], dict] | None = None,
    nuts_row: NUTSBudget | dict | None = None,
    restarts: int = 0,
    vsbc: int = 0,
    **fit_options,
) -> Comparison:
    """Fit every guide to ``model(*args, **model_kwargs)`` and measure each against ``reference``.

    Args:
        guides: names from the registry ``deepprob.guides.GUIDES`` (default: ``DEFAULT_GUIDES``, the Gaussian
            families and the mixture).
        reference: ``"nuts"``, ``None``, draws ({site or ``name[i]``: array (draws, ...) or
            (chains, draws, ...)}, or an InferenceData), or an exact posterior (a torch distribution over
            the latent vector, ``{site: distribution}``, or :class:`~deepprob.inference.evaluation.references.Exact`).
        draws: draws from each guide (and from an exact reference).
        var_names: the sites compared and stored (default: every latent and deterministic site).
        settings, fit_options: the SVI fits' settings (:class:`~deepprob.inference.fitting.settings.FitSettings`,
            or any of its fields as keywords: ``steps``, ``lr``, ``num_particles``, ``engine``, ``objective``;
            the ELBO for the mixture); by default :func:`~deepprob.inference.fitting.settings.compare_settings`:
            10,000 steps of 4 particles, ``lr`` by the guides' start and the steps (smaller steps from the
            Laplace start, which is near the optimum already: 0.005 over 10,000 steps, up to 0.02 over fewer).
        options: the guides' options (:class:`~deepprob.guides.registry.GuideOptions`); by default they start
            at the Laplace approximation (``start="laplace"``).
        nuts: NUTS's budget (:class:`~deepprob.inference.evaluation.references.NUTSBudget` or its fields as a dict).
        seed: every fit starts from it.
        jobs: worker processes fitting side by side (0: one per CPU core; forks, on Linux and the CPU).
        out: a folder where each fit's NetCDF is written (``<name>_<guide>.nc``, ``<name>_reference.nc``).
        name: the model's name in reports and file names.
        quantities: ``draws -> {name: (S, ...)}``: functions of the draws compared instead of the sites
            (a network's f(x) at held-out inputs, whose weights are symmetric).
        metrics: ``draws -> dict``: more numbers for each row (predictive accuracy, say).
        coords, dims, constant_data: for the InferenceData (labels of vector sites' dims, the inputs).
        reference_latents: ``params -> latent sites``, where reference draws name other parameters than
            the model samples (a transformed parameter, eight schools' ``theta``, for its ``theta_trans``):
            then the reference too is put through the model (its PSIS-LOO, its deterministic sites).
        nuts_row: also run NUTS on this budget, one more row (``nuts``), measured as the guides are, with
            its time and gradient evaluations: what a user would run instead.
        restarts: fit each guide this many more times, from starts drawn from the Laplace Gaussian and other seeds,
            and trust none whose fits disagree (``restart_spread`` > 0.1 sds: stopped early, or a mode found by
            chance); costs that many more fits. Whatever ``restarts``, each trusted guide is checked against the
            other trusted families: one far from most of them is not trusted (``family_gaps``, free).
        vsbc: for a model that can simulate its data, VSBC of each guide (:mod:`.vsbc`) on this many simulated data
            sets, and trust none that it shows biased (``vsbc_flagged``); costs that many more fits a guide.

    ``guides`` may name ``"auto"``: a row of its own, the ladder (``AUTO_LADDER``) climbed
    until a family is trusted (:mod:`.auto`); its ``family`` column names the one it chose, ``auto_tried`` every
    rung, ``seconds`` the whole climb.

    Raises:
        InputError: an unknown guide, a bad setting, a discrete latent site, reference draws that name
            sites the model does not record or have the wrong shape.
    """
    names = _guide_names(guides)
    options = options or GuideOptions()
    if not (isinstance(restarts, int) and restarts >= 0):
        raise InputError(f"--restarts {restarts}: expected 0 (no restart check) or a number of more fits of each guide")
    if not (isinstance(vsbc, int) and (vsbc == 0 or vsbc >= 10)):
        raise InputError(f"--vsbc {vsbc}: expected 0 (no VSBC) or at least 10 simulated data sets")
    fit = compare_settings(options.start, settings, **fit_options).replace(progress=progress)
    if draws < 20:
        raise InputError(f"--draws {draws}: expected at least 20 (PSIS fits a Pareto tail to the largest weights, "
                         "and LOO needs draws too)")
    kwargs = dict(model_kwargs or {})
    # the model run once, here, before any fit and any worker: a model that cannot be used fails in seconds
    structure = ModelStructure.of(model, *args, **kwargs).check()
    if structure.batching_note:
        report_once(structure.batching_note)
    method, reference = _reference_kind(reference)
    budget = NUTSBudget(**nuts) if isinstance(nuts, dict) else nuts or NUTSBudget()
    nuts_row = NUTSBudget(**nuts_row) if isinstance(nuts_row, dict) else nuts_row
    # the reference first (the longest task), NUTS's row next
    tasks = ([None] if method != "none" else []) + (["nuts"] if nuts_row is not None else []) + names
    jobs = resolve_jobs(jobs, len(tasks), _device_of(args, kwargs))
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
    asked = Settings(name=name, guides=names, reference=method, draws=draws, steps=fit.steps, lr=fit.lr,
                     num_particles=fit.num_particles, engine=fit.engine, seed=seed, start=options.start,
                     objective=fit.objective, jobs=jobs,
                     observations=sum(math.prod(site.shape) for site in structure.observed.values()),
                     batching=structure.batching, batching_note=structure.batching_note, restarts=restarts,
                     vsbc=vsbc)
    setup = _Setup(model, args, kwargs, structure, asked, options,
                   None if var_names is None else list(var_names), quantities, metrics, coords, dims, constant_data,
                   None if out is None else Path(out), keep_guides=jobs <= 1, progress=progress, fit=fit,
                   reference_latents=reference_latents)
    if jobs > 1 and will_compile(fit.engine, fit.steps):
        _prepare_inductor_for_workers()
    exact = reference if method == "exact" else None

    def run(task):
        if task is None:
            return _run_reference(setup, reference, budget)
        if task == "nuts":
            return _run_nuts_row(setup, nuts_row)
        return _run_guide(setup, Rung(task), exact)

    results = map_forked(run, tasks, jobs)
    ref_run = results.pop(0) if method != "none" else None
    return _assemble(setup, (["nuts"] if nuts_row is not None else []) + names, ref_run, results)


def _guide_names(guides: Sequence[str] | None) -> list[str]:
    if guides is None:
        return list(DEFAULT_GUIDES)
    try:
        return checked_guides(guides, auto=True)
    except InputError as err:
        raise InputError(f"guides {','.join(guides)!r}: {err}") from None


def _prepare_inductor_for_workers() -> None:
    """Where the steps compile with Inductor (no C compiler): import it once here, not in every worker."""
    from deepprob.compiler import c_compiler, prepare_inductor

    if c_compiler() is None:
        prepare_inductor()


def _assemble(setup: _Setup, names: list[str], ref_run: ReferenceRun | None, results: list) -> Comparison:
    """The guides' runs and the reference's as one :class:`Comparison`: the distances on the shared labels."""
    seed = setup.settings.seed
    runs, failed, rows = {}, {}, {}
    shared = _shared_labels(ref_run, [r for r in results if isinstance(r, GuideRun)])
    for guide_name, result in zip(names, results):
        if isinstance(result, (FitDivergedError, ModelError)):
            print(f"WARNING: guide {guide_name} failed: {result}", file=sys.stderr, flush=True)
            failed[guide_name] = str(result)
            rows[guide_name] = {"error": str(result)}
            continue
        if result.row.get("fallback"):
            report_once(result.row["fallback"])  # said once, here: the workers say nothing
        for label, run in [(guide_name, result)] + ([(f"{guide_name}+psis", result.corrected)] if result.corrected
                                                     else []):
            runs[label] = run
            rows[label] = dict(run.row)
            if ref_run is not None and shared:
                rows[label].update(distances(run.compared, ref_run.compared, shared, seed))
    _check_families(runs, rows)
    if ref_run is not None and shared:
        n = min(DISTANCE_DRAWS, len(ref_run.compared[0]) // 2)
        ref_values = _shared(ref_run.compared, shared)
        ref_run.stats["w2_floor"] = wasserstein2(*distance_split(ref_values, n, seed), ref_values)
        ref_run.stats["compared"] = shared
    setup.settings.compared_on = _describe(shared, setup.quantities is not None)
    files = [p for p in [r.path for r in runs.values()] + [ref_run.path if ref_run else None] if p is not None]
    return Comparison(runs, failed, ref_run, rows, setup.settings, files)


def _check_families(runs: dict[str, GuideRun], rows: dict[str, dict]) -> None:
    """The trusted guides' moments against each other's (:func:`~.trust.outvoted`): a guide far from most of the
    others is not trusted, and its corrected row goes. ``auto`` votes as the family it chose, unless that family has
    a row of its own (then it follows that row)."""
    trusted = [label for label, row in rows.items()
               if row.get("trust") in ("yes", "corrected") and "corrects" not in row]
    voters, follows = {}, {}
    for label in trusted:
        family = rows[label].get("family", label)
        if family != label and family in trusted:
            follows[label] = family
        else:  # a corrected guide stands by its corrected draws
            voters[label] = runs[f"{label}+psis" if rows[label]["trust"] == "corrected" else label].compared[0]
    far = outvoted(voters) if len(voters) > 1 else {}
    for label in trusted:
        against = far.get(follows.get(label, label))
        if not against:
            continue
        rows[label] = downgraded(rows[label], far=against)
        if f"{label}+psis" in rows:
            del rows[f"{label}+psis"], runs[f"{label}+psis"]
            runs[label].corrected = None


def _shared_labels(reference: ReferenceRun | None, runs: list[GuideRun]) -> list[str]:
    if reference is None or not runs:
        return []
    ref_labels = set(reference.compared[1])
    return [label for label in runs[0].compared[1] if label in ref_labels]


def _describe(labels: list[str], quantities: bool) -> str:
    if not labels:
        return ""
    sites = list(dict.fromkeys(label.split("[")[0] for label in labels))
    return ("the quantities " if quantities else "") + ", ".join(sites) + f" ({len(labels)} scalars)"


def _device_of(args, kwargs) -> torch.device:
    like = first_float(args, kwargs)
    return like.device if like is not None else torch.device("cpu")
