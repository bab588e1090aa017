r"""Adversarial variational Bayes (Mescheder, Nowozin and Geiger, ICML 2017): a VAE whose encoder is implicit.

The model is the VAE's, ``z ~ N(0, I)``, ``x ~ p(x | z)`` with the decoder network. The encoder is a
network fed with noise, ``z = g(x, ε)``, ``ε ~ N(0, I)``: a distribution q(z | x) one can sample from but
whose density is unknown. The ELBO needs log q(z | x); AVB replaces it by a discriminator T(x, z) trained
to tell pairs (x, z ~ q(z | x)) from pairs (x, z ~ p(z)), whose optimum is the log density ratio

.. math::
    T^*(x, z) = \log q(z \mid x) - \log p(z), \qquad
    \mathrm{ELBO} = E_{q(z|x)}[\log p(x, z) - \log q(z \mid x)] = E_{q(z|x)}[\log p(x \mid z) - T^*(x, z)].

As a Pyro guide this is Pyro's own pattern for a guide without a tractable density (the one
``AutoContinuous`` uses): an auxiliary site for the noise ε with its density N(ε; 0, I), then a ``Delta``
site for z whose ``log_density`` makes the guide's total log q equal to T(x, z) + log p(z). Every
consumer of a guide's trace (``Trace_ELBO``, importance weights) then reads log q(z | x) ≈ T(x, z) + log
p(z), and the ELBO becomes exactly E_q[log p(x | z) − T(x, z)]; the gradient reaches the encoder through
z, in log p(x | z) and in T. T itself is trained apart, by logistic regression
(:mod:`deepprob.inference.generative.avb_fit`), with its parameters held fixed in the ELBO's steps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from deepprob.errors import InputError
from deepprob.models.vae import VAE, _mlp

AVB_ARCHITECTURES = ("mlp",)


class ImplicitEncoder(nn.Module):
    """(x (*batch, N, *event_shape), ε (*batch, N, noise_dim)) -> z (*batch, N, z_dim): an MLP on the
    flattened image and the noise side by side. Leading batch dimensions of ε (draws) broadcast over x."""

    def __init__(self, event_shape: Sequence[int], z_dim: int, hidden: Sequence[int], noise_dim: int):
        super().__init__()
        self.event_dim, self.noise_dim = len(event_shape), noise_dim
        self.net = _mlp([math.prod(event_shape) + noise_dim, *hidden, z_dim])

    def forward(self, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(-self.event_dim)
        flat = flat.expand(*eps.shape[:-1], flat.shape[-1])
        return self.net(torch.cat([flat, eps], -1))


class JointDiscriminator(nn.Module):
    """T(x, z): (x (*batch, N, *event_shape), z (*batch, N, z_dim)) -> (*batch, N), a logit whose optimum
    against pairs from q(z | x) (label 1) and from p(z) (label 0) is log q(z | x) − log p(z). An MLP on
    the flattened image and the code side by side; a plain torch module."""

    def __init__(self, event_shape: Sequence[int], z_dim: int, hidden: Sequence[int]):
        super().__init__()
        self.event_dim = len(event_shape)
        self.net = _mlp([math.prod(event_shape) + z_dim, *hidden, 1])

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(-self.event_dim)
        flat = flat.expand(*z.shape[:-1], flat.shape[-1])
        return self.net(torch.cat([flat, z], -1)).squeeze(-1)


class AVB(VAE):
    """The VAE's model with an implicit encoder and the discriminator T that stands in for its density.

    Args:
        event_shape, z_dim, hidden: as for :class:`~deepprob.models.vae.VAE` (MLP networks).
        noise_dim: the size of the encoder's noise ε.
        adversary_hidden: the hidden layer sizes of T (default: ``hidden``).

    ``model(x)`` is the VAE's; ``guide(x)`` draws z = g(x, ε) and scores it log q(z | x) ≈ T(x, z) +
    log p(z) (see the module docstring). Both run inside a ``pyro.plate("particles", K, dim=-2)``.
    """

    def __init__(self, event_shape: Sequence[int], z_dim: int = 2, hidden: Sequence[int] = (400,),
                 noise_dim: int = 8, adversary_hidden: Sequence[int] | None = None):
        super().__init__(event_shape, z_dim, hidden, arch="mlp")
        if noise_dim < 1:
            raise InputError(f"--noise-dim {noise_dim}: expected a positive integer")
        self.noise_dim = noise_dim
        self.adversary_hidden = tuple(adversary_hidden or hidden)
        self.encoder = ImplicitEncoder(event_shape, z_dim, hidden, noise_dim)
        self.adversary = JointDiscriminator(event_shape, z_dim, self.adversary_hidden)

    def config(self) -> dict:
        return {**super().config(), "noise_dim": self.noise_dim, "adversary_hidden": list(self.adversary_hidden)}

    def guide(self, x: torch.Tensor) -> None:
        """z = g(x, ε), scored log q(z | x) = T(x, z) + log p(z) (N(ε; 0, I) cancels: see the module)."""
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", x.shape[-len(self.event_shape) - 1]):
            noise = dist.Normal(x.new_zeros(self.noise_dim), 1.0).to_event(1)
            eps = pyro.sample("noise", noise, infer={"is_auxiliary": True})
            z = self.encoder(x, eps)
            log_q = self.adversary(x, z) + self.prior(x).log_prob(z)
            pyro.sample("z", dist.Delta(z, log_density=log_q - noise.log_prob(eps), event_dim=1))

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean and sd (N, z_dim) of 64 draws of q(z | x) per image, for the VAE's figures."""
        z = self.sample_codes(x, 64)
        return z.mean(0), z.std(0)

    @torch.no_grad()
    def sample_codes(self, x: torch.Tensor, draws: int) -> torch.Tensor:
        """``draws`` codes z ~ q(z | x) per image: (draws, N, z_dim)."""
        eps = torch.randn(draws, x.shape[0], self.noise_dim, device=x.device, dtype=x.dtype)
        return self.encoder(x, eps)
