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
  torchrun --nproc_per_node=2 -m deepprob vae --dataset mnist --data-dir ../shared/data/mnist   # 2 processes

Under torchrun --nproc_per_node=K the training is data-parallel: --batch-size is the global batch (a multiple
of K; each process takes batch/K images of it), the steps are those of one process on the global batch, and
process 0 alone writes the checkpoint, the figures and the --json line (with "world_size": K).
"""

from __future__ import annotations

import argparse

import torch

import deepprob.parallel as parallel
from deepprob.examples.image_data import (
    QUALITY_SAMPLES,
    apply_defaults,
    binary,
    load_binary_images,
    quality_text,
    sample_quality,
)
from deepprob.inference.generative.vae_eval import evaluate_vae, heldout_log_likelihood, nearest_centroid_accuracy
from deepprob.inference.generative.vae_fit import fit_vae
from deepprob.models.vae import VAE

# Per data set: latent size, hidden layers, epochs, batch size, learning rate.
DEFAULTS = {
    "onehot": {"z_dim": 2, "hidden": [32], "epochs": 40, "batch_size": 64, "lr": 3e-3},
    "digits": {"z_dim": 2, "hidden": [256], "epochs": 30, "batch_size": 64, "lr": 3e-3},
    "mnist": {"z_dim": 20, "hidden": [400], "epochs": 10, "batch_size": 128, "lr": 1e-3},
}


def main(args: argparse.Namespace) -> dict:
    from deepprob.examples.vae_figures import save_figures

    apply_defaults(args, DEFAULTS)
    data = load_binary_images(args)
    train, test, note, x_train, x_test = data.train, data.test, data.note, data.x_train, data.x_test
    device = args.device

    vae = VAE(train.shape, z_dim=args.z_dim, hidden=args.hidden, arch=args.arch).to(device)
    config = {k: v for k, v in vars(args).items() if k in (
        "dataset", "train_size", "test_size", "binarize", "threshold", "arch", "z_dim", "hidden", "batch_size",
        "lr", "elbo", "objective")}
    config.update(vae.config(), n_train=len(train))
    init = None
    if not args.resume:  # on every process: they draw the same random numbers throughout
        init = evaluate_vae(vae, x_test, num_samples=args.iw_samples)
    fit = fit_vae(
        vae, x_train, x_test, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, elbo=args.elbo,
        objective=args.objective,
        binarization=args.binarize, threshold=args.threshold, checkpoint=args.out / "checkpoint.pt",
        resume=args.resume, config=config, init=init, progress=not args.quiet, engine=args.engine,
    )
    history, init = fit["history"], fit["init"]
    if not parallel.is_writer():  # the other processes of a torchrun: trained, nothing to report or write
        return {"dataset": args.dataset, "epochs": fit["epochs"], "world_size": fit["world_size"]}
    final = evaluate_vae(vae, x_test, num_samples=args.iw_samples)
    if args.loglik == "auto" and vae.z_dim > 2:  # the IW estimate is already one that needs no other proposal
        loglik = {"test_loglik": final["iw_loglik"],
                  "test_loglik_method": f"importance sampling from q(z | x), K={args.iw_samples}"}
    else:
        loglik = heldout_log_likelihood(vae, x_test, args.loglik, args.loglik_samples)

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
        "compile_seconds": fit["compile_seconds"], "objective": args.objective, "world_size": fit["world_size"],
        "batch_size": args.batch_size, **loglik,
    }
    if args.dataset in ("digits", "mnist"):  # the decoded means of prior draws, as the prior-samples figure
        with torch.no_grad():
            z = vae.prior(x_test).sample((QUALITY_SAMPLES,))
            samples = vae.decode(z).reshape(QUALITY_SAMPLES, *train.shape)
        metrics.update(sample_quality(samples, train, test, args.seed, device))
    if args.dataset == "onehot":
        train_codes = vae.encode(binary(train, args))[0]
        metrics["latent_accuracy"] = nearest_centroid_accuracy(
            train_codes.cpu(), train.labels, codes.cpu(), test.labels)
    if not args.json and not args.quiet:
        print(f"{note}; {args.arch} VAE, latent {args.z_dim}, hidden {args.hidden}, {args.elbo} ELBO, "
              f"objective {args.objective}, {device}"
              + (f", {fit['world_size']} processes" if fit["world_size"] > 1 else ""))
        print(f"trained {fit['epochs']} epochs ({metrics['seconds_per_epoch'] or 0:.2f} s/epoch)"
              + (f", resumed from epoch {fit['resumed_from']}" if fit["resumed_from"] is not None else ""))
        print(f"nats per example     {'init':>9} {'trained':>9}")
        print(f"test ELBO            {init['elbo']:9.2f} {final['elbo']:9.2f}")
        print(f"test log p(x), K={args.iw_samples:<4d}{init['iw_loglik']:9.2f} {final['iw_loglik']:9.2f}")
        print(f"test log p(x) {loglik['test_loglik']:.3f} by {loglik['test_loglik_method']}")
        if "latent_accuracy" in metrics:
            print(f"latent nearest-centroid accuracy: {metrics['latent_accuracy']:.3f}")
        if "fid" in metrics:
            print(f"prior samples, {quality_text(metrics)}")
        print(f"figures and checkpoint in {args.out}")
    return metrics
