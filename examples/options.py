"""The command line's options, every example's, in one light module (the CLI contract).

Building a parser imports nothing heavy (no torch, no Pyro): ``deepprob --help`` and ``deepprob <example>
--help`` answer at once, and a bad number or name is refused before the work's imports. Each example's
``main(args)`` lives in its own module, imported only when it runs.
"""

from __future__ import annotations

import argparse

from deepprob.errors import InputError
from deepprob.guides.registry import AUTO_LADDER_TEXT, DEFAULT_GUIDES, GUIDES, GuideOptions, checked_guides
from deepprob.inference.fitting.engines import ENGINES
from deepprob.inference.fitting.settings import COMPARE, COMPARE_EXAMPLES, EXAMPLES, FitSettings, compare_lr

# --- argument types: a bad value is an argparse error, one line, exit status 2 --------------------


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number strictly between 0 and 1, got {text}")
    return value


def layer_sizes(text: str) -> list[int]:
    """'64,64' -> [64, 64]."""
    try:
        sizes = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive layer sizes, e.g. 64,64; got {text!r}")
    return sizes


def guide_name(text: str) -> str:
    return guide_names(text, several=False)[0]


def guide_names(text: str, several: bool = True) -> list[str]:
    """``--guides a,b`` (or ``all``; ``several=False``: ``--guide a``), checked by the registry's one check."""
    names = [name.strip() for name in text.split(",")] if several else [text]
    if several:  # 'all': every guide of the registry, beside any other name ('all,auto')
        names = [one for name in names for one in (GUIDES if name == "all" else [name])]
    try:
        return checked_guides((name for name in names if name), auto=True)
    except InputError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def objective_text(text: str) -> str:
    from deepprob.inference.fitting.objectives import parse_objective

    try:
        return str(parse_objective(text))
    except InputError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("--objective ")) from None


# --- option groups shared by the examples ---------------------------------------------------------


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """--seed, --device, --out, --json, --quiet, --threads: every example has these."""
    group = parser.add_argument_group("run")
    group.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    group.add_argument(
        "--device", default="auto", help="cpu, cuda or cuda:N (default: cuda when available, else cpu)"
    )
    group.add_argument("--out", default=None, help="folder for figures and artefacts (default: runs/<example>)")
    group.add_argument(
        "--json", action="store_true", help="print the run's metrics as one JSON object on the last line"
    )
    group.add_argument("--quiet", action="store_true", help="no progress bars and no text report")
    group.add_argument("--threads", type=non_negative_int, default=1,
                       help="torch CPU threads; the models are small, so one is fastest on a shared CPU "
                       "(0: torch's default, one per core) (default: %(default)s)")


def add_svi_arguments(parser: argparse.ArgumentParser, *, steps: int, lr: float | None,
                      num_particles: int = 1) -> None:
    """--steps, --lr, --num-particles and --engine for examples fitted by SVI (``lr=None``: by the start)."""
    group = parser.add_argument_group("fitting (SVI with Trace_ELBO and Adam)")
    group.add_argument("--steps", type=positive_int, default=steps, help="SVI steps (default: %(default)s)")
    group.add_argument(
        "--lr", type=positive_float, default=lr,
        help="initial Adam learning rate, decayed 10x (default: "
             + (f"{lr})" if lr is not None else "from --start laplace, near the optimum already, 50/steps between "
                "0.005 and 0.02 (0.005 over 10000 steps); 0.02 from --start prior)"))
    group.add_argument(
        "--num-particles", type=positive_int, default=num_particles,
        help="ELBO samples per step (default: %(default)s)",
    )
    group.add_argument(
        "--objective", type=objective_text, default="elbo",
        help="what SVI maximises: elbo, renyi:ALPHA (Renyi's bound, ALPHA >= 0, with --num-particles draws), or "
             "iwae:K (the importance-weighted bound with K draws a step, tighter than the ELBO); the mixture "
             "guide takes the ELBO only (default: %(default)s)")
    group.add_argument(
        "--engine", choices=ENGINES, default="auto",
        help="how the steps run: pyro (Pyro's Trace_ELBO each step), compiled (the same estimator and Adam "
             "compiled into one C function per step on the CPU: ~50-100x faster after a compile of about a "
             "second, cached on disk; Inductor where C does not apply, a GPU say), auto (compiled for fits "
             "of 2000 steps or more) (default: %(default)s)",
    )


