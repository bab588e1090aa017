"""Mode-coverage and moment metrics for 2-D generators.

The mode metrics follow the synthetic-data protocol of VEEGAN (Srivastava et al. 2017) and PacGAN
(Lin et al. 2018): draw a fixed number of samples (2,500 by default); a sample is *high quality* when it
lies within 3σ of its nearest mode centre; a mode is *covered* when at least ``min_count`` high-quality
samples fall in it.
"""

from __future__ import annotations

import torch


def nearest_mode(samples: torch.Tensor, centres: torch.Tensor, sigma: float, cov: torch.Tensor | None = None):
    """Distance of each sample to its nearest centre in units of σ, and that centre's index.

    Args:
        samples: (N, 2). centres: (K, 2). sigma: the modes' standard deviation.
        cov: for a single elongated mode, its covariance (2, 2): the distance is then Mahalanobis.

    Returns:
        (distance (N,), index (N,) long).
    """
    samples, centres = samples.double(), centres.double().to(samples.device)
    if cov is not None:
        chol = torch.linalg.cholesky(cov.double().to(samples.device))
        # whiten: L^{-1} (x - c) has identity covariance, so its norm is the Mahalanobis distance
        diff = (samples[:, None, :] - centres[None]).reshape(-1, 2)
        white = torch.linalg.solve_triangular(chol, diff.T, upper=False).T
        distance = white.norm(dim=1).reshape(samples.shape[0], centres.shape[0])
    else:
        distance = torch.cdist(samples, centres) / sigma
    return distance.min(1)


def mode_metrics(
    samples: torch.Tensor, centres: torch.Tensor, sigma: float, cov: torch.Tensor | None = None, min_count: int = 20
) -> dict:
    """``modes_covered``, ``num_modes``, ``high_quality_fraction``, the per-mode counts of high-quality
    samples (``mode_counts``) and their ``reverse_kl`` (:func:`mode_reverse_kl`) for generated ``samples``
    (N, 2)."""
    distance, index = nearest_mode(samples, centres, sigma, cov)
    good = distance <= 3.0
    counts = torch.bincount(index[good], minlength=centres.shape[0])
    return {
        "modes_covered": int((counts >= min_count).sum()),
        "num_modes": int(centres.shape[0]),
        "high_quality_fraction": float(good.double().mean()),
        "mode_counts": counts.tolist(),
        "reverse_kl": mode_reverse_kl(counts),
    }


def mode_reverse_kl(counts: torch.Tensor) -> float | None:
    r"""KL(q ‖ p) between the generated mode distribution q (the high-quality samples' shares of the
    modes, ``counts`` (K,)) and the data's, uniform over the K modes: :math:`\sum_k q_k \log(K q_k)`, as
    PacGAN's Table 1 reports it. 0 when every mode gets its share; log K when one mode gets all;
    None without any high-quality sample (there is no q)."""
    counts = torch.as_tensor(counts, dtype=torch.float64)
    if counts.sum() <= 0:
        return None
    q = counts / counts.sum()
    q = q[q > 0]
    return float((q * (q * len(counts)).log()).sum())


def moment_errors(samples: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> dict:
    """``mean_error`` = ‖mean(samples) − mean‖₂ and ``cov_error`` = ‖Cov(samples) − cov‖_F (Frobenius)."""
    samples = samples.double()
    return {
        "mean_error": float((samples.mean(0) - mean.double().to(samples.device)).norm()),
        "cov_error": float((torch.cov(samples.T) - cov.double().to(samples.device)).norm()),
    }


def kl_both_ways(true_log_prob, data: torch.Tensor, model: torch.Tensor, model_log_prob) -> dict:
    r"""Monte Carlo estimates of both KL divergences between the data distribution P and a model Q:

    ``kl_data_model`` = KL(P ‖ Q) = E_P[log p − log q] (mass covering: large when Q misses P's modes) and
    ``kl_model_data`` = KL(Q ‖ P) = E_Q[log q − log p] (mode seeking: large when Q puts mass where P has
    none), from fresh draws ``data`` (N, D) of P and ``model`` (M, D) of Q, with P's exact density
    ``true_log_prob`` and an estimate of Q's, ``model_log_prob`` (a KDE of other model draws, or a VAE's
    importance-weighted log p(x)).
    """
    with torch.no_grad():
        forward = true_log_prob(data).double() - model_log_prob(data).double().to(data.device)
        reverse = model_log_prob(model).double().to(model.device) - true_log_prob(model).double()
    return {"kl_data_model": float(forward.mean()), "kl_model_data": float(reverse.mean())}
