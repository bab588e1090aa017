r"""A GAN trainer for vector data (2-D point clouds) with the remedies for mode dropping as options.

One generator iteration = ``d_steps`` discriminator steps, then one generator step:

- ``loss="gan"``: the standard GAN, discriminator by binary cross-entropy, non-saturating generator loss;
  ``loss="wgan-gp"``: a critic with a gradient penalty (Gulrajani et al. 2017).
- ``pack=M``: PacGAN (Lin et al. 2018): the discriminator judges M samples at once (its input has
  ``M * D`` features); ``batch_size`` counts discriminator inputs, so a step uses ``M * batch_size``
  samples of each kind.
- ``unrolled=K``: the generator's loss looks K discriminator Adam steps ahead, differentiating through
  them (Metz et al. 2017; see :mod:`deepprob.adversarial.unrolled`).
- ``simultaneous=True``: both networks step from one pass over one batch, each gradient taken at the
  parameters before either step (the update of ALI's code, which PacGAN's experiments ran): one generator
  pass and one discriminator pass an iteration instead of two of each.

The loop is written for throughput on a CPU, where a step of small MLPs costs little more than the
operations it launches: the real points and the noise for all ``d_steps`` are drawn in one call each,
torch-side; the generated points for the discriminator steps come from one no-grad generator pass
(the generator does not change during them, and nothing is back-propagated into it); real and
generated points go through the discriminator as one batch (no batch norm in these networks, so
mixing them changes nothing); and Adam is the fused kernel, called directly. For the standard loss on
ReLU MLPs (what :func:`~deepprob.adversarial.nets.mlp` builds; without ``unrolled``) the gradients are
written out by hand, and the whole iteration can be compiled into one kernel
(:mod:`deepprob.adversarial.fast_gan`; ``GANConfig.compile``). Otherwise autograd computes only the
gradients that are needed (:func:`torch.autograd.grad` with the discriminator's parameters, then with
the generator's).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from deepprob.adversarial.fast_gan import CompiledIteration, ReluMLP, bce_targets, discriminator_steps, gan_iteration
from deepprob.adversarial.losses import check_loss_kind, discriminator_loss, generator_loss, gradient_penalty, pack
from deepprob.adversarial.unrolled import adam_lookahead
from deepprob.errors import InputError
from deepprob.optim import AdamStepper, ExponentialDecay, make_adam
from deepprob.training import TrainingLoop


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
        simultaneous: update both networks at once from one batch (see the module docstring); with
            ``d_steps=1`` and no ``unrolled`` steps.
        final_lr_fraction: both learning rates decay exponentially to this fraction of their start over
            the iterations given to :meth:`GANTrainer.train` (1: constant). A smaller step at the end
            lets the generated points settle on the modes instead of jittering around them.
        compile: run each iteration as one compiled kernel
            (:class:`~deepprob.adversarial.fast_gan.CompiledIteration`, built at the first step: tens
            of seconds cold on a small CPU, a few from Inductor's on-disk cache). Only for the standard
            loss on ReLU MLPs without ``unrolled``; elsewhere, or if compiling fails, the iteration runs
            eagerly (with a warning).
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
    simultaneous: bool = False
    final_lr_fraction: float = 1.0
    compile: bool = False

    def validate(self) -> None:
        check_loss_kind(self.loss)
        for name in ("d_steps", "pack", "batch_size"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} {getattr(self, name)}: expected an integer >= 1")
        if self.unrolled < 0:
            raise InputError(f"--unrolled {self.unrolled}: expected an integer >= 0 (look-ahead steps)")
        if self.unrolled and self.loss != "gan":
            raise InputError(f"--unrolled {self.unrolled}: implemented for --loss gan, not {self.loss}")
        if self.simultaneous and (self.d_steps != 1 or self.unrolled):
            raise InputError(f"--simultaneous with --d-steps {self.d_steps} --unrolled {self.unrolled}: "
                             "expected one discriminator step and no unrolled steps")
        if not 0 < self.final_lr_fraction <= 1:
            raise InputError(f"--final-lr-fraction {self.final_lr_fraction}: expected a number in (0, 1]")
        for name in ("lr_g", "lr_d"):
            if not getattr(self, name) > 0:
                raise InputError(f"--{name.replace('_', '-')} {getattr(self, name)}: expected a learning rate > 0")

    def to_dict(self) -> dict:
        return asdict(self)


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
        self.opt_g = make_adam(generator.parameters(), config.lr_g, config.betas, fused=True)
        self.opt_d = make_adam(discriminator.parameters(), config.lr_d, config.betas, fused=True)
        self.params_g = list(generator.parameters())
        self.params_d = list(discriminator.parameters())
        self.step_g, self.step_d = AdamStepper(self.opt_g), AdamStepper(self.opt_d)
        # the standard loss on ReLU MLPs: gradients by hand (the same numbers, no autograd graph), the
        # discriminator's steps whenever it is one, the whole iteration when both are and not unrolled
        self._gen = ReluMLP.of(generator) if config.loss == "gan" else None
        self._disc = ReluMLP.of(discriminator) if config.loss == "gan" else None
        self._by_hand = (self._gen is not None and self._disc is not None and not config.unrolled
                         and not config.simultaneous)
        self._compile_pending = config.compile and self._by_hand  # compiled at the first step
        if config.compile and not self._by_hand:
            warnings.warn(
                "GANConfig(compile=True): the compiled iteration is for the standard loss on ReLU MLPs, "
                "alternating updates without unrolled steps; running eagerly", stacklevel=2,
            )  # fmt: skip
        self._compiled: CompiledIteration | None = None
        self.compile_seconds = 0.0  # time spent tracing and compiling the iteration
        self.iteration = 0
        self._targets: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def compiled(self) -> bool:
        """Whether the iterations run compiled (from the first one on, with ``config.compile``)."""
        return self._compiled is not None

    def noise(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, device=self.device)

    @torch.no_grad()
    def generate(self, n: int, noise: torch.Tensor | None = None) -> torch.Tensor:
        """``n`` generated points (n, D), without gradients; in eval mode (batch norm layers use their
        running statistics, so a point does not depend on the others drawn with it)."""
        training = self.generator.training
        self.generator.eval()
        try:
            return self.generator(self.noise(n) if noise is None else noise)
        finally:
            self.generator.train(training)

    def step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One generator iteration; returns the last discriminator loss and the generator loss (0-d
        tensors, not synchronised: call ``.item()`` only when you need the numbers)."""
        cfg = self.config
        n = cfg.pack * cfg.batch_size  # samples per discriminator step, of each kind
        real = self.sample_real(cfg.d_steps * n)
        noise = self.noise((cfg.d_steps + (0 if cfg.simultaneous else 1)) * n)
        if self._compile_pending:
            self._compile(real, noise)
        if self._compiled is not None:
            d_loss, g_loss = self._compiled(real, noise)
        elif self._by_hand:
            d_loss, g_loss = gan_iteration(
                self._gen, self._disc, self.params_g, self.params_d, real, noise, d_steps=cfg.d_steps,
                pack_size=cfg.pack, targets=self._bce_targets(cfg.batch_size, real), update_d=self.step_d.step,
                update_g=self.step_g.step,
            )  # fmt: skip
        elif cfg.simultaneous:
            d_loss, g_loss = self._simultaneous_iteration(real, noise)
        else:
            d_loss, g_loss = self._autograd_iteration(real, noise)
        self.iteration += 1
        return d_loss.detach(), g_loss.detach()

    def _compile(self, real: torch.Tensor, noise: torch.Tensor) -> None:
        """Build the compiled iteration, with ``real`` and ``noise`` as example inputs; on failure, warn
        and stay eager."""
        cfg = self.config
        self._compile_pending = False
        start = time.perf_counter()
        try:
            self._compiled = CompiledIteration(
                self._gen, self._disc, (self.step_g, self.step_d), d_steps=cfg.d_steps, pack_size=cfg.pack,
                batch_size=cfg.batch_size, real=real, noise=noise,
            )  # fmt: skip
        except Exception as err:  # noqa: BLE001 - anything Inductor cannot compile: run eagerly
            warnings.warn(
                f"GAN: compiling the iteration failed ({type(err).__name__}: {str(err)[:200]}); running it eagerly",
                stacklevel=3,
            )
        self.compile_seconds = time.perf_counter() - start

    def _autograd_iteration(self, real_all: torch.Tensor, noise_all: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The iteration through autograd (WGAN-GP, unrolled steps, networks other than ReLU MLPs); a ReLU
        MLP discriminator of the standard loss still takes its steps by hand."""
        cfg = self.config
        m, k = cfg.pack, cfg.d_steps
        n = m * cfg.batch_size
        with torch.no_grad():
            fake_all = self.generator(noise_all[: k * n])
        if self._disc is not None:
            d_loss = discriminator_steps(
                self._disc, self.params_d, real_all, fake_all, d_steps=k, pack_size=m,
                targets=self._bce_targets(cfg.batch_size, real_all), update=self.step_d.step,
            )  # fmt: skip
        else:
            for i in range(k):
                real = pack(real_all[i * n : (i + 1) * n], m)
                fake = pack(fake_all[i * n : (i + 1) * n], m)
                d_loss = self._discriminator_loss(real, fake)
                self.step_d.step(torch.autograd.grad(d_loss, self.params_d))

        fake = self.generator(noise_all[k * n :])
        if cfg.unrolled:
            g_loss = self._unrolled_generator_loss(fake)
        else:
            g_loss = generator_loss(self.discriminator(pack(fake, m)), cfg.loss)
        # only the generator's gradients: autograd then skips the discriminator's weight gradients
        self.step_g.step(torch.autograd.grad(g_loss, self.params_g))
        return d_loss, g_loss

    def _simultaneous_iteration(self, real: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass of both networks over (real, G(noise)); both gradients at the present parameters, then
        both steps."""
        cfg = self.config
        real, fake = pack(real, cfg.pack), pack(self.generator(noise), cfg.pack)
        out = self.discriminator(torch.cat([real, fake]))
        out_real, out_fake = out[: real.shape[0]], out[real.shape[0] :]
        d_loss = discriminator_loss(out_real, out_fake, cfg.loss)
        if cfg.loss == "wgan-gp":
            d_loss = d_loss + cfg.gp_weight * gradient_penalty(self.discriminator, real, fake.detach())
        g_loss = generator_loss(out_fake, cfg.loss)
        grads_d = torch.autograd.grad(d_loss, self.params_d, retain_graph=True)
        grads_g = torch.autograd.grad(g_loss, self.params_g)
        self.step_d.step(grads_d)
        self.step_g.step(grads_g)
        return d_loss, g_loss

    def _discriminator_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        # one pass over real and generated inputs together: half the launches of two passes
        out = self.discriminator(torch.cat([real, fake]))
        if cfg.loss == "gan" and real.shape[0] == fake.shape[0]:
            # the same loss in one fused op: 2 x the mean BCE over both halves = mean_real + mean_fake
            labels, weight = self._bce_targets(real.shape[0], out)
            return F.binary_cross_entropy_with_logits(out, labels, weight)
        loss = discriminator_loss(out[: real.shape[0]], out[real.shape[0] :], cfg.loss)
        if cfg.loss == "wgan-gp":
            loss = loss + cfg.gp_weight * gradient_penalty(self.discriminator, real, fake)
        return loss

    def _bce_targets(self, n: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`~deepprob.adversarial.fast_gan.bce_targets`, made once per size."""
        if n not in self._targets:
            self._targets[n] = bce_targets(n, like)
        return self._targets[n]

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
        run (a FitDivergedError naming the iteration and the loss) and to update the progress bar's
        losses (:class:`~deepprob.training.TrainingLoop`).

        Returns:
            ``{"d_loss": [...], "g_loss": [...]}``: the losses at every ``check_every``-th iteration.
        """
        if iterations < 1:
            raise InputError(f"--iterations {iterations}: expected at least 1")
        # the decay from each optimiser's present learning rate (set by hand: the steps do not go through
        # optimizer.step(), which an LRScheduler would expect)
        decays = [(opt, ExponentialDecay(opt.param_groups[0]["lr"], iterations, self.config.final_lr_fraction))
                  for opt in (self.opt_g, self.opt_d)]
        history: dict[str, list[float]] = {"d_loss": [], "g_loss": []}
        snapshot = (lambda done: callback(self)) if callback is not None and callback_every else None
        loop = TrainingLoop(desc, iterations, progress=progress, unit="it", checkpoint=snapshot,
                            checkpoint_every=callback_every, checkpoint_at_end=False)
        for i in loop:
            d_loss, g_loss = self.step()
            for optimizer, decay in decays:
                decay.apply(optimizer, i + 1)
            if loop.due(i, check_every):
                d, g = d_loss.item(), g_loss.item()
                loop.record(self.iteration, postfix=f"d_loss={d:.3f}, g_loss={g:.3f}", d_loss=d, g_loss=g)
                history["d_loss"].append(d)
                history["g_loss"].append(g)
        loop.close(f"d_loss {history['d_loss'][-1]:.3f}, g_loss {history['g_loss'][-1]:.3f}")
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
