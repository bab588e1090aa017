r"""How far an approximate posterior is from the truth, measured from draws.

- :func:`psis_khat`: the Pareto shape :math:`\hat k` of the importance weights
  :math:`w_s = p(y, z_s) / q(z_s)`, z_s ~ q (Yao, Vehtari, Simpson and Gelman 2018, "Yes, but did it
  work?: evaluating variational inference"). The weights' upper tail is fitted by a generalised
  Pareto distribution (PSIS, Vehtari et al. 2015-2022); its shape k says how heavy the tail is:
  :math:`k < 0.5`: q is close to p, importance sampling with q is reliable;
  :math:`0.5 \le k < 0.7`: usable after Pareto smoothing; :math:`k \ge 0.7`: q misses mass that p has
  (typically q too narrow), and expectations under q cannot be trusted. For Gaussians
  p = N(0, 1), q = N(0, s^2) with s < 1 the tail is Pareto with :math:`k = 1 - s^2`.
- :func:`moment_errors`: errors of posterior means and sds in units of the reference sd.
- :func:`wasserstein2`, :func:`mmd2`: distances between two samples, in reference-sd units.
- :func:`classification_metrics`: accuracy and log-loss of predictive probabilities.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az


def psis_khat(log_weights: torch.Tensor | np.ndarray) -> float:
    """The Pareto :math:`\\hat k` of PSIS for S log importance weights (S,), with ``arviz.psislw``.

    The draws are independent (relative efficiency 1). Log-weights that are all equal (q = p exactly)
    have no tail to fit; their weights are bounded, and 0.0 is returned rather than ArviZ's ``inf``.
    NaN log-weights give NaN; +inf (p(y, z) > 0 where q(z) = 0, impossible for a proper q) gives inf.
    """
    lw = np.asarray(torch.as_tensor(log_weights).detach().cpu().double().numpy()).ravel()
    if np.isnan(lw).any():
        return math.nan
    if np.isposinf(lw).any():
        return math.inf
    finite = lw[np.isfinite(lw)]
    if len(finite) < 2 or np.ptp(finite) == 0:
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ's own "k > 0.7" warning: the caller reports k
        _, khat = az.psislw(lw, reff=1.0)
    return float(khat)


def guide_khat(guide, log_weights: torch.Tensor) -> float:
    """PSIS k-hat of a guide's draws (their log weights log p - log q, (S,)): :func:`psis_khat` for a guide with a
    density; +inf for a point mass (its weights p/q are 0 almost everywhere), NaN (``null``: not applicable) for
    particles, whose log q is no density."""
    from deepprob.guides.protocol import declared

    kind = declared(guide).q_density
    return psis_khat(log_weights) if kind == "density" else math.inf if kind == "point mass" else math.nan


def khat_verdict(khat: float) -> str:
    """The reading of :math:`\\hat k` in Yao et al. (2018): ``good`` < 0.5 <= ``ok`` < 0.7 <= ``bad``."""
    if not khat < 0.7:
        return "bad"
    return "good" if khat < 0.5 else "ok"


def moment_errors(draws: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Errors of the means and sds of ``draws`` (S, P) against ``reference`` (R, P), in reference sds.

    Returns (|m_q - m_ref| / sd_ref, |sd_q - sd_ref| / sd_ref), each (P,). The second is the relative
    error of the sd: -0.5 means the approximation's sd is half the reference's (reported as 0.5).
    """
    draws, reference = draws.double(), reference.double()
    sd_ref = reference.std(0).clamp_min(1e-12)
    mean_err = (draws.mean(0) - reference.mean(0)).abs() / sd_ref
    sd_err = (draws.std(0) - sd_ref).abs() / sd_ref
    return mean_err, sd_err


