"""Throughput of the Pyro VAE against a plain PyTorch VAE with the same networks, data and optimiser.

Both train for the same epochs in one run, on the same binarised images in the same order, from the
same initial weights, with the same Adam: ours through ``VAETrainer`` (Pyro model and guide), the plain
one through a hand-written loss with the same Monte Carlo ELBO estimator. Ours runs on both of its
engines: ``pyro`` (``Trace_ELBO().differentiable_loss`` and ``torch.optim.Adam`` each step) and
``compiled`` (the same steps traced through the Pyro model and guide once and compiled: what
``deepprob vae`` uses for long runs); ``--engine`` picks the one whose ratio is the JSON's. Their
epochs alternate (and alternate which goes first), so that load from other processes on the machine
falls on all alike. Compile time is reported on its own line, outside the throughput. The last line
printed is JSON: ``{"ratio": images/s ours / images/s plain, "elbo_ours": test ELBO, "elbo_plain": test
ELBO}`` (ours: the ``--engine`` one).

    python bench/vae_throughput.py                      # 784-400-20 MLP, batch 128, 8,000 MNIST images
    python bench/vae_throughput.py --engine pyro --threads 2 --epochs 10 --seed 1
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import pyro
import torch
from torch.nn import functional as F

from deepprob.datasets.images import binarize, load_mnist_splits, subset
from deepprob.devices import synchronize
from deepprob.inference.generative.vae_eval import evaluate_vae
from deepprob.inference.generative.vae_fit import VAETrainer
from deepprob.models.vae import VAE
from deepprob.optim import collect_parameters, make_adam

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


def plain_loss(vae: VAE, x: torch.Tensor, analytic_kl: bool = False) -> torch.Tensor:
    """Minus the ELBO of the minibatch ``x`` (summed), written directly in PyTorch.

    The same estimator as Pyro's ``Trace_ELBO`` (one reparameterised sample of z per image), or with
    ``analytic_kl`` the same as ``TraceMeanField_ELBO``.
    """
    loc, scale = vae.encoder(x)
    eps = torch.randn_like(loc)
    z = loc + scale * eps
    log_px = -F.binary_cross_entropy_with_logits(vae.decoder(z), x, reduction="sum")
    if analytic_kl:
        kl = 0.5 * (loc.pow(2) + scale.pow(2) - 1).sum() - scale.log().sum()
    else:
        # log q(z | x) - log p(z); the log(2 pi) terms cancel
        kl = (0.5 * z.pow(2) - 0.5 * eps.pow(2) - scale.log()).sum()
    return kl - log_px


def plain_epoch(vae, optimizer, x, order, batch_size, analytic_kl=False) -> float:
    """One epoch of the plain loop; like ``VAETrainer.train_epoch``, one host sync at the end."""
    batches = order.split(batch_size)
    losses = torch.empty(len(batches), device=x.device)
    for i, index in enumerate(batches):
        optimizer.zero_grad(set_to_none=True)
        loss = plain_loss(vae, x[index], analytic_kl)
        loss.backward()
        optimizer.step()
        losses[i] = loss.detach()
    return -float(losses.sum()) / x.shape[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(SHARED_MNIST), help="MNIST IDX files (default: %(default)s)")
    parser.add_argument("--train-size", type=int, default=8000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=400)
    parser.add_argument("--z-dim", type=int, default=20)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--elbo", choices=["trace", "meanfield"], default="trace")
    parser.add_argument("--engine", choices=["compiled", "pyro"], default="compiled",
                        help="our engine whose ratio is the JSON's (both are timed) (default: %(default)s)")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch CPU threads (default: %(default)s; with more, on a CPU shared with other jobs, each op waits "
             "for its threads to be scheduled, which measures that contention rather than either loop)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    pyro.set_rng_seed(args.seed)

    train, test, note = load_mnist_splits(args.data_dir)
    train = subset(train, torch.arange(min(args.train_size, len(train))))
    x_train = train.images.to(device)
    x_test = binarize(test.images, generator=torch.Generator().manual_seed(0)).to(device)

    first = VAE(train.shape, z_dim=args.z_dim, hidden=[args.hidden]).to(device)
    vaes = {"pyro": first, "compiled": copy.deepcopy(first), "plain": copy.deepcopy(first)}  # identical weights
    trainers = {engine: VAETrainer(vaes[engine], lr=args.lr, elbo=args.elbo, batch_size=args.batch_size,
                                   engine=engine) for engine in ("pyro", "compiled")}
    optimizer = make_adam(collect_parameters(vaes["plain"]), lr=args.lr)

    seconds = dict.fromkeys(vaes, 0.0)
    elbo = {}
    for epoch in range(args.epochs):
        x = binarize(x_train)
        order = torch.randperm(len(x)).to(device)
        for name in (list(vaes) if epoch % 2 == 0 else list(vaes)[::-1]):
            synchronize(device)
            tick = time.perf_counter()
            if name == "plain":
                elbo[name] = plain_epoch(vaes[name], optimizer, x, order, args.batch_size, args.elbo == "meanfield")
            else:
                compiling = trainers[name].compile_seconds
                elbo[name] = trainers[name].train_epoch(x, order)  # all end with a host sync
                tick += trainers[name].compile_seconds - compiling  # compiling is not training
            seconds[name] += time.perf_counter() - tick

    images = args.epochs * len(x_train)
    test_elbo = {name: evaluate_vae(vae, x_test, num_samples=10)["elbo"] for name, vae in vaes.items()}
    ratios = {name: seconds["plain"] / seconds[name] for name in trainers}
    print(f"{note}; {len(x_train)} training images, {args.epochs} epochs, batch {args.batch_size}, "
          f"784-{args.hidden}-{args.z_dim} MLP, {args.elbo} ELBO, {device}, {torch.get_num_threads()} threads")
    for name, label in (("pyro", "ours, pyro engine"), ("compiled", "ours, compiled engine"), ("plain", "plain")):
        print(f"{label:>22}: {images / seconds[name]:8.0f} images/s ({seconds[name] / args.epochs:.2f} s/epoch), "
              f"last-epoch train ELBO {elbo[name]:.2f}, test ELBO {test_elbo[name]:.2f} nats")
    print(f"compile (compiled engine, once per batch shape, cached on disk): "
          f"{trainers['compiled'].compile_seconds:.1f} s, not counted above")
    for name in trainers:
        print(f"ratio (ours, {name} engine / plain): {ratios[name]:.3f}")
    print(json.dumps({"ratio": round(ratios[args.engine], 4), "elbo_ours": round(test_elbo[args.engine], 3),
                      "elbo_plain": round(test_elbo["plain"], 3)}))


if __name__ == "__main__":
    main()
