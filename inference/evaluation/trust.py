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
:data:`TRUSTED_ERROR` posterior sds with their Monte Carlo error (each quantity's estimate plus :data:`CONFIDENCE`
MCSEs: weighted draws of a q lighter-tailed than p understate its spread, so an estimate just below the bar is not
enough; posteriordb's garch and mesquite: full rank's sd errors estimated 0.056 and 0.084, measured 0.111 and 0.105,
with MCSEs 0.026 and 0.036); ``"corrected"`` where the guide is off but :math:`\hat k <` :data:`CORRECTED_KHAT`,
so that its PSIS-resampled draws (:func:`corrected_indices`) stand in for it; ``"no"`` otherwise (no density,
:math:`\hat k \ge 0.7`, too few effective draws, or off with weights too heavy-tailed to correct it), each with
its reason.

Two checks that :math:`\hat k` cannot make, both optional where they cost fits (:func:`downgraded`):

- **restarts** (:func:`restart_spread`): the same family fitted again from starts drawn from the Laplace Gaussian
  (:data:`RESTART_JITTER`), with other seeds (in the spirit of Vehtari's suggestion in ArviZ #498: an R-hat across
  independent runs). Converged fits forget their start; a fit stopped early, or one that found a
  mode by chance, does not: the spread of the restarts' means and sds, in posterior sds, is more than
  :data:`TRUSTED_ERROR`. Costs one fit a restart.
- **families** (:func:`family_gap`, :func:`outvoted`): each trusted guide's moments against every other trusted
  family's; two guides each within 0.1 sds of the posterior are within 0.2 of each other (and the noise of their
  draws' moments), so a larger gap (:data:`AGREEMENT`: 0.3) says one of them is not. A guide far from most of the
  others is not trusted (two that disagree: neither). Not the richest family as the judge: on posteriordb's earnings
  the flow, the richest trusted, was the one off (its sds 0.42 off, estimated 0.10), and four accurate guides agreed
  with each other against it. Costs nothing beyond the guides already fitted: it needs two.

And where the model can simulate its data, VSBC (:mod:`.vsbc`): a family biased for the model, shown by fits to
data sets it simulates. Costs one fit a data set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from deepprob.inference.evaluation.diagnostics import psis_log_weights

#: the verdict's bar: a guide is trusted where its estimated worst errors are within this many posterior sds
TRUSTED_ERROR = 0.1
#: MCSEs added to each estimated error before it is held against the bar (about 95% one-sided confidence)
CONFIDENCE = 2.0
#: above this Pareto k-hat the importance weights estimate nothing (Vehtari et al.)
KHAT_LIMIT = 0.7
#: the largest k-hat at which a guide's PSIS-resampled draws stand in for it: nearer 0.7 the smoothed weights still
#: estimate, but too little (a mean-field fit of a correlated regression at k-hat 0.67: sd error estimated 0.32, 0.63
#: measured, its resampled draws 0.48 off; at 0.45: 0.20 and 0.25, resampled 0.09)
CORRECTED_KHAT = 0.6
#: the fewest effective draws of the weighted estimates (and of the corrected draws) the verdict rests on
MIN_ESS = 100
TRUST_VALUES = ("yes", "corrected", "no")
#: a corrected guide's draws are resampled from this many times as many draws of it (sampling-importance-resampling
#: from a larger pool repeats fewer draws: on eight schools the corrected mixture's sd error was 0.104 resampled from
#: as many draws as it returns)
RESAMPLING_POOL = 4
#: restarts start at a draw of the Laplace Gaussian widened this many times (1: a draw of it)
RESTART_JITTER = 1.0
#: the largest gap between two trusted guides' moments, in posterior sds: each within TRUSTED_ERROR of the truth, and
#: the Monte Carlo noise of two sets of draws' moments (about 0.05 each for resampled draws, whose ESS is smaller)
AGREEMENT = 2 * TRUSTED_ERROR + 0.1


