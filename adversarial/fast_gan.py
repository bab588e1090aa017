r"""GAN iterations of ReLU MLPs with hand-written gradients, run eagerly or compiled into one kernel.

For the standard GAN loss on multilayer perceptrons of Linear layers with ReLU between them (what
:func:`~deepprob.adversarial.nets.mlp` builds, optionally behind or in front of fixed
:class:`~deepprob.adversarial.nets.Affine` maps), the gradients are written out by hand:

- forward :math:`h_{j+1} = \mathrm{relu}(h_j W_j^T + b_j)` (no ReLU after the last layer);
- backward from :math:`δ = ∂L/∂(\text{last layer's output})`, layer by layer:
  :math:`∇W_j = δ^T h_j`, :math:`∇b_j = Σ_\text{rows} δ`, :math:`δ ← (δ W_j) ⊙ [h_j > 0]`;
- discriminator step (binary cross-entropy, real and generated points in one batch):
  :math:`δ = w ⊙ (σ(\text{logits}) - y) / N`;
- generator step (non-saturating loss :math:`\mathrm{mean}\,\mathrm{softplus}(-\text{logits})`):
  :math:`δ = (σ(\text{logits}) - 1) / N` at the discriminator's output, back through the discriminator
  to its input (no weight gradients there), unpacked, and back through the generator.

The same numbers as autograd, without its graph: on a CPU, where these layers are small, the bookkeeping
of the autograd engine is a sizeable part of a step. :func:`gan_iteration` is one generator iteration as
pure tensor code, with the optimiser steps passed in as callbacks: :class:`~deepprob.optim.AdamStepper` (the
fused Adam kernel, called directly) when it runs eagerly; :class:`CompiledIteration` traces it with
:func:`deepprob.optim.adam_update_` (``torch.optim.Adam``'s arithmetic) into one graph and compiles it with
Inductor (:func:`deepprob.compiler.compiling.compile_step`), which removes the Python dispatch of its
few hundred operations. On one CPU thread that is ~1.1x the eager iteration's speed for the seed's
2-300-300-150 MLPs (where matrix products are ~80% of the time) and ~1.3-1.45x for the `gan` command's
128-wide ones, after a compile of 20-50 s cold (~3 s when Inductor's on-disk cache has the graph).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from deepprob.adversarial.losses import pack
from deepprob.adversarial.nets import Affine
from deepprob.compiler import compile_step
from deepprob.optim import AdamStepper, adam_update_


@dataclass
class ReluMLP:
    """A network as fixed input maps, ``layers`` Linear layers with ReLU between them, fixed output maps.

    The Linear layers' parameters are not held here: the methods take them as a list in the order of
    ``module.parameters()`` (W_0, b_0, W_1, b_1, ...), so that they can be traced as inputs.
    """

    prefix: list[Affine]
    layers: int
    suffix: list[Affine]

    @classmethod
    def of(cls, module: nn.Module) -> ReluMLP | None:
        """``module`` as a :class:`ReluMLP` when it is one (an :func:`~deepprob.adversarial.nets.mlp`,
        alone or in a ``Sequential`` between Affine maps); None for anything else."""
        parts = list(module) if isinstance(module, nn.Sequential) else [module]
        prefix, suffix = [], []
        while parts and isinstance(parts[0], Affine):
            prefix.append(parts.pop(0))
        while parts and isinstance(parts[-1], Affine):
            suffix.insert(0, parts.pop())
        if len(parts) == 1 and isinstance(parts[0], nn.Sequential):
            parts = list(parts[0])
        if not parts or len(parts) % 2 == 0:
            return None
        linears = parts[0::2]
        if not all(type(m) is nn.Linear for m in linears) or not all(type(m) is nn.ReLU for m in parts[1::2]):
            return None
        return cls(prefix, len(linears), suffix)

    def forward(self, params: Sequence[torch.Tensor], x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(the Linear layers' inputs [h_0 (N, in), ..., h_{L-1}], the network's output (N, out))."""
        for m in self.prefix:
            x = m(x)
        hs = [x]
        for j in range(self.layers):
            h = torch.addmm(params[2 * j + 1], hs[-1], params[2 * j].t())
            if j < self.layers - 1:
                hs.append(h.relu_())
        for m in self.suffix:
            h = m(h)
        return hs, h

    def output_grad(self, grad: torch.Tensor) -> torch.Tensor:
        """∂L/∂(the last Linear layer's output) from ∂L/∂(the network's output), through the output maps."""
        for m in reversed(self.suffix):
            grad = grad * m.scale
        return grad

    def weight_grads(
        self, params: Sequence[torch.Tensor], hs: Sequence[torch.Tensor], delta: torch.Tensor
    ) -> list[torch.Tensor]:
        """The gradients of ``params`` (in their order) from ``delta`` = ∂L/∂(last layer's output) (N, out)."""
        grads: list[torch.Tensor] = []
        for j in reversed(range(self.layers)):
            grads += [delta.sum(0), _weight_grad(delta, hs[j])]  # b_j, W_j (reversed below)
            if j > 0:
                delta = torch.ops.aten.threshold_backward(delta.mm(params[2 * j]), hs[j], 0.0)
        return grads[::-1]

    def input_grad(
        self, params: Sequence[torch.Tensor], hs: Sequence[torch.Tensor], delta: torch.Tensor
    ) -> torch.Tensor:
        """∂L/∂(the network's input) (N, in) from ``delta`` = ∂L/∂(last layer's output), without the
        weight gradients."""
        for j in reversed(range(self.layers)):
            delta = delta.mm(params[2 * j])
            if j > 0:
                delta = torch.ops.aten.threshold_backward(delta, hs[j], 0.0)
        for m in reversed(self.prefix):
            delta = delta * m.scale
        return delta


