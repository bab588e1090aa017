"""A VAE on a 2-D point cloud: the Pyro model with a Normal likelihood, in standardised coordinates.

The model is :class:`~deepprob.models.vae.VAE` with ``likelihood="normal"``: z ~ N(0, I), x' ~ N(f(z), σ²)
for the standardised point x' = (x − m) / s, trained by :func:`~deepprob.inference.generative.vae_fit.fit_vae` on a
fixed sample of the cloud. :class:`PointVAE` maps its samples and its log-likelihood back to data
coordinates (log p(x) = log p'(x') − D log s), so that the GAN and the VAE are scored on one scale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from deepprob.inference.generative.vae_eval import log_importance_weights
from deepprob.inference.generative.vae_fit import fit_vae
from deepprob.models.vae import VAE


@dataclass
class PointVAE:
    """A trained VAE and the affine map between data and its standardised coordinates."""

    vae: VAE
    mean: torch.Tensor
    scale: float
    history: dict

    def sample(self, n: int) -> torch.Tensor:
        """``n`` draws of x from the model, in data coordinates: (n, 2)."""
        return self.vae.sample(n) * self.scale + self.mean

    @torch.no_grad()
    def log_prob(self, x: torch.Tensor, num_samples: int = 100, batch_size: int = 1000) -> torch.Tensor:
        """The importance-weighted estimate of log p(x) (K = ``num_samples`` codes from q(z | x)), (N,)."""
        standard = (x - self.mean) / self.scale
        parts = []
        for i in range(0, len(x), batch_size):
            log_w = log_importance_weights(self.vae.model, self.vae.guide, standard[i:i + batch_size], num_samples)
            parts.append(torch.logsumexp(log_w, 0) - math.log(num_samples))
        return torch.cat(parts) - x.shape[-1] * math.log(self.scale)


def fit_point_vae(cloud, *, latent_dim: int = 8, hidden: Sequence[int] = (128, 128), epochs: int = 100,
                  n_train: int = 20000, batch_size: int = 256, lr: float = 1e-3, seed: int = 0, device="cpu",
                  progress: bool = True, desc: str = "VAE", engine: str = "auto") -> PointVAE:
    """Train a Normal-likelihood VAE on ``n_train`` points of ``cloud`` (drawn from ``seed``), ``epochs`` epochs
    (``engine`` as for :func:`~deepprob.inference.generative.vae_fit.fit_vae`: compiled for long runs)."""
    torch.manual_seed(seed)
    points = cloud.sample(n_train, generator=torch.Generator().manual_seed(seed), device=device)
    mean = points.mean(0)
    scale = float((points - mean).pow(2).mean().sqrt().clamp_min(1e-6))
    standard = (points - mean) / scale
    vae = VAE((2,), z_dim=latent_dim, hidden=hidden, likelihood="normal").to(device)
    fit = fit_vae(vae, standard, standard[:1000], epochs=epochs, batch_size=batch_size, lr=lr, binarization="none",
                  progress=progress, desc=desc, engine=engine)
    return PointVAE(vae, mean, scale, fit["history"])
