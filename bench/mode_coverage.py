"""Mode coverage of the standard GAN and its remedies over several trials, beside the published tables.

``--protocol ours`` (the default): each method with ``deepprob gan``'s defaults on the data
(:func:`deepprob.adversarial.point_gan.preset`: the settings follow the number of modes), our MLPs.

``--protocol pacgan`` | ``veegan`` | ``gdpp``: each paper's networks, optimiser, batch and budget
(:mod:`deepprob.adversarial.protocols`), beside its published rows. ``--budget F`` runs the fraction F of
the published iterations where the full budget does not fit (the table says what was run), and the step's
throughput is measured first against a plain PyTorch loop of the same networks, side by side.

Metrics as the papers compute them: 2,500 samples; high quality within 3σ of a mode; a mode covered by one
high-quality sample (by 20 under ``--protocol ours``, as ``deepprob gan`` counts); reverse
KL of the high-quality samples' mode shares against the uniform. ``--curve K`` also scores every trial at K
evenly spaced iterations: how the numbers grow with the budget. ``--device cuda`` runs the trials there.
Every ± is a standard error over trials, as in the papers' tables. Each (data set, method, trial) is one run,
side by side over ``--jobs`` processes; the last line printed is JSON with every run.

    python bench/mode_coverage.py                                  # ours: 5 trials, grid and rings
    python bench/mode_coverage.py --protocol pacgan --budget 0.05 --trials 3 --methods standard,pack4 --curve 5
    python bench/mode_coverage.py --protocol gdpp --budget 0.2 --trials 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch import nn
from torch.nn import functional as F

from deepprob.adversarial.losses import pack
from deepprob.adversarial.point_gan import preset, train_point_gan
from deepprob.adversarial.protocols import PROTOCOLS, mean_se, protocol, train_protocol_run, trial_record
from deepprob.adversarial.trainer import GANConfig, GANTrainer
from deepprob.datasets.points import POINT_SETS
from deepprob.devices import resolve_device, synchronize
from deepprob.errors import InputError
from deepprob.pool import available_cores, map_forked

OURS_METHODS = {"standard": ("gan", {}), "pack4": ("gan", {"pack": 4}), "unrolled5": ("unrolled", {"unrolled": 5}),
                "wgan-gp": ("wgan-gp", {"loss": "wgan-gp"})}


def run_ours(task: tuple[str, str, int], device: torch.device, progress: bool = False) -> dict:
    dataset, method, seed = task
    cloud = POINT_SETS[dataset](seed=seed)
    base, changes = OURS_METHODS[method]
    settings = preset(base, cloud)
    iterations = settings.pop("iterations")
    fit = train_point_gan(cloud, GANConfig(**{**settings, **changes}), iterations, seed=seed, progress=progress,
                          device=device, desc=f"ours {dataset} {method} seed {seed}")
    return trial_record("ours", dataset, method, seed, cloud, fit, iterations)


class PlainLoop:
    """The standard GAN (the trainer's algorithm) written plainly, as PyTorch's DCGAN tutorial writes a step: a
    generator pass with autograd, the discriminator on the detached fakes and on the real points in two passes,
    ``zero_grad``/``backward``/``step`` with ``torch.optim.Adam``; then fresh noise for the generator's step,
    its loss back-propagated through the discriminator (whose weight gradients are computed and unused).
    With ``config.simultaneous`` (PacGAN's update), one generator pass and the discriminator on real and
    generated points, both losses' gradients, then both steps."""

    def __init__(self, generator: nn.Module, discriminator: nn.Module, config: GANConfig, sample_real, latent_dim,
                 device: torch.device):
        self.G, self.D, self.config = generator.to(device), discriminator.to(device), config
        self.sample_real, self.latent_dim, self.device = sample_real, latent_dim, device
        self.opt_g = torch.optim.Adam(generator.parameters(), lr=config.lr_g, betas=config.betas)
        self.opt_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr_d, betas=config.betas)

    def noise(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, device=self.device)

    def step(self) -> None:
        cfg = self.config
        n = cfg.pack * cfg.batch_size
        if cfg.simultaneous:
            self.simultaneous_step(n)
            return
        for _ in range(cfg.d_steps):
            fake = self.G(self.noise(n))
            real_logits = self.D(pack(self.sample_real(n), cfg.pack))
            fake_logits = self.D(pack(fake.detach(), cfg.pack))
            loss_d = (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                      + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
            self.opt_d.zero_grad()
            loss_d.backward()
            self.opt_d.step()
        logits = self.D(pack(self.G(self.noise(n)), cfg.pack))
        loss_g = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
        self.opt_g.zero_grad()
        loss_g.backward()
        self.opt_g.step()

    def simultaneous_step(self, n: int) -> None:
        cfg = self.config
        real_logits = self.D(pack(self.sample_real(n), cfg.pack))
        fake_logits = self.D(pack(self.G(self.noise(n)), cfg.pack))
        loss_d = (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                  + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
        loss_g = F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
        self.opt_d.zero_grad()
        self.opt_g.zero_grad()
        loss_d.backward(retain_graph=True, inputs=list(self.D.parameters()))
        loss_g.backward(inputs=list(self.G.parameters()))
        self.opt_d.step()
        self.opt_g.step()


def throughput(proto, dataset: str, method: str, blocks: int, iterations: int, device: torch.device) -> dict:
    """Iterations a second of our trainer and of :class:`PlainLoop` on the protocol's networks, from the same
    weights, in alternating blocks in this process; medians, and the median of adjacent blocks' ratios."""
    import copy

    cloud = POINT_SETS[dataset](seed=0)
    config = GANConfig(**{**proto.config, **proto.methods[method]})
    torch.manual_seed(0)
    generator, discriminator = proto.networks.build(config.pack)
    def sample(n: int) -> torch.Tensor:
        return cloud.sample(n, device=device)

    plain = PlainLoop(copy.deepcopy(generator), copy.deepcopy(discriminator), config, sample,
                      proto.networks.latent_dim, device)
    ours = GANTrainer(generator, discriminator, sample, proto.networks.latent_dim, config, device)
    sides = {"ours": ours.step, "plain": plain.step}
    for step in sides.values():
        for _ in range(3):
            step()
    speeds: dict[str, list[float]] = {name: [] for name in sides}
    for block in range(blocks):
        for name in (list(sides) if block % 2 == 0 else list(sides)[::-1]):
            synchronize(device)
            start = time.perf_counter()
            for _ in range(iterations):
                sides[name]()
            synchronize(device)
            speeds[name].append(iterations / (time.perf_counter() - start))
    return {"method": method, "ours_its": statistics.median(speeds["ours"]),
            "plain_its": statistics.median(speeds["plain"]),
            "ratio": statistics.median(a / b for a, b in zip(speeds["ours"], speeds["plain"]))}


def cell(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    mean, se = mean_se([scale * v for v in values])
    return f"{mean:.{digits}f} ± {se:.{digits}f}"


def table_cells(rows: list[dict]) -> str:
    """Iterations, then modes, high-quality % and reverse KL as mean ± standard error over ``rows`` (trials)."""
    kls = [r["reverse_kl"] for r in rows if r["reverse_kl"] is not None]
    modes = cell([r["modes"] for r in rows]) + " /" + str(rows[0]["num_modes"])
    return (f"{rows[0]['iterations']:>11,}{modes:>16}{cell([r['high_quality'] for r in rows], 100):>17}"
            f"{cell(kls, digits=2) if kls else '-':>15}")


def published_text(row) -> str:
    if row is None:
        return "-"
    modes = f"{row.modes} ± {row.modes_se}" if row.modes_se is not None else f"{row.modes}"
    kl = f" / {row.reverse_kl:.2f}" if row.reverse_kl is not None else ""
    return f"{modes} / {row.high_quality}%{kl}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocol", default="ours", choices=["ours", *PROTOCOLS])
    parser.add_argument("--datasets", help="comma-separated point sets (default: the protocol's; ours: "
                        "grid,ring-pacgan,ring16)")
    parser.add_argument("--methods", help="comma-separated (default: the protocol's; ours: standard,pack4)")
    parser.add_argument("--trials", type=int, help="seeds 0..N-1 (default: the protocol's; ours: 5)")
    parser.add_argument("--budget", type=float, default=1.0,
                        help="fraction of the protocol's published iterations to run (default: %(default)s)")
    parser.add_argument("--throughput-blocks", type=int, default=5,
                        help="timed blocks per side of the step's throughput against a plain loop (0: skip)")
    parser.add_argument("--curve", type=int, default=0,
                        help="also score each trial at this many evenly spaced iterations (the learning curve)")
    parser.add_argument("--jobs", type=int, default=0, help="processes (0: one per core; 1 on a GPU)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars (one per run, drawn here)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: %(default)s)")
    args = parser.parse_args()
    try:
        device = resolve_device(args.device)
    except InputError as err:
        parser.error(str(err))
    jobs = args.jobs or (1 if device.type != "cpu" else available_cores())
    torch.set_num_threads(1)
    if args.protocol == "ours":
        datasets = (args.datasets or "grid,ring-pacgan,ring16").split(",")
        methods = (args.methods or "standard,pack4").split(",")
        trials, proto = args.trials or 5, None
    else:
        proto = protocol(args.protocol)
        datasets = args.datasets.split(",") if args.datasets else list(proto.datasets)
        methods = args.methods.split(",") if args.methods else list(proto.methods)
        trials = args.trials or proto.trials
        bad = [m for m in methods if m not in proto.methods]
        if bad:
            parser.error(f"--methods {bad[0]}: expected one of {', '.join(proto.methods)} for --protocol {proto.name}")
    unknown = [d for d in datasets if d not in POINT_SETS]
    if unknown:
        parser.error(f"--datasets {unknown[0]}: expected one of {', '.join(POINT_SETS)}")

    # the plain loop is the standard loss's (PacGAN's protocol): WGAN-GP and unrolled steps have no plain twin here
    plain = [m for m in methods if not proto.methods[m].get("unrolled")] if proto and "loss" not in proto.config else []
    if plain and args.throughput_blocks:
        method = plain[0]
        t = throughput(proto, datasets[0], method, args.throughput_blocks, 5, device)
        where = "one thread" if device.type == "cpu" else str(device)
        print(f"step throughput ({proto.name} networks, {method}, {where}): ours {t['ours_its']:.1f} it/s, "
              f"plain PyTorch loop {t['plain_its']:.1f} it/s, ratio {t['ratio']:.2f}x", flush=True)

    tasks = [(d, m, s) for m in methods for d in datasets for s in range(trials)]
    start = time.perf_counter()
    if proto is None:
        results = map_forked(lambda t: run_ours(t, device, progress=not args.quiet), tasks, jobs)
    else:
        iterations = proto.budget(args.budget)
        results = map_forked(lambda t: train_protocol_run(proto, *t, iterations, progress=not args.quiet,
                                                          device=device, curve=args.curve), tasks, jobs)
    wall = time.perf_counter() - start
    name = proto.paper if proto else "deepprob gan's defaults on the data"
    print(f"{name}: {len(tasks)} runs in {wall:.0f} s; mean ± standard error over {trials} trials")
    if proto is not None:
        per_it = statistics.median(r["seconds_per_iteration"] for r in results)
        full = per_it * proto.iterations
        full_text = f"{full / 3600:.1f} h" if full >= 3600 else f"{full / 60:.0f} min"
        print(f"budget: {iterations:,} of the published {proto.iterations:,} iterations ({100 * args.budget:g}%); "
              f"{1000 * per_it:.1f} ms an iteration here, so the full budget is {full_text} a trial "
              f"({'on one core' if device.type == 'cpu' else f'on {device}'})")
    print(f"{'data':<12}{'method':<11}{'iterations':>11}{'modes':>16}{'high quality %':>17}{'reverse KL':>15}"
          f"   published (modes / HQ % / KL)")
    for dataset in datasets:
        for method in methods:
            rows = [r for r in results if r["dataset"] == dataset and r["method"] == method]
            published = proto.published.get((dataset, method)) if proto else None
            print(f"{dataset:<12}{method:<11}{table_cells(rows)}   {published_text(published)}")
    if args.curve and proto is not None:
        print("learning curve (the same trials, scored along the way):")
        for dataset in datasets:
            for method in methods:
                rows = [r for r in results if r["dataset"] == dataset and r["method"] == method]
                for points in zip(*(r["curve"] for r in rows)):
                    print(f"{dataset:<12}{method:<11}{table_cells(list(points))}")
    print(json.dumps({"protocol": args.protocol, "budget": args.budget, "runs": results}))


if __name__ == "__main__":
    main()
