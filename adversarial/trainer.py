r"""A GAN trainer for vector data (2-D point clouds) with the remedies for mode dropping as options.

One generator iteration = ``d_steps`` discriminator steps, then one generator step:

- ``loss="gan"``: the standard GAN, discriminator by binary cross-entropy, non-saturating generator loss;
  ``loss="wgan-gp"``: a critic with a gradient penalty (Gulrajani et al. 2017).
- ``pack=M``: PacGAN (Lin et al. 2018): the discriminator judges M samples at once (its input has
  ``M * D`` features); ``batch_size`` counts discriminator inputs, so a step uses ``M * batch_size``
  samples of each kind.
- ``unrolled=K``: the generator's loss looks K discriminator Adam steps ahead, differentiating through
  them (Metz et al. 2017; see :mod:`deepprob.adversarial.unrolled`).

The loop is written for throughput on a CPU, where a step of small MLPs costs little more than the
operations it launches: the real points and the noise for all ``d_steps`` are drawn in one call each,
torch-side; the generated points for the discriminator steps come from one no-grad generator pass
(the generator does not change during them, and nothing is back-propagated into it); real and
generated points go through the discriminator as one batch (no batch norm in these networks, so
mixing them changes nothing); only the gradients that are needed are computed
(:func:`torch.autograd.grad` with the discriminator's parameters, then with the generator's); and Adam
is the fused implementation (one kernel for all parameters).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from deepprob.adversarial.losses import check_loss_kind, discriminator_loss, generator_loss, gradient_penalty, pack
from deepprob.adversarial.unrolled import adam_lookahead
from deepprob.errors import InputError


@dataclass
class GANConfig:
    """Options of :class:`GANTrainer` (see the module docstring).

    Attributes:
        loss: "gan" or "wgan-gp".
        d_steps: discriminator steps per generator step.
        unrolled: look-ahead discriminator steps in the generator's loss (0: none).
        pack: samples per discriminator input (1: no packing).
        batch_size: discriminator inputs per step.
        lr_g, lr_d: Adam learning rates of the generator and the discriminator.
        betas: Adam's (β1, β2) for both.
        gp_weight: λ of the WGAN gradient penalty.
        final_lr_fraction: both learning rates decay exponentially to this fraction of their start over
            the iterations given to :meth:`GANTrainer.train` (1: constant). A smaller step at the end
            lets the generated points settle on the modes instead of jittering around them.
    """

    loss: str = "gan"
    d_steps: int = 1
    unrolled: int = 0
    pack: int = 1
    batch_size: int = 256
    lr_g: float = 1e-3
    lr_d: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    gp_weight: float = 10.0
    final_lr_fraction: float = 1.0

    def validate(self) -> None:
        check_loss_kind(self.loss)
        for name in ("d_steps", "pack", "batch_size"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} {getattr(self, name)}: expected an integer >= 1")
        if self.unrolled < 0:
            raise InputError(f"--unrolled {self.unrolled}: expected an integer >= 0 (look-ahead steps)")
        if self.unrolled and self.loss != "gan":
            raise InputError(f"--unrolled {self.unrolled}: implemented for --loss gan, not {self.loss}")
        if not 0 < self.final_lr_fraction <= 1:
            raise InputError(f"--final-lr-fraction {self.final_lr_fraction}: expected a number in (0, 1]")
        for name in ("lr_g", "lr_d"):
            if not getattr(self, name) > 0:
                raise InputError(f"--{name.replace('_', '-')} {getattr(self, name)}: expected a learning rate > 0")

    def to_dict(self) -> dict:
        return asdict(self)


def make_adam(module: nn.Module, lr: float, betas: tuple[float, float]) -> torch.optim.Adam:
    """Adam over ``module``'s parameters; the fused kernel where this torch has it for the device."""
    params = list(module.parameters())
    try:
        return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, betas=betas)