def _weight_grad(delta: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """δ^T h (out, in), contiguous (the fused Adam kernel ignores strides). For a narrow input
    (in < out: the first layer, in = 2) as (h^T δ)^T: BLAS takes ~6x longer for (300, N) @ (N, 2)
    than for (2, N) @ (N, 300)."""
    if h.shape[1] < delta.shape[1]:
        return h.t().mm(delta).t().contiguous()
    return delta.t().mm(h)


def bce_targets(n: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(2n, 1) labels (n ones, then n zeros) and (2n, 1) weights of 2, for a discriminator batch of n
    real inputs, then n generated ones: their weighted mean BCE is mean_real + mean_fake, the standard
    L_D, in one fused op."""
    labels = torch.cat([torch.ones(n, 1), torch.zeros(n, 1)]).to(like)
    return labels, torch.full_like(labels, 2.0)


def discriminator_steps(
    disc: ReluMLP,
    params_d: Sequence[torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    d_steps: int,
    pack_size: int,
    targets: tuple[torch.Tensor, torch.Tensor],
    update: Callable[[list[torch.Tensor]], None],
) -> torch.Tensor:
    """``d_steps`` discriminator steps on consecutive slices of ``real`` and ``fake`` (each (d_steps * n, D),
    n = pack_size * batch size); ``update(grads)`` updates ``params_d`` in place. Returns the last L_D."""
    n = real.shape[0] // d_steps
    labels, weight = targets
    with torch.no_grad():
        for i in range(d_steps):
            batch = slice(i * n, (i + 1) * n)
            # real and generated inputs in one pass: half the operations of two passes
            both = torch.cat([pack(real[batch], pack_size), pack(fake[batch], pack_size)])
            hs, logits = disc.forward(params_d, both)
            loss = F.binary_cross_entropy_with_logits(logits, labels, weight)
            delta = disc.output_grad((torch.sigmoid(logits) - labels) * weight / logits.shape[0])
            update(disc.weight_grads(params_d, hs, delta))
    return loss


def gan_iteration(
    gen: ReluMLP,
    disc: ReluMLP,
    params_g: Sequence[torch.Tensor],
    params_d: Sequence[torch.Tensor],
    real: torch.Tensor,
    noise: torch.Tensor,
    *,
    d_steps: int,
    pack_size: int,
    targets: tuple[torch.Tensor, torch.Tensor],
    update_d: Callable[[list[torch.Tensor]], None],
    update_g: Callable[[list[torch.Tensor]], None],
) -> tuple[torch.Tensor, torch.Tensor]:
    """One generator iteration of the standard GAN: ``d_steps`` discriminator steps, then one generator step.

    Pure tensor code (traceable); ``update_d(grads)`` and ``update_g(grads)`` must update ``params_d`` and
    ``params_g`` in place (an Adam step).

    Args:
        real: (d_steps * n, D) data points, n = pack_size * batch size: the discriminator steps' in turn.
        noise: ((d_steps + 1) * n, latent) noise: the first d_steps * n make the discriminator steps'
            generated points, in one generator pass (the generator does not change during them), the
            last n the generator step's.
        targets: :func:`bce_targets` of the batch size.

    Returns:
        (the last discriminator loss, the generator loss), 0-dim.
    """
    n = real.shape[0] // d_steps
    with torch.no_grad():
        fake = gen.forward(params_g, noise[: d_steps * n])[1]
        d_loss = discriminator_steps(
            disc, params_d, real, fake, d_steps=d_steps, pack_size=pack_size, targets=targets, update=update_d
        )
        hs_g, fake = gen.forward(params_g, noise[d_steps * n :])
        hs_d, logits = disc.forward(params_d, pack(fake, pack_size))
        g_loss = F.softplus(-logits).mean()  # non-saturating -log D(G(z)), as losses.generator_loss
        delta = disc.output_grad((torch.sigmoid(logits) - 1) / logits.shape[0])
        grad_fake = disc.input_grad(params_d, hs_d, delta).reshape(fake.shape)  # unpacked
        update_g(gen.weight_grads(params_g, hs_g, gen.output_grad(grad_fake)))
    return d_loss, g_loss


# Inductor inlines a 0-dim intermediate used by several kernels into each of them, and on a CPU it then
# computes it inside the vectorised loop: Adam's bias corrections, (1 - β^t) with a pow, once per 16
# elements, which makes the update ~3x slower. Realising every intermediate of more than this many
# operations that has several users computes them once (and stores Adam's new moments once).
REALIZE_OPCOUNT_THRESHOLD = 4


class CompiledIteration:
    """:func:`gan_iteration` and both Adam updates traced into one graph and compiled by Inductor.

    The weights, and Adam's moments and step counts (the optimisers' own state tensors: the optimisers,
    ``state_dict()`` and an eager step afterwards carry on from them), are inputs updated in place;
    the learning rates are 0-dim inputs refreshed from the optimisers' groups at each call (a schedule
    applies); betas, eps and the shapes are constants. Call with ``(real, noise)`` as for
    :func:`gan_iteration`; returns (the last discriminator loss, the generator loss).

    Raises whatever tracing or compiling raises; the caller runs the eager iteration instead.
    """

    def __init__(
        self,
        gen: ReluMLP,
        disc: ReluMLP,
        steppers: tuple[AdamStepper, AdamStepper],
        *,
        d_steps: int,
        pack_size: int,
        batch_size: int,
        real: torch.Tensor,
        noise: torch.Tensor,
    ):
        if not all(s.plain for s in steppers):
            raise ValueError("the compiled iteration needs plain Adam optimisers")
        self.gen, self.disc, self.steppers = gen, disc, steppers
        self.d_steps, self.pack_size, self.batch_size = d_steps, pack_size, batch_size
        like = steppers[0].params[0]
        self.lrs = [torch.zeros((), dtype=like.dtype, device=like.device) for _ in steppers]
        self.state = [
            x.detach()  # the parameters themselves (shared storage), without autograd's leaf checks
            for s in steppers
            for x in (*s.params, *s.exp_avgs, *s.exp_avg_sqs, *s.steps)
        ] + self.lrs
        # trace on copies: tracing runs the iteration once, and its in-place updates must not count
        example = [x.clone() for x in self.state] + [real, noise]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.fn = compile_step(self._iteration, example,
                                   inductor_options={"realize_opcount_threshold": REALIZE_OPCOUNT_THRESHOLD}).fn

    def _iteration(self, *flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The traced function: ``(*self.state, real, noise)`` -> (d_loss, g_loss)."""
        rest, groups = list(flat), []
        for stepper in self.steppers:
            k = len(stepper.params)
            groups.append([rest[i * k : (i + 1) * k] for i in range(4)])  # params, exp_avgs, exp_avg_sqs, steps
            del rest[: 4 * k]
        *lrs, real, noise = rest
        update_g, update_d = (self._adam(s, *g, lr) for s, g, lr in zip(self.steppers, groups, lrs))
        return gan_iteration(
            self.gen, self.disc, groups[0][0], groups[1][0], real, noise, d_steps=self.d_steps,
            pack_size=self.pack_size, targets=bce_targets(self.batch_size, real), update_d=update_d,
            update_g=update_g,
        )  # fmt: skip

    @staticmethod
    def _adam(stepper: AdamStepper, params, exp_avgs, exp_avg_sqs, steps, lr) -> Callable[[list[torch.Tensor]], None]:
        """The update callback on the traced tensors. Adam keeps a step count per parameter, all equal:
        one is counted, the others copy it."""
        betas, eps = tuple(stepper.group["betas"]), stepper.group["eps"]

        def update(grads: list[torch.Tensor]) -> None:
            adam_update_(params, grads, exp_avgs, exp_avg_sqs, steps[0], lr, betas, eps)
            for step in steps[1:]:
                step.copy_(steps[0])

        return update

    def __call__(self, real: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for lr, stepper in zip(self.lrs, self.steppers):
            lr.fill_(stepper.group["lr"])
        return self.fn(*self.state, real, noise)
