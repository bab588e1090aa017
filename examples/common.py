"""Pieces the regression examples share: fitting the guide of ``--guide`` with the SVI options, reporting."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

from deepprob.examples.options import fit_settings, guide_options
from deepprob.inference.evaluation.arviz_data import save_inference_data
from deepprob.inference.evaluation.auto import fit
from deepprob.inference.evaluation.diagnostics import guide_khat, loo, moment_errors
from deepprob.inference.evaluation.draws import Draws, draws_from_guide
from deepprob.inference.evaluation.references import laplace_reference
from deepprob.inference.fitting.result import FitResult
from deepprob.logdensity import ModelStructure


def fit_guide(model, args: argparse.Namespace, *model_args, init_loc_fn=None, desc=None) -> FitResult:
    """``deepprob.fit`` of ``args.guide`` (a family, or ``auto``: the ladder) for ``model`` with the shared SVI
    options of ``args``."""
    return fit(model, *model_args, guide=args.guide, options=guide_options(args, init_loc_fn),
               settings=fit_settings(args, desc or f"{args.example}/{args.guide}"))


def say(args: argparse.Namespace, *lines: str) -> None:
    """Print the human-readable report (not with --json or --quiet)."""
    if not (args.json or args.quiet):
        print(*lines, sep="\n")


# the report's pointwise values (draws x rows: log-likelihoods, replicates) are kept in full up to this many;
# a bigger table gets fewer draws (at least MIN_REPORT_DRAWS), and above POINTWISE_KEPT no LOO or
# log_likelihood group (a million rows would otherwise make gigabytes of them)
POINTWISE_BUDGET = 10**8
POINTWISE_KEPT = 2 * 10**7
MIN_REPORT_DRAWS = 100


@dataclass
class GuideReport:
    """The fitted guide's draws through the full-data model, as :func:`guide_report` gives them."""

    draws: Draws
    idata: object
    path: Path
    elpd_loo: float | None
    num_draws: int
    metrics: dict


def guide_report(problem, fit, args, wanted: int) -> GuideReport:
    """``wanted`` draws of the fitted guide (fewer for a big table), their InferenceData saved to ``--out``,
    PSIS k-hat and PSIS-LOO; for a minibatch fit, its errors against the full data's Laplace approximation.

    ``metrics``: ``khat``, ``elpd_loo`` (None where the table is too big for pointwise values), ``report_draws``,
    after ``--guide auto`` the ladder's ``auto`` (``deepprob.fit``'s), and after a minibatch fit ``minibatch_check``
    (:func:`minibatch_check`).
    """
    rows = len(problem.y)
    n = max(MIN_REPORT_DRAWS, min(wanted, POINTWISE_BUDGET // rows))
    # chunks of at most ~10^7 values a site, so that a million rows do not make gigabytes at once
    draws = draws_from_guide(problem.model, fit.guide, *problem.fit_args, num_samples=n,
                             chunk=max(1, min(500, 10**7 // rows)))
    pointwise = n * rows <= POINTWISE_KEPT
    if not pointwise:
        draws.log_lik, draws.y_rep = {}, {}
    idata = problem.inference_data(draws, {"guide": args.guide})
    path = save_inference_data(idata, args.out / f"{problem.name}_{args.guide}.nc")
    elpd = loo(draws.pointwise_log_lik())["elpd_loo"] if pointwise else None
    metrics = {"khat": guide_khat(fit.guide, draws.log_weights), "elpd_loo": elpd, "report_draws": n}
    if "auto" in fit.extras:  # --guide auto: the family chosen, its verdict, every rung tried
        metrics["auto"] = fit.extras["auto"]
    if getattr(problem.model, "batch_size", None):
        metrics["minibatch_check"] = minibatch_check(problem, draws)
    return GuideReport(draws, idata, path, elpd, n, metrics)


def minibatch_check(problem, draws: Draws, num_samples: int = 4000) -> dict:
    """How far a minibatch fit's draws are from the Laplace approximation of the full data (mode by L-BFGS,
    curvature there; for N in the tens of thousands and more, the posterior is Gaussian to a fraction of an
    sd): the largest errors of the means and of the sds over the latent coordinates, in reference sds."""
    latents = laplace_reference(problem.model, *problem.fit_args, num_samples=num_samples)
    structure = ModelStructure.of(problem.model, *problem.fit_args)
    mean_err, sd_err = moment_errors(structure.pack_draws(draws.latents), structure.pack_draws(latents))
    return {"reference": "laplace (full data)", "mean_err_sd": float(mean_err.max()),
            "sd_err_sd": float(sd_err.max())}


def loo_text(metrics: dict) -> str:
    loo_part = (f"elpd_loo = {metrics['elpd_loo']:.2f}" if metrics["elpd_loo"] is not None
                else "no PSIS-LOO (too many rows for pointwise values)")
    khat = metrics["khat"]
    khat_part = (f"PSIS k-hat = {khat:.3f}" if khat is not None and math.isfinite(khat) or khat == math.inf
                 else "PSIS k-hat: none (resampled draws have no density)")
    line = f"{khat_part}   {loo_part}"
    auto = metrics.get("auto")
    if auto:
        line += (f"\nguide auto: {auto['family']}, trust {auto['trust']} ({auto['reason']}; "
                 + ", ".join(f"{t['guide']} {t['trust']} {t['seconds']:.1f} s" for t in auto["tried"]) + ")")
    check = metrics.get("minibatch_check")
    if check:
        line += (f"\nminibatch fit against the {check['reference']} Laplace approximation: means within "
                 f"{check['mean_err_sd']:.3f} sds, sds within {100 * check['sd_err_sd']:.1f}%")
    return line
