r"""GAN objectives, written on the discriminator's logits (critic values for WGAN).

Standard GAN (Goodfellow et al. 2014), with D(x) = σ(f(x)):

.. math::
    L_D = -E_{p}[\log σ(f(x))] - E_{q}[\log(1 - σ(f(x)))]
        = E_p[\mathrm{softplus}(-f(x))] + E_q[\mathrm{softplus}(f(x))],

and the non-saturating generator loss :math:`L_G = E_q[\mathrm{softplus}(-f(x))]`. WGAN-GP
(Gulrajani et al. 2017): :math:`L_D = E_q[f] - E_p[f] + λ E_{\hat x}[(\|∇f(\hat x)\| - 1)^2]` on
random interpolates :math:`\hat x` of real and generated points, and :math:`L_G = -E_q[f]`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F

from deepprob.errors import InputError

LOSSES = ("gan", "wgan-gp")


def check_loss_kind(kind: str) -> None:
    if kind not in LOSSES:
        raise InputError(f"--loss {kind!r}: expected one of {', '.join(LOSSES)}")


def discriminator_loss(real: torch.Tensor, fake: torch.Tensor, kind: str = "gan") -> torch.Tensor:
    """The discriminator's (critic's) loss from its outputs on real (N, 1) and generated (M, 1) inputs,
    without the WGAN gradient penalty (see :func:`gradient_penalty`)."""
    if kind == "gan":
        # softplus form of the binary cross-entropy: stable for large |logits|
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    return fake.mean() - real.mean()


def generator_loss(fake: torch.Tensor, kind: str = "gan") -> torch.Tensor:
    """The generator's loss from the discriminator's outputs on generated inputs (M, 1)."""
    if kind == "gan":
        return F.softplus(-fake).mean()  # non-saturating: -log D(G(z))
    return -fake.mean()


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor
) -> torch.Tensor:
    r""":math:`E[(\|∇_x f(\hat x)\|_2 - 1)^2]` at :math:`\hat x = ε x_{real} + (1 - ε) x_{fake}`, ε ~ U(0, 1)
    per row; differentiable (``create_graph``) so that the critic's update sees it.

    Args:
        critic: maps (N, D) inputs to (N, 1) values.
        real, fake: (N, D) inputs (packed inputs for a packed critic).
    """
    eps = torch.rand(real.shape[0], 1, device=real.device, dtype=real.dtype)
    mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return (grad.norm(dim=1) - 1).pow(2).mean()


def pack(x: torch.Tensor, m: int) -> torch.Tensor:
    """PacGAN's packing (Lin et al. 2018): (N * m, D) samples -> (N, m * D) discriminator inputs, each the
    concatenation of ``m`` independent samples. ``m = 1`` is the identity."""
    return x if m == 1 else x.reshape(x.shape[0] // m, m * x.shape[1])
