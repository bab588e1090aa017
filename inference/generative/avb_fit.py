"""Training adversarial variational Bayes: two players a minibatch, the ELBO's and the discriminator's.

Each step (Mescheder et al. 2017, Algorithm 1) on a minibatch x:

1. the discriminator T(x, z) takes ``adversary_steps`` logistic-regression steps on codes z ~ q(z | x)
   (label 1) against z ~ p(z) (label 0): the density-ratio trick of :mod:`deepprob.adversarial.ratio`,
   so that T tends to log q(z | x) − log p(z);
2. the encoder and the decoder take one step on the ELBO ``E_q[log p(x | z) − T(x, z)]``, which is
   ``Trace_ELBO`` of the model and the AVB guide (:class:`~deepprob.models.avb.AVB`), with T fixed.

Everything else (epochs, checkpoints, resume, NaN checks) is :func:`~deepprob.inference.generative.vae_fit.fit_vae`'s.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from deepprob.adversarial.losses import discriminator_loss
from deepprob.errors import InputError
from deepprob.inference.generative.vae_fit import VAETrainer
from deepprob.optim import make_adam
from deepprob.training import minimise


@contextmanager
def frozen(module: torch.nn.Module):
    """``module``'s parameters without gradients inside the block: a loss through it trains only the rest."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def adversary_loss(adversary, sample_codes, x: torch.Tensor) -> torch.Tensor:
    """The logistic loss of T = ``adversary`` on one code z ~ q(z | x) (``sample_codes(x, 1)``, label 1) and
    one z ~ p(z) = N(0, I) (label 0) per example (the GAN discriminator's loss, in softplus form): its
    minimiser is T(x, z) = log q(z | x) − log p(z)."""
    z_q = sample_codes(x, 1)[0].detach()
    z_p = torch.randn_like(z_q)
    return discriminator_loss(adversary(x, z_q), adversary(x, z_p))


def fit_adversary(adversary, sample_codes, x: torch.Tensor, *, steps: int = 2000, batch_size: int = 256,
                  lr: float = 1e-3, optimizer: torch.optim.Optimizer | None = None,
                  progress: bool = False) -> list[float]:
    """Train T alone against a fixed encoder: ``steps`` Adam steps of :func:`adversary_loss` on minibatches
    of ``x`` (N, ...). Returns the loss every 100 steps (a non-finite one stops it: FitDivergedError)."""
    optimizer = optimizer or make_adam(adversary.parameters(), lr=lr)

    def loss_at(step: int) -> torch.Tensor:
        return adversary_loss(adversary, sample_codes, x[torch.randint(len(x), (batch_size,), device=x.device)])

    return minimise(loss_at, optimizer, steps, desc="adversary", progress=progress, record_every=100)


class AVBTrainer(VAETrainer):
    """:class:`~deepprob.inference.generative.vae_fit.VAETrainer` for an :class:`~deepprob.models.avb.AVB`, with the
    discriminator's steps before each ELBO step.

    Args:
        avb: the AVB model (its ``adversary`` is T).
        lr: Adam's learning rate of the encoder and the decoder.
        adversary_lr: Adam's learning rate of T (default: ``lr``).
        adversary_steps: T's steps before each ELBO step.
    """

    def __init__(self, avb, *, lr: float = 1e-3, batch_size: int = 128, adversary_lr: float | None = None,
                 adversary_steps: int = 1, engine: str = "pyro"):
        if engine != "pyro":
            raise InputError(f"--engine {engine}: AVB's two-player steps run on the Pyro engine only")
        if adversary_steps < 1:
            raise InputError(f"--adversary-steps {adversary_steps}: expected a positive integer")
        super().__init__(avb, lr=lr, elbo="trace", batch_size=batch_size, engine="pyro")
        self.adversary_steps = adversary_steps
        self.adversary_optimizer = make_adam(avb.adversary.parameters(), lr=adversary_lr or lr)

    def _pyro_step(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.adversary_steps):
            self.adversary_optimizer.zero_grad(set_to_none=True)
            adversary_loss(self.vae.adversary, self.vae.sample_codes, x).backward()
            self.adversary_optimizer.step()
        with frozen(self.vae.adversary):
            return super()._pyro_step(x)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "adversary_optimizer": self.adversary_optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.adversary_optimizer.load_state_dict(state["adversary_optimizer"])
