"""Fit one model with several guides and a reference posterior; compare them side by side.

Every guide (or those of --guides) is fitted on the same data with the same seed, as is the
reference: the exact conjugate posterior for linreg, NUTS for logreg and bnn (--reference nuts; R-hat
and ESS are checked, with a loud warning on stderr when they fail). Each fit is stored as ArviZ
InferenceData (NetCDF under --out). The table reports, per guide:

- ELBO and fit time;
- distance to the reference: KL(q || exact) in closed form (linreg; Monte Carlo for the mixture),
  the worst error of a posterior mean and of a posterior sd in units of the reference sd, and the
  2-Wasserstein distance of the draws in reference sds (with the reference's own noise floor);
- PSIS k-hat of the importance weights log p(y, z) - log q(z), z ~ q (Yao et al. 2018): below 0.5
  q is close to the posterior, 0.5-0.7 usable, above 0.7 q misses posterior mass (too narrow);
- PSIS-LOO elpd, and predictive accuracy and log-loss (classification), the Bayesian predictive at
  the far point (logreg).

The guides and the reference are fitted side by side in --jobs worker processes (forks of this one; by
default one per CPU core), each from the run's seed, so the numbers are the same for any --jobs.

The guides use each example's SVI settings, except --steps 2000 for bnn (to keep the default run to a
few minutes on two CPU cores, NUTS included).

The bnn is compared in function space, through the logits f(x) at the held-out inputs: its weights
are symmetric under permutations and sign flips of the hidden units, so weight-space moments mean
nothing across modes. Figures: a forest plot of every fit on one axis, a pair plot of each guide over
the reference, the ELBO traces, and the decision surfaces (2-D classification).

    deepprob compare linreg
    deepprob compare logreg --reference nuts --json
    deepprob compare bnn --guides meanfield,fullrank --chains 4 --samples 500
    deepprob compare logreg --data my.csv --target label --guides laplace,fullrank
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyro
import torch

from deepprob.c_step import c_compiler
from deepprob.compiling import prepare_inductor
from deepprob.errors import FitDivergedError, InputError
from deepprob.examples.common import fit_guide, say
from deepprob.examples.options import (
    add_guide_arguments,
    add_run_arguments,
    add_svi_arguments,
    non_negative_int,
    positive_int,
)
from deepprob.guides import GUIDES
from deepprob.inference.arviz_data import (
    Draws,
    Problem,
    az,
    draws_from_guide,
    draws_from_latents,
    likelihood_at,
    predictive_mean,
    save_inference_data,
    summary_text,
    to_inference_data,
)
from deepprob.inference.diagnostics import loo, mmd2, moment_errors, predictive_metrics, psis_khat, wasserstein2
from deepprob.inference.kl import kl_to_reference
from deepprob.inference.reference import check_convergence, convergence, exact_latents, run_nuts
from deepprob.inference.svi import will_compile
from deepprob.plots import decision_surface, grid_2d, new_figure, save
from deepprob.runtime import map_forked, resolve_jobs

MODELS = {
    "linreg": ("deepprob.examples.linreg", "Bayesian linear regression (reference: exact posterior)"),
    "logreg": ("deepprob.examples.logreg", "Bayesian logistic regression (reference: NUTS)"),
    "bnn": ("deepprob.examples.bnn", "Bayesian neural network (reference: NUTS, compared on f(x))"),
}

# Defaults per model: the reference, NUTS's budget, and SVI settings that differ from the example's.
# The bnn's NUTS budget is what keeps `compare bnn` within a few minutes on two CPU cores: its trees
# are deep (hundreds of gradient steps a draw) and its chains cannot mix between symmetric modes anyway.
REFERENCE = {"linreg": "exact", "logreg": "nuts", "bnn": "nuts"}
NUTS_BUDGET = {
    "linreg": {"chains": 4, "warmup": 500, "samples": 500, "max_tree_depth": 10},
    "logreg": {"chains": 4, "warmup": 500, "samples": 500, "max_tree_depth": 10},
    "bnn": {"chains": 2, "warmup": 200, "samples": 200, "max_tree_depth": 8},
}
# bnn: 2000 steps rather than 3000 keep five guides and NUTS within a few minutes.
SVI_OVERRIDES = {"bnn": {"steps": 2000}}

FOREST_POINTS = 8  # function space: held-out points shown in the forest plot
PAIR_POINTS = 3    # ... and in the pair plots
DISTANCE_DRAWS = 1000  # draws per sample for W2 and MMD (W2 solves an assignment problem of this size)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One sub-command per model, each with that example's own data, model and SVI options."""
    sub = parser.add_subparsers(dest="model", metavar="<model>", required=True)
    for name, (module_name, text) in MODELS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=text, formatter_class=argparse.RawDescriptionHelpFormatter,
                           description=f"Every guide against a reference posterior on the {name} model. "
                           f"The model: {module.__doc__.splitlines()[0]}")
        add_compare_arguments(p, name)
        add_guide_arguments(p)
        _hide_single_guide_option(p)
        add_svi_arguments(p, **{**module.SVI_DEFAULTS, **SVI_OVERRIDES.get(name, {})})
        module.add_problem_arguments(p)
        _add_run_arguments_without_defaults(p)


