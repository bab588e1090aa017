"""GANs on 2-D point clouds, as the library runs them: the networks, one seeded training run, its metrics.

``deepprob gan`` (one run beside the standard GAN), ``deepprob unify`` (the GAN beside a VAE) and
``bench/mode_coverage.py`` (several seeds) all train through :func:`train_point_gan`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from torch import nn

from deepprob.adversarial.metrics import mode_metrics, moment_errors
from deepprob.adversarial.nets import Affine, mlp
from deepprob.adversarial.trainer import GANConfig, GANTrainer
from deepprob.seeds import rng_untouched

# Per method, each remedy as its paper ran it on rings (the standard GAN beside a remedy gets the same ones).
METHOD_PRESETS = {
    "gan": {"d_steps": 5, "batch_size": 64, "lr_g": 1e-3, "lr_d": 1e-3, "betas": (0.5, 0.999), "iterations": 8000},
    "wgan-gp": {"d_steps": 5, "batch_size": 64, "lr_g": 1e-3, "lr_d": 1e-3, "betas": (0.5, 0.9), "iterations": 8000},
    "unrolled": {"d_steps": 1, "batch_size": 256, "lr_g": 1e-3, "lr_d": 1e-4, "betas": (0.5, 0.999),
                 "iterations": 3000},
}
LATENT_DIM = 8
# From this many known modes on (the 5x5 grid, a ring of 16), the ring's settings cover a fraction of them and
# leave a third of the samples between modes. Measured with --pack 4 (seeds 0-2): without a decay the generated
# modes jitter wider than the data's (24/25 at 65% high quality); a decay to a tenth settles them (94%); a batch of
# 200 keeps the ring of 16 from smearing along its arcs (batch 100: 15/16 at 22% on one seed). A stronger
# discriminator (two steps a generator step) helps the ring but drops whole rows of the grid (16-20/25); a wider one
# (three times the generator's width, one step) sharpens the gaps between modes: on the ring of 16, twice the width
# took its worst seed from 77% to 88% high quality but left another at 85%; three times gave 92% there, at about
# 2.4x the time of the narrow one.
MANY_MODES = 12
MANY_MODES_DISCRIMINATOR_WIDTH = 3
MANY_MODES_PRESETS = {
    "gan": {"d_steps": 1, "batch_size": 200, "final_lr_fraction": 0.1, "iterations": 40000},
    "unrolled": {"iterations": 10000},
}


def many_modes(cloud) -> bool:
    """Whether ``cloud`` has at least :data:`MANY_MODES` known modes (built in, or given by ``--modes``)."""
    return cloud is not None and cloud.centres is not None and len(cloud.centres) >= MANY_MODES


def preset(method: str, cloud=None) -> dict:
    """The training settings of ``method`` ("gan", "wgan-gp", "unrolled") on ``cloud`` (a PointCloud, or None
    for the method's own): GANConfig fields and ``iterations``. They follow the data: the
    networks work in the cloud's standardised coordinates (:func:`build_point_gan`), and many known modes
    (:func:`many_modes`) get longer runs that settle on narrow modes."""
    settings = dict(METHOD_PRESETS[method])
    if many_modes(cloud):
        settings.update(MANY_MODES_PRESETS.get(method, {}))
    return settings


def discriminator_hidden(cloud, hidden: Sequence[int]) -> tuple[int, ...]:
    """The discriminator's hidden layer sizes beside a generator of ``hidden``: the same, or
    :data:`MANY_MODES_DISCRIMINATOR_WIDTH` times as wide for many known modes (:func:`many_modes`)."""
    factor = MANY_MODES_DISCRIMINATOR_WIDTH if many_modes(cloud) else 1
    return tuple(factor * h for h in hidden)


def preset_basis(cloud) -> str:
    """Why :func:`preset` chose its settings for ``cloud``, in words for the run's header."""
    if many_modes(cloud):
        return f"{len(cloud.centres)} known modes (>= {MANY_MODES}): the settings for many narrow modes"
    if cloud is not None and cloud.centres is not None:
        return f"{len(cloud.centres)} known modes: the ring's settings"
    return "no modes given (--modes): the ring's settings"


def build_point_gan(cloud, latent_dim: int, hidden: Sequence[int], pack: int,
                    d_hidden: Sequence[int] | None = None) -> tuple[nn.Module, nn.Module]:
    """MLP generator (hidden layers ``hidden``) and discriminator (``d_hidden``, default ``hidden``) that work
    in standardised coordinates: the data's mean and RMS spread are folded into fixed affine layers, so the
    same networks and learning rates suit a ring of radius 8 and one of radius 2."""
    mean = cloud.points.mean(0)
    scale = float((cloud.points - mean).pow(2).mean().sqrt().clamp_min(1e-6))
    generator = nn.Sequential(mlp(latent_dim, hidden, 2), Affine.unstandardize(mean, scale))
    discriminator = nn.Sequential(Affine.standardize(mean.repeat(pack), scale),
                                  mlp(2 * pack, hidden if d_hidden is None else d_hidden, 1))
    return generator, discriminator


def evaluate_points(cloud, samples: torch.Tensor, min_count: int = 20) -> dict:
    """Mode coverage (where the cloud's modes are known) and moment errors of generated ``samples`` (N, 2)."""
    if cloud.centres is not None:
        metrics = mode_metrics(samples, cloud.centres, cloud.mode_sigma, cloud.mode_cov, min_count)
    else:
        metrics = {"modes_covered": None, "num_modes": None, "high_quality_fraction": None, "mode_counts": None,
                   "reverse_kl": None}
    return {**metrics, **moment_errors(samples, cloud.mean, cloud.covariance)}


def train_point_gan(cloud, config: GANConfig, iterations: int, *, latent_dim: int = LATENT_DIM,
                    hidden: Sequence[int] = (128, 128), d_hidden: Sequence[int] | None = None, seed: int = 0,
                    device="cpu", snapshots: int = 0, progress: bool = True, desc: str = "GAN",
                    networks: tuple[nn.Module, nn.Module] | None = None, snapshot_size: int = 1000) -> dict:
    """Train one GAN on ``cloud`` from ``seed`` (networks, noise and data draws all follow it).

    The networks are :func:`build_point_gan`'s of ``latent_dim``, ``hidden`` and ``d_hidden`` (None: as the
    data asks, :func:`discriminator_hidden`), or ``networks`` (generator, discriminator) built elsewhere (a
    paper's: :mod:`deepprob.adversarial.protocols`).

    Returns ``{"trainer": GANTrainer, "history": ..., "snapshots": [(iteration, points (snapshot_size, 2))],
    "seconds": ...}``; ``snapshots`` evenly spaced clouds, the last the final state.
    """
    torch.manual_seed(seed)
    if networks is None:
        d_hidden = discriminator_hidden(cloud, hidden) if d_hidden is None else d_hidden
        networks = build_point_gan(cloud, latent_dim, hidden, config.pack, d_hidden)
    generator, discriminator = networks
    trainer = GANTrainer(generator, discriminator, lambda n: cloud.sample(n, device=device), latent_dim, config,
                         device)
    shots = []
    every = max(1, -(-iterations // snapshots)) if snapshots else 0  # ceil: the last snapshot is the final state

    def snapshot(t: GANTrainer) -> None:
        with rng_untouched(torch.device(device)):  # a run with snapshots trains as one without
            shots.append((t.iteration, t.generate(snapshot_size).cpu()))

    start = time.perf_counter()
    history = trainer.train(iterations, callback=snapshot, callback_every=every, progress=progress, desc=desc)
    seconds = time.perf_counter() - start
    if snapshots and (not shots or shots[-1][0] != trainer.iteration):
        snapshot(trainer)
    return {"trainer": trainer, "history": history, "snapshots": shots, "seconds": seconds}
