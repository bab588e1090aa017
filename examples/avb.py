"""Adversarial variational Bayes (Mescheder, Nowozin and Geiger, 2017): a VAE whose encoder is implicit.

The model is the VAE's (a Pyro model: z ~ N(0, I), x ~ Bernoulli(decoder(z))). The encoder is a network
fed with noise, z = g(x, eps), so q(z | x) has no density; a discriminator T(x, z), a plain torch module,
learns log q(z | x) - log p(z) by telling (x, z ~ q) from (x, z ~ p(z)) (the density-ratio trick of
`deepprob ratio`), and the ELBO becomes E_q[log p(x | z) - T(x, z)]. A VAE with the usual Gaussian encoder
trains beside it (same networks, epochs and seed; --no-baseline skips it), and both are scored by one
held-out log p(x) that uses no encoder density: numerical integration over a 2-D latent, else importance
sampling from a Gaussian fitted to the encoder's codes.

Figures under --out: latent_codes.png (codes z ~ q(z | x) of the test images by class, Gaussian VAE and
AVB side by side: the AVB paper's figure), ratio.png (T against the true log ratio for the Gaussian
encoder, and against a kernel-density estimate for AVB's), and the VAE's figures for the AVB model.

examples:
  deepprob avb --dataset onehot --json
  deepprob avb --dataset digits --epochs 50
  deepprob avb --dataset mnist --data-dir ../shared/data/mnist --epochs 10
"""

from __future__ import annotations

import argparse

import torch

from deepprob.examples.image_data import apply_defaults, load_binary_images
from deepprob.inference.generative.avb_fit import AVBTrainer
from deepprob.inference.generative.vae_eval import heldout_log_likelihood
from deepprob.inference.generative.vae_fit import VAETrainer, fit_vae
from deepprob.models.avb import AVB
from deepprob.models.vae import VAE

# Per data set: latent size, hidden layers, epochs, batch size, learning rate.
DEFAULTS = {
    "onehot": {"z_dim": 2, "hidden": [256, 256], "epochs": 200, "batch_size": 64, "lr": 1e-3},
    "digits": {"z_dim": 2, "hidden": [256, 256], "epochs": 50, "batch_size": 64, "lr": 1e-3},
    "mnist": {"z_dim": 8, "hidden": [400], "epochs": 10, "batch_size": 128, "lr": 1e-3},
}
CONFIG_KEYS = ("dataset", "train_size", "test_size", "binarize", "threshold", "z_dim", "hidden", "noise_dim",
               "adversary_hidden", "batch_size", "lr", "adversary_lr", "adversary_steps")


def train(model, trainer, data, args: argparse.Namespace, name: str) -> dict:
    """Fit ``model`` with ``trainer`` (checkpointed to ``--out/<name>.pt``) and score it on the test images."""
    config = {k: getattr(args, k) for k in CONFIG_KEYS}
    config.update(model.config(), n_train=len(data.train), model=name)
    fit = fit_vae(model, data.x_train, data.x_test, epochs=args.epochs, binarization=args.binarize,
                  threshold=args.threshold, checkpoint=args.out / f"{name}.pt", resume=args.resume, config=config,
                  progress=not args.quiet, trainer=trainer, desc=name.upper())
    history = fit["history"]
    return {"model": model, "history": history, "epochs": fit["epochs"], "resumed_from_epoch": fit["resumed_from"],
            "train_elbo": history["train_elbo"][-1] if history["train_elbo"] else None,
            "test_elbo": history["test_elbo"][-1] if history["test_elbo"] else None,
            "seconds_per_epoch": sum(history["seconds"]) / len(history["seconds"]) if history["seconds"] else None,
            **heldout_log_likelihood(model, data.x_test, args.loglik, args.loglik_samples)}


def main(args: argparse.Namespace) -> dict:
    from deepprob.examples.avb_figures import ratio_checks, save_latent_codes, save_ratio_figure
    from deepprob.examples.vae_figures import save_figures

    apply_defaults(args, DEFAULTS)
    data = load_binary_images(args)
    shape, device = data.train.shape, args.device

    avb = AVB(shape, args.z_dim, args.hidden, args.noise_dim, args.adversary_hidden).to(device)
    trainer = AVBTrainer(avb, lr=args.lr, batch_size=args.batch_size, adversary_lr=args.adversary_lr,
                         adversary_steps=args.adversary_steps)
    runs = {"avb": train(avb, trainer, data, args, "avb")}
    if not args.no_baseline:
        torch.manual_seed(args.seed)
        vae = VAE(shape, args.z_dim, args.hidden).to(device)
        runs["vae"] = train(vae, VAETrainer(vae, lr=args.lr, batch_size=args.batch_size), data, args, "vae")

    models = {name: run.pop("model") for name, run in runs.items()}
    figures = save_figures(avb, data.x_test, data.test.labels, avb.encode(data.x_test)[0], runs["avb"]["history"],
                           args.out, seed=args.seed)
    figures.append(save_latent_codes(models, data.x_test, data.test.labels, args.out / "latent_codes.png"))
    checks = ratio_checks(models, data.x_test, data.test.labels, seed=args.seed)
    if checks:
        figures.append(save_ratio_figure(checks, args.out / "ratio.png"))
    metrics = {
        "dataset": args.dataset, "data": data.note, "n_train": len(data.train), "n_test": len(data.test),
        "z_dim": args.z_dim, "noise_dim": args.noise_dim, "device": str(device),
        **{k: v for k, v in runs["avb"].items() if k != "history"},
        "baseline": {k: v for k, v in runs["vae"].items() if k != "history"} if "vae" in runs else None,
        "adversary_checks": {name: {k: v for k, v in check.items() if not isinstance(v, torch.Tensor)}
                             for name, check in checks.items()},
        "figures": [str(f) for f in figures],
    }
    if not args.json and not args.quiet:
        print(f"{data.note}; latent {args.z_dim}, hidden {args.hidden}, noise {args.noise_dim}, {device}")
        print(f"{'encoder':<24}{'test log p(x)':>14}{'test ELBO':>11}{'s/epoch':>9}")
        for name, label in (("avb", "implicit (AVB)"), ("vae", "Gaussian (VAE)")):
            if name in runs:
                run = runs[name]
                print(f"{label:<24}{run['test_loglik']:14.3f}{run['test_elbo']:11.3f}"
                      f"{run['seconds_per_epoch'] or 0:9.2f}")
        print(f"log p(x) by {runs['avb']['test_loglik_method']}; the AVB ELBO uses T for log q")
        for name, check in checks.items():
            print(f"T against {check['truth']} ({name}): RMSE {check['rmse']:.3f}, "
                  f"correlation {check['correlation']:.3f}")
        print(f"figures and checkpoints in {args.out}")
    return metrics

