r"""Which approximation to trust without a reference: its errors estimated from its own draws, and a verdict.

A guide's draws :math:`z_s \sim q` carry importance weights :math:`w_s \propto p(y, z_s) / q(z_s)`. Pareto-smoothed
(PSIS) and self-normalised, they give estimates of the posterior's own means and sds,

.. math:: \hat\mu = \sum_s \tilde w_s x_s, \qquad \hat\sigma^2 = \sum_s \tilde w_s (x_s - \hat\mu)^2,

and where the Pareto :math:`\hat k < 0.7` these are trustworthy (Vehtari et al. 2024, "Pareto smoothed importance
sampling"). The distance of q's own moments from them estimates q's errors, in the units the comparison measures
them against a reference (posterior sds):

.. math:: \widehat{\mathrm{mean\ err}} = |\bar x_q - \hat\mu| / \hat\sigma, \qquad
          \widehat{\mathrm{sd\ err}} = |s_q - \hat\sigma| / \hat\sigma,

each with a Monte Carlo standard error (the self-normalised estimator's delta-method variance,
:math:`\sum_s \tilde w_s^2 (x_s - \hat\mu)^2` for the mean). They see what :math:`\hat k` alone does not: a shifted
centre (Laplace's blind spot) and a q that is too wide, whose weights are bounded (small :math:`\hat k`) while its
sds are off.

The verdict (:func:`verdict`): ``"yes"`` where :math:`\hat k < 0.7` and both estimated worst errors are within
:data:`TRUSTED_ERROR` posterior sds; ``"corrected"`` where the guide is off but :math:`\hat k <` :data:`CORRECTED_KHAT`,
so that its PSIS-resampled draws (:func:`corrected_indices`) stand in for it; ``"no"`` otherwise (no density,
:math:`\hat k \ge 0.7`, too few effective draws, or off with weights too heavy-tailed to correct it), each with
its reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from deepprob.inference.evaluation.diagnostics import psis_log_weights

#: the verdict's bar: a guide is trusted where its estimated worst errors are within this many posterior sds
TRUSTED_ERROR = 0.1
#: above this Pareto k-hat the importance weights estimate nothing (Vehtari et al.)
KHAT_LIMIT = 0.7
#: the largest k-hat at which a guide's PSIS-resampled draws stand in for it: nearer 0.7 the smoothed weights still
#: estimate, but too little (a mean-field fit of a correlated regression at k-hat 0.67: sd error estimated 0.32, 0.63
#: measured, its resampled draws 0.48 off; at 0.45: 0.20 and 0.25, resampled 0.09)
CORRECTED_KHAT = 0.6
#: the fewest effective draws of the weighted estimates (and of the corrected draws) the verdict rests on
MIN_ESS = 100
TRUST_VALUES = ("yes", "corrected", "no")


@dataclass
class ErrorEstimate:
    """A guide's errors estimated from its own draws (no reference), in posterior sds.

    Attributes:
        mean_err_est, sd_err_est: the worst over the compared quantities (as ``mean_err_sd``, ``sd_err_sd``).
        mean_err_est_mcse, sd_err_est_mcse: their Monte Carlo standard errors (at the worst quantity).
        mean_err_est_each, sd_err_est_each: each quantity's, by label.
        khat: the weights' Pareto k-hat; ess: their effective sample size, 1 / sum(w~^2).
    """

    mean_err_est: float
    sd_err_est: float
    mean_err_est_mcse: float
    sd_err_est_mcse: float
    mean_err_est_each: dict[str, float]
    sd_err_est_each: dict[str, float]
    khat: float
    ess: float

    def row(self) -> dict:
        """The entries of a comparison's row."""
        return {"mean_err_est": self.mean_err_est, "sd_err_est": self.sd_err_est,
                "mean_err_est_mcse": self.mean_err_est_mcse, "sd_err_est_mcse": self.sd_err_est_mcse,
                "mean_err_est_each": self.mean_err_est_each, "sd_err_est_each": self.sd_err_est_each,
                "ess": self.ess}