def add_guide_arguments(parser: argparse.ArgumentParser, *, default: str | None = "fullrank") -> None:
    """--guide (one family; with ``default=None``, --guides: several), --start and the options of particular
    guides."""
    group = parser.add_argument_group("guide (variational family)")
    if default is not None:
        group.add_argument("--guide", type=guide_name, default=default,
                           help=f"one of {', '.join(GUIDES)}, or auto: the ladder {AUTO_LADDER_TEXT} "
                           "fitted until the trust verdict (no reference needed) trusts one (default: %(default)s)")
    else:
        group.add_argument("--guides", type=guide_names, default=list(DEFAULT_GUIDES),
                           help=f"comma-separated guides to fit, from {', '.join(GUIDES)}, or 'all'; 'auto' is a "
                           f"row of its own: the ladder {AUTO_LADDER_TEXT} fitted until one is trusted "
                           f"(default: {','.join(DEFAULT_GUIDES)})")
        # --guide (one family) is the single examples' option; here it is refused with a pointer
        group.add_argument("--guide", default=None, help=argparse.SUPPRESS)
    group.add_argument(
        "--components", type=positive_int, default=2, help="mixture guide: number of Gaussians (default: 2)"
    )
    group.add_argument("--rank", type=positive_int, default=None, help="lowrank guide: rank (default: about sqrt(D))")
    group.add_argument("--depth", type=positive_int, default=2,
                       help="flow and iaf guides: number of autoregressive transforms (default: %(default)s)")
    group.add_argument("--width", type=positive_int, default=None,
                       help="flow and iaf guides: hidden units of each transform's network (default: Pyro's, 10 D)")
    group.add_argument("--particles", type=positive_int, default=50,
                       help="svgd guide: number of particles (default: %(default)s)")
    group.add_argument("--paths", type=positive_int, default=1,
                       help="pathfinder guide: number of paths; more than one gives their equal-weight mixture "
                       "(multi-path Pathfinder) (default: %(default)s)")
    group.add_argument("--resample", action="store_true",
                       help="pathfinder guide with --paths > 1: importance-resample the mixture's draws (then no "
                       "density, so no k-hat)")
    group.add_argument("--start", choices=["laplace", "prior"], default="laplace",
                       help="where the guides start: laplace (the mode by L-BFGS and the curvature there, SVI "
                       "refining it, each location's steps in units of its sd there), or prior (the prior's median, "
                       "sd 0.1, Pyro's start) (default: %(default)s)")


def guide_options(args: argparse.Namespace, init_loc_fn=None) -> GuideOptions:
    """The registry guides' options from the parsed ``add_guide_arguments``."""
    return GuideOptions(init_loc_fn=init_loc_fn, components=args.components, rank=args.rank, depth=args.depth,
                        width=args.width, particles=args.particles, paths=args.paths, resample=args.resample,
                        start=args.start)


def fit_settings(args: argparse.Namespace, desc: str = "SVI") -> FitSettings:
    """The SVI options of ``add_svi_arguments`` (and ``--start``, ``--quiet``) as the one settings object of the
    fits they ask for; ``--lr`` not given: compare's rule of the start and the steps
    (:func:`~deepprob.inference.fitting.settings.compare_lr`)."""
    lr = args.lr if args.lr is not None else compare_lr(args.start, args.steps)
    return FitSettings(steps=args.steps, lr=lr, num_particles=args.num_particles, objective=args.objective,
                       engine=args.engine, progress=not args.quiet, desc=desc)


# full batch up to this many rows, minibatches of DEFAULT_BATCH_SIZE above (bench/scale.py: a full-batch
# step over 50,000 rows already costs several minibatch steps, and a minibatch fit of a few thousand steps
# is within a few percent of a posterior sd of the full-batch one)
FULL_BATCH_ROWS = 50_000
DEFAULT_BATCH_SIZE = 1024


def resolve_batch_size(requested: int | str | None, rows: int) -> int | None:
    """The rows a step sees for ``--batch-size`` (``"auto"``/None, ``"full"``, or a number) and N = ``rows``:
    None for the full batch."""
    if requested in (None, "auto"):
        return None if rows <= FULL_BATCH_ROWS else DEFAULT_BATCH_SIZE
    if requested == "full":
        return None
    return None if int(requested) >= rows else int(requested)


