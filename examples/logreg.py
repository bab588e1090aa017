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

from deepprob.datasets import check_binary, two_classes
from deepprob.errors import InputError
from deepprob.examples.common import fit_guide, load_table, say
from deepprob.examples.options import add_data_arguments, add_guide_arguments, add_svi_arguments, positive_float
from deepprob.inference import fit_map
from deepprob.inference.arviz_data import (
    Problem,
    draws_from_guide,
    predictive_mean,
    save_inference_data,
    summary_text,
    to_inference_data,
)
from deepprob.inference.diagnostics import loo, predictive_metrics, psis_khat
from deepprob.models.logreg import LogisticRegression, with_bias
from deepprob.models.standardise import Standardisation
from deepprob.plots import decision_surface, grid_2d, new_figure, save

# 5000 steps: on classes that barely overlap the weights are large, a long walk at a decaying learning
# rate; at 2000 the posterior means were still off by up to 1.5 posterior sds on some seeds
SVI_DEFAULTS = {"steps": 5000, "lr": 0.05, "num_particles": 4}
NUM_DRAWS = 2000  # draws of the fitted guide for the report and the InferenceData


def add_problem_arguments(parser):
    """The data and the model (shared with ``deepprob compare logreg``)."""
    add_data_arguments(parser)
    group = parser.add_argument_group("model")
    group.add_argument("--alpha", type=positive_float, default=1.0,
                       help="prior precision of the weights (default: %(default)s)")
    group.add_argument("--num-points", type=int, default=2000,
                       help="embedded data: number of points (default: %(default)s)")
    group.add_argument("--far-point", default="100,0.5",
                       help="comma-separated x* far from the data where the predictives are compared"
                       " (default: %(default)s)")


def add_arguments(parser):
    add_guide_arguments(parser, default="laplace")
    add_svi_arguments(parser, **SVI_DEFAULTS)
    add_problem_arguments(parser)


def parse_point(text: str, dim: int) -> torch.Tensor:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise InputError(f"--far-point {text!r}: expected {dim} comma-separated numbers") from None
    if len(values) != dim:
        raise InputError(f"--far-point {text!r}: expected {dim} numbers (one per feature), got {len(values)}")
    return torch.tensor(values)


def prepare(args) -> Problem:
    """The data and model of ``args``; predictive metrics are reported on the training data.

    ``extras``: ``table``, ``X1`` = [1, X] (N, D+1), ``standard`` (the map w_s = T w) and ``far`` (D,).
    """
    table = load_table(args, lambda: two_classes(n=args.num_points, seed=args.seed))
    check_binary(f"--target {table.target_name}" if args.data else "labels", table.y)
    far = parse_point(args.far_point, table.X.shape[1]).to(table.X)
    X1 = with_bias(table.X)
    standard = Standardisation.of(X1)
    X1_s = standard.features(X1)

    def to_inputs(X: torch.Tensor) -> torch.Tensor:
        return standard.features(with_bias(X))

    return Problem(
        name="logreg",
        model=LogisticRegression(standard, alpha=args.alpha),
        x=X1_s,
        y=table.y,
        features=table.X,
        to_inputs=to_inputs,
        var_names=["weight"],
        dims={"weight": ["feature"]},
        coords={"feature": ["bias"] + table.feature_names, "input": table.feature_names},
        likelihood="bernoulli",
        evaluation=(X1_s, table.y),
        far_point=(args.far_point, to_inputs(far[None])),
        extras={"table": table, "X1": X1, "standard": standard, "far": far},
    )


def main(args):
    problem = prepare(args)
    table, X1, standard, far = (problem.extras[k] for k in ("table", "X1", "standard", "far"))

    fit = fit_guide(problem.model, args, *problem.fit_args)
    draws = draws_from_guide(problem.model, fit.guide, *problem.fit_args, NUM_DRAWS)
    idata = to_inference_data(problem, draws, attrs={"guide": args.guide})
    path = save_inference_data(idata, args.out / f"logreg_{args.guide}.nc")
    w = draws.deterministic["weight"]  # (S, D+1) in the original coordinates
    w_map = standard.to_original(fit_map(problem.model, *problem.fit_args)["weight_std"])
    far1 = with_bias(far[None])[0]
    far_point = {"x": far, "bayes": predictive_mean(problem.model, draws.latents, problem.far_point[1])[0],
                 "plugin": torch.sigmoid(w_map @ far1)}
    metrics = {
        "guide": args.guide,
        "elbo": fit.elbo,
        "fit_seconds": fit.seconds,
        **fit.extras,
        **predictive_metrics(problem.model, draws.latents, problem.evaluation, problem.likelihood),
        "far_point": far_point,
        "weights": problem.coords["feature"],
        "weight_mean": w.mean(0),
        "weight_sd": w.std(0),
        "map_weight": w_map,
        "khat": psis_khat(draws.log_weights),
        "elpd_loo": loo(idata)["elpd_loo"],
        "inference_data": path,
    }
    say(args, f"logreg: {len(table)} points, guide {args.guide}, ELBO {fit.elbo:.2f}",
        f"accuracy {metrics['accuracy']:.3f}   log-loss {metrics['log_loss']:.4f}",
        f"p(y=1 | x*={args.far_point}): Bayesian {float(far_point['bayes']):.3f}   "
        f"plug-in (MAP) {float(far_point['plugin']):.3f}",
        f"PSIS k-hat = {metrics['khat']:.3f}   elpd_loo = {metrics['elpd_loo']:.2f}",
        f"az.summary of the guide's {NUM_DRAWS} draws ({path}):", summary_text(idata, problem.var_names))
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
