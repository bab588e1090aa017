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

from deepprob.examples import problems
from deepprob.examples.common import fit_guide, guide_report, loo_text, say
from deepprob.inference.evaluation.arviz_data import summary_text
from deepprob.inference.evaluation.diagnostics import predictive_metrics
from deepprob.inference.evaluation.draws import predictive_mean
from deepprob.inference.fitting.svi import fit_map
from deepprob.models.logreg import with_bias
from deepprob.plots import decision_surface, grid_2d, new_figure, save


def main(args):
    problem = problems.logreg(args)
    table, standard, far = (problem.extras[k] for k in ("table", "standard", "far"))

    fit = fit_guide(problem.model, args, *problem.fit_args)
    report = guide_report(problem, fit, args, args.draws)
    draws, idata, path = report.draws, report.idata, report.path
    w = draws.deterministic["weight"]  # (S, D+1) in the original coordinates
    w_map = standard.to_original(fit_map(problem.model, *problem.fit_args)["weight_std"])
    far1 = with_bias(far[None])[0]
    far_point = {"x": far, "bayes": predictive_mean(problem.model, draws.latents, problem.far_point[1], None)[0],
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
        **report.metrics,
        "inference_data": path,
    }
    say(args, f"logreg: {len(table)} points, guide {args.guide}, ELBO {fit.elbo:.2f}",
        f"accuracy {metrics['accuracy']:.3f}   log-loss {metrics['log_loss']:.4f}",
        f"p(y=1 | x*={problem.far_point[0]}): Bayesian {float(far_point['bayes']):.3f}   "
        f"plug-in (MAP) {float(far_point['plugin']):.3f}",
        loo_text(metrics),
        f"az.summary of the guide's {report.num_draws} draws ({path}):", summary_text(idata, problem.var_names))
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
