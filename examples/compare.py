"""Every guide against a reference posterior, side by side, for your own Pyro model or a built-in one.

Your model: a Python file with a function that takes the data (a dict) and is a Pyro model, and the
data as a JSON object (a .json file, or a .json.zip holding one, as posteriordb ships data). Numbers
arrive as Python numbers and arrays as float tensors (float64 by default, as in Stan). Flat priors
(``dist.ImproperUniform``, as in Stan models that declare none) are fine: no guide samples a prior to
start. The reference is NUTS (R-hat and ESS checked), none, or draws made elsewhere
(--reference-draws: posteriordb's JSON, a list of chains each {"name" or "name[i]": [draws]}, an
ArviZ NetCDF file, or NumPy's .npz, an array (chains, draws, ...) a site).

    deepprob compare --model eight_schools.py:model --data eight_schools.json
    deepprob compare --model m.py:model --data d.json.zip --reference-draws draws.json.zip --json
    deepprob compare --model m.py:model --data d.json --guides meanfield,fullrank --reference none

Each fit is stored as ArviZ InferenceData (NetCDF under --out) and the table reports, per guide: the
ELBO and fit time; the worst error of a posterior mean and of a posterior sd in reference sds, and
the 2-Wasserstein distance in reference sds (with the reference's own noise floor), on the
parameters the model's sites share with the reference (vector sites as name[1]..name[K]); PSIS k-hat
of the importance weights (Yao et al. 2018: < 0.5 good, 0.5-0.7 usable, > 0.7 q misses posterior
mass); PSIS-LOO elpd. Figures: a forest plot of every fit on one axis, a pair plot of each guide over
the reference, the ELBO traces.

The built-in models (`deepprob compare linreg|logreg|bnn --help`) are compared the same way, with the
exact posterior (linreg) or NUTS as the reference; the bnn in function space, through f(x) at the
held-out inputs (its weights are symmetric under permutations of the hidden units). The guides and the
reference are fitted side by side in --jobs worker processes, each from the run's seed, so the numbers
are the same for any --jobs.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

from deepprob.datasets.stan_json import load_model_data, read_draws, read_npz_draws
from deepprob.devices import default_dtype
from deepprob.errors import InputError
from deepprob.examples import problems
from deepprob.examples.common import say
from deepprob.examples.options import fit_settings, guide_options, nuts_budget
from deepprob.inference.evaluation.compare import Comparison, compare
from deepprob.inference.evaluation.draws import predictive_mean
from deepprob.inference.evaluation.nuts import NUTSBudget
from deepprob.inference.evaluation.posteriors import database, load_posterior
from deepprob.inference.evaluation.references import given_draws
from deepprob.logdensity import ModelStructure
from deepprob.plots import decision_surface, drawn, grid_2d, new_figure, save


def main(args):
    if args.guide is not None:
        raise InputError(f"--guide {args.guide}: compare fits several guides; use --guides {args.guide}[,...]")
    if getattr(args, "model", None) in problems.PROBLEMS:
        return compare_builtin(args)
    if args.posterior is not None:
        if args.model is not None or args.data is not None or args.reference_draws is not None:
            raise InputError(f"--posterior {args.posterior}: the posterior brings its model, data and reference draws; "
                             "give either --posterior or --model/--data")
        return compare_posterior(args)
    if args.model is None or args.data is None:
        raise InputError("compare: expected --model FILE.py:FUNC with --data DATA.json, --posterior NAME, or a "
                         f"built-in model ({', '.join(problems.PROBLEMS)})")
    if args.posteriordb is not None:
        raise InputError(f"--posteriordb {args.posteriordb}: only with --posterior NAME")
    return compare_user_model(args)


def settings(args) -> dict:
    """The SVI, NUTS and run options of ``compare``."""
    return {"guides": args.guides, "draws": args.draws, "settings": fit_settings(args),
            "seed": args.seed, "jobs": args.jobs, "restarts": args.restarts,
            "vsbc": args.vsbc,
            "progress": not args.quiet, "out": args.out,
            "nuts": NUTSBudget(**nuts_budget(args))}


def compare_builtin(args) -> dict:
    problem = problems.PROBLEMS[args.model](args)
    reference = {"exact": problem.exact, "nuts": "nuts", "none": None}[args.reference]
    kwargs = problem.compare_kwargs()
    kwargs["options"] = guide_options(args, problem.init_loc_fn)
    result = compare(problem.model, *problem.fit_args, reference=reference, **settings(args), **kwargs)

    def figures():
        result.figures(args.out)
        if problem.likelihood == "bernoulli" and problem.features.shape[1] == 2:
            path = drawn(f"{problem.name}_surfaces.png", lambda: surfaces(problem, args, result))
            result.files += [path] if path is not None else []

    return report(args, result, figures)


def compare_user_model(args) -> dict:
    model = load_model(args.model)
    dtype = getattr(torch, args.dtype)
    with default_dtype(dtype):
        data = load_model_data(args.data, dtype)
        reference = "nuts" if args.reference == "nuts" else None
        if args.reference_draws is not None:
            reference = load_reference_draws(args.reference_draws)
            # checked here, so that a mismatch names the option and the file
            given_draws(reference, ModelStructure.of(model, data), what=f"--reference-draws {args.reference_draws}")
        result = compare(model, data, reference=reference, name=Path(args.model.rsplit(":", 1)[0]).stem,
                         options=guide_options(args), **settings(args))
        return report(args, result, lambda: result.figures(args.out))


def compare_posterior(args) -> dict:
    """posteriordb's posterior: its model's translation, its data, its gold-standard draws as the reference."""
    dtype = getattr(torch, args.dtype)
    with default_dtype(dtype):
        problem = load_posterior(args.posterior, database(args.posteriordb), dtype)
        reference = problem.draws if args.reference == "nuts" else None  # --reference none: no reference at all
        result = compare(problem.model, problem.data, reference=reference, reference_latents=problem.reference_latents,
                         name=problem.name,
                         options=guide_options(args), **settings(args))
        return report(args, result, lambda: result.figures(args.out))


def report(args, result: Comparison, figures) -> dict:
    """The table first (its NetCDF files are written already), then ``figures()``: a figure that cannot be drawn
    is skipped with a line saying why, and loses nothing of the results (the ``--json`` line comes after)."""
    say(args, *result.report())
    figures()
    out = result.to_dict()
    return {"model": out["model"], "reference": out["reference"], "reference_stats": out["reference_stats"],
            "guides": out["guides"], "draws": args.draws, "steps": args.steps, "jobs": result.settings.jobs,
            "batching": result.settings.batching, "batching_note": result.settings.batching_note,
            "files": out["files"]}


def load_model(spec: str):
    """``FILE.py:FUNC`` -> the function (imported from the file as a module of its own)."""
    path, sep, name = spec.rpartition(":")
    if not sep or not path or not name:
        raise InputError(f"--model {spec!r}: expected FILE.py:FUNC, the file and the model function in it")
    file = Path(path)
    if not file.is_file():
        raise InputError(f"--model {spec}: no such file {path}")
    module_name = f"deepprob_user_model_{abs(hash(str(file.resolve())))}"
    loader_spec = importlib.util.spec_from_file_location(module_name, file)
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module
    try:
        loader_spec.loader.exec_module(module)
    except Exception as err:  # noqa: BLE001 - the user's file: say what went wrong, in one line
        raise InputError(f"--model {spec}: importing {path} failed ({type(err).__name__}: {err})") from None
    model = getattr(module, name, None)
    if not callable(model):
        functions = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                     and getattr(v, "__module__", None) == module_name]
        raise InputError(f"--model {spec}: {path} has no function {name!r} (it has {', '.join(functions) or 'none'})")
    return model


def load_reference_draws(path: str):
    """--reference-draws: posteriordb's JSON draws, an ArviZ NetCDF file, or NumPy's .npz (an array (chains,
    draws, ...) a site)."""
    if Path(path).suffix == ".npz":
        return read_npz_draws(path)
    if Path(path).suffix == ".nc":
        from deepprob.inference.evaluation.arviz_data import az

        if not Path(path).is_file():
            raise InputError(f"--reference-draws {path}: no such file")
        try:
            return az.from_netcdf(path)
        except (OSError, ValueError) as err:
            raise InputError(f"--reference-draws {path}: not an ArviZ NetCDF file ({err})") from None
    return read_draws(path)


def surfaces(problem, args, result: Comparison) -> Path:
    """p(y = 1 | x) of the reference and of every guide on one grid, side by side."""
    xx, yy, grid = grid_2d(problem.features, n=80, pad=0.3)
    inputs = problem.to_inputs(grid.to(problem.features))
    panels = ([(f"reference ({args.reference})", result.reference.draws)] if result.reference is not None else [])
    panels += [(name, run.draws) for name, run in result.runs.items()]
    ncols = min(3, len(panels))
    fig, axes = new_figure(ncols=ncols, nrows=-(-len(panels) // ncols), size=(4.2, 3.6))
    for ax in axes.ravel()[len(panels):]:
        ax.set_axis_off()
    for ax, (name, draws) in zip(axes.ravel(), panels):
        latents = {k: v[:500] for k, v in draws.latents.items()}
        prob = predictive_mean(problem.model, latents, inputs, None).cpu()
        decision_surface(ax, xx, yy, prob, problem.features, problem.y, name)
    return save(fig, args.out / f"{problem.name}_surfaces.png")
