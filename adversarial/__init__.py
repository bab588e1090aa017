"""Plain PyTorch modules: GANs and discriminators, sharing the data layer with the Pyro models.

- :mod:`~deepprob.adversarial.nets`: MLPs and fixed affine (standardising) layers.
- :mod:`~deepprob.adversarial.losses`: GAN and WGAN-GP objectives on logits, PacGAN packing.
- :mod:`~deepprob.adversarial.unrolled`: differentiable Adam look-ahead steps (unrolled GANs).
- :mod:`~deepprob.adversarial.trainer`: :class:`GANTrainer` for vector data, with the remedies.
- :mod:`~deepprob.adversarial.metrics`: modes covered, high-quality samples, moment errors.
- :mod:`~deepprob.adversarial.ratio`: a classifier against a uniform reference as a density.
- :mod:`~deepprob.adversarial.dcgan`: DCGAN for small images; :mod:`~deepprob.adversarial.latent`:
  latent interpolation and arithmetic; :mod:`~deepprob.adversarial.plots`: the figures.
"""

from deepprob.adversarial.losses import discriminator_loss, generator_loss, gradient_penalty, pack
from deepprob.adversarial.metrics import mode_metrics, moment_errors
from deepprob.adversarial.nets import Affine, mlp
from deepprob.adversarial.trainer import GANConfig, GANTrainer
from deepprob.adversarial.unrolled import adam_lookahead

__all__ = [
    "Affine",
    "GANConfig",
    "GANTrainer",
    "adam_lookahead",
    "discriminator_loss",
    "generator_loss",
    "gradient_penalty",
    "mlp",
    "mode_metrics",
    "moment_errors",
    "pack",
]
