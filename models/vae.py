"""The variational autoencoder as a Pyro model and an amortised guide (Kingma and Welling, 2014).

Generative story, for each image ``x`` of a minibatch::

    z ~ Normal(0, I)                      (latent code, shape (z_dim,))
    x ~ Bernoulli(logits=decoder(z))      (each pixel independently)

or, for real-valued vectors (``likelihood="normal"``, the 2-D point clouds), ``x ~ Normal(decoder(z), σ)``
with a learnt σ per coordinate.

and the guide is ``q(z | x) = Normal(loc(x), scale(x))`` with ``loc`` and ``scale`` computed by the
encoder network. The decoder is part of the model and the encoder part of the guide; SVI trains both
by maximising the ELBO. Both networks are plain ``nn.Module`` s owned by :class:`VAE`, so that a
torch optimiser over ``vae.parameters()`` trains them and a ``state_dict`` checkpoints them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

from deepprob.errors import InputError

ARCHITECTURES = ("mlp", "conv")
LIKELIHOODS = ("bernoulli", "normal")


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers of the given sizes with ReLUs between them (none after the last)."""
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _scale(raw: torch.Tensor) -> torch.Tensor:
    # softplus rather than exp: an over-confident encoder early in training cannot overflow the scale,
    # and the floor keeps log q(z | x) finite.
    return F.softplus(raw) + 1e-4


class MLPEncoder(nn.Module):
    """x (N, *event_shape) -> (loc, scale), each (N, z_dim): an MLP on the flattened image."""

    def __init__(self, event_shape: Sequence[int], z_dim: int, hidden: Sequence[int]):
        super().__init__()
        self.event_dim = len(event_shape)
        # one output layer for loc and raw scale together: one matmul instead of two
        self.net = _mlp([math.prod(event_shape), *hidden, 2 * z_dim])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, raw = self.net(x.flatten(-self.event_dim)).chunk(2, dim=-1)
        return loc, _scale(raw)


class MLPDecoder(nn.Module):
    """z (*batch, z_dim) -> Bernoulli logits (*batch, *event_shape), any leading batch dimensions."""

    def __init__(self, event_shape: Sequence[int], z_dim: int, hidden: Sequence[int]):
        super().__init__()
        self.event_shape = tuple(event_shape)
        self.net = _mlp([z_dim, *reversed(hidden), math.prod(event_shape)])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(*z.shape[:-1], *self.event_shape)


class NormalDecoder(MLPDecoder):
    """z (*batch, z_dim) -> the mean (*batch, *event_shape) of p(x | z) = Normal(mean, σ), with σ
    (*event_shape) a parameter of its own (one per coordinate, not a function of z)."""

    def __init__(self, event_shape: Sequence[int], z_dim: int, hidden: Sequence[int]):
        super().__init__(event_shape, z_dim, hidden)
        self.raw_scale = nn.Parameter(torch.zeros(self.event_shape))

    @property
    def scale(self) -> torch.Tensor:
        return _scale(self.raw_scale)