def relu_mlp_layers(module: nn.Module) -> tuple[list[nn.Module], list[nn.Linear]] | None:
    """``module`` as (fixed input maps, Linear layers) when it is an MLP of Linear layers with ReLU
    between them (as :func:`~deepprob.adversarial.nets.mlp` builds), optionally behind parameter-free
    modules such as :class:`~deepprob.adversarial.nets.Affine`; None for anything else."""
    from deepprob.adversarial.nets import Affine

    parts = list(module) if isinstance(module, nn.Sequential) else [module]
    prefix = []
    while parts and isinstance(parts[0], Affine):
        prefix.append(parts.pop(0))
    if len(parts) == 1 and isinstance(parts[0], nn.Sequential):
        parts = list(parts[0])
    if not parts or len(parts) % 2 == 0:
        return None
    linears = parts[0::2]
    if not all(type(m) is nn.Linear for m in linears) or not all(type(m) is nn.ReLU for m in parts[1::2]):
        return None
    return prefix, linears


@torch.no_grad()
def relu_mlp_bce_grads(
    layers: tuple[list[nn.Module], list[nn.Linear]], x: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    r"""The weighted binary cross-entropy of a ReLU MLP's logits and its gradients, by hand.

    Forward :math:`h_{j+1} = \mathrm{relu}(h_j W_j^T + b_j)` (no ReLU after the last layer), then
    :math:`δ = w ⊙ (σ(\text{logits}) - y) / N` and, layer by layer backwards,
    :math:`∇W_j = δ^T h_j`, :math:`∇b_j = Σ δ`, :math:`δ ← (δ W_j) ⊙ [h_j > 0]`. The same numbers as
    autograd, without its graph: on a CPU, where these layers are small, the bookkeeping of the
    autograd engine is a sizeable part of a discriminator step.

    Returns:
        (loss, gradients in the order of ``module.parameters()``: W_0, b_0, W_1, b_1, ...).
    """
    prefix, linears = layers
    for m in prefix:
        x = m(x)
    hs = [x]
    for j, layer in enumerate(linears):
        h = torch.addmm(layer.bias, hs[-1], layer.weight.t())
        if j < len(linears) - 1:
            h.relu_()
        hs.append(h)
    logits = hs[-1]
    loss = F.binary_cross_entropy_with_logits(logits, labels, weight)
    delta = (torch.sigmoid(logits) - labels).mul_(weight).div_(logits.shape[0])
    grads: list[torch.Tensor] = []
    for j in reversed(range(len(linears))):
        grads += [delta.sum(0), delta.t().mm(hs[j])]  # b_j, W_j (reversed below)
        if j > 0:
            delta = torch.ops.aten.threshold_backward(delta.mm(linears[j].weight), hs[j], 0.0)
    return loss, grads[::-1]


class AdamStepper:
    """Applies ``optimizer``'s Adam update for given gradients.

    ``optimizer.step()`` costs ~0.2 ms of Python bookkeeping per call on top of the fused kernel, as
    much as the kernel itself for these networks, and a GAN iteration makes six of them. For a fused
    Adam with one parameter group (and no weight decay, amsgrad or maximize) this calls the fused
    kernel directly on the optimiser's own state tensors, which it creates as Adam would: the update,
    the state, ``state_dict()``, learning-rate schedulers and :func:`adam_lookahead` are all unchanged.
    Any other optimiser goes through ``.grad`` and ``optimizer.step()``.
    """

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.optimizer = optimizer
        group = optimizer.param_groups[0]
        self.params = list(group["params"])
        self.direct = (
            isinstance(optimizer, torch.optim.Adam)
            and len(optimizer.param_groups) == 1
            and bool(group.get("fused"))
            and not group.get("weight_decay")
            and not group.get("amsgrad")
            and not group.get("maximize")
            and hasattr(torch, "_fused_adam_")
        )
        if self.direct:
            for p in self.params:
                state = optimizer.state[p]
                if not state:  # what torch.optim.Adam creates for a fused group
                    state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            self.exp_avgs = [optimizer.state[p]["exp_avg"] for p in self.params]
            self.exp_avg_sqs = [optimizer.state[p]["exp_avg_sq"] for p in self.params]
            self.steps = [optimizer.state[p]["step"] for p in self.params]

    def step(self, grads) -> None:
        if not self.direct:
            for p, g in zip(self.params, grads):
                p.grad = g
            self.optimizer.step()
            return
        group = self.optimizer.param_groups[0]
        beta1, beta2 = group["betas"]
        torch._foreach_add_(self.steps, 1)
        torch._fused_adam_(
            self.params, list(grads), self.exp_avgs, self.exp_avg_sqs, [], self.steps,
            lr=float(group["lr"]), beta1=beta1, beta2=beta2, weight_decay=0.0, eps=group["eps"],
            amsgrad=False, maximize=False,
        )  # fmt: skip


class GANTrainer:
    """Trains ``generator`` against ``discriminator`` on samples from ``sample_real``.

    Args:
        generator: maps noise (N, latent_dim) to points (N, D).
        discriminator: maps (N, pack * D) inputs to (N, 1) logits (critic values for WGAN-GP).
        sample_real: ``n -> (n, D)`` fresh data points on ``device``.
        latent_dim: the noise dimension; the noise is N(0, I).
        config: :class:`GANConfig`.
        device: where the networks and the data live.
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        sample_real: Callable[[int], torch.Tensor],
        latent_dim: int,
        config: GANConfig,
        device: torch.device | str = "cpu",
    ):
        config.validate()
        self.config, self.device, self.latent_dim = config, torch.device(device), latent_dim
        self.generator, self.discriminator = generator.to(self.device), discriminator.to(self.device)
        self.sample_real = sample_real
        self.opt_g = make_adam(generator, config.lr_g, config.betas)
        self.opt_d = make_adam(discriminator, config.lr_d, config.betas)
        self.params_g = list(generator.parameters())
        self.params_d = list(discriminator.parameters())
        self.step_g, self.step_d = AdamStepper(self.opt_g), AdamStepper(self.opt_d)
        # the standard loss on a ReLU MLP discriminator: its steps by hand (same numbers, no autograd graph)
        self._d_layers = relu_mlp_layers(discriminator) if config.loss == "gan" else None
        self.iteration = 0
        self._label_cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def noise(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, device=self.device)

    @torch.no_grad()
    def generate(self, n: int, noise: torch.Tensor | None = None) -> torch.Tensor:
        """``n`` generated points (n, D), without gradients."""
        return self.generator(self.noise(n) if noise is None else noise)

    def step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One generator iteration; returns the last discriminator loss and the generator loss (0-d
        tensors, not synchronised: call ``.item()`` only when you need the numbers)."""
        cfg = self.config
        m, b, k = cfg.pack, cfg.batch_size, cfg.d_steps
        n = m * b  # samples per discriminator step, of each kind
        real_all = self.sample_real(k * n)
        noise_all = self.noise((k + 1) * n)
        with torch.no_grad():
            fake_all = self.generator(noise_all[: k * n])
        for i in range(k):
            real = pack(real_all[i * n : (i + 1) * n], m)
            fake = pack(fake_all[i * n : (i + 1) * n], m)
            if self._d_layers is not None:
                both = torch.cat([real, fake])
                labels, weight = self._labels(real.shape[0], both)
                d_loss, grads = relu_mlp_bce_grads(self._d_layers, both, labels, weight)
            else:
                d_loss = self._discriminator_loss(real, fake)
                grads = torch.autograd.grad(d_loss, self.params_d)
            self.step_d.step(grads)

        fake = self.generator(noise_all[k * n :])
        if cfg.unrolled:
            g_loss = self._unrolled_generator_loss(fake)
        else:
            g_loss = generator_loss(self.discriminator(pack(fake, m)), cfg.loss)
        # only the generator's gradients: autograd then skips the discriminator's weight gradients
        self.step_g.step(torch.autograd.grad(g_loss, self.params_g))
        self.iteration += 1
        return d_loss.detach(), g_loss.detach()

    def _discriminator_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        # one pass over real and generated inputs together: half the launches of two passes
        out = self.discriminator(torch.cat([real, fake]))
        if cfg.loss == "gan" and real.shape[0] == fake.shape[0]:
            # the same loss in one fused op: 2 x the mean BCE over both halves = mean_real + mean_fake
            labels, weight = self._labels(real.shape[0], out)
            return F.binary_cross_entropy_with_logits(out, labels, weight)
        loss = discriminator_loss(out[: real.shape[0]], out[real.shape[0] :], cfg.loss)
        if cfg.loss == "wgan-gp":
            loss = loss + cfg.gp_weight * gradient_penalty(self.discriminator, real, fake)
        return loss

    def _labels(self, n: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(2n, 1) labels, n ones then n zeros, and (2n, 1) weights of 2; made once per size."""
        cached = self._label_cache.get(n)
        if cached is None:
            labels = torch.cat([torch.ones(n, 1), torch.zeros(n, 1)]).to(like)
            cached = self._label_cache[n] = (labels, torch.full_like(labels, 2.0))
        return cached

    def _unrolled_generator_loss(self, fake: torch.Tensor) -> torch.Tensor:
        """L_G against the discriminator K Adam steps ahead; the look-ahead steps use this batch of
        generated points (not detached: θ_D^K depends on the generator through them) and a fresh real
        batch, the same at each step, as in the paper's implementation."""
        cfg = self.config
        real = pack(self.sample_real(fake.shape[0]), cfg.pack)
        fake_packed = pack(fake, cfg.pack)
        both = torch.cat([real, fake_packed])

        def d_loss(params: dict[str, torch.Tensor]) -> torch.Tensor:
            out = functional_call(self.discriminator, params, (both,))
            return discriminator_loss(out[: real.shape[0]], out[real.shape[0] :], cfg.loss)

        ahead = adam_lookahead(self.discriminator, self.opt_d, d_loss, cfg.unrolled)
        return generator_loss(functional_call(self.discriminator, ahead, (fake_packed,)), cfg.loss)

    def train(
        self,
        iterations: int,
        *,
        callback: Callable[[GANTrainer], None] | None = None,
        callback_every: int = 0,
        progress: bool = True,
        desc: str = "GAN",
        check_every: int = 50,
    ) -> dict:
        """Run ``iterations`` generator iterations with the learning-rate schedule of the config.

        ``callback(self)`` runs after every ``callback_every`` iterations (snapshots). The losses are
        read back (a host synchronisation) only every ``check_every`` iterations, to stop a diverged
        run (:func:`~deepprob.inference.svi.check_loss`) and to update the progress bar.

        Returns:
            ``{"d_loss": [...], "g_loss": [...]}``: the losses at every ``check_every``-th iteration.
        """
        from tqdm.auto import tqdm

        from deepprob.inference.svi import check_loss

        if iterations < 1:
            raise InputError(f"--iterations {iterations}: expected at least 1")
        # the exponential decay set by hand (an LRScheduler would expect optimizer.step() calls)
        gamma = self.config.final_lr_fraction ** (1.0 / iterations)
        groups = [(g, g["lr"]) for opt in (self.opt_g, self.opt_d) for g in opt.param_groups]
        history: dict[str, list[float]] = {"d_loss": [], "g_loss": []}
        bar = tqdm(range(iterations), desc=desc, disable=not progress, leave=False, dynamic_ncols=True)
        for i in bar:
            d_loss, g_loss = self.step()
            if gamma != 1.0:
                for group, lr0 in groups:
                    group["lr"] = lr0 * gamma ** (i + 1)
            if (i + 1) % check_every == 0 or i + 1 == iterations:
                d, g = d_loss.item(), g_loss.item()
                check_loss(d, self.iteration)
                check_loss(g, self.iteration)
                history["d_loss"].append(d)
                history["g_loss"].append(g)
                bar.set_postfix(d_loss=f"{d:.3f}", g_loss=f"{g:.3f}", refresh=False)
            if callback is not None and callback_every and (i + 1) % callback_every == 0:
                callback(self)
        bar.close()
        return history

    def state_dict(self) -> dict:
        return {
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "iteration": self.iteration,
            "config": self.config.to_dict(),
        }
