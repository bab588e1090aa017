"""Bayesian neural network: two tanh layers, every weight a Pyro sample site.

Classification (Bernoulli) on two interleaved half-moons by default, or regression (Normal, noise
learned or fixed) on a sine with a gap in the data. Reports held-out accuracy and log-loss
(classification) or RMSE and log-likelihood (regression). Figures: the predictive decision surface
and its uncertainty, or the predictive band, which widens in the gap and away from the data.

    deepprob bnn --guide meanfield
    deepprob bnn --task regression --guide fullrank --noise learned
    deepprob bnn --data my.csv --target label --hidden 10
"""

from __future__ import annotations

import math

import torch
from pyro.infer.autoguide import init_to_sample

from deepprob.datasets import Table, check_binary, sine_regression, two_moons
from deepprob.errors import InputError
from deepprob.examples.common import fit_guide, load_table, say
from deepprob.examples.options import (
    add_data_arguments,
    add_guide_arguments,
    add_svi_arguments,
    positive_float,
    positive_int,
)
from deepprob.inference.arviz_data import (
    Problem,
    draws_from_guide,
    likelihood_at,
    save_inference_data,
    summary_text,
    to_inference_data,
)
from deepprob.inference.diagnostics import loo, predictive_metrics, psis_khat
from deepprob.models.bnn import BayesianNeuralNetwork
from deepprob.plots import decision_surface, grid_2d, new_figure, save

SVI_DEFAULTS = {"steps": 3000, "lr": 0.02, "num_particles": 4}
NUM_DRAWS = 1000  # draws of the fitted guide for the report and the InferenceData


def add_problem_arguments(parser):
    """The data and the model (shared with ``deepprob compare bnn``)."""
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


def add_arguments(parser):
    add_guide_arguments(parser, default="fullrank")
    add_svi_arguments(parser, **SVI_DEFAULTS)
    add_problem_arguments(parser)


def parse_noise(text: str) -> float | None:
    if text == "learned":
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or math.isinf(value):
        raise InputError(f"--noise {text!r}: expected 'learned' or a noise sd > 0")
    return value


def split(table: Table, fraction: float, seed: int) -> tuple[Table, Table]:
    """A random train/test split of ``table``."""
    if not 0 < fraction < 1:
        raise InputError(f"--test-fraction {fraction}: expected a number in (0, 1)")
    order = torch.randperm(len(table), generator=torch.Generator().manual_seed(seed)).to(table.X.device)
    n_test = max(1, int(round(fraction * len(table))))
    if n_test >= len(table):
        raise InputError(f"--test-fraction {fraction}: leaves no training data out of {len(table)} points")
    part = lambda idx: Table(table.X[idx], table.y[idx], table.feature_names, table.target_name, table.source)  # noqa: E731
    return part(order[n_test:]), part(order[:n_test])


def standardise(train: Table, test: Table) -> tuple[Table, Table, torch.Tensor, torch.Tensor]:
    """Features scaled by the training set's mean and sd (a weight prior N(0, 1/alpha) assumes unit scale)."""
    mean, sd = train.X.mean(0), train.X.std(0).clamp_min(1e-8)
    scale = lambda t: Table((t.X - mean) / sd, t.y, t.feature_names, t.target_name, t.source)  # noqa: E731
    return scale(train), scale(test), mean, sd


def prepare(args) -> Problem:
    """The data, split and model of ``args``; predictive metrics are reported on the held-out split.

    Posteriors are compared in function space, through f(x) at the held-out inputs: the network's
    weights have exact symmetries (hidden units permute; tanh is odd, so a unit's signs flip), which
    make weight-space means and sds meaningless across modes. ``extras``: ``table`` (all the data),
    ``train`` and ``test`` (standardised), ``mean`` and ``sd`` of the standardisation.
    """
    if args.task == "classification":
        default = lambda: two_moons(n=args.num_points or 400, seed=args.seed)  # noqa: E731
    else:
        default = lambda: sine_regression(n=args.num_points or 100, seed=args.seed)  # noqa: E731
    table = load_table(args, default)
    if args.task == "classification":
        check_binary(f"--target {table.target_name}" if args.data else "labels", table.y)
    raw_train, raw_test = split(table, args.test_fraction, args.seed)
    train, test, mean, sd = standardise(raw_train, raw_test)
    noise = parse_noise(args.noise)
    model = BayesianNeuralNetwork(table.X.shape[1], args.hidden, args.alpha, args.task, noise)
    learned_noise = args.task == "regression" and noise is None
    return Problem(
        name="bnn",
        model=model,
        x=train.X,
        y=train.y,
        features=raw_train.X,
        to_inputs=lambda X: (X - mean) / sd,
        var_names=["W1", "b1", "W2", "b2"] + (["sigma"] if learned_noise else []),
        dims={"W1": ["input", "hidden"], "b1": ["hidden"], "W2": ["hidden"], "b2": ["output"]},
        coords={"input": table.feature_names, "hidden": list(range(args.hidden)), "output": [0]},
        likelihood="bernoulli" if args.task == "classification" else "normal",
        init_loc_fn=init_to_sample,
        evaluation=(test.X, test.y),
        function_space=True,
        extras={"table": table, "train": train, "test": test, "mean": mean, "sd": sd},
    )