def add_compare_arguments(parser: argparse.ArgumentParser, model: str) -> None:
    group = parser.add_argument_group("comparison")
    group.add_argument("--guides", default=",".join(GUIDES),
                       help="comma-separated guides to fit (default: %(default)s)")
    group.add_argument("--reference", choices=["exact", "nuts", "none"], default=REFERENCE[model],
                       help="reference posterior: exact (linreg only), NUTS, or none (no distances)"
                       " (default: %(default)s)")
    group.add_argument("--draws", type=positive_int, default=2000,
                       help="draws from each guide (PSIS k-hat, LOO, moments) and from the exact posterior"
                       " (default: %(default)s)")
    budget = NUTS_BUDGET[model]
    group.add_argument("--jobs", type=non_negative_int, default=0,
                       help="processes fitting the guides and the reference side by side, each with --threads "
                       "torch threads; 0: one per CPU core. Every fit starts from the run's seed, so the results "
                       "do not depend on it; 1 on a GPU (default: %(default)s)")
    nuts = parser.add_argument_group("NUTS reference")
    nuts.add_argument("--chains", type=positive_int, default=budget["chains"],
                      help="chains, run one after another (default: %(default)s)")
    nuts.add_argument("--warmup", type=positive_int, default=budget["warmup"],
                      help="adaptation steps per chain (default: %(default)s)")
    nuts.add_argument("--samples", type=positive_int, default=budget["samples"],
                      help="kept draws per chain (default: %(default)s)")
    nuts.add_argument("--max-tree-depth", type=positive_int, default=budget["max_tree_depth"],
                      help="NUTS tree depth cap: at most 2^depth gradient steps a draw (default: %(default)s)")


def _hide_single_guide_option(parser: argparse.ArgumentParser) -> None:
    # the examples' --guide picks one family; here --guides picks several, and --guide is refused
    action = parser._option_string_actions["--guide"]
    action.help, action.default = argparse.SUPPRESS, None


def _add_run_arguments_without_defaults(parser: argparse.ArgumentParser) -> None:
    # The CLI puts --seed/--json/... on `compare` itself; a model's sub-parser needs them too, so that
    # `compare linreg --json` parses, but without defaults, or `compare --json linreg` would lose --json.
    known = set(parser._option_string_actions)
    add_run_arguments(parser)
    for option, action in parser._option_string_actions.items():
        if option not in known:
            action.default = argparse.SUPPRESS
            action.help = action.help.replace(" (default: %(default)s)", "")