def batch_size_text(text: str) -> int | str:
    if text in ("auto", "full"):
        return text
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected auto, full or a positive number of rows, got {text!r}") from None


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """--data, --target, --features: fit a user's CSV instead of the embedded data; --batch-size."""
    group = parser.add_argument_group("own data")
    group.add_argument("--data", default=None, help="a CSV file with a header row")
    group.add_argument("--target", default=None, help="the CSV column to predict")
    group.add_argument(
        "--features", default=None, help="comma-separated feature columns (default: all other numeric columns)"
    )
    group.add_argument(
        "--batch-size", type=batch_size_text, default="auto",
        help="rows of the data each SVI step sees: B (the data plate subsamples B rows, drawn afresh every step, "
             "and scales their log-likelihood by N/B), full, or auto: full batch up to "
             f"{FULL_BATCH_ROWS:,} rows, {DEFAULT_BATCH_SIZE} above (default: %(default)s). The report, the "
             "ELBO and the references always use all the rows")


# --- the regression examples ----------------------------------------------------------------------

DEFAULT_GUIDE = {"linreg": "fullrank", "logreg": "laplace", "bnn": "fullrank"}


def add_linreg_problem(parser: argparse.ArgumentParser) -> None:
    """The data and the model of linear regression."""
    add_data_arguments(parser)
    group = parser.add_argument_group("model")
    group.add_argument("--basis", default=None,
                       help="poly:K (one input column) or identity (default: poly:3 on the embedded data, "
                       "identity = the features plus an intercept with --data)")
    group.add_argument("--alpha", type=positive_float, default=1.0,
                       help="prior precision of the weights (default: %(default)s)")
    group.add_argument("--beta", type=positive_float, default=None,
                       help="noise precision, taken as known (default: 1 / the residual variance of least squares "
                       "on the basis, the precision the data suggest)")
    group.add_argument("--num-points", type=positive_int, default=40,
                       help="embedded data: number of points (default: %(default)s)")


def add_logreg_problem(parser: argparse.ArgumentParser) -> None:
    """The data and the model of logistic regression."""
    add_data_arguments(parser)
    group = parser.add_argument_group("model")
    group.add_argument("--alpha", type=positive_float, default=1.0,
                       help="prior precision of the weights (default: %(default)s)")
    group.add_argument("--num-points", type=positive_int, default=2000,
                       help="embedded data: number of points (default: %(default)s)")
    group.add_argument("--far-point", default=None,
                       help="comma-separated x* (one number per feature) far from the data, where the predictives "
                       "are compared (default: the data's mean moved 100 training sds along the first feature)")


def add_bnn_problem(parser: argparse.ArgumentParser) -> None:
    """The data and the model of the Bayesian neural network."""
    add_data_arguments(parser)
    group = parser.add_argument_group("model")
    group.add_argument("--task", choices=["classification", "regression"], default="classification",
                       help="Bernoulli (two moons) or Normal (a sine with a gap) likelihood (default: %(default)s)")
    group.add_argument("--hidden", type=positive_int, default=5, help="width of the tanh layer (default: %(default)s)")
    group.add_argument("--alpha", type=positive_float, default=1.0,
                       help="prior precision of every weight (default: %(default)s)")
    group.add_argument("--noise", default="learned",
                       help="regression: 'learned' or a fixed noise sd (default: %(default)s)")
    group.add_argument("--test-fraction", type=float, default=0.25,
                       help="share of the data held out (default: %(default)s)")
    group.add_argument("--num-points", type=positive_int, default=None,
                       help="embedded data: number of points (default: 400 moons, 100 sine)")


PROBLEM_ARGUMENTS = {"linreg": add_linreg_problem, "logreg": add_logreg_problem, "bnn": add_bnn_problem}


REPORT_DRAWS = {"linreg": 2000, "logreg": 2000, "bnn": 1000}  # draws of the fitted guide for the report


def regression_arguments(name: str):
    def add(parser: argparse.ArgumentParser) -> None:
        add_guide_arguments(parser, default=DEFAULT_GUIDE[name])
        add_svi_arguments(parser, **EXAMPLES[name])
        PROBLEM_ARGUMENTS[name](parser)
        parser.add_argument_group("report").add_argument(
            "--draws", type=positive_int, default=REPORT_DRAWS[name],
            help="draws of the fitted guide for the report, PSIS and the InferenceData file (fewer for tables of "
                 "more than 50,000 rows, at least 100) (default: %(default)s)")
    return add


# --- compare ---------------------------------------------------------------------------------------

