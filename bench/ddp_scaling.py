"""Data-parallel scaling: training images/s of the VAE and the DCGAN with 1 and with 2 processes.

Each measurement forks K processes of this one (K = 2: joined into a gloo process group on localhost, as
torchrun would, see :mod:`deepprob.parallel`; K = 1: a plain single process, the code path of an ordinary
run), which train on the same data with the same global batch, one torch thread each: one untimed epoch
(warm-up), then ``--epochs`` timed ones; process 0 reports the median epoch time. The K = 1 and K = 2
measurements alternate (and alternate which goes first), ``--repeats`` of each, so that load from other
jobs on the machine falls on both alike; images/s is the median over the repeats, and the scaling
efficiency is throughput_2 / (2 x throughput_1) (1: perfect; on 2 cores 1 is the ceiling).

A control, "2, no all-reduce": the same two processes with the networks left unwrapped (each steps on its
own half of every batch, no gradient communication; the result is wrong, the time is the compute's). Its
gap to "1 process" is what the machine gives two processes (free cores, memory bandwidth, the per-step
costs that do not shrink with the batch: Pyro's tracing, Adam over every parameter); the gap between it
and "2 processes" is the gradients' all-reduce. The load average of the machine (other jobs) is printed.

- VAE: ``VAETrainer`` (Pyro engine: the only one that runs data-parallel), MLP encoder and decoder.
- GAN: ``DCGANTrainer`` (batch norm over the global batch: all-reduces inside each forward and backward).

The last line printed is JSON: ``{"vae": {"1": images/s, "2": images/s, "efficiency": e}, "gan": {...}}``.

    python bench/ddp_scaling.py                       # MNIST (../shared/data/mnist) if there, else digits
    python bench/ddp_scaling.py --dataset digits --repeats 5 --models vae
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyro
import torch
import torch.multiprocessing as mp

import deepprob.parallel as parallel
from deepprob.adversarial.dcgan import DCDiscriminator, DCGANTrainer, DCGenerator
from deepprob.datasets.images import binarize, load_image_splits, subset
from deepprob.inference.generative.vae_fit import VAETrainer
from deepprob.models.vae import VAE

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vae_epochs(images: torch.Tensor, args) -> list[float]:
    vae = VAE(images.shape[1:], z_dim=args.z_dim, hidden=[args.hidden])
    trainer = VAETrainer(vae, lr=1e-3, batch_size=args.batch_size, engine="pyro")
    seconds = []
    for _ in range(args.epochs + 1):
        x = binarize(images)
        order = torch.randperm(len(x))
        tick = time.perf_counter()
        trainer.train_epoch(x, order)  # ends with a host sync (and, with K processes, an all-reduce)
        seconds.append(time.perf_counter() - tick)
    return seconds[1:]


def gan_epochs(images: torch.Tensor, args) -> list[float]:
    generator = DCGenerator(args.latent_dim, tuple(images.shape[1:]), args.width)
    discriminator = DCDiscriminator(tuple(images.shape[1:]), args.width)
    trainer = DCGANTrainer(generator, discriminator, images, batch_size=args.gan_batch_size)
    seconds = []
    for _ in range(args.epochs + 1):
        tick = time.perf_counter()
        trainer.train_epoch()  # reads its losses back at the end: a host sync
        seconds.append(time.perf_counter() - tick)
    return seconds[1:]


def _process(rank: int, world: int, port: int, model: str, images: torch.Tensor, args, out: str,
             reduce: bool) -> None:
    torch.set_num_threads(args.threads)
    if not reduce:  # the control: no DDP wrappers, no gradient all-reduce
        parallel.data_parallel = lambda module, **_: module
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                          LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
        parallel.init("cpu")
    pyro.set_rng_seed(args.seed)  # the same on every process, as under torchrun
    try:
        seconds = (vae_epochs if model == "vae" else gan_epochs)(images, args)
    finally:
        parallel.shutdown()
    if rank == 0:
        Path(out).write_text(json.dumps(seconds))


def measure(model: str, world: int, images: torch.Tensor, args, reduce: bool = True) -> float:
    """Images per second of one run of ``world`` processes (the median of its timed epochs)."""
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "seconds.json")
        mp.start_processes(_process, args=(world, free_port(), model, images, args, out, reduce), nprocs=world,
                           start_method="fork")
        seconds = json.loads(Path(out).read_text())
    return len(images) / statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["mnist", "digits"], default=None,
                        help="default: mnist where --data-dir has it, else digits")
    parser.add_argument("--data-dir", default=str(SHARED_MNIST), help="MNIST IDX files (default: %(default)s)")
    parser.add_argument("--train-size", type=int, default=4000, help="training images (default: %(default)s)")
    parser.add_argument("--models", default="vae,gan", help="comma-separated: vae, gan (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per run, after one warm-up")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each process count (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=128, help="VAE global batch (default: %(default)s)")
    parser.add_argument("--hidden", type=int, default=400, help="VAE hidden layer (default: %(default)s)")
    parser.add_argument("--z-dim", type=int, default=20, help="VAE latent size (default: %(default)s)")
    parser.add_argument("--gan-batch-size", type=int, default=64, help="DCGAN global batch (default: %(default)s)")
    parser.add_argument("--width", type=int, default=32, help="DCGAN channels (default: %(default)s)")
    parser.add_argument("--latent-dim", type=int, default=32, help="DCGAN noise size (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not sys.platform.startswith("linux"):
        raise SystemExit("ddp_scaling: forks its processes (Linux)")
    dataset = args.dataset or ("mnist" if (Path(args.data_dir) / "t10k-images-idx3-ubyte.gz").exists() else "digits")
    train, _, note = load_image_splits(dataset, data_dir=args.data_dir if dataset == "mnist" else None, download=False)
    train = subset(train, torch.arange(min(args.train_size, len(train))))
    images = train.images.contiguous()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not set(models) <= {"vae", "gan"}:
        raise SystemExit(f"--models {args.models}: expected vae and/or gan")

    cores = len(os.sched_getaffinity(0))
    print(f"{note}: {len(images)} training images; {cores} CPU cores, {args.threads} torch thread(s) per process; "
          f"{args.repeats} repeats x {args.epochs} timed epochs")
    print(f"VAE: {images[0].numel()}-{args.hidden}-{args.z_dim} MLP, batch {args.batch_size}, Pyro engine; "
          f"DCGAN: width {args.width}, batch {args.gan_batch_size}")
    load = os.getloadavg()[0]
    results = {}
    kinds = {"1": (1, True), "2": (2, True), "2_no_allreduce": (2, False)}
    for model in models:
        runs: dict[str, list[float]] = {kind: [] for kind in kinds}
        for repeat in range(args.repeats):
            for kind in (list(kinds) if repeat % 2 == 0 else list(kinds)[::-1]):
                world, reduce = kinds[kind]
                runs[kind].append(measure(model, world, images, args, reduce=reduce))
        medians = {kind: statistics.median(r) for kind, r in runs.items()}
        results[model] = {**{kind: round(m, 1) for kind, m in medians.items()},
                          "efficiency": round(medians["2"] / (2 * medians["1"]), 3),
                          "runs": {kind: [round(x, 1) for x in r] for kind, r in runs.items()}}
    load = (load, os.getloadavg()[0])

    print(f"{'model':<6} {'1 process':>10} {'2 processes':>12} {'speed-up':>9} {'efficiency':>11} "
          f"{'2, no all-reduce':>17}  (images/s, medians)")
    for model, r in results.items():
        print(f"{model:<6} {r['1']:10.1f} {r['2']:12.1f} {r['2'] / r['1']:9.2f} {r['efficiency']:11.3f} "
              f"{r['2_no_allreduce']:17.1f}")
    print(f"load average (1 min) before/after: {load[0]:.2f}/{load[1]:.2f} on {cores} cores")
    print(json.dumps({model: {k: r[k] for k in ("1", "2", "efficiency", "2_no_allreduce")}
                      for model, r in results.items()}))


if __name__ == "__main__":
    main()
