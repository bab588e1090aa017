"""Fitting and checking posteriors: SVI, exact conjugate answers, divergences, diagnostics."""

from deepprob.inference.svi import (
    FitResult,
    check_loss,
    collect_parameters,
    estimate_elbo,
    fit_map,
    fit_svi,
    make_optimizer,
    optimise,
)

__all__ = [
    "FitResult", "check_loss", "collect_parameters", "estimate_elbo", "fit_map", "fit_svi", "make_optimizer",
    "optimise",
]