def main(args):
    problem = prepare(args)
    train, test = problem.extras["train"], problem.extras["test"]

    fit = fit_guide(problem.model, args, *problem.fit_args, init_loc_fn=problem.init_loc_fn)
    draws = draws_from_guide(problem.model, fit.guide, *problem.fit_args, NUM_DRAWS)
    idata = to_inference_data(problem, draws, attrs={"guide": args.guide})
    path = save_inference_data(idata, args.out / f"bnn_{args.guide}.nc")
    predictive = predictive_metrics(problem.model, draws.latents, problem.evaluation, problem.likelihood)
    metrics = {"guide": args.guide, "task": args.task, "elbo": fit.elbo, "fit_seconds": fit.seconds, **fit.extras,
               "num_train": len(train), "num_test": len(test), **predictive,
               "khat": psis_khat(draws.log_weights), "elpd_loo": loo(idata)["elpd_loo"], "inference_data": path}
    if args.task == "classification":
        say(args, f"bnn classification, guide {args.guide}: test accuracy {metrics['accuracy']:.3f}, "
            f"log-loss {metrics['log_loss']:.4f}, ELBO {fit.elbo:.2f}")
    else:
        say(args, f"bnn regression, guide {args.guide}: test RMSE {metrics['rmse']:.4f}, "
            f"log-likelihood {metrics['test_loglik']:.3f} per point, ELBO {fit.elbo:.2f}")
    say(args, f"PSIS k-hat = {metrics['khat']:.3f}   elpd_loo = {metrics['elpd_loo']:.2f}",
        f"az.summary of the guide's {NUM_DRAWS} draws ({path}):", summary_text(idata, problem.var_names))
    plot(args, problem, draws.latents)
    return metrics


def plot(args, problem, latents):
    table, mean, sd = problem.extras["table"], problem.extras["mean"], problem.extras["sd"]
    latents = {k: v[:500] for k, v in latents.items()}
    if args.task == "classification" and table.X.shape[1] == 2:
        xx, yy, grid = grid_2d(table.X, n=100, pad=0.4)
        prob = likelihood_at(problem.model, latents, problem.to_inputs(grid.to(table.X))).cpu()
        fig, axes = new_figure(ncols=2, size=(5.5, 4.5))
        decision_surface(axes[0, 0], xx, yy, prob.mean(0), table.X, table.y, f"predictive mean ({args.guide})")
        ax = axes[0, 1]
        c = ax.contourf(xx, yy, prob.std(0).reshape(xx.shape), levels=12, cmap="magma")
        ax.scatter(table.X[:, 0].cpu(), table.X[:, 1].cpu(), c=table.y.cpu(), cmap="RdBu_r", s=5)
        ax.set(title="predictive sd of p(y=1 | x)", xlabel="x1", ylabel="x2")
        fig.colorbar(c, ax=ax)
        save(fig, args.out / "bnn_surface.png")
    elif args.task == "regression" and table.X.shape[1] == 1:
        x = table.X[:, 0]
        span = float(x.max() - x.min())
        grid = torch.linspace(float(x.min()) - 0.5 * span, float(x.max()) + 0.5 * span, 300).to(table.X)[:, None]
        f = likelihood_at(problem.model, latents, (grid - mean) / sd, statistic="location").cpu()
        lo, mid, hi = torch.quantile(f, torch.tensor([0.025, 0.5, 0.975]), dim=0)
        fig, axes = new_figure(size=(7, 4.5))
        ax = axes[0, 0]
        g = grid[:, 0].cpu()
        ax.fill_between(g, lo, hi, alpha=0.3, label="95% band of f(x)")
        ax.plot(g, f[:20].T, color="C0", alpha=0.2, lw=0.7)
        ax.plot(g, mid, color="C0", label="median f(x)")
        ax.scatter(x.cpu(), table.y.cpu(), s=10, color="k", label="data")
        ax.set(title=f"BNN regression ({args.guide})", xlabel=table.feature_names[0], ylabel=table.target_name)
        ax.legend(fontsize=8)
        save(fig, args.out / "bnn_band.png")