class ConvEncoder(nn.Module):
    """x (N, C, H, W) -> (loc, scale), each (N, z_dim): two stride-2 convolutions, then an MLP."""

    def __init__(self, event_shape: Sequence[int], z_dim: int, hidden: Sequence[int], channels: int = 32):
        super().__init__()
        c, h, w = event_shape
        self.conv = nn.Sequential(
            nn.Conv2d(c, channels, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 4, stride=2, padding=1), nn.ReLU(),
        )
        self.head = _mlp([2 * channels * (h // 4) * (w // 4), *hidden, 2 * z_dim])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(self.conv(x).flatten(1))
        loc, raw = self.head(h).chunk(2, dim=-1)
        return loc, _scale(raw)


class ConvDecoder(nn.Module):
    """z (*batch, z_dim) -> Bernoulli logits (*batch, C, H, W): an MLP, then two stride-2 transposed convs."""

    def __init__(self, event_shape: Sequence[int], z_dim: int, hidden: Sequence[int], channels: int = 32):
        super().__init__()
        c, h, w = event_shape
        self.event_shape = tuple(event_shape)
        self.grid = (2 * channels, h // 4, w // 4)
        self.head = _mlp([z_dim, *reversed(hidden), math.prod(self.grid)])
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(2 * channels, channels, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(channels, c, 4, stride=2, padding=1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        # convolutions take one batch dimension: fold (particles, N) into one and back
        h = F.relu(self.head(z.reshape(-1, z.shape[-1])))
        logits = self.deconv(h.view(-1, *self.grid))
        return logits.view(*z.shape[:-1], *self.event_shape)


class VAE(nn.Module):
    """A VAE for binary images of shape ``event_shape`` (e.g. (1, 28, 28)), or for real vectors.

    Args:
        event_shape: the shape of one image, (C, H, W); (1, 1, D) for vectors of length D.
        z_dim: the size of the latent code.
        hidden: the hidden layer sizes of the encoder (the decoder mirrors them).
        arch: ``"mlp"`` or ``"conv"`` (H and W must be multiples of 4).
        likelihood: ``"bernoulli"`` (binary images) or ``"normal"`` (real values, MLP only).

    ``model(x)`` and ``guide(x)`` take a minibatch ``x`` of shape (N, *event_shape) with values 0/1;
    they also run with extra batch dimensions on the left of the data plate (``dim=-1``), e.g. inside
    a ``pyro.plate("particles", K, dim=-2)`` for importance sampling.
    """

    def __init__(self, event_shape: Sequence[int], z_dim: int = 2, hidden: Sequence[int] = (400,), arch: str = "mlp",
                 likelihood: str = "bernoulli"):
        super().__init__()
        self.event_shape, self.z_dim, self.hidden, self.arch = tuple(event_shape), z_dim, tuple(hidden), arch
        self.likelihood = likelihood
        if z_dim < 1 or not hidden or min(hidden) < 1:
            raise InputError(f"--z-dim {z_dim} --hidden {list(hidden)}: expected positive sizes")
        if likelihood not in LIKELIHOODS or (likelihood == "normal" and arch != "mlp"):
            raise InputError(f"likelihood {likelihood!r} with --arch {arch}: expected bernoulli, or normal with mlp")
        if arch == "mlp":
            self.encoder = MLPEncoder(event_shape, z_dim, hidden)
            decoder = NormalDecoder if likelihood == "normal" else MLPDecoder
            self.decoder = decoder(event_shape, z_dim, hidden)
        elif arch == "conv":
            if len(event_shape) != 3 or event_shape[1] % 4 or event_shape[2] % 4:
                raise InputError(
                    f"--arch conv: expected images whose height and width are multiples of 4, "
                    f"got shape {tuple(event_shape)} (use --arch mlp)"
                )
            self.encoder = ConvEncoder(event_shape, z_dim, hidden)
            self.decoder = ConvDecoder(event_shape, z_dim, hidden)
        else:
            raise InputError(f"--arch {arch!r}: expected one of {', '.join(ARCHITECTURES)}")

    def config(self) -> dict:
        """The constructor arguments (to rebuild the VAE from a checkpoint)."""
        config = {"event_shape": list(self.event_shape), "z_dim": self.z_dim, "hidden": list(self.hidden),
                  "arch": self.arch}
        return config if self.likelihood == "bernoulli" else {**config, "likelihood": self.likelihood}

    def prior(self, like: torch.Tensor) -> dist.Distribution:
        """p(z) = N(0, I) (event shape (z_dim,)) on the device and dtype of ``like``."""
        return dist.Normal(like.new_zeros(self.z_dim), 1.0).to_event(1)

    def observation(self, z: torch.Tensor) -> dist.Distribution:
        """p(x | z) for codes ``z`` (*batch, z_dim): batch shape ``batch``, event shape ``event_shape``."""
        out = self.decoder(z)
        if self.likelihood == "normal":
            return dist.Normal(out, self.decoder.scale).to_event(len(self.event_shape))
        return dist.Bernoulli(logits=out).to_event(len(self.event_shape))

    def model(self, x: torch.Tensor) -> None:
        """p(x, z) = p(z) p(x | z) for a minibatch ``x`` (N, *event_shape)."""
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[-len(self.event_shape) - 1]):
            z = pyro.sample("z", self.prior(x))
            pyro.sample("x", self.observation(z), obs=x)

    def guide(self, x: torch.Tensor) -> None:
        """q(z | x) = Normal(loc(x), scale(x)), the encoder's amortised posterior."""
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", x.shape[-len(self.event_shape) - 1]):
            loc, scale = self.encoder(x)
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    # Deterministic helpers for figures and evaluation (no Pyro involved).

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The guide's (loc, scale), each (N, z_dim), for images ``x`` (N, *event_shape)."""
        return self.encoder(x)

    @torch.no_grad()
    def sample_codes(self, x: torch.Tensor, draws: int) -> torch.Tensor:
        """``draws`` codes z ~ q(z | x) per image: (draws, N, z_dim)."""
        loc, scale = self.encoder(x)
        return torch.distributions.Normal(loc, scale).sample((draws,))

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The mean of p(x | z), (*batch, *event_shape), for codes ``z`` (*batch, z_dim): pixel probabilities."""
        return self.observation(z).mean

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """``n`` draws of x from the model, z ~ p(z), x ~ p(x | z) (the global RNG): (n, *event_shape)."""
        like = next(self.decoder.parameters())
        return self.observation(self.prior(like).sample((n,))).sample()

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Pixel probabilities of p(x | z = loc(x)): the decoded posterior mean, shape of ``x``."""
        return self.decode(self.encode(x)[0])
