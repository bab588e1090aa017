"""Evaluating a VAE: the test ELBO and the importance-weighted estimate of log p(x), in nats per example.

For an image ``x`` and ``K`` codes ``z_k ~ q(z | x)`` the log importance weights are
``log w_k = log p(x, z_k) - log q(z_k | x)``. Their mean is an unbiased estimate of the ELBO, and
``log (1/K) sum_k w_k`` is the importance-weighted bound of Burda et al. (2016): it lies between the
ELBO and log p(x) and tends to log p(x) as K grows. Both are computed from the same K samples, so the
second is never below the first (Jensen's inequality, sample by sample).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from deepprob.errors import InputError
from deepprob.inference.fitting.objectives import Objective
from deepprob.traces import log_weights, run_model

# Elements of one (K, batch, pixels) block of decoder logits: bounds the memory of an evaluation.
_BLOCK = 2**23


def log_importance_weights(model: Callable, guide: Callable, x: torch.Tensor, num_samples: int) -> torch.Tensor:
    """``log p(x, z_k) - log q(z_k | x)`` for ``z_k ~ q(z | x)``, shape (num_samples, N).

    ``model`` and ``guide`` take the minibatch ``x`` (N, ...) and put its examples in a
    ``pyro.plate`` at ``dim=-1``; the ``num_samples`` draws are vectorised in a plate at ``dim=-2``.
    """
    model_trace, guide_trace = run_model(model, (x,), {}, draws=num_samples, nesting=1, guide=guide)
    return log_weights(model_trace, guide_trace, batch=True).expand(num_samples, x.shape[0])


@dataclass(frozen=True)
class ImportanceWeightedLoss:
    """Minus ``objective``'s bound of each image from its own K codes, summed over the minibatch: the IWAE
    objective (Burda et al. 2016) for ``iwae:K``, ``sum_n log (1/K) sum_k w_nk``. (Pyro's ``RenyiELBO`` would
    pool the minibatch's weights into one bound of the joint p(x_1..x_N), far looser.)"""

    objective: Objective

    def differentiable_loss(self, model: Callable, guide: Callable, x: torch.Tensor) -> torch.Tensor:
        log_w = log_importance_weights(model, guide, x, self.objective.draws(1))
        return -self.objective.bound(log_w, 0).sum()


@torch.no_grad()
def evaluate_vae(vae, images: torch.Tensor, num_samples: int = 100, batch_size: int | None = None) -> dict:
    """The ELBO and the importance-weighted log-likelihood of ``images``, averaged over them.

    Args:
        vae: a :class:`~deepprob.models.vae.VAE` (anything with ``model``, ``guide``, ``event_shape``).
        images: binary images (N, *event_shape) on the VAE's device.
        num_samples: K, the samples from q(z | x) per image.
        batch_size: images per block (default: as many as fit in about 32 MB of logits).

    Returns:
        ``{"elbo": ..., "iw_loglik": ...}`` in nats per example (floats).
    """
    n = images.shape[0]
    if batch_size is None:
        batch_size = max(1, _BLOCK // (num_samples * math.prod(vae.event_shape)))
    elbo = iw = 0.0
    for start in range(0, n, batch_size):
        log_w = log_importance_weights(vae.model, vae.guide, images[start:start + batch_size], num_samples)
        elbo += log_w.mean(0).sum()
        iw += (torch.logsumexp(log_w, 0) - math.log(num_samples)).sum()
    # one host transfer at the end, not one per block
    return {"elbo": float(elbo) / n, "iw_loglik": float(iw) / n}


def nearest_centroid_accuracy(
    train_codes: torch.Tensor, train_labels: torch.Tensor, codes: torch.Tensor, labels: torch.Tensor
) -> float:
    """Accuracy of classifying ``codes`` (N, D) by the nearest class centroid of ``train_codes``."""
    classes = train_labels.unique()
    centroids = torch.stack([train_codes[train_labels == c].mean(0) for c in classes])
    predicted = classes[torch.cdist(codes, centroids).argmin(1)]
    return float((predicted == labels).float().mean())


# --- log p(x) without q's density: for implicit encoders, and one scale for every encoder --------------


@torch.no_grad()
def grid_log_likelihood(vae, x: torch.Tensor, half_width: float = 6.0, resolution: int = 401,
                        block: int = 2**24) -> torch.Tensor:
    r"""log p(x) = log ∫ p(z) p(x | z) dz by the midpoint rule on a grid over [−w, w]^d (d = z_dim ≤ 2).

    No encoder is involved, so the number is the same for any guide: exact up to the grid (the prior's
    mass beyond w = 6 is below 1e-8; the cell size 2w / resolution bounds the error where p(x | z) jumps).

    Args:
        vae: anything with ``z_dim``, ``prior(like)`` and ``observation(z)`` (a
            :class:`~deepprob.models.vae.VAE`).
        x: examples (N, *event_shape).
        block: elements of one (grid points, N, pixels) block: bounds the memory.

    Returns:
        log p(x_n), shape (N,).
    """
    d = vae.z_dim
    if d > 2:
        raise InputError(f"grid integration: a latent of size {d}; expected at most 2 (use importance sampling)")
    edges = torch.linspace(-half_width, half_width, resolution + 1, dtype=x.dtype, device=x.device)
    mids = (edges[:-1] + edges[1:]) / 2
    z = torch.cartesian_prod(*[mids] * d).reshape(-1, d)
    log_cell = d * math.log(2 * half_width / resolution)
    log_prior = vae.prior(x).log_prob(z) + log_cell  # (G,): the prior's mass in each cell
    step = max(1, block // (x.shape[0] * math.prod(vae.event_shape)))
    parts = [torch.logsumexp(log_prob_table(vae.observation(z[i:i + step, None]), x) + log_prior[i:i + step, None], 0)
             for i in range(0, z.shape[0], step)]
    return torch.logsumexp(torch.stack(parts), 0)


def log_prob_table(observation: torch.distributions.Distribution, x: torch.Tensor) -> torch.Tensor:
    r"""``observation.log_prob(x)`` for G distributions (batch shape (G, 1)) and N examples ``x`` (N, *event):
    shape (G, N).

    Independent Bernoulli or Normal pixels (the VAE's likelihoods) are linear in the statistics of x, so
    the table is a matrix product, G (N + P) work instead of the G N P of broadcasting over P pixels:
    Bernoulli, :math:`\sum_p x_p l_p - \mathrm{softplus}(l_p)`; Normal,
    :math:`-\tfrac12 \sum_p (x_p^2 - 2 x_p m_p + m_p^2) / s_p^2 + \log (2 \pi s_p^2)`, in float64 so that
    the expanded square loses nothing. Any other distribution is broadcast.
    """
    base, event_dims = observation, 0
    if isinstance(base, torch.distributions.Independent):
        base, event_dims = base.base_dist, base.reinterpreted_batch_ndims
    G, N = observation.batch_shape[0], x.shape[0]
    whole = event_dims == x.dim() - 1 and tuple(observation.batch_shape) == (G, 1)
    if whole and isinstance(base, torch.distributions.Bernoulli):
        logits = base.logits.reshape(G, -1)
        table = logits @ x.reshape(N, -1).to(logits.dtype).T - torch.nn.functional.softplus(logits).sum(1, keepdim=True)
        return table.to(x.dtype)
    if whole and isinstance(base, torch.distributions.Normal):
        flat = x.reshape(N, -1).double()
        mean = base.loc.expand(base.batch_shape).reshape(G, -1).double()
        precision = base.scale.expand(base.batch_shape).reshape(G, -1).double().pow(-2)
        table = (-0.5 * (precision @ flat.pow(2).T - 2 * (mean * precision) @ flat.T
                         + (mean.pow(2) * precision - precision.log() + math.log(2 * math.pi)).sum(1, keepdim=True)))
        return table.to(x.dtype)
    return observation.log_prob(x)


@torch.no_grad()
def proposal_log_likelihood(vae, x: torch.Tensor, sample_codes: Callable, num_samples: int = 1000,
                            fit_draws: int = 256, widen: float = 1.2, prior_weight: float = 0.1) -> torch.Tensor:
    r"""log p(x) by importance sampling with an explicit proposal fitted to an implicit encoder's codes.

    For each example, a Gaussian is fitted to ``fit_draws`` codes of ``sample_codes`` (its mean and full
    covariance, the sds widened by ``widen``) and mixed with the prior (weight ``prior_weight``, a defensive
    mixture: the weights p(z) p(x | z) / r(z) stay bounded by p(x | z) / prior_weight where the Gaussian
    is too narrow). Then log p(x) ≈ log (1/K) Σ_k p(x, z_k) / r(z_k), z_k ~ r: a stochastic lower bound
    on average (Jensen), tight as K grows.

    Args:
        sample_codes: ``(x, draws) -> (draws, N, z_dim)`` codes of q(z | x) (an implicit encoder's).
        num_samples: K.

    Returns:
        log p(x_n), shape (N,).
    """
    codes = sample_codes(x, fit_draws)  # (M, N, d)
    mean = codes.mean(0)
    centred = codes - mean
    cov = torch.einsum("mni,mnj->nij", centred, centred) / (fit_draws - 1)
    d = codes.shape[-1]
    cov = widen**2 * cov + 1e-6 * torch.eye(d, dtype=x.dtype, device=x.device)
    fitted = torch.distributions.MultivariateNormal(mean, covariance_matrix=cov)
    prior = vae.prior(x)
    z = fitted.sample((num_samples,))  # (K, N, d)
    from_prior = torch.rand(num_samples, x.shape[0], 1, device=x.device) < prior_weight
    z = torch.where(from_prior, prior.sample((num_samples, x.shape[0])), z)
    log_r = torch.logaddexp(math.log1p(-prior_weight) + fitted.log_prob(z), math.log(prior_weight) + prior.log_prob(z))
    log_w = prior.log_prob(z) + vae.observation(z).log_prob(x) - log_r
    return torch.logsumexp(log_w, 0) - math.log(num_samples)


def heldout_log_likelihood(vae, x: torch.Tensor, method: str = "auto", num_samples: int = 1000,
                        batch_size: int = 100) -> dict:
    """The held-out log-likelihood of ``x`` (nats per example) by a method that does not use q's density.

    ``method``: ``"grid"`` (:func:`grid_log_likelihood`, latents of size ≤ 2), ``"proposal"``
    (:func:`proposal_log_likelihood` on the encoder's codes, ``vae.sample_codes``) or ``"auto"`` (grid
    when it applies, else proposal). Returns ``{"test_loglik": ..., "test_loglik_method": "..."}``.
    """
    if method == "auto":
        method = "grid" if vae.z_dim <= 2 else "proposal"
    if method == "grid":
        values = [grid_log_likelihood(vae, x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
        text = "grid integration over z (401^2 midpoints on [-6, 6]^2, no encoder)"
    elif method == "proposal":
        values = [proposal_log_likelihood(vae, x[i:i + batch_size], vae.sample_codes, num_samples)
                  for i in range(0, len(x), batch_size)]
        text = (f"importance sampling, K={num_samples}, proposal: a Gaussian fitted to 256 encoder codes per "
                "example (sds x1.2), mixed 9:1 with the prior")
    else:
        raise InputError(f"--loglik {method!r}: expected auto, grid or proposal")
    return {"test_loglik": float(torch.cat(values).mean()), "test_loglik_method": text}