@dataclass
class ErrorEstimate:
    """A guide's errors estimated from its own draws (no reference), in posterior sds.

    Attributes:
        mean_err_est, sd_err_est: the worst over the compared quantities (as ``mean_err_sd``, ``sd_err_sd``).
        mean_err_est_mcse, sd_err_est_mcse: their Monte Carlo standard errors (at the worst quantity).
        mean_err_est_each, sd_err_est_each: each quantity's, by label.
        mean_err_bound, sd_err_bound: the worst of each quantity's estimate plus :data:`CONFIDENCE` MCSEs (what the
            verdict holds against the bar).
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
    mean_err_bound: float = math.nan
    sd_err_bound: float = math.nan

    def row(self) -> dict:
        """The entries of a comparison's row."""
        return {"mean_err_est": self.mean_err_est, "sd_err_est": self.sd_err_est,
                "mean_err_est_mcse": self.mean_err_est_mcse, "sd_err_est_mcse": self.sd_err_est_mcse,
                "mean_err_bound": self.mean_err_bound, "sd_err_bound": self.sd_err_bound,
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
    mean_mcse, sd_mcse = se_mu / sd_w, se_sd * sd_q / sd_w**2
    i, j = int(np.argmax(mean_err)), int(np.argmax(sd_err))
    return ErrorEstimate(
        mean_err_est=float(mean_err[i]), sd_err_est=float(sd_err[j]),
        mean_err_est_mcse=float(mean_mcse[i]), sd_err_est_mcse=float(sd_mcse[j]),
        mean_err_est_each=dict(zip(labels, mean_err.tolist())), sd_err_est_each=dict(zip(labels, sd_err.tolist())),
        khat=khat, ess=float(1.0 / (w**2).sum()),
        mean_err_bound=float((mean_err + CONFIDENCE * mean_mcse).max()),
        sd_err_bound=float((sd_err + CONFIDENCE * sd_mcse).max()))


def verdict(q_density: str, estimate: ErrorEstimate | None) -> tuple[str, str]:
    """``(trust, trust_reason)``: ``"yes"``, ``"corrected"`` or ``"no"`` and why, in one short phrase."""
    if q_density != "density" or estimate is None:
        return "no", f"a {q_density}: no density to weigh its draws by"
    k, worst = estimate.khat, max(estimate.mean_err_est, estimate.sd_err_est)
    if not math.isfinite(k) or k >= KHAT_LIMIT:
        return "no", f"k-hat {k:.2f} >= {KHAT_LIMIT}: its draws cannot check it"
    if estimate.ess < MIN_ESS:
        return "no", f"{estimate.ess:.0f} effective draws < {MIN_ESS}: too few to check it"
    bound = max(estimate.mean_err_bound, estimate.sd_err_bound)
    if bound <= TRUSTED_ERROR or (math.isnan(bound) and worst <= TRUSTED_ERROR):
        return "yes", f"estimated within {worst:.2f} sds, {bound:.2f} with its Monte Carlo error (k-hat {k:.2f})"
    if k >= CORRECTED_KHAT:
        off = f"estimated {worst:.2f} sds off" + (f" ({bound:.2f} with its Monte Carlo error)" if worst <= TRUSTED_ERROR
                                                   else "")
        return "no", f"{off}, k-hat {k:.2f} >= {CORRECTED_KHAT}: too heavy-tailed to correct"
    off = f"estimated {worst:.2f} sds off" if worst > TRUSTED_ERROR else f"within {bound:.2f} sds at most"
    return "corrected", f"{off}; its PSIS-resampled draws (k-hat {k:.2f}) correct it"


def corrected_indices(log_weights: torch.Tensor, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``num`` indices of draws resampled in proportion to their PSIS-smoothed weights (with replacement): the
    corrected draws of a guide whose verdict is ``"corrected"``."""
    w, _ = smoothed_weights(log_weights)
    return torch.multinomial(torch.as_tensor(w), num, replacement=True, generator=generator)


def trust_row(q_density: str, compared: tuple[torch.Tensor, list[str]], log_weights: torch.Tensor) -> dict:
    """A guide row's errors estimated without a reference and its verdict: ``mean_err_est``, ``sd_err_est`` (null
    where k-hat >= 0.7 or the guide has no density: nothing can be estimated), their MCSEs, the weights' ``ess``,
    ``trust`` and ``trust_reason``."""
    estimate = estimate_errors(*compared, log_weights) if q_density == "density" else None
    trust, reason = verdict(q_density, estimate)
    row = {"mean_err_est": None, "sd_err_est": None, "trust": trust, "trust_reason": reason}
    if estimate is not None and math.isfinite(estimate.khat) and estimate.khat < KHAT_LIMIT:
        row.update(estimate.row())
    return row


def _moments(values: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    x = torch.as_tensor(values).detach().double().cpu().numpy()
    return x.mean(0), x.std(0, ddof=1)


def restart_spread(runs: list[torch.Tensor]) -> float:
    """The spread of independent fits of one family: the largest standard deviation, across the fits, of a
    quantity's mean or sd, in units of its sd (its root mean square across the fits). ``runs``: each fit's draws of
    the compared quantities, (S, P) with the same columns. About 1/sqrt(S) for fits that agree."""
    means, sds = zip(*(_moments(values) for values in runs))
    means, sds = np.stack(means), np.stack(sds)
    scale = np.sqrt((sds**2).mean(0))
    return float(max((means.std(0, ddof=1) / scale).max(), (sds.std(0, ddof=1) / scale).max()))


def family_gap(values: torch.Tensor, other: torch.Tensor) -> float:
    """The largest gap between the means or sds of two guides' draws (S, P) and (S', P) of the same quantities, in
    units of either's sds (the larger of the two ways)."""
    (mean, sd), (mean_o, sd_o) = _moments(values), _moments(other)
    gaps = [max((np.abs(mean - mean_o) / np.maximum(unit, 1e-300)).max(),
                (np.abs(sd - sd_o) / np.maximum(unit, 1e-300)).max()) for unit in (sd, sd_o)]
    return float(max(gaps))