COMPARE_MODELS = {  # built-in model -> (one line, its reference by default)
    "linreg": ("Bayesian linear regression (reference: exact posterior)", "exact"),
    "logreg": ("Bayesian logistic regression (reference: NUTS)", "nuts"),
    "bnn": ("Bayesian neural network (reference: NUTS, compared on f(x))", "nuts"),
}
# NUTS's budget per built-in model; the bnn's keeps `compare bnn` within a few minutes on two CPU cores:
# its trees are deep (hundreds of gradient steps a draw) and its chains cannot mix between symmetric modes
NUTS_BUDGET = {
    "linreg": {"chains": 4, "warmup": 1000, "samples": 1000, "max_tree_depth": 10},
    "logreg": {"chains": 4, "warmup": 1000, "samples": 1000, "max_tree_depth": 10},
    "bnn": {"chains": 2, "warmup": 200, "samples": 200, "max_tree_depth": 8, "extend": False},
    "model": {"chains": 4, "warmup": 1000, "samples": 1000, "max_tree_depth": 10},
}
# a user's model: compare's settings, the learning rate by the start (None)
MODEL_SVI_DEFAULTS = {**COMPARE, "lr": None}


def add_compare_options(parser: argparse.ArgumentParser, budget: dict, references: list[str], default: str) -> None:
    group = parser.add_argument_group("comparison")
    group.add_argument("--reference", choices=references, default=default,
                       help="the reference posterior: " + ", ".join(references) + " (default: %(default)s)")
    group.add_argument("--draws", type=positive_int, default=2000,
                       help="draws from each guide (PSIS k-hat, LOO, moments) and from an exact posterior"
                       " (default: %(default)s)")
    group.add_argument("--jobs", type=non_negative_int, default=0,
                       help="processes fitting the guides and the reference side by side, each with --threads "
                       "torch threads; 0: one per CPU core. Every fit starts from the run's seed, so the results "
                       "do not depend on it; 1 on a GPU (default: %(default)s)")
    add_restarts_argument(group)
    add_vsbc_argument(group)
    nuts = parser.add_argument_group("NUTS reference")
    nuts.add_argument("--chains", type=positive_int, default=budget["chains"],
                      help="chains, run one after another (default: %(default)s)")
    nuts.add_argument("--warmup", type=positive_int, default=budget["warmup"],
                      help="adaptation steps per chain (default: %(default)s)")
    nuts.add_argument("--samples", type=positive_int, default=budget["samples"],
                      help="kept draws per chain (default: %(default)s)")
    nuts.add_argument("--max-tree-depth", type=positive_int, default=budget["max_tree_depth"],
                      help="NUTS tree depth cap: at most 2^depth gradient steps a draw (default: %(default)s)")
    nuts.add_argument("--target-accept", type=probability, default=0.9,
                      help="the acceptance rate the step size is adapted to; higher: smaller steps, fewer divergent "
                      "transitions (default: %(default)s)")
    nuts.add_argument("--nuts-seconds", type=positive_float, default=900.0,
                      help="time budget: after --samples draws a chain, the chains draw more until R-hat < 1.01, "
                      "bulk and tail ESS >= 400 and no divergences, or until this many seconds (default: %(default)s)")
    nuts.add_argument("--no-extend", dest="extend", action="store_false", default=budget.get("extend", True),
                      help="keep exactly --samples draws a chain, whether or not the checks pass"
                      + ("" if budget.get("extend", True) else " (the default here: the chains of a network's weights "
                                                             "cannot mix between its symmetric modes)"))


def add_restarts_argument(group) -> None:
    group.add_argument("--restarts", type=non_negative_int, default=0,
                       help="fit each guide this many more times, from starts drawn from the Laplace Gaussian and "
                       "other seeds, and trust none whose fits disagree by more than 0.1 sds (stopped early, or a mode "
                       "found by chance); costs that many more fits (default: %(default)s, no restart check)")


def add_vsbc_argument(group) -> None:
    group.add_argument("--vsbc", type=non_negative_int, default=0, metavar="DATASETS",
                       help="VSBC (Yao et al. 2018) of each guide: fit it to this many data sets the model simulates "
                       "(10 or more; 100 is usual) and trust none whose posterior quantiles of the true parameters "
                       "are not symmetric (biased); costs that many more fits a guide (default: %(default)s, none)")


def nuts_budget(args) -> dict:
    """The NUTS options of ``args`` as :class:`~deepprob.inference.evaluation.nuts.NUTSBudget`'s fields."""
    return {"chains": args.chains, "warmup": args.warmup, "samples": args.samples,
            "max_tree_depth": args.max_tree_depth, "target_accept": args.target_accept,
            "max_seconds": args.nuts_seconds, "until_converged": args.extend}


