"""Bayesian linear regression: the exact conjugate posterior against a variational guide.

Fits the guide by SVI, computes the exact posterior N(mu, Sigma) and reports KL(q || exact), which is
closed form for Gaussian guides and Monte Carlo for the mixture. Figures: posterior regression curves
over the data with the exact predictive band, and the predictive density as a heat map (the
uncertainty grows away from the data).

    deepprob linreg --guide fullrank
    deepprob linreg --guide meanfield --json
    deepprob linreg --data my.csv --target y --alpha 0.1 --beta 4
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.distributions import MultivariateNormal

from deepprob.examples import problems
from deepprob.examples.common import fit_guide, guide_report, loo_text, say
from deepprob.inference.evaluation.arviz_data import summary_text
from deepprob.inference.evaluation.exact import conjugate_predictive
from deepprob.inference.evaluation.kl import kl_of_guide
from deepprob.models.linreg import expand_basis
from deepprob.plots import new_figure, save


def main(args):
    problem = problems.linreg(args)
    table, basis, exact, beta = (problem.extras[k] for k in ("table", "basis", "exact", "beta"))
    names = problem.coords["feature"]

    fit = fit_guide(problem.model, args, *problem.fit_args)
    kl = kl_of_guide(fit.guide, problem.exact.over_latent_vector(None))
    report = guide_report(problem, fit, args, args.draws)
    draws, idata, path = report.draws, report.idata, report.path

    weights = draws.deterministic["weight"].double()
    exact_sd = exact.covariance_matrix.diagonal().sqrt()
    metrics = {
        "guide": args.guide,
        "kl_to_exact": kl,
        "elbo": fit.elbo,
        "log_evidence": problem.extras["log_evidence"],
        "fit_seconds": fit.seconds,
        **fit.extras,
        "num_points": len(table),
        "basis": basis,
        "beta": beta,
        "weights": names,
        "exact_mean": exact.mean,
        "exact_sd": exact_sd,
        "guide_mean": weights.mean(0),
        "guide_sd": weights.std(0),
        **report.metrics,
        "inference_data": path,
    }
    say(args, f"linreg: {len(table)} points, basis {basis}, noise precision {beta:.4g}, guide {args.guide}",
        f"{'weight':>10} {'exact mean':>11} {'exact sd':>9} {'guide mean':>11} {'guide sd':>9}",
        *[f"{n:>10} {m:11.4f} {s:9.4f} {gm:11.4f} {gs:9.4f}" for n, m, s, gm, gs in
          zip(names, exact.mean, exact_sd, weights.mean(0), weights.std(0))],
        f"KL(q || exact) = {kl:.4g}   ELBO = {fit.elbo:.3f}   log evidence = {metrics['log_evidence']:.3f}",
        loo_text(metrics),
        f"az.summary of the guide's {report.num_draws} draws ({path}):", summary_text(idata, problem.var_names))
    if table.X.shape[1] == 1:
        plot_fit(args, table, basis, beta, exact, weights)
    plot_weights(args, names, exact, weights)
    return metrics


def plot_fit(args, table, basis, beta, exact, draws):
    """Posterior curves over the data, and the exact and guide predictive densities as heat maps."""
    x, y = table.X[:, 0].cpu().double(), table.y.cpu().double()
    lo, hi = float(x.min()), float(x.max())
    pad = 0.5 * (hi - lo)
    grid = torch.linspace(lo - pad, hi + pad, 300, dtype=torch.float64)
    Phi_grid, _ = expand_basis(grid[:, None], basis)
    exact_pred = conjugate_predictive(Phi_grid, MultivariateNormal(exact.mean.cpu(), exact.covariance_matrix.cpu()),
                                      beta)
    curves = draws.cpu()[:30] @ Phi_grid.T

    fig, axes = new_figure(ncols=3, size=(5.5, 4.2))
    ax = axes[0, 0]
    m, s = exact_pred.mean, exact_pred.stddev
    ax.fill_between(grid, m - 2 * s, m + 2 * s, color="C0", alpha=0.2, label="exact predictive ±2 sd")
    ax.plot(grid, curves.T, color="C1", alpha=0.3, lw=0.8)
    ax.plot([], [], color="C1", label=f"{args.guide}: posterior curves")
    ax.scatter(x, y, s=12, color="k", zorder=3, label="data")
    ax.set(title="posterior regression curves", xlabel="x", ylabel="y")
    ax.legend(fontsize=8)
    ylim = (float(y.min()) - 3 * (float(y.std())), float(y.max()) + 3 * float(y.std()))
    ax.set_ylim(*ylim)
    ygrid = torch.linspace(*ylim, 200, dtype=torch.float64)
    guide_mean, guide_var = (draws.cpu() @ Phi_grid.T).mean(0), (draws.cpu() @ Phi_grid.T).var(0) + 1 / beta
    for ax, (mean, sd, title) in zip(axes[0, 1:], [(m, s, "exact predictive density"),
                                                   (guide_mean, guide_var.sqrt(), f"{args.guide} predictive density")]):
        density = torch.exp(-0.5 * ((ygrid[:, None] - mean) / sd) ** 2) / (sd * math.sqrt(2 * math.pi))
        ax.pcolormesh(grid, ygrid, density.numpy(), shading="auto", cmap="viridis",
                      norm=_log_norm(density))
        ax.scatter(x, y, s=8, color="w")
        ax.axvspan(lo, hi, color="w", alpha=0.05)
        ax.set(title=title + " (log colour)", xlabel="x", ylabel="y")
    save(fig, args.out / "linreg_fit.png")


def _log_norm(density):
    from matplotlib.colors import LogNorm

    top = float(density.max())
    return LogNorm(vmin=top * 1e-4, vmax=top)


def plot_weights(args, names, exact, draws):
    """Marginal posterior of each weight: exact density against a histogram of the guide's draws."""
    fig, axes = new_figure(ncols=len(names), size=(3.0, 2.6))
    for j, (ax, name) in enumerate(zip(axes[0], names)):
        mean, sd = float(exact.mean[j]), float(exact.covariance_matrix[j, j].sqrt())
        grid = np.linspace(mean - 4 * sd, mean + 4 * sd, 200)
        ax.hist(draws[:, j].cpu().numpy(), bins=40, density=True, color="C1", alpha=0.5, label=args.guide)
        ax.plot(grid, np.exp(-0.5 * ((grid - mean) / sd) ** 2) / (sd * np.sqrt(2 * np.pi)), "C0", label="exact")
        ax.set(title=name, yticks=[])
    axes[0, 0].legend(fontsize=7)
    save(fig, args.out / "linreg_weights.png")
