"""DCGAN (Radford et al. 2016) for small greyscale images: 8x8 digits, 28x28 MNIST.

Generator: z (N, latent_dim) -> Linear -> (2w, H/4, W/4) -> ConvTranspose (stride 2) -> (w, H/2, W/2)
-> ConvTranspose (stride 2) -> (C, H, W), batch norm and ReLU between, tanh at the end (the images are
scaled to [-1, 1]). Discriminator: the mirror image with strided convolutions, LeakyReLU(0.2), batch
norm on the inner layer (not the input layer, as in the paper), one logit out. Adam, lr 2e-4, β1 = 0.5.

Real and generated batches go through the discriminator *separately*: batch norm normalises each
batch by its own statistics, so a mixed batch would let the discriminator tell them apart by their
statistics instead of by the images.

Under ``torchrun --nproc_per_node=K`` (:mod:`deepprob.parallel`) the trainer is data-parallel: each process
takes a contiguous block of every global batch of real images and of the noise drawn for it (every
process draws the same, with the same seed), both networks run wrapped in ``DistributedDataParallel``
(the losses are means over the batch: DDP's averaged gradients are the global batch's), and batch norm
normalises over the global batch. A step is the step of one process on the global batch, to rounding.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

import deepprob.parallel as parallel
from deepprob.errors import InputError
from deepprob.optim import make_adam
from deepprob.training import TrainingLoop, check_finite


def _init_weights(module: nn.Module) -> None:
    # the paper's initialisation: N(0, 0.02) weights, batch-norm scales N(1, 0.02)
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def _check_shape(image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    c, h, w = image_shape
    if h % 4 or w % 4:
        raise InputError(f"image shape {image_shape}: the DCGAN needs height and width divisible by 4")
    return c, h, w


class DCGenerator(nn.Module):
    """z (N, latent_dim) -> images (N, C, H, W) in [-1, 1]; ``width`` channels in the last hidden layer."""

    def __init__(self, latent_dim: int, image_shape: tuple[int, int, int], width: int = 64):
        super().__init__()
        c, h, w = _check_shape(image_shape)
        self.latent_dim, self.image_shape, self.width = latent_dim, (c, h, w), width
        self.base = (2 * width, h // 4, w // 4)
        self.project = nn.Sequential(
            nn.Linear(latent_dim, 2 * width * (h // 4) * (w // 4), bias=False),
            nn.BatchNorm1d(2 * width * (h // 4) * (w // 4)),
            nn.ReLU(inplace=True),
        )
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(width, c, 4, stride=2, padding=1),
            nn.Tanh(),
        )
        self.apply(_init_weights)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.project(z).view(-1, *self.base))


class DCDiscriminator(nn.Module):
    """images (N, C, H, W) in [-1, 1] -> logits (N, 1)."""

    def __init__(self, image_shape: tuple[int, int, int], width: int = 64):
        super().__init__()
        c, h, w = _check_shape(image_shape)
        self.features = nn.Sequential(
            nn.Conv2d(c, width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Flatten(),
        )
        self.classify = nn.Linear(2 * width * (h // 4) * (w // 4), 1)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x))


def to_tanh_range(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1] (the generator's tanh range)."""
    return images * 2 - 1


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clamped."""
    return ((images + 1) / 2).clamp(0, 1)


class DCGANTrainer:
    """Alternating updates of a :class:`DCGenerator` and a :class:`DCDiscriminator`, Adam(lr, β1=0.5).

    Args:
        images: the training images (N, C, H, W) in [0, 1] (scaled to [-1, 1] here), on ``device``.
        batch_size: images per step (the global batch under torchrun: a multiple of the processes).
    """

    def __init__(
        self,
        generator: DCGenerator,
        discriminator: DCDiscriminator,
        images: torch.Tensor,
        *,
        batch_size: int = 64,
        lr: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        device="cpu",
    ):
        if len(images) < 2:
            raise InputError(f"images: expected at least 2 training images, got {len(images)}")
        self.device = torch.device(device)
        self.generator, self.discriminator = generator.to(self.device), discriminator.to(self.device)
        self.images = to_tanh_range(images.to(self.device))
        self.batch_size = min(batch_size, len(images))
        self.opt_g = make_adam(generator.parameters(), lr, betas)
        self.opt_d = make_adam(discriminator.parameters(), lr, betas)
        self.epoch = 0
        self.world_size = parallel.world_size()
        if self.world_size > 1:
            parallel.check_divisible(self.batch_size)
            # the wrappers train; self.generator and self.discriminator (same parameters) sample and save
            self._parallel = (parallel.data_parallel(self.generator), parallel.data_parallel(self.discriminator))

    def train(self, epochs: int, *, progress: bool = True, desc: str = "DCGAN",
              checkpoint: Callable[[int], object] | None = None) -> dict:
        """``epochs`` epochs (:meth:`train_epoch`), a progress bar over their batches, and ``checkpoint(epoch)``
        after each epoch (``atomic_torch_save(trainer.checkpoint(...), path)``, say: an interrupted run keeps
        its last complete epoch). Returns the last epoch's :meth:`train_epoch` statistics."""
        loop = TrainingLoop(desc, epochs, progress=progress, ticks=self.batches_per_epoch(),
                            checkpoint=None if checkpoint is None else lambda done: checkpoint(self.epoch))
        stats: dict = {}
        for _ in loop:
            stats = self.train_epoch(loop)
            loop.record(self.epoch, postfix=f"epoch={self.epoch}, d_loss={stats['d_loss']:.3f}, "
                                            f"g_loss={stats['g_loss']:.3f}")
        loop.close(f"d_loss {stats['d_loss']:.3f}, g_loss {stats['g_loss']:.3f}" if stats else None)
        return stats

    def train_epoch(self, progress=None) -> dict:
        """One pass over the images in a random order (the last, incomplete batch is dropped: batch norm
        on a handful of images is noise). Returns the mean losses and the mean D outputs. ``progress``: a bar
        (or a :class:`~deepprob.training.TrainingLoop`) moved by ``update(1)`` after each batch.

        Raises:
            FitDivergedError: the epoch's mean D or G loss is not finite (named, with the epoch's number).
        """
        self.generator.train()
        self.discriminator.train()
        order = torch.randperm(len(self.images), device=self.device)
        batches = [b for b in order.split(self.batch_size) if len(b) == self.batch_size]
        sums = torch.zeros(4, device=self.device)
        g_params = list(self.generator.parameters())
        for index in batches:
            sums += self._step(index, g_params)
            if progress is not None:
                progress.update(1)
        self.epoch += 1
        sums = parallel.all_reduce_sum(sums) / self.world_size if self.world_size > 1 else sums
        d_loss, g_loss, d_real, d_fake = (sums / len(batches)).tolist()
        check_finite(self.epoch, d_loss=d_loss, g_loss=g_loss)
        return {"d_loss": d_loss, "g_loss": g_loss, "d_real": d_real, "d_fake": d_fake}

    def _step(self, index: torch.Tensor, g_params: list[torch.Tensor]) -> torch.Tensor:
        """One D step and one G step on the global batch ``index`` (this process's block of it under
        torchrun, through the networks' DDP wrappers); returns the (block's) D loss, G loss, mean D(real) and
        mean D(fake)."""
        generator, discriminator = self._parallel if self.world_size > 1 else (self.generator, self.discriminator)
        real = self.images[parallel.shard(index)]
        # the noise of the whole global batch, as one process would draw it; this block's rows
        z = parallel.shard(torch.randn(len(index), self.generator.latent_dim, device=self.device))
        fake = generator(z)
        # discriminator: real and generated batches in separate passes (batch norm, see the module doc)
        out_real = discriminator(real)
        out_fake = discriminator(fake.detach())
        d_loss = F.softplus(-out_real).mean() + F.softplus(out_fake).mean()
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        # generator: non-saturating loss through D itself (not its wrapper, whose gradients are not wanted),
        # and only the generator's gradients, accumulated into .grad, where its wrapper's hooks reduce them
        out = self.discriminator(fake)
        g_loss = F.softplus(-out).mean()
        for p in g_params:
            p.grad = None
        torch.autograd.backward(g_loss, inputs=g_params)
        self.opt_g.step()
        return torch.stack([d_loss.detach(), g_loss.detach(), torch.sigmoid(out_real).mean().detach(),
                            torch.sigmoid(out_fake).mean().detach()])

    def batches_per_epoch(self) -> int:
        return len(self.images) // self.batch_size

    def checkpoint(self, **extra) -> dict:
        """Everything needed to sample again (and to inspect the run): networks, optimisers, epoch."""
        g = self.generator
        return {
            "kind": "dcgan",
            "generator": g.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "epoch": self.epoch,
            "latent_dim": g.latent_dim,
            "image_shape": list(g.image_shape),
            "width": g.width,
            **extra,
        }


def generator_from_checkpoint(checkpoint: dict, device="cpu") -> DCGenerator:
    """The generator of a :meth:`DCGANTrainer.checkpoint`, in eval mode (batch norm uses its running
    statistics, so a sample does not depend on what else is in the batch)."""
    if checkpoint.get("kind") != "dcgan":
        raise InputError("--checkpoint: not a DCGAN checkpoint of `deepprob gan` (no 'kind': 'dcgan' entry)")
    g = DCGenerator(checkpoint["latent_dim"], tuple(checkpoint["image_shape"]), checkpoint["width"])
    g.load_state_dict(checkpoint["generator"])
    return g.to(device).eval()
