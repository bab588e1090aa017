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
from pyro.infer import Predictive
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
from deepprob.models.bnn import BayesianNeuralNetwork
from deepprob.plots import decision_surface, grid_2d, new_figure, save


def add_arguments(parser):
    add_guide_arguments(parser, default="fullrank")
    add_svi_arguments(parser, steps=3000, lr=0.02, num_particles=4)
    add_data_arguments(parser)
    group = parser.add_argument_group("model")
    group.add_argument("--task", choices=["classification", "regression"], default="classification")
    group.add_argument("--hidden", type=positive_int, default=5, help="width of the tanh layer")
    group.add_argument("--alpha", type=positive_float, default=1.0, help="prior precision of every weight")
    group.add_argument("--noise", default="learned", help="regression: 'learned' or a fixed noise sd")
    group.add_argument("--test-fraction", type=float, default=0.25, help="share of the data held out")
    group.add_argument("--num-points", type=positive_int, default=None,
                       help="embedded data: number of points (default: 400 moons, 100 sine)")


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


def predictive_f(model, guide, X, num_samples=1000) -> torch.Tensor:
    """Posterior draws of the network's output f(X): (num_samples, N)."""
    with torch.no_grad():
        predictive = Predictive(model.forward, guide=guide, num_samples=num_samples, return_sites=["_RETURN"])
        return predictive(X)["_RETURN"].reshape(num_samples, -1)


def main(args):
    if args.task == "classification":
        default = lambda: two_moons(n=args.num_points or 400, seed=args.seed)  # noqa: E731
    else:
        default = lambda: sine_regression(n=args.num_points or 100, seed=args.seed)  # noqa: E731
    table = load_table(args, default)
    if args.task == "classification":
        check_binary(f"--target {table.target_name}" if args.data else "labels", table.y)
    train, test, mean, sd = standardise(*split(table, args.test_fraction, args.seed))
    model = BayesianNeuralNetwork(table.X.shape[1], args.hidden, args.alpha, args.task, parse_noise(args.noise))

    fit = fit_guide(model, args, train.X, train.y, init_loc_fn=init_to_sample)
    f = predictive_f(model, fit.guide, test.X)
    metrics = {"guide": args.guide, "task": args.task, "elbo": fit.elbo, "fit_seconds": fit.seconds,
               "num_train": len(train), "num_test": len(test)}
    if args.task == "classification":
        prob = torch.sigmoid(f).mean(0)
        eps = 1e-7
        metrics["accuracy"] = float(((prob > 0.5).float() == test.y).float().mean())
        metrics["log_loss"] = float(-(test.y * (prob + eps).log() + (1 - test.y) * (1 - prob + eps).log()).mean())
        say(args, f"bnn classification, guide {args.guide}: test accuracy {metrics['accuracy']:.3f}, "
            f"log-loss {metrics['log_loss']:.4f}, ELBO {fit.elbo:.2f}")
    else:
        with torch.no_grad():
            y_draws = Predictive(model, guide=fit.guide, num_samples=1000, return_sites=["y"])(test.X)["y"]
        y_draws = y_draws.reshape(1000, -1)
        sigma = y_draws.std(0).clamp_min(1e-6)
        metrics["rmse"] = float((f.mean(0) - test.y).pow(2).mean().sqrt())
        metrics["test_loglik"] = float(torch.distributions.Normal(y_draws.mean(0), sigma).log_prob(test.y).mean())
        say(args, f"bnn regression, guide {args.guide}: test RMSE {metrics['rmse']:.4f}, "
            f"log-likelihood {metrics['test_loglik']:.3f} per point, ELBO {fit.elbo:.2f}")
    plot(args, model, fit.guide, table, mean, sd)
    return metrics


def plot(args, model, guide, table, mean, sd):
    if args.task == "classification" and table.X.shape[1] == 2:
        xx, yy, grid = grid_2d(table.X, n=100, pad=0.4)
        prob = torch.sigmoid(predictive_f(model, guide, (grid.to(table.X) - mean) / sd, 500)).cpu()
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
        f = predictive_f(model, guide, (grid - mean) / sd, 500).cpu()
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
