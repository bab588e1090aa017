"""Small building blocks: multilayer perceptrons and a fixed affine map for standardised coordinates."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from deepprob.errors import InputError

ACTIVATIONS = {
    "relu": lambda: nn.ReLU(inplace=True),  # in place: one tensor less per layer (the backward uses the output)
    "leaky_relu": lambda: nn.LeakyReLU(0.2, inplace=True),
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
}


def mlp(
    in_dim: int, hidden: Sequence[int], out_dim: int, activation: str = "relu",
    batch_norm: bool | Callable[[int], nn.Module] = False,
) -> nn.Sequential:
    """``in_dim -> hidden[0] -> ... -> hidden[-1] -> out_dim``: Linear layers with ``activation`` between
    them and none after the last (outputs are logits, critic values or unconstrained points); with
    ``batch_norm``, a normalisation before each hidden activation (PacGAN's generator): ``True`` for
    ``BatchNorm1d``, or a function of the width that makes the layer (:class:`DrawwiseBatchNorm1d`); the
    Linear layers it follows have no bias (the normalisation subtracts it again).

    >>> mlp(2, [300, 300, 150], 1)  # the seed's discriminator: 2-300-300-150-1
    Sequential(
      (0): Linear(in_features=2, out_features=300, bias=True)
      (1): ReLU(inplace=True)
      (2): Linear(in_features=300, out_features=300, bias=True)
      (3): ReLU(inplace=True)
      (4): Linear(in_features=300, out_features=150, bias=True)
      (5): ReLU(inplace=True)
      (6): Linear(in_features=150, out_features=1, bias=True)
    )
    """
    if activation not in ACTIVATIONS:
        raise InputError(f"activation {activation!r}: expected one of {', '.join(ACTIVATIONS)}")
    norm = nn.BatchNorm1d if batch_norm is True else batch_norm
    sizes = [in_dim, *hidden, out_dim]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        hidden_layer = i < len(sizes) - 2
        layers.append(nn.Linear(a, b, bias=not (norm and hidden_layer)))
        if hidden_layer:
            layers += [norm(b)] if norm else []
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class DrawwiseBatchNorm1d(nn.Module):
    r"""Batch norm taken over each of ``draws`` draws apart, as a generator run once per draw has it (PacGAN's
    code runs its generator on each of the M noise batches it packs): (N * draws, C) -> (N * draws, C).

    Row ``i`` belongs to draw ``i % draws``, the layout :func:`~deepprob.adversarial.losses.pack` reads
    (a packed row holds ``draws`` consecutive rows, one from each draw). In training mode each draw ``d`` is
    normalised on its own statistics, :math:`y = γ (x - μ_d) / σ_d + β` with :math:`σ_d = \sqrt{\mathrm{Var}_d
    + ε}` (biased variance); the population statistics move towards the draws' average μ and σ by
    ``momentum``, and eval mode uses them: :math:`y = γ (x - \bar μ) / \bar σ + β`. That is Blocks'
    ``BatchNormalization`` as PacGAN trains it (a running σ, not a running variance: momentum 0.05, ε 1e-4).
    """

    def __init__(self, num_features: int, draws: int = 1, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        if draws < 1:
            raise InputError(f"batch norm draws {draws}: expected an integer >= 1")
        self.draws, self.momentum, self.eps = draws, momentum, eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_std", torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return torch.addcmul(self.bias, x - self.running_mean, self.weight / self.running_std)
        if x.shape[0] % self.draws:
            raise ValueError(f"DrawwiseBatchNorm1d: {x.shape[0]} rows are not {self.draws} draws of equal size")
        # (N * draws, C) as (N, draws * C): each column one channel of one draw, which torch's fused batch norm
        # normalises over its N rows; the affine parameters are shared by the draws
        columns = x.reshape(-1, self.draws * x.shape[1])
        n = columns.shape[0]
        if n < 2:
            raise ValueError("DrawwiseBatchNorm1d: a draw of one row has no spread to normalise by")
        # momentum 1 makes torch's running statistics this batch's: its mean and unbiased variance
        mean, var = columns.new_zeros(columns.shape[1]), columns.new_ones(columns.shape[1])
        out = F.batch_norm(columns, mean, var, self.weight.repeat(self.draws), self.bias.repeat(self.draws),
                           training=True, momentum=1.0, eps=self.eps)
        with torch.no_grad():
            std = (var * ((n - 1) / n) + self.eps).sqrt()
            self.running_mean.lerp_(mean.view(self.draws, -1).mean(0), self.momentum)
            self.running_std.lerp_(std.view(self.draws, -1).mean(0), self.momentum)
        return out.view_as(x)


class Maxout(nn.Module):
    """``max_k (x W_k^T + b_k)`` over ``pieces`` affine maps (Goodfellow et al. 2013): (N, in) -> (N, out).

    One Linear layer of ``out * pieces`` units, its output viewed as (N, out, pieces) and maxed over the last.
    """

    def __init__(self, in_dim: int, out_dim: int, pieces: int):
        super().__init__()
        if pieces < 1:
            raise InputError(f"maxout pieces {pieces}: expected an integer >= 1")
        self.out_dim, self.pieces = out_dim, pieces
        self.linear = nn.Linear(in_dim, out_dim * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).view(x.shape[0], self.out_dim, self.pieces).max(-1).values


def maxout_mlp(in_dim: int, hidden: Sequence[int], out_dim: int, pieces: int = 5) -> nn.Sequential:
    """Maxout hidden layers of widths ``hidden`` (``pieces`` each), then a Linear output layer: PacGAN's
    discriminator is ``maxout_mlp(2 * pack, [200, 200, 200], 1, pieces=5)``."""
    sizes = [in_dim, *hidden]
    layers: list[nn.Module] = [Maxout(a, b, pieces) for a, b in zip(sizes[:-1], sizes[1:])]
    return nn.Sequential(*layers, nn.Linear(sizes[-1], out_dim))


INITIALISERS = ("normal", "orthogonal")


def init_linear_(module: nn.Module, kind: str, scale: float) -> nn.Module:
    """Every Linear layer of ``module`` (Maxout's among them) re-initialised in place from torch's current
    seed, biases zero; returns ``module``. ``kind="normal"``: weights ~ N(0, scale²) (PacGAN's code, scale
    0.02); ``"orthogonal"``: an orthogonal matrix times the gain ``scale`` (the unrolled GAN's and GDPP's
    code, gain 1.4). torch's default scales the weights by 1/sqrt(fan_in) instead."""
    if kind not in INITIALISERS:
        raise InputError(f"initialiser {kind!r}: expected one of {', '.join(INITIALISERS)}")
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, nn.Linear):
                if kind == "normal":
                    layer.weight.normal_(0.0, scale)
                else:
                    nn.init.orthogonal_(layer.weight, gain=scale)
                if layer.bias is not None:
                    layer.bias.zero_()
    return module


class Affine(nn.Module):
    """``y = x * scale + shift`` with fixed (buffer) ``scale`` and ``shift`` of shape (D,) or ().

    Put in front of a discriminator (``Affine.standardize``) and behind a generator
    (``Affine.unstandardize``), it lets both networks work in coordinates of unit scale while the
    trainer, the metrics and the checkpoints see data coordinates.
    """

    def __init__(self, scale: torch.Tensor | float, shift: torch.Tensor | float):
        super().__init__()
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32).clone())
        self.register_buffer("shift", torch.as_tensor(shift, dtype=torch.float32).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift, x, self.scale)

    @classmethod
    def standardize(cls, mean: torch.Tensor, scale: torch.Tensor | float) -> Affine:
        """x -> (x - mean) / scale."""
        scale = torch.as_tensor(scale, dtype=torch.float32)
        return cls(1.0 / scale, -torch.as_tensor(mean, dtype=torch.float32) / scale)

    @classmethod
    def unstandardize(cls, mean: torch.Tensor, scale: torch.Tensor | float) -> Affine:
        """u -> u * scale + mean."""
        return cls(scale, mean)
