"""Bayesian logistic regression: Laplace, then ELBO guides; Bayesian vs plug-in predictive.

The Bayesian predictive averages the classifier over the posterior, p(y=1 | x*) = E_q[sigmoid(w^T x*)];
the plug-in predictive uses the MAP weights alone. Far from the data the first stays uncertain while
the second is (over)confident. Figures: the decision surface with sampled decision boundaries.

    deepprob logreg --guide laplace --json
    deepprob logreg --guide fullrank --far-point 100,0.5
    deepprob logreg --data my.csv --target label
"""

from __future__ import annotations

import torch
from pyro.infer import Predictive

from deepprob.datasets import check_binary, two_classes
from deepprob.errors import InputError
from deepprob.examples.common import fit_guide, load_table, say
from deepprob.examples.options import add_data_arguments, add_guide_arguments, add_svi_arguments, positive_float
from deepprob.inference import fit_map
from deepprob.models.logreg import LogisticRegression, with_bias
from deepprob.models.standardise import Standardisation
from deepprob.plots import decision_surface, grid_2d, new_figure, save


def add_arguments(parser):
    add_guide_arguments(parser, default="laplace")
    add_svi_arguments(parser, steps=2000, lr=0.05, num_particles=4)
    add_data_arguments(parser)
    group = parser.add_argument_group("model")
    group.add_argument("--alpha", type=positive_float, default=1.0, help="prior precision of the weights")
    group.add_argument("--num-points", type=int, default=2000, help="embedded data: number of points")
    group.add_argument("--far-point", default="100,0.5",
                       help="comma-separated x* far from the data where the predictives are compared")


def parse_point(text: str, dim: int) -> torch.Tensor:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise InputError(f"--far-point {text!r}: expected {dim} comma-separated numbers") from None
    if len(values) != dim:
        raise InputError(f"--far-point {text!r}: expected {dim} numbers (one per feature), got {len(values)}")
    return torch.tensor(values)


def weight_draws(model, guide, X1, num_samples=4000) -> torch.Tensor:
    """Posterior draws of the weights (num_samples, D+1)."""
    with torch.no_grad():
        draws = Predictive(model, guide=guide, num_samples=num_samples, return_sites=["weight"])(X1)["weight"]
    return draws.reshape(num_samples, -1)


def main(args):
    table = load_table(args, lambda: two_classes(n=args.num_points, seed=args.seed))
    check_binary(f"--target {table.target_name}" if args.data else "labels", table.y)
    far = parse_point(args.far_point, table.X.shape[1]).to(table.X)
    X1 = with_bias(table.X)
    standard = Standardisation.of(X1)
    model = LogisticRegression(standard, alpha=args.alpha)
    X1_s = standard.features(X1)

    fit = fit_guide(model, args, X1_s, table.y)
    w = weight_draws(model, fit.guide, X1_s)
    w_map = standard.to_original(fit_map(model, X1_s, table.y)["weight_std"])
    prob = torch.sigmoid(X1 @ w.T).mean(1)  # Bayesian predictive at the data, (N,)
    far1 = with_bias(far[None])[0]
    far_point = {"x": far, "bayes": torch.sigmoid(w @ far1).mean(), "plugin": torch.sigmoid(w_map @ far1)}
    eps = 1e-7
    metrics = {
        "guide": args.guide,
        "elbo": fit.elbo,
        "fit_seconds": fit.seconds,
        "accuracy": float(((prob > 0.5).float() == table.y).float().mean()),
        "log_loss": float(-(table.y * (prob + eps).log() + (1 - table.y) * (1 - prob + eps).log()).mean()),
        "far_point": far_point,
        "weights": ["bias"] + table.feature_names,
        "weight_mean": w.mean(0),
        "weight_sd": w.std(0),
        "map_weight": w_map,
    }
    say(args, f"logreg: {len(table)} points, guide {args.guide}, ELBO {fit.elbo:.2f}",
        f"accuracy {metrics['accuracy']:.3f}   log-loss {metrics['log_loss']:.4f}",
        f"p(y=1 | x*={args.far_point}): Bayesian {float(far_point['bayes']):.3f}   "
        f"plug-in (MAP) {float(far_point['plugin']):.3f}")
    if table.X.shape[1] == 2:
        plot(args, table, w, w_map)
    return metrics


def plot(args, table, w, w_map):
    xx, yy, grid = grid_2d(table.X)
    grid = grid.to(table.X)
    G1 = with_bias(grid)
    fig, axes = new_figure(ncols=2, size=(5.5, 4.5))
    decision_surface(axes[0, 0], xx, yy, torch.sigmoid(G1 @ w.T).mean(1).cpu(), table.X, table.y,
                     f"Bayesian predictive ({args.guide})")
    decision_surface(axes[0, 1], xx, yy, torch.sigmoid(G1 @ w_map).cpu(), table.X, table.y, "plug-in (MAP)")
    ax = axes[0, 0]
    xs = torch.linspace(float(xx.min()), float(xx.max()), 2)
    for b, w1, w2 in w[:25].cpu().tolist():  # boundaries b + w1 x1 + w2 x2 = 0 of posterior draws
        if abs(w2) > 1e-9:
            ax.plot(xs, -(b + w1 * xs) / w2, color="k", alpha=0.25, lw=0.7)
    ax.set(xlim=(xx.min(), xx.max()), ylim=(yy.min(), yy.max()))
    save(fig, args.out / "logreg_surface.png")