def parse_guides(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in GUIDES]
    if unknown or not names:
        raise InputError(f"--guides {text!r}: expected comma-separated names from {', '.join(GUIDES)}"
                         + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
    return list(dict.fromkeys(names))


# --- what is compared ----------------------------------------------------------------------------


def compared_values(problem: Problem, draws: Draws) -> tuple[torch.Tensor, list[str]]:
    """The quantities on which fits are compared, (S, P), and their labels.

    The posterior sites ``problem.var_names`` flattened (``weight[x1]``, ...), or in function space the
    model's f(x) (logit or mean) at the evaluation inputs (``f[0]``, ...).
    """
    if problem.function_space:
        f = likelihood_at(problem.model, draws.latents, problem.evaluation[0], statistic="location")
        return f.double(), [f"f[{i}]" for i in range(f.shape[1])]
    sites, values, labels = draws.sites(), [], []
    for name in problem.var_names:
        value = sites[name].reshape(len(draws), -1).double()
        values.append(value)
        dims = problem.dims.get(name, [])
        names = [str(label) for label in problem.coords[dims[0]]] if len(dims) == 1 else range(value.shape[1])
        labels += [f"{name}[{label}]" for label in names] if value.shape[1] > 1 or dims else [name]
    return torch.cat(values, 1), labels


def plotted_data(problem: Problem, idata, values: torch.Tensor, chains: int, points: torch.Tensor | None = None):
    """What the forest and pair plots show: the posterior sites, or f(x) at the held-out ``points``
    (indices; default all)."""
    if not problem.function_space:
        return idata, problem.var_names
    points = torch.arange(values.shape[1]) if points is None else points.cpu()
    f = values[:, points].cpu().numpy()
    data = az.from_dict(posterior={"f": f.reshape(chains, -1, f.shape[-1])},
                        coords={"held_out_point": points.numpy()}, dims={"f": ["held_out_point"]})
    return data, ["f"]


def uncertain_points(values: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k columns of ``values`` (S, P) with the largest sd, in order: where fits differ most."""
    return torch.argsort(values.std(0), descending=True)[:k].sort().values


# --- fitting -------------------------------------------------------------------------------------


@dataclass
class GuideRun:
    """What one guide's fit leaves for the comparison (the fitted guide itself stays where it was fitted)."""

    losses: np.ndarray   # the loss at every step
    draws: Draws
    idata: az.InferenceData
    compared: tuple[torch.Tensor, list[str]]  # compared_values of the draws
    row: dict            # its line of the table, less the distances to the reference
    path: Path           # its NetCDF file


@dataclass
class ReferenceRun:
    draws: Draws
    stats: dict          # method, time, convergence, reference-free metrics
    idata: az.InferenceData
    compared: tuple[torch.Tensor, list[str]]
    path: Path


def run_guide(problem: Problem, args: argparse.Namespace, name: str, progress: bool) -> GuideRun | FitDivergedError:
    """Fit guide ``name`` from the seed of the run, draw from it, measure what needs no reference and save
    its draws (results do not depend on the order of the guides, nor on the process that runs them)."""
    pyro.set_rng_seed(args.seed)
    options = argparse.Namespace(**{**vars(args), "guide": name, "quiet": not progress})
    try:
        fit = fit_guide(problem.model, options, *problem.fit_args, init_loc_fn=problem.init_loc_fn,
                        desc=f"compare {problem.name}/{name}")
    except FitDivergedError as err:
        return err
    draws = draws_from_guide(problem.model, fit.guide, *problem.fit_args, args.draws)
    idata = to_inference_data(problem, draws, attrs={"guide": name})
    row = {"elbo": fit.elbo, "seconds": fit.seconds, "engine": fit.extras.get("engine"),
           "khat": psis_khat(draws.log_weights)}
    if problem.exact is not None:  # linreg, whatever the reference: KL to the truth in closed form
        (exact,) = problem.exact.values()
        row["kl_to_exact"] = kl_to_reference(fit.guide.get_posterior(), exact)
    row.update(own_metrics(problem, draws, idata))
    path = save_inference_data(idata, args.out / f"{problem.name}_{name}.nc")
    return GuideRun(fit.losses, draws, idata, compared_values(problem, draws), row, path)


def run_reference(problem: Problem, args: argparse.Namespace) -> ReferenceRun | None:
    """The reference draws (none with ``--reference none``), their checks and metrics, saved."""
    pyro.set_rng_seed(args.seed)
    start = time.perf_counter()
    if args.reference == "none":
        return None
    if args.reference == "exact":
        if problem.exact is None:
            raise InputError(f"--reference exact: {problem.name} has no closed-form posterior; use nuts or none")
        draws = draws_from_latents(problem.model, exact_latents(problem.exact, args.draws), *problem.fit_args)
        stats = {"method": "exact", "draws": len(draws), "seconds": time.perf_counter() - start}
    else:
        run = run_nuts(problem.model, *problem.fit_args, chains=args.chains, warmup=args.warmup,
                       samples=args.samples, seed=args.seed, max_tree_depth=args.max_tree_depth,
                       progress=not args.quiet)
        draws = draws_from_latents(problem.model, run.latents, *problem.fit_args, chains=run.chains)
        stats = {"method": "nuts", "chains": run.chains, "warmup": args.warmup, "samples": args.samples,
                 "draws": len(draws), "seconds": run.seconds, "divergences": sum(run.divergences)}
    idata = to_inference_data(problem, draws, attrs={"reference": args.reference})
    compared = compared_values(problem, draws)
    values = compared[0]
    if args.reference == "nuts":
        check_reference(problem, draws, values, stats, idata)
    n = min(DISTANCE_DRAWS, len(values) // 2)
    stats["w2_floor"] = wasserstein2(*distance_split(values, n, args.seed), values)
    # Monte Carlo sd of one mean error (and of one relative sd error, for Gaussian draws): the
    # guide's S independent draws against the reference's effective sample size
    ess = stats.get("ess_bulk_min", len(draws))
    stats["mean_err_noise"] = float(np.sqrt(1 / args.draws + 1 / ess))
    stats["sd_err_noise"] = float(np.sqrt(0.5 / args.draws + 0.5 / ess))
    stats.update(own_metrics(problem, draws, idata))
    if "log_evidence" in problem.extras:
        stats["log_evidence"] = problem.extras["log_evidence"]
    path = save_inference_data(idata, args.out / f"{problem.name}_reference.nc")
    return ReferenceRun(draws, stats, idata, compared, path)


def check_reference(problem: Problem, draws: Draws, values: torch.Tensor, stats: dict, idata) -> None:
    """R-hat and ESS of the NUTS reference on the compared ``values``, added to ``stats``; warn if poor."""
    data, names = plotted_data(problem, idata, values, draws.chains)
    checks = convergence(data, names)
    stats.update(checks)
    stats["converged"] = check_convergence(checks, "f(x) at the held-out inputs" if problem.function_space
                                           else ", ".join(problem.var_names), stats["divergences"])
    if problem.function_space:
        weights = convergence(idata, problem.var_names)
        stats["rhat_max_weights"] = weights["rhat_max"]
        if not weights["rhat_max"] < 1.01:
            print(f"WARNING: R-hat of the network's weights is {weights['rhat_max']:.3f}: the chains sit in "
                  "different modes, which the weights' symmetries (permuted hidden units, flipped signs) make "
                  "inevitable; the comparison uses f(x), which these symmetries leave unchanged.",
                  file=sys.stderr, flush=True)


# --- metrics -------------------------------------------------------------------------------------


def distance_split(reference: torch.Tensor, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two disjoint random halves of the reference draws, n each (NUTS draws are autocorrelated in order)."""
    order = torch.randperm(len(reference), generator=torch.Generator().manual_seed(seed))
    return reference[order[:n]], reference[order[n:2 * n]]


def own_metrics(problem: Problem, draws: Draws, idata) -> dict:
    """The metrics of one fit (guide or reference) that need no reference: PSIS-LOO, predictive
    accuracy on the evaluation data, the predictive at the far point."""
    loo_result = loo(idata)
    row = {key: loo_result[key] for key in ("elpd_loo", "elpd_loo_se", "loo_khat_max")}
    if problem.evaluation is not None:
        row.update(predictive_metrics(problem.model, draws.latents, problem.evaluation, problem.likelihood))
    if problem.far_point is not None:
        row["far_point"] = float(predictive_mean(problem.model, draws.latents, problem.far_point[1])[0])
    return row


def distances(compared: tuple[torch.Tensor, list[str]], ref_values: torch.Tensor, seed: int) -> dict:
    """How far a fit's ``compared`` values (S, P) and labels are from the reference's values (R, P)."""
    values, labels = compared
    mean_err, sd_err = moment_errors(values, ref_values)
    row = {"mean_err_sd": float(mean_err.max()), "sd_err_sd": float(sd_err.max()),
           "mean_err_sd_each": dict(zip(labels, mean_err.tolist())),
           "sd_err_sd_each": dict(zip(labels, sd_err.tolist()))}
    n = min(DISTANCE_DRAWS, len(ref_values) // 2, len(values))
    half, _ = distance_split(ref_values, n, seed)
    row["w2"] = wasserstein2(values[:n], half, ref_values)
    row["mmd2"] = mmd2(values[:n], half, ref_values)
    return row


# --- the command ---------------------------------------------------------------------------------


def main(args):
    module = importlib.import_module(MODELS[args.model][0])
    if args.guide is not None:
        raise InputError(f"--guide {args.guide}: compare fits several guides; use --guides {args.guide}[,...]")
    names = parse_guides(args.guides)
    if args.draws < 20:
        raise InputError(f"--draws {args.draws}: expected at least 20 (PSIS fits a Pareto tail to the largest "
                         "weights, and LOO needs draws too)")
    if args.reference == "exact" and args.model != "linreg":
        raise InputError(f"--reference exact: only linreg has a closed-form posterior; use nuts or none for "
                         f"{args.model}")
    return compare(module, args, names)


def compare(module, args, names: list[str]) -> dict:
    problem = module.prepare(args)
    # the reference first: the longest task, so that the guides share the other workers meanwhile
    has_reference = args.reference != "none"
    tasks = ([None] if has_reference else []) + names
    jobs = resolve_jobs(args.jobs, len(tasks), args.device)
    if jobs > 1 and will_compile(args.engine, args.steps) and c_compiler() is None:
        prepare_inductor()  # the steps compile with Inductor: import it once here, not in every worker

    def run(task):
        if task is None:
            return run_reference(problem, args)
        return run_guide(problem, args, task, progress=not args.quiet and jobs == 1)

    results = map_forked(run, tasks, jobs)
    reference = results.pop(0) if has_reference else None
    runs, rows = {}, {}
    for name, result in zip(names, results):
        if isinstance(result, FitDivergedError):
            print(f"WARNING: guide {name} failed: {result}", file=sys.stderr, flush=True)
            rows[name] = {"error": str(result)}
        else:
            runs[name] = result
            rows[name] = {**result.row, **(distances(result.compared, reference.compared[0], args.seed)
                                           if reference is not None else {})}
    files = [run.path for run in runs.values()] + ([reference.path] if reference is not None else [])
    files += figures(problem, args, runs, reference)
    ref_stats = reference.stats if reference is not None else {"method": "none"}
    report(problem, args, rows, ref_stats, reference.idata if reference is not None else None)
    return {"model": args.model, "reference": args.reference, "reference_stats": ref_stats, "guides": rows,
            "draws": args.draws, "steps": args.steps, "jobs": jobs, "files": [str(f) for f in files]}


# --- the report ----------------------------------------------------------------------------------

COLUMNS = [  # (key, header, format)
    ("elbo", "ELBO", "{:10.2f}"),
    ("seconds", "fit s", "{:6.1f}"),
    ("kl_to_exact", "KL(q||p)", "{:9.2g}"),
    ("mean_err_sd", "mean err", "{:8.3f}"),
    ("sd_err_sd", "sd err", "{:7.3f}"),
    ("w2", "W2", "{:6.3f}"),
    ("khat", "k-hat", "{:6.2f}"),
    ("elpd_loo", "elpd_loo", "{:9.2f}"),
    ("accuracy", "acc", "{:6.3f}"),
    ("log_loss", "log-loss", "{:8.4f}"),
    ("rmse", "rmse", "{:7.4f}"),
    ("test_loglik", "test ll", "{:7.3f}"),
    ("far_point", "p(far)", "{:6.3f}"),
]


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
        cells = [fmt.format(row[key]).rjust(w) if row.get(key) is not None else "-".rjust(w)
                 for (key, _, fmt), w in zip(columns, widths)]
        lines.append(f"{name:<{name_width}}  " + " ".join(cells))
    return lines


def report(problem, args, rows, ref_stats, ref_idata) -> None:
    ref_name = f"reference ({ref_stats['method']})"
    what = "f(x) at the held-out inputs" if problem.function_space else ", ".join(problem.var_names)
    lines = [f"compare {problem.name}: {len(problem.y)} training points, {args.draws} draws per guide, "
             f"{args.steps} SVI steps, seed {args.seed}; errors in reference sds, on {what}"]
    lines += format_table(rows, (ref_name, ref_stats) if ref_idata is not None else None)
    if "w2_floor" in ref_stats:
        lines.append(f"Monte Carlo noise of one error: about {ref_stats['mean_err_noise']:.3f} (mean), "
                     f"{ref_stats['sd_err_noise']:.3f} (sd); W2 of the reference against itself (two halves): "
                     f"{ref_stats['w2_floor']:.3f}")
    if ref_stats["method"] == "nuts":
        lines.append(f"NUTS: {ref_stats['chains']} chains x {ref_stats['samples']} draws ({ref_stats['warmup']} "
                     f"warmup), {ref_stats['seconds']:.0f} s; R-hat max {ref_stats['rhat_max']:.3f}, ESS bulk min "
                     f"{ref_stats['ess_bulk_min']:.0f}, tail min {ref_stats['ess_tail_min']:.0f}, "
                     f"{ref_stats['divergences']} divergences" + ("" if ref_stats["converged"] else "  NOT CONVERGED"))
    if "log_evidence" in ref_stats:
        lines.append(f"log evidence log p(y) = {ref_stats['log_evidence']:.3f} (ELBO = log p(y) - KL(q || p))")
    lines.append("k-hat: < 0.5 q is close to the posterior; 0.5-0.7 usable with Pareto smoothing; > 0.7 q misses "
                 "posterior mass (too narrow or the wrong shape)")
    if ref_idata is not None:
        lines += [f"az.summary of the reference ({ref_stats['method']}):",
                  summary_text(ref_idata, problem.var_names, mcmc=ref_stats["method"] == "nuts")]
    say(args, *lines)


# --- figures -------------------------------------------------------------------------------------


def figures(problem, args, runs: dict[str, GuideRun], reference: ReferenceRun | None) -> list:
    import matplotlib.pyplot as plt

    paths = []
    fitted = list(runs)
    idatas = {name: run.idata for name, run in runs.items()}
    values = {name: run.compared[0] for name, run in runs.items()}
    chains = dict.fromkeys(fitted, 1)
    if reference is not None:
        idatas["reference"], values["reference"] = reference.idata, reference.compared[0]
        chains["reference"] = reference.draws.chains
    # function space: f at the held-out points where the reference (else the first fit) is least sure
    spread = values["reference" if reference is not None else fitted[0]] if values else None

    def views(k):
        points = uncertain_points(spread, k) if problem.function_space else None
        return {name: plotted_data(problem, idatas[name], values[name], chains[name], points) for name in values}

    # forest: every fit on one axis
    order = (["reference"] if reference is not None else []) + fitted
    if order:
        forest = views(FOREST_POINTS)
        paths.append(forest_plot(problem, args, [_label(name, args) for name in order],
                                 [forest[name] for name in order], standardise=reference is not None))

    # pair plots: each guide over the reference
    if reference is not None:
        pairs = views(PAIR_POINTS)
        for name in fitted:
            paths.append(pair_plot(problem, args, name, pairs))

    # ELBO traces
    if runs:
        fig, axes = new_figure(size=(7, 4.5))
        ax = axes[0, 0]
        tails = []
        for i, (name, run) in enumerate(runs.items()):
            elbo = -run.losses
            window = max(1, len(elbo) // 50)
            smooth = np.convolve(elbo, np.ones(window) / window, mode="valid")
            ax.plot(np.arange(len(smooth)) + window // 2, smooth, color=f"C{i}", lw=1,
                    ls="--" if name == "laplace" else "-",
                    label=f"{name} (final {run.row['elbo']:.1f})" + (", MAP objective" if name == "laplace" else ""))
            tails.append(smooth[len(smooth) // 5:])
        low = min(np.quantile(t, 0.02) for t in tails)
        high = max(np.max(t) for t in tails)
        ax.set_ylim(low - 0.05 * (high - low + 1), high + 0.05 * (high - low + 1))
        ax.set(title=f"{problem.name}: ELBO estimates during the fits (moving average)", xlabel="step",
               ylabel="ELBO")
        ax.legend(fontsize=8)
        paths.append(save(fig, args.out / f"{problem.name}_elbo.png"))

    if problem.likelihood == "bernoulli" and problem.features.shape[1] == 2:
        paths.append(surfaces(problem, args, {name: run.draws for name, run in runs.items()},
                               reference.draws if reference is not None else None))
    plt.close("all")
    return paths


def _label(name: str, args) -> str:
    return f"reference ({args.reference})" if name == "reference" else name


def forest_plot(problem, args, labels, views, standardise: bool):
    """``az.plot_forest`` of every fit on one axis; in reference units (x - ref mean) / ref sd when
    ``standardise`` (the first view is the reference): quantities of very different scales become
    comparable, the reference spans about -2..2 and a guide's offset and width read off directly."""
    datasets, var_names = [v[0] for v in views], views[0][1]
    if standardise:
        ref = datasets[0].posterior[var_names]
        mean, sd = ref.mean(("chain", "draw")), ref.std(("chain", "draw"))
        datasets = [az.InferenceData(posterior=(d.posterior[var_names] - mean) / sd) for d in datasets]
    size = int(sum(np.prod(datasets[0].posterior[v].shape[2:], dtype=int) for v in var_names))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        axes = az.plot_forest(datasets, model_names=labels, var_names=var_names, combined=True, hdi_prob=0.94,
                              figsize=(7, 1.5 + 0.3 * len(labels) * size))
    ax = np.ravel(axes)[0]
    what = "f(x) at held-out points" if problem.function_space else ", ".join(var_names)
    ax.set_title(f"{problem.name}: 94% intervals of {what}" + (" in reference sds" if standardise else ""),
                 fontsize=10)
    if standardise:
        ax.axvline(0, color="k", lw=0.5)
        ax.set_xlabel("(value - reference mean) / reference sd")
    return save(ax.figure, args.out / f"{problem.name}_forest.png")


def pair_plot(problem, args, name, views):
    import matplotlib.lines as mlines

    data_ref, var_names = views["reference"]
    data_q, _ = views[name]
    def thin(data):  # about 600 points a cloud: enough to see a shape, few enough to see through
        sizes = data.posterior.sizes
        return data.isel(draw=slice(None, None, max(1, sizes["draw"] * sizes["chain"] // 600)))

    size = 2.2 * (sum(int(np.prod(data_ref.posterior[v].shape[2:])) for v in var_names))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        axes = az.plot_pair(thin(data_ref), var_names=var_names, kind="scatter", marginals=True,
                            figsize=(size, size), textsize=9, scatter_kwargs={"color": "k", "alpha": 0.3, "s": 4},
                            marginal_kwargs={"color": "k"})
        az.plot_pair(thin(data_q), var_names=var_names, kind="scatter", marginals=True, ax=axes, textsize=9,
                     scatter_kwargs={"color": "C1", "alpha": 0.3, "s": 4}, marginal_kwargs={"color": "C1"})
    fig = np.ravel(axes)[0].figure
    fig.legend(handles=[mlines.Line2D([], [], color="k", marker="o", ls="", label=_label("reference", args)),
                        mlines.Line2D([], [], color="C1", marker="o", ls="", label=name)],
               loc="upper right", fontsize=10)
    return save(fig, args.out / f"{problem.name}_pair_{name}.png")


def surfaces(problem, args, draws, ref_draws):
    """p(y = 1 | x) of the reference and of every guide on one grid, side by side."""
    xx, yy, grid = grid_2d(problem.features, n=80, pad=0.3)
    inputs = problem.to_inputs(grid.to(problem.features))
    panels = ([("reference", ref_draws)] if ref_draws is not None else []) + list(draws.items())
    ncols = min(3, len(panels))
    fig, axes = new_figure(ncols=ncols, nrows=-(-len(panels) // ncols), size=(4.2, 3.6))
    for ax in axes.ravel()[len(panels):]:
        ax.set_axis_off()
    for ax, (name, d) in zip(axes.ravel(), panels):
        latents = {k: v[:500] for k, v in d.latents.items()}
        prob = predictive_mean(problem.model, latents, inputs).cpu()
        decision_surface(ax, xx, yy, prob, problem.features, problem.y, _label(name, args))
    return save(fig, args.out / f"{problem.name}_surfaces.png")