def _standardised(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    return (x.double() - reference.double().mean(0)) / reference.double().std(0).clamp_min(1e-12)


def wasserstein2(x: torch.Tensor, y: torch.Tensor, reference: torch.Tensor | None = None) -> float:
    """The 2-Wasserstein distance between the empirical laws of ``x`` and ``y`` (n, P) each, equal n.

    W2^2 = min over one-to-one matchings of the mean squared distance of matched points (an assignment
    problem, solved exactly). Coordinates are first scaled by ``reference`` (its mean and sd per
    coordinate; default ``y``), so the distance is in reference sds. Two samples of the same law are
    not at distance 0: the noise floor falls like n^{-1/P} (compare with two halves of one sample).
    """
    from scipy.optimize import linear_sum_assignment

    if x.shape != y.shape:
        raise ValueError(f"wasserstein2: expected samples of equal shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    reference = y if reference is None else reference
    xs, ys = _standardised(x, reference), _standardised(y, reference)
    cost = torch.cdist(xs, ys).pow(2).cpu().numpy()
    rows, cols = linear_sum_assignment(cost)
    return float(math.sqrt(cost[rows, cols].mean()))


def mmd2(x: torch.Tensor, y: torch.Tensor, reference: torch.Tensor | None = None) -> float:
    """Unbiased squared maximum mean discrepancy with a Gaussian kernel (Gretton et al. 2012).

    MMD^2 = E k(x, x') + E k(y, y') - 2 E k(x, y), k(a, b) = exp(-|a - b|^2 / (2 h^2)), h the median
    distance of the pooled points, after scaling by ``reference`` as in :func:`wasserstein2`. It is 0 in
    expectation for two samples of one law (and can then be slightly negative).
    """
    reference = y if reference is None else reference
    xs, ys = _standardised(x, reference), _standardised(y, reference)
    pooled = torch.cat([xs, ys])
    d2 = torch.cdist(pooled, pooled).pow(2)
    h2 = d2[d2 > 0].median().clamp_min(1e-12)
    k = torch.exp(-d2 / (2 * h2))
    n, m = len(xs), len(ys)
    kxx, kyy, kxy = k[:n, :n], k[n:, n:], k[:n, n:]
    off = lambda a, size: (a.sum() - a.diagonal().sum()) / (size * (size - 1))  # noqa: E731
    return float(off(kxx, n) + off(kyy, m) - 2 * kxy.mean())


def classification_metrics(prob: torch.Tensor, y: torch.Tensor, eps: float = 1e-7) -> dict[str, float]:
    """Accuracy of ``prob`` > 0.5 and the log-loss -mean[y log p + (1 - y) log(1 - p)] for labels ``y`` in {0, 1}."""
    prob, y = prob.double(), y.double()
    return {
        "accuracy": float(((prob > 0.5).double() == y).double().mean()),
        "log_loss": float(-(y * (prob + eps).log() + (1 - y) * (1 - prob + eps).log()).mean()),
    }


def loo(log_lik, reff: float = 1.0) -> dict[str, float]:
    """PSIS-LOO (Vehtari, Gelman and Gabry 2017) from pointwise log-likelihoods (S, N).

    Returns ``elpd_loo`` (the expected log predictive density of a left-out point, summed over points),
    its standard error ``elpd_loo_se``, the effective number of parameters ``p_loo`` and the largest
    pointwise Pareto k, ``loo_khat_max`` (above 0.7 the estimate of that point is unreliable). With
    draws from a guide this is LOO under the approximate posterior q. ``reff``: the draws' relative
    efficiency, 1 for independent draws (a guide's); for MCMC, ArviZ's choice, the mean ESS of the
    parameters over S (:func:`relative_efficiency`).

    ArviZ's ``loo`` computed for all points at once (:func:`psis_loo`: the same numbers, a tenth of the time).
    """
    return psis_loo(np.asarray(torch.as_tensor(log_lik).detach().cpu().double().numpy()), reff)


def relative_efficiency(draws: np.ndarray, chains: int) -> float:
    """ArviZ's relative efficiency of MCMC draws (S, P), chain-major: the mean over parameters of their
    ESS (method "mean") over S."""
    draws = np.asarray(draws, dtype=np.float64)
    data = az.convert_to_dataset({"x": draws.reshape(chains, -1, draws.shape[1])})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ess = az.ess(data, method="mean")["x"].values
    return float(np.mean(ess) / len(draws))


def psis_loo(log_lik: np.ndarray, reff: float = 1.0) -> dict[str, float]:
    """PSIS-LOO from pointwise log-likelihoods (S, N) of S draws of relative efficiency ``reff``.

    As ``arviz.loo``: the log weights -log p(y_i | z_s) of each point are Pareto-smoothed
    (:func:`psis_log_weights`), and elpd_loo = sum_i log sum_s w_is p(y_i | z_s).
    """
    log_lik = np.asarray(log_lik, dtype=np.float64)
    S, N = log_lik.shape
    log_weights, k = psis_log_weights(-log_lik, reff)
    pointwise = _logsumexp(log_weights + log_lik, axis=0)
    elpd = float(pointwise.sum())
    lppd = float((_logsumexp(log_lik, axis=0) - math.log(S)).sum())
    return {"elpd_loo": elpd, "elpd_loo_se": float(math.sqrt(N * pointwise.var())), "p_loo": lppd - elpd,
            "loo_khat_max": float(np.max(k))}


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    top = np.max(x, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    return np.log(np.exp(x - top).sum(axis=axis)) + np.squeeze(top, axis)


def psis_log_weights(log_weights: np.ndarray, reff: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Pareto-smoothed, normalised log importance weights of each column of ``log_weights`` (S, N).

    ``arviz.psislw`` for all N columns at once: in each column the M = ceil(min(S/5, 3 sqrt(S/reff)))
    largest weights are replaced by the quantiles of a generalised Pareto distribution fitted to them
    (Zhang and Stephens 2009, with ArviZ's weak prior), capped at the largest raw weight. Returns the
    smoothed log weights (S, N), each column summing to 1 in exp, and the Pareto shapes k (N,). A
    column whose tail has ties at its cutoff goes through ``arviz.psislw`` itself.
    """
    x = np.array(log_weights, dtype=np.float64)
    S, N = x.shape
    x -= x.max(0)
    M = int(np.ceil(min(S / 5.0, 3 * (S / reff) ** 0.5)))
    columns = np.arange(N)
    top = np.argpartition(x, S - M - 1, axis=0)[S - M - 1:]  # each column's M + 1 largest, unordered
    top = np.take_along_axis(top, np.argsort(np.take_along_axis(x, top, 0), axis=0), 0)  # ascending
    cutoff = np.maximum(x[top[0], columns], np.log(np.finfo(float).tiny))
    k = np.full(N, np.inf)
    regular = (x > cutoff).sum(0) == M
    if M > 4 and regular.any():
        rows, cols = top[1:][:, regular], columns[regular]  # each column's tail, ascending
        base = np.exp(cutoff[regular])
        tail = (np.exp(x[rows, cols]) - base).T  # (n, M)
        k_fit, sigma = _gpd_fit(tail)
        k[regular] = k_fit
        fitted = np.isfinite(k_fit)
        quantiles = _gpd_quantiles((np.arange(M) + 0.5) / M, k_fit[fitted], sigma[fitted])  # (n', M)
        x[rows[:, fitted], cols[fitted]] = np.log(quantiles + base[fitted, None]).T
        capped = np.zeros(N, dtype=bool)
        capped[cols[fitted]] = True
        x[:, capped] = np.minimum(x[:, capped], 0.0)
    x -= _logsumexp(x, axis=0)
    odd = np.flatnonzero(~regular) if M > 4 else columns
    if len(odd):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ArviZ's "k > 0.7" warning: the caller reports k
            smoothed, k[odd] = az.psislw(np.array(log_weights, dtype=np.float64)[:, odd].T, reff=reff)
        x[:, odd] = smoothed.T
    return x, k


def _gpd_fit(tails: np.ndarray, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """ArviZ's ``_gpdfit`` for each row of ``tails`` (n, M) (sorted, positive): shapes k and scales (n,)."""
    prior_bs, prior_k = 3, 10
    n, M = tails.shape
    m = 30 + int(M**0.5)
    grid = 1 - np.sqrt(m / (np.arange(1, m + 1, dtype=float) - 0.5))
    k_out, sigma_out = np.empty(n), np.empty(n)
    for start in range(0, n, chunk):  # (chunk, m, M) temporaries
        t = tails[start:start + chunk]
        b = grid / (prior_bs * t[:, int(M / 4 + 0.5) - 1:int(M / 4 + 0.5)]) + 1 / t[:, -1:]  # (c, m)
        k = np.log1p(-b[:, :, None] * t[:, None, :]).mean(-1)
        len_scale = M * (np.log(-(b / k)) - k - 1)
        weights = 1 / np.exp(len_scale[:, None, :] - len_scale[:, :, None]).sum(-1)
        weights = np.where(weights >= 10 * np.finfo(float).eps, weights, 0.0)
        b_post = (b * weights).sum(-1) / weights.sum(-1)
        k_post = np.log1p(-b_post[:, None] * t).mean(-1)
        sigma_out[start:start + chunk] = -k_post / b_post
        k_out[start:start + chunk] = (M * k_post + prior_k * 0.5) / (M + prior_k)
    return k_out, sigma_out


def _gpd_quantiles(probs: np.ndarray, k: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Quantiles (n, P) of generalised Pareto laws with shapes ``k`` and scales ``sigma`` (n,), as ``_gpinv``."""
    k, sigma = k[:, None], sigma[:, None]
    tiny = np.abs(k) < np.finfo(float).eps
    safe_k = np.where(tiny, 1.0, k)
    x = np.where(tiny, -np.log1p(-probs), np.expm1(-k * np.log1p(-probs)) / safe_k) * sigma
    return np.where(sigma > 0, x, np.nan)


def predictive_metrics(model, latents: dict[str, torch.Tensor], evaluation: tuple[torch.Tensor, torch.Tensor],
                       likelihood: str) -> dict[str, float]:
    """Predictive metrics of posterior draws ``latents`` on ``evaluation`` = (x, y).

    Bernoulli: accuracy and log-loss of the Bayesian predictive p(y=1 | x) = mean_s p(y=1 | x, z_s).
    Normal: RMSE of the predictive mean, and ``test_loglik``, the mean log density of y under a Normal
    with the predictive's mean and sd (estimated from one replicate y per draw).
    """
    from deepprob.inference.evaluation.draws import likelihood_at, predictive_mean

    x, y = evaluation
    if likelihood == "bernoulli":
        return classification_metrics(predictive_mean(model, latents, x, None), y)
    f = likelihood_at(model, latents, x, None, statistic="location")
    y_draws = likelihood_at(model, latents, x, None, statistic="sample")
    sigma = y_draws.std(0).clamp_min(1e-6)
    return {"rmse": float((f.mean(0) - y).pow(2).mean().sqrt()),
            "test_loglik": float(torch.distributions.Normal(y_draws.mean(0), sigma).log_prob(y).mean())}
