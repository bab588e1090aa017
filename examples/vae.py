"""Variational autoencoder: a Pyro model p(z) p(x | z) with a decoder network, an amortised guide
q(z | x) with an encoder network, both trained by maximising the ELBO (SVI, Trace_ELBO).

Data sets: onehot (a toy: 4 one-hot vectors, latent size 2), digits (scikit-learn's 8x8 digits,
embedded) and mnist (IDX files from --data-dir, or downloaded into a cache when online). Figures under
--out: reconstructions, prior samples, a latent interpolation, the latent means by label, the decoded
manifold (2-D latent) and the learning curves. Evaluation on held-out images: the ELBO and an
importance-weighted estimate of log p(x) with --iw-samples samples, before and after training.

examples:
  deepprob vae --dataset onehot --json
  deepprob vae --dataset digits --epochs 30
  deepprob vae --dataset mnist --data-dir ../shared/data/mnist --epochs 10 --arch conv
  deepprob vae --dataset mnist --data-dir ../shared/data/mnist --epochs 20 --resume   # continue
"""

from __future__ import annotations

import argparse

import torch

from deepprob.datasets.images import ImageSet, binarize, load_image_splits, subset
from deepprob.errors import InputError
from deepprob.inference.vae_eval import evaluate_vae, nearest_centroid_accuracy
from deepprob.inference.vae_fit import fit_vae
from deepprob.models.vae import VAE

# Per data set: latent size, hidden layers, epochs, batch size, learning rate.
DEFAULTS = {
    "onehot": {"z_dim": 2, "hidden": [32], "epochs": 40, "batch_size": 64, "lr": 3e-3},
    "digits": {"z_dim": 2, "hidden": [256], "epochs": 30, "batch_size": 64, "lr": 3e-3},
    "mnist": {"z_dim": 20, "hidden": [400], "epochs": 10, "batch_size": 128, "lr": 1e-3},
}


def _head(data: ImageSet, n: int | None) -> ImageSet:
    return data if n is None or n >= len(data) else subset(data, torch.arange(n))


def _binary(data: ImageSet, args: argparse.Namespace) -> torch.Tensor:
    """Binary images on the device, drawn by a fixed generator: the same in every run."""
    return binarize(data.images, args.binarize, args.threshold, torch.Generator().manual_seed(0)).to(args.device)


def main(args: argparse.Namespace) -> dict:
    from deepprob.examples.vae_figures import save_figures

    for key, value in DEFAULTS[args.dataset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.data_dir is not None and args.dataset != "mnist":
        raise InputError(f"--data-dir {args.data_dir}: only used with --dataset mnist, not {args.dataset}")
    if not 0 < args.threshold < 1:
        raise InputError(f"--threshold {args.threshold}: expected a number strictly between 0 and 1")

    train, test, note = load_image_splits(args.dataset, data_dir=args.data_dir)
    train, test = _head(train, args.train_size), _head(test, args.test_size)
    device = args.device
    x_train = train.images.to(device)
    # the test images are binarised once, by a fixed generator: every run and epoch sees the same ones
    x_test = _binary(test, args)

    vae = VAE(train.shape, z_dim=args.z_dim, hidden=args.hidden, arch=args.arch).to(device)
    config = {k: v for k, v in vars(args).items() if k in (
        "dataset", "train_size", "test_size", "binarize", "threshold", "arch", "z_dim", "hidden", "batch_size",
        "lr", "elbo", "objective")}
    config.update(vae.config(), n_train=len(train))
    init = None
    if not args.resume:
        init = evaluate_vae(vae, x_test, num_samples=args.iw_samples)
    fit = fit_vae(
        vae, x_train, x_test, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, elbo=args.elbo,
        objective=args.objective,
        binarization=args.binarize, threshold=args.threshold, checkpoint=args.out / "checkpoint.pt",
        resume=args.resume, config=config, init=init, progress=not args.quiet, engine=args.engine,
    )
    history, init = fit["history"], fit["init"]
    final = evaluate_vae(vae, x_test, num_samples=args.iw_samples)

    codes = vae.encode(x_test)[0]
    save_figures(vae, x_test, test.labels, codes, history, args.out, seed=args.seed)
    metrics = {
        "dataset": args.dataset, "data": note, "n_train": len(train), "n_test": len(test), "epochs": fit["epochs"],
        "train_elbo": history["train_elbo"][-1] if history["train_elbo"] else None,
        "test_elbo": final["elbo"], "test_iw_loglik": final["iw_loglik"],
        "init_test_elbo": init["elbo"], "init_test_iw_loglik": init["iw_loglik"],
        "iw_samples": args.iw_samples,
        "seconds_per_epoch": sum(history["seconds"]) / len(history["seconds"]) if history["seconds"] else None,
        "resumed_from_epoch": fit["resumed_from"], "device": str(device), "engine": fit["engine"],
        "compile_seconds": fit["compile_seconds"], "objective": args.objective,
    }
    if args.dataset == "onehot":
        train_codes = vae.encode(_binary(train, args))[0]
        metrics["latent_accuracy"] = nearest_centroid_accuracy(
            train_codes.cpu(), train.labels, codes.cpu(), test.labels)
    if not args.json and not args.quiet:
        print(f"{note}; {args.arch} VAE, latent {args.z_dim}, hidden {args.hidden}, {args.elbo} ELBO, "
              f"objective {args.objective}, {device}")
        print(f"trained {fit['epochs']} epochs ({metrics['seconds_per_epoch'] or 0:.2f} s/epoch)"
              + (f", resumed from epoch {fit['resumed_from']}" if fit["resumed_from"] is not None else ""))
        print(f"nats per example     {'init':>9} {'trained':>9}")
        print(f"test ELBO            {init['elbo']:9.2f} {final['elbo']:9.2f}")
        print(f"test log p(x), K={args.iw_samples:<4d}{init['iw_loglik']:9.2f} {final['iw_loglik']:9.2f}")
        if "latent_accuracy" in metrics:
            print(f"latent nearest-centroid accuracy: {metrics['latent_accuracy']:.3f}")
        print(f"figures and checkpoint in {args.out}")
    return metrics
