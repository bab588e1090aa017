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

import torch

from deepprob.examples import problems
from deepprob.examples.common import fit_guide, guide_report, loo_text, say
from deepprob.inference.evaluation.arviz_data import summary_text
from deepprob.inference.evaluation.diagnostics import predictive_metrics
from deepprob.inference.evaluation.draws import likelihood_at
from deepprob.plots import decision_surface, grid_2d, new_figure, save


def main(args):
    problem = problems.bnn(args)
    train, test = problem.extras["train"], problem.extras["test"]

    fit = fit_guide(problem.model, args, *problem.fit_args, init_loc_fn=problem.init_loc_fn)
    report = guide_report(problem, fit, args, args.draws)
    draws, idata, path = report.draws, report.idata, report.path
    predictive = predictive_metrics(problem.model, draws.latents, problem.evaluation, problem.likelihood)
    metrics = {"guide": args.guide, "task": args.task, "elbo": fit.elbo, "fit_seconds": fit.seconds, **fit.extras,
               "num_train": len(train), "num_test": len(test), **predictive,
               **report.metrics, "inference_data": path}
    if args.task == "classification":
        say(args, f"bnn classification, guide {args.guide}: test accuracy {metrics['accuracy']:.3f}, "
            f"log-loss {metrics['log_loss']:.4f}, ELBO {fit.elbo:.2f}")
    else:
        say(args, f"bnn regression, guide {args.guide}: test RMSE {metrics['rmse']:.4f}, "
            f"log-likelihood {metrics['test_loglik']:.3f} per point, ELBO {fit.elbo:.2f}")
    say(args, loo_text(metrics),
        f"az.summary of the guide's {report.num_draws} draws ({path}):", summary_text(idata, problem.var_names))
    plot(args, problem, draws.latents)
    return metrics


def plot(args, problem, latents):
    table, mean, sd = problem.extras["table"], problem.extras["mean"], problem.extras["sd"]
    latents = {k: v[:500] for k, v in latents.items()}
    if args.task == "classification" and table.X.shape[1] == 2:
        xx, yy, grid = grid_2d(table.X, n=100, pad=0.4)
        prob = likelihood_at(problem.model, latents, problem.to_inputs(grid.to(table.X)), None).cpu()
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
        f = likelihood_at(problem.model, latents, (grid - mean) / sd, None, statistic="location").cpu()
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