def outvoted(values: dict[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    """The trusted guides (``values``: each one's standing draws (S, P) of the compared quantities) that are further
    than :data:`AGREEMENT` from more than half of the others, each with those gaps."""
    labels = list(values)
    gaps = {(a, b): family_gap(values[a], values[b]) for i, a in enumerate(labels) for b in labels[i + 1:]}
    out = {}
    for label in labels:
        far = {b if a == label else a: gap for (a, b), gap in gaps.items() if label in (a, b) and gap > AGREEMENT}
        if len(far) > (len(labels) - 1) / 2:
            out[label] = far
    return out


def downgraded(row: dict, restart: float | None = None, far: dict[str, float] | None = None,
               vsbc: tuple[list[str], float] | None = None) -> dict:
    """``row`` with the checks' figures (``restart_spread``, ``family_gaps``, ``vsbc_flagged``, ``vsbc_min_pvalue``),
    its verdict "no" where a trusted guide fails one of them, and why. ``far``: the trusted families it is too far
    from, most of them (:func:`outvoted`), with the gaps; ``vsbc``: the parameters VSBC flags (:mod:`.vsbc`) and its
    smallest p-value."""
    row = dict(row)
    failed = []
    if restart is not None:
        row["restart_spread"] = restart
        if restart > TRUSTED_ERROR:
            failed.append(f"its restarts disagree by {restart:.2f} sds" if math.isfinite(restart)
                          else "a restart of it failed")
    if vsbc is not None:
        row["vsbc_flagged"], row["vsbc_min_pvalue"] = vsbc
        if vsbc[0]:
            failed.append(f"VSBC shows it biased on {', '.join(vsbc[0][:3])}")
    if far:
        row["family_gaps"] = far
        failed.append(f"{max(far.values()):.2f} sds from {', '.join(far)}: most of the other trusted guides")
    if failed and row.get("trust") in ("yes", "corrected"):
        row.update(trust="no", trust_reason=f"{row['trust_reason']}, but " + " and ".join(failed))
    return row
