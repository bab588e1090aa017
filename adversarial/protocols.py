"""The published mode-coverage protocols on 2-D mixtures, as data: each paper's networks, optimiser, budget and
metrics, and the rows its table reports, so that a run can stand beside them (``bench/mode_coverage.py``).

- ``pacgan``: PacGAN (Lin et al. 2018), Table 1, as its released code runs it. Generator: a 2-d z, four
  400-unit ReLU layers with batch norm; discriminator: three 200-unit maxout layers of 5 pieces; weights
  N(0, 0.02²), zero biases; Adam lr 1e-4 with betas (0.2, 0.999) (its config's "beta1 0.8" is in Blocks'
  convention, where beta1 weighs the new gradient: m_t = 0.8 g_t + 0.2 m_{t-1}, torch's β1 0.2, and Blocks'
  default beta2 0.001 is torch's 0.999); batch 100; both networks stepped at once from one batch
  (ALI's update: ``GANConfig.simultaneous``); 400 epochs over 100,000 samples (400,000 iterations of batch
  100); 10 trials; 2D-grid (σ 0.05 on {-4, -2, 0, 2, 4}²) and 2D-ring (8 modes, radius 1, σ 0.01). Its
  metric code counts a mode as covered by any high-quality point (``min_count`` 1). Its generator runs once
  on each of the M noise batches it packs, so its batch norm (Blocks') normalises each draw of 100 apart and
  moves a running mean and standard deviation towards the draws' average by 0.05, with ε 1e-4:
  :class:`~deepprob.adversarial.nets.DrawwiseBatchNorm1d`.
- ``veegan``: the unrolled GAN's row of VEEGAN's table (Srivastava et al. 2017), 5 runs, on the grid, with
  the settings of the unrolled GAN's public demonstration code (our reading of what VEEGAN ran, unconfirmed):
  a 256-d z, generator and discriminator of two 128-unit tanh layers, orthogonal weights of gain 1.4, Adam
  lr 1e-3 (generator) and 1e-4 (discriminator), β1 0.5, batch 512, 25,000 iterations, 5 unrolled steps.
  VEEGAN's text counts a mode as captured when it is the nearest mode of "at least one high quality sample".
- ``gdpp``: the WGAN-GP row of GDPP's table (Elfeki et al. 2019), on the grid, with the networks of GDPP's
  synthetic-data code (the same as ``veegan``'s: its code derives from that demonstration), batch 512 and
  25,000 iterations; 5 critic steps, Adam lr 1e-4, betas (0.5, 0.9) and λ 10 are WGAN-GP's own defaults
  (GDPP's code holds no WGAN-GP). GDPP's evaluation counts a mode as covered by any high-quality point.

Every protocol measures as VEEGAN and PacGAN did: 2,500 generated points (batch norm in eval mode); high
quality within 3σ of the nearest mode; a mode covered by at least ``min_count`` high-quality points (one, in
all three papers; ``deepprob gan`` asks for 20); the reverse KL of the high-quality points' mode shares
against the uniform (:func:`~deepprob.adversarial.metrics.mode_reverse_kl`). The published ± are standard
errors over trials, and so are ours.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from functools import partial

import torch
from torch import nn

from deepprob.adversarial.nets import DrawwiseBatchNorm1d, init_linear_, maxout_mlp, mlp
from deepprob.errors import InputError


@dataclass(frozen=True)
class Networks:
    """A paper's generator (``latent_dim`` -> ``g_hidden`` -> 2) and discriminator (``2 * pack`` -> ``d_hidden``
    -> 1); ``g_batch_norm`` = (momentum, ε) puts batch norm in the generator, taken over each packed draw
    apart (:class:`~deepprob.adversarial.nets.DrawwiseBatchNorm1d`); ``d_maxout`` > 0 makes the
    discriminator's hidden layers maxout of that many pieces; ``init`` is the paper's code's initialisation,
    (kind, scale) for :func:`~deepprob.adversarial.nets.init_linear_` (None: torch's default)."""

    latent_dim: int
    g_hidden: tuple[int, ...]
    d_hidden: tuple[int, ...]
    activation: str = "relu"
    g_batch_norm: tuple[float, float] | None = None
    d_maxout: int = 0
    init: tuple[str, float] | None = None

    def build(self, pack: int = 1) -> tuple[nn.Module, nn.Module]:
        """(generator, discriminator), freshly initialised from torch's current seed."""
        norm = False
        if self.g_batch_norm is not None:
            momentum, eps = self.g_batch_norm
            norm = partial(DrawwiseBatchNorm1d, draws=pack, momentum=momentum, eps=eps)
        generator = mlp(self.latent_dim, self.g_hidden, 2, self.activation, batch_norm=norm)
        if self.d_maxout:
            discriminator = maxout_mlp(2 * pack, self.d_hidden, 1, self.d_maxout)
        else:
            discriminator = mlp(2 * pack, self.d_hidden, 1, self.activation)
        if self.init is not None:
            init_linear_(generator, *self.init)
            init_linear_(discriminator, *self.init)
        return generator, discriminator


@dataclass(frozen=True)
class Published:
    """One row of a paper's table: mean modes (± standard error where given), high-quality %, reverse KL."""

    modes: float
    modes_se: float | None
    high_quality: float
    reverse_kl: float | None = None


@dataclass(frozen=True)
class Protocol:
    """A paper's protocol: its networks, the GANConfig fields it trains with (``config``), its iterations and
    trials, its data sets, the methods it compares (name -> GANConfig changes) and its published rows
    ((dataset, method) -> :class:`Published`)."""

    name: str
    paper: str
    networks: Networks
    config: dict
    iterations: int
    trials: int
    datasets: tuple[str, ...]
    methods: dict[str, dict]
    published: dict[tuple[str, str], Published] = field(default_factory=dict)
    samples: int = 2500
    min_count: int = 1

    def budget(self, fraction: float) -> int:
        """The iterations of a run at ``fraction`` of the published budget (at least 1)."""
        return max(1, round(self.iterations * fraction))


# the unrolled GAN's demonstration code's networks, which GDPP's synthetic-data code keeps
DEMO_NETWORKS = Networks(latent_dim=256, g_hidden=(128, 128), d_hidden=(128, 128), activation="tanh",
                         init=("orthogonal", 1.4))

PROTOCOLS = {
    "pacgan": Protocol(
        "pacgan", "PacGAN (Lin et al. 2018), Table 1",
        Networks(latent_dim=2, g_hidden=(400,) * 4, d_hidden=(200,) * 3, g_batch_norm=(0.05, 1e-4), d_maxout=5,
                 init=("normal", 0.02)),
        {"lr_g": 1e-4, "lr_d": 1e-4, "betas": (0.2, 0.999), "batch_size": 100, "d_steps": 1, "simultaneous": True},
        iterations=400 * 100_000 // 100, trials=10, datasets=("grid", "ring-pacgan"),
        methods={"standard": {}, "pack2": {"pack": 2}, "pack4": {"pack": 4}},
        published={
            ("grid", "standard"): Published(17.3, 0.8, 94.8, 0.70),
            ("grid", "pack2"): Published(23.8, 0.7, 91.3, 0.13),
            ("grid", "pack4"): Published(24.8, 0.2, 93.6, 0.04),
            ("ring-pacgan", "standard"): Published(6.3, 0.5, 98.2),
            ("ring-pacgan", "pack4"): Published(7.8, 0.1, 95.9),
        },
    ),
    "veegan": Protocol(
        "veegan", "VEEGAN (Srivastava et al. 2017), its table's unrolled GAN",
        DEMO_NETWORKS,
        {"lr_g": 1e-3, "lr_d": 1e-4, "betas": (0.5, 0.999), "batch_size": 512, "d_steps": 1},
        iterations=25_000, trials=5, datasets=("grid",), methods={"unrolled5": {"unrolled": 5}},
        published={("grid", "unrolled5"): Published(23.6, None, 16.0)},
    ),
    "gdpp": Protocol(
        "gdpp", "GDPP (Elfeki et al. 2019), its table's WGAN-GP",
        DEMO_NETWORKS,
        {"loss": "wgan-gp", "lr_g": 1e-4, "lr_d": 1e-4, "betas": (0.5, 0.9), "batch_size": 512, "d_steps": 5},
        iterations=25_000, trials=5, datasets=("grid",), methods={"wgan-gp": {}},
        published={("grid", "wgan-gp"): Published(24.2, None, 28.7)},
    ),
}


def protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise InputError(f"--protocol {name}: expected one of {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


def mean_se(values: list[float]) -> tuple[float, float]:
    """(mean, standard error of the mean); the error is 0 for a single value."""
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return statistics.mean(values), se


def train_protocol_run(proto: Protocol, dataset: str, method: str, seed: int, iterations: int,
                       progress: bool = False, device: torch.device | str = "cpu", curve: int = 0) -> dict:
    """One trial of ``method`` under ``proto`` on ``dataset`` (a built-in point set) from ``seed``, on
    ``device``: its metrics (modes, high-quality share, reverse KL) and its training seconds; with ``curve``
    = K, also the metrics at K evenly spaced iterations (``"curve"``: a list of rows, the last the end)."""
    from deepprob.adversarial.point_gan import evaluate_points, train_point_gan
    from deepprob.adversarial.trainer import GANConfig
    from deepprob.datasets.points import POINT_SETS

    cloud = POINT_SETS[dataset](seed=seed)
    config = GANConfig(**{**proto.config, **proto.methods[method]})
    torch.manual_seed(seed)
    networks = proto.networks.build(config.pack)
    fit = train_point_gan(cloud, config, iterations, networks=networks, latent_dim=proto.networks.latent_dim,
                          seed=seed, progress=progress, desc=f"{proto.name} {method} seed {seed}", device=device,
                          snapshots=curve, snapshot_size=proto.samples)
    record = trial_record(proto.name, dataset, method, seed, cloud, fit, iterations, proto.samples, proto.min_count)
    if curve:
        record["curve"] = [{"iterations": i, **coverage(evaluate_points(cloud, points, proto.min_count))}
                           for i, points in fit["snapshots"]]
    return record


def coverage(metrics: dict) -> dict:
    """The papers' three numbers from :func:`~deepprob.adversarial.point_gan.evaluate_points`'s metrics."""
    return {"modes": metrics["modes_covered"], "num_modes": metrics["num_modes"],
            "high_quality": metrics["high_quality_fraction"], "reverse_kl": metrics["reverse_kl"]}


def trial_record(protocol_name: str, dataset: str, method: str, seed: int, cloud, fit: dict, iterations: int,
                 samples: int = 2500, min_count: int = 20) -> dict:
    """One trial's row: ``samples`` fresh points of the fitted generator (``fit``: :func:`train_point_gan`'s
    result) scored on ``cloud`` (modes, high-quality share, reverse KL), and the training seconds."""
    from deepprob.adversarial.point_gan import evaluate_points

    metrics = evaluate_points(cloud, fit["trainer"].generate(samples).cpu(), min_count)
    return {"protocol": protocol_name, "dataset": dataset, "method": method, "seed": seed, "iterations": iterations,
            **coverage(metrics), "seconds": round(fit["seconds"], 1),
            "seconds_per_iteration": fit["seconds"] / iterations}
