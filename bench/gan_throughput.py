"""Throughput of our GAN trainer against a straightforward re-implementation of the seed's loop.

The configuration is the seed's mode-dropping one: generator and discriminator MLPs 2-300-300-150-out
with ReLU (2-D noise in, 2-D points or one logit out), batch 50, five discriminator steps per
generator step, Adam (lr 1e-3, default betas) for both, on the seed's ring of eight Gaussians.

- seed loop: what the seed does, written plainly: each discriminator step draws a numpy batch of real
  points and of noise, runs the generator with autograd on (the fakes are not detached, so the
  backward pass goes through the generator as well), sigmoid outputs and ``nn.BCELoss`` on real and
  fake batches in two passes, ``zero_grad``/``backward``/``step`` with the default (for-loop) Adam.
- ours: :class:`deepprob.adversarial.trainer.GANTrainer` with ``compile=True``: the whole iteration
  (torch-side sampling for all five steps at once outside it; inside, one no-grad generator pass for the
  fakes, real and fake in one discriminator pass, logits with a fused BCE, every gradient written out
  by hand for these ReLU MLPs, and both Adam updates) traced into one graph and compiled by Inductor
  (:mod:`deepprob.adversarial.fast_gan`). ``--no-compile`` times the same iteration run eagerly (with
  the fused Adam kernel called directly), which is what the trainer falls back to.

One thread by default: on this shared 2-core machine two OpenMP threads stall on each other's
barriers whenever another job holds a core (both loops then run ~10x slower and the ratio is noise).

Both start from the same weights and run in one process, in alternating blocks (the order alternating
too), so that load from other processes falls on both alike; each side's speed is the median over
blocks, and the ratio is the median of the ratios of adjacent blocks. The compile happens in our first
warm-up iteration and is timed on its own (it is not in the throughput): tens of seconds cold, a few
seconds when Inductor's on-disk cache has the graph (``--cold`` uses a fresh cache). The last line
printed is JSON: ``{"ratio": ours/seed, "ours_its": a, "seed_loop_its": b}``.

    python bench/gan_throughput.py                  # 1 thread, 10 blocks of 100 iterations
    python bench/gan_throughput.py --threads 2 --blocks 10
    python bench/gan_throughput.py --no-compile     # our eager iteration
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import tempfile
import time

import numpy as np
import torch
from torch import nn

from deepprob.adversarial.nets import mlp
from deepprob.adversarial.trainer import GANConfig, GANTrainer
from deepprob.datasets.points import RING_CENTRES, ring

HIDDEN = [300, 300, 150]
BATCH, D_STEPS, LR = 50, 5, 1e-3


class SeedLoop:
    """The seed's training loop, re-implemented as it stands (numpy batches, nothing detached)."""

    def __init__(self, generator: nn.Module, discriminator_logits: nn.Module, rng: np.random.Generator):
        self.G = generator
        self.D = nn.Sequential(discriminator_logits, nn.Sigmoid())  # the seed's D outputs probabilities
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=LR)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=LR)
        self.bce = nn.BCELoss()
        self.rng = rng
        self.centres = np.array(RING_CENTRES)

    def real_batch(self, n: int) -> torch.Tensor:
        x = self.centres[self.rng.integers(0, len(self.centres), n)] + 0.5 * self.rng.standard_normal((n, 2))
        return torch.from_numpy(x).float()

    def noise(self, n: int) -> torch.Tensor:
        return torch.from_numpy(self.rng.standard_normal((n, 2))).float()

    def step(self) -> None:
        ones, zeros = torch.ones(BATCH, 1), torch.zeros(BATCH, 1)
        for _ in range(D_STEPS):
            real, z = self.real_batch(BATCH), self.noise(BATCH)
            self.opt_d.zero_grad()
            loss_d = self.bce(self.D(real), ones) + self.bce(self.D(self.G(z)), zeros)
            loss_d.backward()
            self.opt_d.step()
        z = self.noise(BATCH)
        self.opt_g.zero_grad()
        loss_g = self.bce(self.D(self.G(z)), ones)
        loss_g.backward()
        self.opt_g.step()


def build(seed: int):
    torch.manual_seed(seed)
    generator = mlp(2, HIDDEN, 2, "relu")
    discriminator = mlp(2, HIDDEN, 1, "relu")
    return generator, discriminator


def timed_block(step, iterations: int) -> float:
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    return iterations / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for both (default: %(default)s)")
    parser.add_argument("--blocks", type=int, default=10, help="timed blocks per side (default: %(default)s)")
    parser.add_argument(
        "--iterations", type=int, default=100, help="generator iterations per block (default: %(default)s)"
    )
    parser.add_argument(
        "--warmup", type=int, default=20, help="untimed iterations per side first (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-compile", action="store_true", help="run our iteration eagerly")
    parser.add_argument("--cold", action="store_true", help="compile with a fresh Inductor cache")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.cold:  # read when Inductor first looks for its cache, i.e. at our first iteration
        cache = tempfile.TemporaryDirectory(prefix="deepprob-bench-inductor-")  # removed at exit
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache.name

    generator, discriminator = build(args.seed)
    seed_loop = SeedLoop(copy.deepcopy(generator), copy.deepcopy(discriminator), np.random.default_rng(args.seed))
    cloud = ring()
    config = GANConfig(
        loss="gan", d_steps=D_STEPS, batch_size=BATCH, lr_g=LR, lr_d=LR, betas=(0.9, 0.999), compile=not args.no_compile
    )
    ours = GANTrainer(generator, discriminator, lambda n: cloud.sample(n), 2, config)

    sides = {"ours": ours.step, "seed_loop": seed_loop.step}
    for step in sides.values():
        for _ in range(args.warmup):
            step()
    if args.no_compile:
        print("ours: eager (--no-compile)")
    else:  # the first warm-up iteration compiled (or failed to, with a warning, and ran eagerly)
        state = "compiled" if ours.compiled else "eager: the compile failed"
        print(f"ours: {state}; compile {ours.compile_seconds:.1f} s (not in the throughput)", flush=True)
    speeds: dict[str, list[float]] = {name: [] for name in sides}
    for block in range(args.blocks):
        order = list(sides) if block % 2 == 0 else list(sides)[::-1]
        for name in order:
            speeds[name].append(timed_block(sides[name], args.iterations))
        print(
            f"block {block + 1}/{args.blocks}: " + ", ".join(f"{n} {speeds[n][-1]:.1f} it/s" for n in sides), flush=True
        )
    ours_its = statistics.median(speeds["ours"])
    seed_its = statistics.median(speeds["seed_loop"])
    # the ratio from each pair of adjacent blocks, then the median: load that drifts over the run
    # cancels within a pair
    ratio = statistics.median(a / b for a, b in zip(speeds["ours"], speeds["seed_loop"]))
    # ~0.54 GFLOP an iteration: 2 x weights x rows for each forward, input and weight gradient pass of
    # the five discriminator steps (100 rows), the fakes (250 rows) and the generator step (50 rows)
    gflop = 0.54
    print(f"threads {args.threads}; median over {args.blocks} blocks of {args.iterations} iterations:")
    print(f"  ours      {ours_its:8.1f} it/s  ({ours_its * gflop:.0f} GFLOP/s at ~{gflop} GFLOP/iteration)")
    print(f"  seed loop {seed_its:8.1f} it/s")
    print(f"  ratio     {ratio:8.2f}x  (median of the {args.blocks} paired block ratios)")
    print(
        json.dumps(
            {
                "ratio": round(ratio, 3),
                "ours_its": round(ours_its, 2),
                "seed_loop_its": round(seed_its, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