def compare_builtin_arguments(name: str):
    """``deepprob compare linreg|logreg|bnn``: the model's own data and model options, every guide."""
    def add(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("model", choices=[name], help=argparse.SUPPRESS)
        references = ["exact", "nuts", "none"] if name == "linreg" else ["nuts", "none"]
        add_compare_options(parser, NUTS_BUDGET[name], references, COMPARE_MODELS[name][1])
        add_guide_arguments(parser, default=None)
        add_svi_arguments(parser, **{**EXAMPLES[name], **COMPARE_EXAMPLES.get(name, {})})
        PROBLEM_ARGUMENTS[name](parser)
    return add


def add_compare_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``deepprob compare --model FILE.py:FUNC --data DATA.json`` (a user's own Pyro model) or ``deepprob
    compare --posterior NAME`` (a posterior of posteriordb, its model translated, its reference draws)."""
    group = parser.add_argument_group("the model and its data: --model and --data, or --posterior")
    group.add_argument("--model", default=None, metavar="FILE.py:FUNC",
                       help="a Python file and the function in it that is the Pyro model; it is called as FUNC(data)")
    group.add_argument("--data", default=None, metavar="DATA.json[.zip]",
                       help="a JSON object (or a zip holding one, as posteriordb ships its data): FUNC gets it as a "
                       "dict, numbers as Python numbers, arrays as float tensors")
    group.add_argument("--posterior", default=None, metavar="NAME",
                       help="a posterior of posteriordb by name (eight_schools-eight_schools_noncentered, say): its "
                       "model's Pyro translation, its data, and its gold-standard draws as the reference")
    group.add_argument("--posteriordb", default=None, metavar="DIR",
                       help="the posterior_database folder of posteriordb (a clone of stan-dev/posteriordb, or "
                       "../shared/data/posteriordb/posterior_database) (default: the posteriors bundled here)")
    group.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                       help="the precision of the data and of the fits (default: %(default)s, as Stan's)")
    add_compare_options(parser, NUTS_BUDGET["model"], ["nuts", "none"], "nuts")
    parser.add_argument_group("comparison").add_argument(
        "--reference-draws", default=None, metavar="DRAWS.json[.zip]|FILE.nc",
        help="reference draws made elsewhere, instead of --reference: posteriordb's format (a list of chains, each "
             '{"name" or "name[i]": [draws]}) or an ArviZ NetCDF file')
    add_guide_arguments(parser, default=None)
    add_svi_arguments(parser, **MODEL_SVI_DEFAULTS)


def scoreboard_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("posteriors")
    group.add_argument("--posteriordb", default=None, metavar="DIR",
                       help="the posterior_database folder of posteriordb (a clone of stan-dev/posteriordb, or "
                       "../shared/data/posteriordb/posterior_database) (default: the one posterior bundled here)")
    group.add_argument("--posteriors", default=None,
                       help="comma-separated posterior names (default: every one of DIR with a translated model)")
    group.add_argument("--draws", type=positive_int, default=2000, help="draws from each guide (default: %(default)s)")
    group.add_argument("--jobs", type=non_negative_int, default=0,
                       help="processes fitting side by side (0: one per CPU core) (default: %(default)s)")
    group.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                       help="the precision of the data and the fits (default: %(default)s, as Stan's)")
    add_restarts_argument(group)
    nuts = parser.add_argument_group("NUTS beside the guides (a short budget: what a user would run)")
    nuts.add_argument("--no-nuts", action="store_true", help="no NUTS row")
    nuts.add_argument("--chains", type=positive_int, default=2, help="chains (default: %(default)s)")
    nuts.add_argument("--warmup", type=positive_int, default=300,
                      help="adaptation steps a chain (default: %(default)s)")
    nuts.add_argument("--samples", type=positive_int, default=300, help="draws a chain (default: %(default)s)")
    nuts.add_argument("--max-tree-depth", type=positive_int, default=8,
                      help="at most 2^depth gradient steps a draw (default: %(default)s)")
    nuts.add_argument("--target-accept", type=probability, default=0.8,
                      help="the acceptance rate its step size is adapted to (default: %(default)s)")
    nuts.set_defaults(nuts_seconds=900.0, extend=False)  # a fixed budget: what a user runs to look quickly
    add_guide_arguments(parser, default=None)
    add_svi_arguments(parser, **MODEL_SVI_DEFAULTS)


# --- the other examples ----------------------------------------------------------------------------

VAE_DATASETS = ("onehot", "digits", "mnist")


def add_image_data_arguments(parser: argparse.ArgumentParser, default: str) -> None:
    """The image data options of ``deepprob vae`` and ``deepprob avb``."""
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", choices=VAE_DATASETS, default=default, help="(default: %(default)s)")
    data.add_argument(
        "--data-dir", default=None,
        help="mnist: folder with the IDX files (train-/t10k-images-idx3-ubyte, -labels-idx1-ubyte, gzipped or "
             "not); None: a cache, downloaded into when online")
    data.add_argument("--train-size", type=positive_int, default=None, help="use at most this many training images")
    data.add_argument("--test-size", type=positive_int, default=None, help="use at most this many test images")
    data.add_argument(
        "--binarize", choices=["dynamic", "fixed"], default="dynamic",
        help="dynamic: binary pixels resampled each epoch; fixed: pixel > --threshold (default: %(default)s)")
    data.add_argument("--threshold", type=float, default=0.5, help="for --binarize fixed (default: %(default)s)")


def add_loglik_arguments(group) -> None:
    group.add_argument(
        "--loglik", choices=["auto", "grid", "proposal"], default="auto",
        help="the held-out log p(x) that does not use q's density: grid (numerical integration over z, latents "
             "of size <= 2), proposal (importance sampling from a Gaussian fitted to the encoder's codes, mixed "
             "with the prior), auto: grid where it applies (default: %(default)s)")
    group.add_argument("--loglik-samples", type=positive_int, default=1000,
                       help="K of --loglik proposal (default: %(default)s)")


def vae_arguments(parser: argparse.ArgumentParser) -> None:
    add_image_data_arguments(parser, "digits")

    net = parser.add_argument_group(
        "networks (None: per --dataset, latent/hidden: onehot 2/32, digits 2/256, mnist 20/400)")
    net.add_argument("--arch", choices=["mlp", "conv"], default="mlp", help="encoder/decoder (default: %(default)s)")
    net.add_argument("--z-dim", type=positive_int, default=None, help="latent size")
    net.add_argument("--hidden", type=layer_sizes, default=None,
                     help="hidden layer sizes of the encoder, e.g. 512,256 (the decoder mirrors them)")

    fit = parser.add_argument_group(
        "fitting (SVI with Adam; None: per --dataset, onehot/digits/mnist)")
    fit.add_argument("--epochs", type=non_negative_int, default=None, help="40/30/10")
    fit.add_argument("--batch-size", type=positive_int, default=None, help="64/64/128")
    fit.add_argument("--lr", type=positive_float, default=None, help="Adam learning rate, 3e-3/3e-3/1e-3")
    fit.add_argument(
        "--elbo", choices=["trace", "meanfield"], default="trace",
        help="trace: Trace_ELBO (sampled KL); meanfield: TraceMeanField_ELBO (analytic KL) (default: %(default)s)")
    fit.add_argument(
        "--objective", type=objective_text, default="elbo",
        help="what training maximises: elbo, or iwae:K (each image's importance-weighted bound from K codes, "
             "Burda et al. 2016: K times the decoder's work a step) (default: %(default)s)")
    fit.add_argument(
        "--iw-samples", type=positive_int, default=100,
        help="K, samples per test image for the importance-weighted log p(x) (default: %(default)s)")
    fit.add_argument(
        "--engine", choices=ENGINES, default="auto",
        help="pyro: Trace_ELBO each step; compiled: the same steps (same draws, same Adam) traced once and "
             "compiled, after a compile of several seconds (cached on disk); auto: compiled for runs of "
             "2000 steps or more (default: %(default)s)")
    add_loglik_arguments(fit)
    fit.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")


def avb_arguments(parser: argparse.ArgumentParser) -> None:
    add_image_data_arguments(parser, "onehot")
    net = parser.add_argument_group(
        "networks (MLPs; None: per --dataset, latent/hidden: onehot 2/256,256, digits 2/256,256, mnist 8/400)")
    net.add_argument("--z-dim", type=positive_int, default=None, help="latent size")
    net.add_argument("--hidden", type=layer_sizes, default=None,
                     help="hidden layer sizes of the encoder (the decoder mirrors them), e.g. 256,256")
    net.add_argument("--noise-dim", type=positive_int, default=8,
                     help="size of the noise the implicit encoder takes beside x (default: %(default)s)")
    net.add_argument("--adversary-hidden", type=layer_sizes, default=None,
                     help="hidden layer sizes of the discriminator T(x, z) (default: --hidden)")
    fit = parser.add_argument_group("fitting (Adam; None: per --dataset, onehot/digits/mnist)")
    fit.add_argument("--epochs", type=non_negative_int, default=None, help="200/50/10")
    fit.add_argument("--batch-size", type=positive_int, default=None, help="64/64/128")
    fit.add_argument("--lr", type=positive_float, default=None, help="encoder and decoder learning rate, 1e-3")
    fit.add_argument("--adversary-lr", type=positive_float, default=None,
                     help="the discriminator's learning rate (default: --lr)")
    fit.add_argument("--adversary-steps", type=positive_int, default=1,
                     help="discriminator steps before each ELBO step (default: %(default)s)")
    fit.add_argument("--no-baseline", action="store_true",
                     help="do not train the Gaussian-encoder VAE beside AVB (same networks, epochs and seed)")
    add_loglik_arguments(fit)
    fit.add_argument("--resume", action="store_true", help="continue from the checkpoints in --out")


def kl_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("fit (Adam on mu and log sigma)")
    group.add_argument("--steps", type=positive_int, default=2000, help="gradient steps per fit")
    group.add_argument("--lr", type=positive_float, default=0.05, help="initial Adam learning rate (decayed 10x)")
    group.add_argument("--estimator", choices=["quadrature", "mc"], default="quadrature",
                       help="numerical integration on a grid, or Monte Carlo samples")
    group.add_argument("--num-samples", type=positive_int, default=256, help="Monte Carlo samples per step")
    group.add_argument("--init-mu", type=float, default=None,
                       help="initial mean (default: 4 -/+ U(1.5, 3.5), side and offset drawn with --seed)")
    group.add_argument("--init-sigma", type=positive_float, default=1.0, help="initial standard deviation")


def ratio_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument("--data", default=None, help="a CSV of 2-D points (default: draws from a correlated Normal)")
    data.add_argument("--n", type=positive_int, default=10000, help="number of Normal draws (default data)")
    data.add_argument("--margin", type=positive_float, default=0.1,
                      help="the reference box is the data's bounding box widened by this fraction on each side")
    fit = parser.add_argument_group("classifier (MLP, SiLU, Adam)")
    fit.add_argument("--hidden", type=layer_sizes, default=[64, 64], help="hidden layer sizes (default: 64,64)")
    fit.add_argument("--steps", type=positive_int, default=3000, help="training steps")
    fit.add_argument("--batch-size", type=positive_int, default=512,
                     help="data points (and as many reference points) a step")
    fit.add_argument("--lr", type=positive_float, default=3e-3, help="initial Adam learning rate (decayed 10x)")
    fit.add_argument("--resolution", type=positive_int, default=200, help="grid points per axis for the metrics")


GAN_POINT_DATASETS = ("gaussian", "ring", "ring-metz", "ring-pacgan", "ring16", "grid")
GAN_IMAGE_DATASETS = ("digits", "mnist")


def gan_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mode", nargs="?", choices=["train", "sample"], default="train",
                        help="train a GAN (default), or sample images from a DCGAN --checkpoint")
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", choices=GAN_POINT_DATASETS + GAN_IMAGE_DATASETS, default=None,
                      help="default: ring")
    data.add_argument("--data", default=None, help="a CSV of 2-D points (two numeric columns, optional header)")
    data.add_argument("--modes", default=None, help="with --data: a CSV of mode centres (x, y), one row a mode")
    data.add_argument("--mode-sigma", type=positive_float, default=None,
                      help="with --modes: the modes' standard deviation for the 3-sigma rule (default: estimated)")
    data.add_argument("--data-dir", default=None, help="--dataset mnist: folder with the MNIST IDX files")
    remedies = parser.add_argument_group("remedies for mode dropping (2-D data)")
    remedies.add_argument("--loss", choices=["gan", "wgan-gp"], default="gan", help="standard GAN or WGAN-GP")
    remedies.add_argument("--unrolled", type=non_negative_int, default=0, help="look-ahead discriminator steps K")
    remedies.add_argument("--pack", type=positive_int, default=1, help="samples per discriminator input M (PacGAN)")
    remedies.add_argument("--no-baseline", action="store_true", help="do not train the standard GAN alongside")
    train = parser.add_argument_group("training (default: per method, see above)")
    train.add_argument("--iterations", type=positive_int, default=None, help="generator iterations (2-D)")
    train.add_argument("--epochs", type=positive_int, default=None,
                       help="epochs (images; default 100 digits, 10 mnist)")
    train.add_argument("--batch-size", type=positive_int, default=None, help="discriminator inputs per step")
    train.add_argument("--d-steps", type=positive_int, default=None, help="discriminator steps per generator step")
    train.add_argument("--simultaneous", action="store_true",
                       help="2-D: step both networks at once from one batch, each gradient taken before either step "
                       "(PacGAN's and ALI's code; needs --d-steps 1 and no --unrolled)")
    train.add_argument("--lr-g", type=positive_float, default=None, help="generator Adam learning rate")
    train.add_argument("--lr-d", type=positive_float, default=None, help="discriminator Adam learning rate")
    train.add_argument("--final-lr-fraction", type=positive_float, default=None,
                       help="2-D: both learning rates decay exponentially to this fraction of their start by the "
                       "last iteration (default 1: constant)")
    train.add_argument("--latent-dim", type=positive_int, default=None, help="noise dimension (default 8; images 32)")
    train.add_argument("--hidden", type=layer_sizes, default=[128, 128],
                       help="2-D: hidden layer sizes of the generator (default: 128,128)")
    train.add_argument("--d-hidden", type=layer_sizes, default=None,
                       help="2-D: hidden layer sizes of the discriminator (default: --hidden; three times as wide for "
                       "12 or more known modes)")
    train.add_argument("--width", type=positive_int, default=None, help="images: DCGAN channels (default 32; mnist 64)")
    evaluate = parser.add_argument_group("evaluation and figures")
    evaluate.add_argument("--eval-samples", type=positive_int, default=2500,
                          help="2-D: generated points for the metrics")
    evaluate.add_argument("--min-count", type=positive_int, default=20,
                          help="2-D: samples within 3 sigma for a mode to count")
    evaluate.add_argument("--snapshots", type=positive_int, default=6,
                          help="2-D: snapshots of the cloud during training")
    evaluate.add_argument("--grid", type=positive_int, default=8, help="images: the sample grid is GRID x GRID")
    evaluate.add_argument("--arithmetic", default=None,
                          help="images: three ';'-separated groups of sample-grid indices A;B;C "
                          "(default: picked by class and ink)")
    evaluate.add_argument("--checkpoint", default=None,
                          help="sample mode: a checkpoint.pt written by the images training")


def tour_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="settings that still show every point: about 4 minutes on 2 CPU cores, 25 MB")
    parser.add_argument("--only", default=None, help="comma-separated step names to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the steps and exit")
    parser.add_argument("--jobs", type=non_negative_int, default=0,
                        help="steps run side by side in this many processes (0: one per CPU core; 1 on a GPU); "
                        "each step starts from --seed, so the results do not depend on it (default: %(default)s)")


def unify_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data and networks (the same for the GAN and the VAE)")
    group.add_argument("--datasets", default="ring,grid",
                       help="comma-separated 2-D mixtures: ring, ring-metz, ring-pacgan, grid (default: %(default)s)")
    group.add_argument("--latent-dim", type=positive_int, default=8, help="latent size of both (default: %(default)s)")
    group.add_argument("--hidden", type=layer_sizes, default=[128, 128],
                       help="hidden layers of the generator = the VAE's decoder (and of the encoder and the "
                       "discriminator, three times as wide on the grid as `deepprob gan` makes it) (default: 128,128)")
    train = parser.add_argument_group("training")
    train.add_argument("--iterations", type=positive_int, default=None,
                       help="GAN generator iterations (default: `deepprob gan`'s standard GAN on the data set: 8,000 "
                       "with 5 discriminator steps each on rings, 20,000 with 1 on the grid)")
    train.add_argument("--vae-epochs", type=positive_int, default=200,
                       help="VAE epochs over 20,000 points, batch 256, Adam lr 1e-3 (fewer leave the grid's modes "
                       "blurred beyond 3 sigma: 60 epochs cover none of them) (default: %(default)s)")
    evaluate = parser.add_argument_group("evaluation")
    evaluate.add_argument("--eval-samples", type=positive_int, default=2500,
                          help="samples for the mode metrics and the figure (default: %(default)s)")
    evaluate.add_argument("--min-count", type=positive_int, default=20,
                          help="high-quality samples for a mode to count as covered (default: %(default)s)")
    evaluate.add_argument("--kl-samples", type=positive_int, default=5000,
                          help="fresh draws of the data and of each model for the KL estimates (default: %(default)s)")
    evaluate.add_argument("--kde-samples", type=positive_int, default=20000,
                          help="model draws behind each kernel density estimate (default: %(default)s)")
