"""Implicit distributions and mode dropping: GANs on 2-D point clouds and a DCGAN on digit images.

2-D data (--dataset gaussian | ring | ring-metz | ring-pacgan | ring16 | grid, or --data FILE.csv [--modes
CENTRES.csv --mode-sigma S]; ring-pacgan and grid are PacGAN's 2D-ring, 8 modes on the unit circle with sigma
0.01, and 2D-grid, 25 modes on {-4, -2, 0, 2, 4}^2 with sigma 0.05; ring16 is 16 modes on a circle of radius 4,
sigma 0.05): MLP generator and discriminator (2 hidden layers of 128, ReLU; --hidden, --d-hidden) in the
data's standardised coordinates, so that the settings below suit any scale of points. Metrics on 2,500
generated points: modes covered (a mode counts when at least --min-count samples lie within 3 sigma of it),
the fraction of high-quality samples (within 3 sigma of some mode), and the errors of the generated mean and
covariance.
Remedies for mode dropping, each a flag, trained side by side with the standard GAN (same seed, same
settings, same iterations; --no-baseline skips it): --unrolled K (Metz et al. 2017), --pack M (PacGAN,
Lin et al. 2018), --loss wgan-gp (Gulrajani et al. 2017). Defaults follow each method's paper:
  standard, --pack, --loss wgan-gp: 5 discriminator steps per generator step, batch 64, Adam lr 1e-3,
      betas (0.5, 0.999) ((0.5, 0.9) for WGAN-GP), 8,000 iterations;
  --unrolled: 1 discriminator step, batch 256, Adam lr 1e-3 (generator) and 1e-4 (discriminator),
      betas (0.5, 0.999), 3,000 iterations, as in the unrolled-GAN paper;
  many known modes (12 or more: grid, ring16, or a --modes file with as many), standard and --pack: 1
      discriminator step of batch 200, a discriminator three times as wide as the generator (--d-hidden),
      40,000 iterations, both learning rates decaying to a tenth (the ring's settings cover a fraction of
      the modes and spread samples between them);
      --unrolled: 10,000 iterations.
Figure: snapshots.png (the generated cloud during training, one row per run).

Images (--dataset digits | mnist): a DCGAN, checkpointed every epoch to checkpoint.pt; figures
samples.png (a grid from --seed), interpolation.png (slerp between latent points) and arithmetic.png
(mean z of group A - group B + group C; by default "thick x - thin x + thin y").

  deepprob gan --dataset ring                      # the standard GAN drops modes
  deepprob gan --dataset ring --pack 4             # PacGAN, beside the standard GAN
  deepprob gan --dataset ring --unrolled 5
  deepprob gan --dataset digits --epochs 30
  deepprob gan sample --checkpoint runs/gan/checkpoint.pt --seed 0   # the same grid again
  torchrun --nproc_per_node=2 -m deepprob gan --dataset digits --epochs 30   # data-parallel, 2 processes

Under torchrun --nproc_per_node=K the DCGAN trains data-parallel (images only): --batch-size is the global
batch (a multiple of K), the steps are those of one process on it, and process 0 alone writes the
checkpoint, the figures and the --json line (with "world_size": K).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from deepprob.errors import InputError
from deepprob.examples.options import GAN_IMAGE_DATASETS as IMAGE_DATASETS


def main(args: argparse.Namespace) -> dict:
    import deepprob.parallel as parallel

    if args.mode == "sample":
        if parallel.active():
            raise InputError(f"sample: one process (not torchrun with {parallel.world_size()})")
        return sample_images(args)
    if args.checkpoint is not None:
        raise InputError("--checkpoint: only used by `deepprob gan sample`")
    dataset = resolve_dataset(args)
    if dataset in IMAGE_DATASETS:
        return train_images(args, dataset)
    if parallel.active():
        raise InputError(f"--dataset {dataset or args.data}: torchrun with {parallel.world_size()} processes trains "
                         f"the DCGAN (--dataset {' or '.join(IMAGE_DATASETS)}); the 2-D GANs run as one process")
    return train_points(args, load_cloud(args, dataset))


def resolve_dataset(args: argparse.Namespace) -> str | None:
    """The dataset name, or None for a --data CSV; cross-checks the data options."""
    if args.data is not None:
        if args.dataset is not None:
            raise InputError(f"--data {args.data}: give either --data or --dataset {args.dataset}, not both")
        return None
    if args.modes is not None or args.mode_sigma is not None:
        raise InputError("--modes/--mode-sigma: only meaningful with --data FILE.csv")
    dataset = args.dataset or "ring"
    if args.data_dir is not None and dataset != "mnist":
        raise InputError(f"--data-dir {args.data_dir}: only used with --dataset mnist, not {dataset}")
    if dataset in IMAGE_DATASETS and (args.unrolled or args.pack > 1 or args.loss != "gan"):
        raise InputError(f"--dataset {dataset}: the remedies (--unrolled, --pack, --loss wgan-gp) are for 2-D data")
    return dataset


def load_cloud(args: argparse.Namespace, dataset: str | None):
    from deepprob.datasets.points import POINT_SETS, load_points_csv

    if dataset is None:
        return load_points_csv(args.data, args.modes, args.mode_sigma)
    return POINT_SETS[dataset](seed=args.seed)


# --- 2-D point clouds ---------------------------------------------------------------------------------


def variant_name(loss: str, unrolled: int, pack: int) -> str:
    parts = [f"unrolled {unrolled}"] if unrolled else []
    parts += [f"pack {pack}"] if pack > 1 else []
    parts += ["wgan-gp"] if loss == "wgan-gp" else []
    return ", ".join(parts) or "standard"


def resolve_config(args: argparse.Namespace, cloud=None):
    """The GANConfig, iteration count and networks (``train_point_gan``'s latent_dim, hidden and d_hidden):
    the method's preset on ``cloud`` (it follows the data's modes), overridden by any option given."""
    from deepprob.adversarial.point_gan import LATENT_DIM, discriminator_hidden, preset
    from deepprob.adversarial.trainer import GANConfig

    settings = preset("unrolled" if args.unrolled else args.loss, cloud)
    iterations = settings.pop("iterations")
    overrides = {k: getattr(args, k) for k in ("d_steps", "batch_size", "lr_g", "lr_d", "final_lr_fraction")
                 if getattr(args, k) is not None}
    if args.simultaneous:
        settings["d_steps"] = 1  # the simultaneous update has one discriminator step; an explicit --d-steps is checked
    config = GANConfig(loss=args.loss, unrolled=args.unrolled, pack=args.pack, simultaneous=args.simultaneous,
                       **{**settings, **overrides})
    config.validate()
    networks = {"latent_dim": args.latent_dim or LATENT_DIM, "hidden": list(args.hidden),
                "d_hidden": list(args.d_hidden or discriminator_hidden(cloud, args.hidden))}
    return config, args.iterations or iterations, networks


def run_point_gan(args, cloud, config, iterations: int, networks: dict, name: str) -> tuple[dict, list]:
    """Train one GAN of ``networks`` from ``args.seed``; returns its metrics and its snapshots
    [(iteration, points)]."""
    from deepprob.adversarial.point_gan import evaluate_points, train_point_gan

    run = train_point_gan(cloud, config, iterations, **networks, seed=args.seed, device=args.device,
                          snapshots=args.snapshots, progress=not args.quiet, desc=name)
    history = run["history"]
    metrics = evaluate_points(cloud, run["trainer"].generate(args.eval_samples).cpu(), args.min_count)
    metrics.update(variant=name, iterations=iterations, train_seconds=round(run["seconds"], 3),
                   final_d_loss=history["d_loss"][-1], final_g_loss=history["g_loss"][-1])
    return metrics, run["snapshots"]


def train_points(args: argparse.Namespace, cloud) -> dict:
    from deepprob.adversarial.plots import plot_snapshots

    if args.epochs is not None or args.width is not None or args.arithmetic is not None:
        raise InputError("--epochs/--width/--arithmetic: only used with --dataset digits or mnist")
    from deepprob.adversarial.point_gan import preset_basis

    config, iterations, networks = resolve_config(args, cloud)
    name = variant_name(args.loss, args.unrolled, args.pack)
    runs, snapshots = {}, {}
    if name != "standard" and not args.no_baseline:
        baseline = replace(config, loss="gan", unrolled=0, pack=1)
        runs["standard"], snapshots["standard"] = run_point_gan(args, cloud, baseline, iterations, networks,
                                                                 "standard")
    runs[name], snapshots[name] = run_point_gan(args, cloud, config, iterations, networks, name)
    figure = plot_snapshots(snapshots, cloud.points, cloud.centres, args.out / "snapshots.png", runs)
    metrics = {
        "dataset": cloud.name,
        **runs[name],
        "config": {**config.to_dict(), **networks},
        "settings_basis": preset_basis(cloud),
        "figure": str(figure),
    }
    if "standard" in runs and name != "standard":
        metrics["baseline"] = runs["standard"]
    if not (args.json or args.quiet):
        print(
            f"{cloud.name}: {len(cloud.points)} data points; {iterations} iterations, "
            f"{config.d_steps} discriminator step(s) each, batch {config.batch_size}, noise of "
            f"{networks['latent_dim']} dimensions, hidden layers {networks['hidden']} (generator) and "
            f"{networks['d_hidden']} (discriminator) ({preset_basis(cloud)})"
        )
        for run, m in runs.items():
            modes = (
                f"{m['modes_covered']}/{m['num_modes']} modes covered, "
                f"{100 * m['high_quality_fraction']:.1f}% high quality, "
                if m["num_modes"]
                else ""
            )
            print(
                f"  {run:<18} {modes}mean error {m['mean_error']:.3f}, covariance error {m['cov_error']:.3f}"
                f"  ({m['train_seconds']:.1f} s)"
            )
        print(f"  figure: {figure}")
    return metrics


# --- images: DCGAN -------------------------------------------------------------------------------------


def load_images(args: argparse.Namespace, dataset: str):
    """The training and held-out images of ``dataset`` (ImageSets) and a note on where they came from."""
    from deepprob.datasets.images import load_image_splits

    return load_image_splits(dataset, data_dir=args.data_dir)


def train_images(args: argparse.Namespace, dataset: str) -> dict:
    import deepprob.parallel as parallel
    from deepprob.adversarial.dcgan import DCDiscriminator, DCGANTrainer, DCGenerator, to_unit_range
    from deepprob.examples.image_data import QUALITY_SAMPLES, quality_text, sample_quality
    from deepprob.files import atomic_torch_save

    if args.simultaneous or any(getattr(args, k) is not None
                                for k in ("iterations", "d_steps", "lr_g", "lr_d", "final_lr_fraction", "d_hidden")):
        raise InputError("--iterations/--d-steps/--simultaneous/--lr-g/--lr-d/--final-lr-fraction/--d-hidden: for 2-D "
                         "data; the DCGAN uses --epochs (Adam lr 2e-4) and --width")
    data, test, note = load_images(args, dataset)
    latent_dim = args.latent_dim or 32
    width = args.width or (32 if dataset == "digits" else 64)
    epochs = args.epochs or (100 if dataset == "digits" else 10)
    generator = DCGenerator(latent_dim, data.shape, width)
    discriminator = DCDiscriminator(data.shape, width)
    trainer = DCGANTrainer(generator, discriminator, data.images, batch_size=args.batch_size or 64, device=args.device)
    checkpoint_path = args.out / "checkpoint.pt"
    writer = parallel.is_writer()  # process 0 of a torchrun (or the only one) writes
    start = time.perf_counter()
    # every epoch, atomically: an interrupted run keeps its last complete epoch
    stats = trainer.train(epochs, progress=writer and not args.quiet, desc=f"DCGAN {dataset}",
                          checkpoint=(lambda _: atomic_torch_save(trainer.checkpoint(dataset=dataset, seed=args.seed),
                                                                  checkpoint_path)) if writer else None)
    seconds = time.perf_counter() - start
    if not writer:  # the other processes of a torchrun: trained, nothing to write or report
        return {"dataset": dataset, "epochs": epochs, "world_size": trainer.world_size}
    generator.eval()
    figures = image_figures(generator, args, labelled=data)
    with torch.no_grad():
        samples = to_unit_range(generator(torch.randn(QUALITY_SAMPLES, latent_dim, device=args.device)))
    quality = sample_quality(samples, data, test, args.seed, args.device)
    metrics = {
        "dataset": dataset,
        "data_note": note,
        "num_images": len(data),
        "epochs": epochs,
        "batch_size": trainer.batch_size,
        "world_size": trainer.world_size,
        "train_seconds": round(seconds, 3),
        **{k: round(v, 4) for k, v in stats.items()},
        "checkpoint": str(checkpoint_path),
        **quality,
        **figures,
    }
    if not (args.json or args.quiet):
        print(
            f"DCGAN on {note}: {epochs} epochs in {seconds:.1f} s; last epoch: D loss {stats['d_loss']:.3f}, "
            f"G loss {stats['g_loss']:.3f}, D(real) {stats['d_real']:.2f}, D(fake) {stats['d_fake']:.2f}"
        )
        print(f"  samples, {quality_text(quality)}")
        report_figures(figures, checkpoint_path)
    return metrics


def sample_images(args: argparse.Namespace) -> dict:
    """``deepprob gan sample --checkpoint FILE``: the grid (and interpolation) of a trained DCGAN from --seed."""
    from pathlib import Path

    from deepprob.adversarial.dcgan import generator_from_checkpoint

    if args.checkpoint is None:
        raise InputError(
            "sample: --checkpoint FILE is required (a checkpoint.pt written by `deepprob gan --dataset digits`)"
        )
    path = Path(args.checkpoint)
    if not path.is_file():
        raise InputError(f"--checkpoint {path}: no such file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: say so in one line
        raise InputError(f"--checkpoint {path}: not a readable torch checkpoint ({type(err).__name__})") from None
    if not isinstance(checkpoint, dict):
        raise InputError(f"--checkpoint {path}: not a DCGAN checkpoint of `deepprob gan`")
    generator = generator_from_checkpoint(checkpoint, args.device)
    figures = image_figures(generator, args, labelled=None)
    metrics = {
        "checkpoint": str(path),
        "epoch": checkpoint.get("epoch"),
        "dataset": checkpoint.get("dataset"),
        **figures,
    }
    if not (args.json or args.quiet):
        print(f"DCGAN from {path} (epoch {checkpoint.get('epoch')}, {checkpoint.get('dataset')}), seed {args.seed}")
        report_figures(figures, None)
    return metrics


def image_figures(generator, args: argparse.Namespace, labelled=None) -> dict:
    """samples.png and interpolation.png from --seed; with ``labelled`` (the training ImageSet, to
    classify generated digits) also arithmetic.png. The grid is the first GRID² latent points of a pool
    of noise drawn from the seed alone, so `gan sample` with the same seed redraws it exactly."""
    from deepprob.adversarial.dcgan import to_unit_range
    from deepprob.adversarial.latent import fixed_noise, slerp
    from deepprob.adversarial.plots import save_image_grid

    n = args.grid**2
    pool = fixed_noise(max(512, n), generator.latent_dim, args.seed, args.device)
    with torch.no_grad():
        grid = to_unit_range(generator(pool[:n]))
        pairs = [(pool[2 * i], pool[2 * i + 1]) for i in range(4)]
        strip = torch.cat([slerp(a, b, 10) for a, b in pairs])
        interpolation = to_unit_range(generator(strip))
    scale = max(1, 64 // grid.shape[-1])  # 8x8 digits are drawn 8x larger, 28x28 MNIST 2x
    out = {
        "samples": str(save_image_grid(grid, args.out / "samples.png", nrow=args.grid, scale=scale)),
        "interpolation": str(save_image_grid(interpolation, args.out / "interpolation.png", nrow=10, scale=scale)),
        "grid_mean": float(grid.mean()),
    }
    if labelled is not None:
        out.update(latent_arithmetic(generator, pool, n, labelled, args))
    return out


def latent_arithmetic(generator, pool: torch.Tensor, n_grid: int, labelled, args: argparse.Namespace) -> dict:
    """mean z_A - mean z_B + mean z_C on samples of the pool: the groups given by --arithmetic (indices
    into the sample grid), or picked as thick x / thin x / thin y by a classifier fitted to the real images."""
    from sklearn.linear_model import LogisticRegression

    from deepprob.adversarial.dcgan import to_unit_range
    from deepprob.adversarial.latent import arithmetic, parse_groups, pick_by_attribute
    from deepprob.adversarial.plots import plot_arithmetic

    with torch.no_grad():
        images = to_unit_range(generator(pool)).cpu()
    keep = torch.randperm(len(labelled), generator=torch.Generator().manual_seed(0))[:3000]
    classifier = LogisticRegression(max_iter=300)
    classifier.fit(labelled.images[keep].flatten(1).numpy(), labelled.labels[keep].numpy())
    probs = torch.as_tensor(classifier.predict_proba(images.flatten(1).numpy()))
    confidence, index = probs.max(1)
    labels = torch.as_tensor(classifier.classes_)[index]
    ink = images.mean((1, 2, 3))
    picked = None if args.arithmetic is not None else pick_by_attribute(labels, ink, confidence)
    if picked is not None:
        groups, names = picked
        x, y = names["x"], names["y"]
        titles = [f"A: thick {x}", f"B: thin {x}", f"C: thin {y}", f"thick {x} - thin {x} + thin {y}"]
    else:  # given by index, or too few recognisable classes yet: the first nine samples of the grid
        groups, names = parse_groups(args.arithmetic or "0,1,2;3,4,5;6,7,8", n_grid), None
        titles = [f"A: {groups[0]}", f"B: {groups[1]}", f"C: {groups[2]}", "A - B + C"]
    z = arithmetic(pool, groups)
    # the result and neighbours of it (small perturbations), as in the DCGAN paper's figures
    noise = 0.25 * (2 * torch.rand(7, pool.shape[1], generator=torch.Generator().manual_seed(args.seed)) - 1)
    with torch.no_grad():
        result = to_unit_range(generator(torch.cat([z[None], z[None] + noise.to(z.device)]))).cpu()
        means = to_unit_range(generator(torch.stack([pool[g].mean(0) for g in groups]))).cpu()
    figure = plot_arithmetic([images[g] for g in groups], list(means), result, titles, args.out / "arithmetic.png")
    out = {
        "arithmetic": str(figure),
        "arithmetic_groups": groups,
        "arithmetic_result_class": int(classifier.predict(result[:1].flatten(1).numpy())[0]),
        "arithmetic_ink": {"mean_C": float(means[2].mean()), "result": float(result[0].mean())},
    }
    if names is not None:
        out["arithmetic_classes"] = names
    return out


def report_figures(figures: dict, checkpoint) -> None:
    print(f"  samples: {figures['samples']}")
    print(f"  interpolation: {figures['interpolation']}")
    if "arithmetic" in figures:
        ink = figures["arithmetic_ink"]
        print(
            f"  latent arithmetic: {figures['arithmetic']} (result classified as {figures['arithmetic_result_class']}; "
            f"ink {ink['result']:.3f} against {ink['mean_C']:.3f} for mean C)"
        )
    if checkpoint is not None:
        print(f"  checkpoint: {checkpoint}  (deepprob gan sample --checkpoint {checkpoint})")
