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

from deepprob.inference.objectives import Objective
from deepprob.logdensity import log_weights, run_model

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