def smoothed_weights(log_weights: torch.Tensor) -> tuple[np.ndarray, float]:
    """PSIS-smoothed, normalised weights (S,) of ``log_weights`` (S,) and their Pareto k-hat (non-finite log weights,
    a draw where q has no mass the model allows, weigh 0)."""
    lw = torch.as_tensor(log_weights).detach().double().cpu().numpy().ravel()
    lw = np.where(np.isfinite(lw), lw, -np.inf)
    finite = np.isfinite(lw)
    if finite.sum() < 2 or np.ptp(lw[finite]) == 0:  # q = p up to a constant: equal weights, no tail
        w = finite / max(finite.sum(), 1)
        return w.astype(np.float64), 0.0
    smoothed, k = psis_log_weights(np.where(finite, lw, lw[finite].min() - 1e3)[:, None])
    w = np.exp(smoothed[:, 0]) * finite
    return w / w.sum(), float(k[0])


def estimate_errors(values: torch.Tensor, labels: list[str], log_weights: torch.Tensor) -> ErrorEstimate:
    """The errors of the means and sds of ``values`` (S, P: q's draws of the compared quantities) against the
    posterior's, estimated by their PSIS-weighted moments (``log_weights`` (S,): log p(y, z_s) - log q(z_s))."""
    x = torch.as_tensor(values).detach().double().cpu().numpy()
    w, khat = smoothed_weights(log_weights)
    mu_w = w @ x
    centred = x - mu_w
    var_w = w @ centred**2
    sd_w = np.sqrt(np.maximum(var_w, 1e-300))
    mu_q, sd_q = x.mean(0), x.std(0, ddof=1)
    S = len(x)
    # delta-method variances of the self-normalised estimates, and the noise of q's own moments
    se_mu = np.sqrt(w**2 @ centred**2 + sd_q**2 / S)
    se_var = np.sqrt(w**2 @ (centred**2 - var_w) ** 2)
    se_sd = np.sqrt((se_var / (2 * sd_w)) ** 2 + sd_q**2 / (2 * (S - 1)))
    mean_err = np.abs(mu_q - mu_w) / sd_w
    sd_err = np.abs(sd_q - sd_w) / sd_w
    i, j = int(np.argmax(mean_err)), int(np.argmax(sd_err))
    return ErrorEstimate(
        mean_err_est=float(mean_err[i]), sd_err_est=float(sd_err[j]),
        mean_err_est_mcse=float(se_mu[i] / sd_w[i]), sd_err_est_mcse=float(se_sd[j] * sd_q[j] / sd_w[j] ** 2),
        mean_err_est_each=dict(zip(labels, mean_err.tolist())), sd_err_est_each=dict(zip(labels, sd_err.tolist())),
        khat=khat, ess=float(1.0 / (w**2).sum()))


def verdict(q_density: str, estimate: ErrorEstimate | None) -> tuple[str, str]:
    """``(trust, trust_reason)``: ``"yes"``, ``"corrected"`` or ``"no"`` and why, in one short phrase."""
    if q_density != "density" or estimate is None:
        return "no", f"a {q_density}: no density to weigh its draws by"
    k, worst = estimate.khat, max(estimate.mean_err_est, estimate.sd_err_est)
    if not math.isfinite(k) or k >= KHAT_LIMIT:
        return "no", f"k-hat {k:.2f} >= {KHAT_LIMIT}: its draws cannot check it"
    if estimate.ess < MIN_ESS:
        return "no", f"{estimate.ess:.0f} effective draws < {MIN_ESS}: too few to check it"
    if worst <= TRUSTED_ERROR:
        return "yes", f"estimated within {worst:.2f} sds (k-hat {k:.2f})"
    if k >= CORRECTED_KHAT:
        return "no", f"estimated {worst:.2f} sds off, k-hat {k:.2f} >= {CORRECTED_KHAT}: too heavy-tailed to correct"
    return "corrected", f"estimated {worst:.2f} sds off; its PSIS-resampled draws (k-hat {k:.2f}) correct it"


def corrected_indices(log_weights: torch.Tensor, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``num`` indices of draws resampled in proportion to their PSIS-smoothed weights (with replacement): the
    corrected draws of a guide whose verdict is ``"corrected"``."""
    w, _ = smoothed_weights(log_weights)
    return torch.multinomial(torch.as_tensor(w), num, replacement=True, generator=generator)
