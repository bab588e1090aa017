"""GANs and VAEs in one view (Hu et al., "On Unifying Deep Generative Models", 2018): mode seeking against
mass covering, measured on the same 2-D mixtures.

A GAN's generator behaves like a minimiser of KL(P_model || P_data): it is punished for samples where the
data have none, not for missing modes, so it drops modes and keeps its samples sharp. A VAE's model is
fitted by maximum likelihood through the ELBO, i.e. through KL(P_data || P_model): it is punished for
missing any mode, so it covers them all and, its decoder being a continuous map of one Gaussian, puts mass
between them. Both are trained here on the same data (the ring of 8 and the 5x5 grid, or --datasets), with
the same latent size and the same MLPs (generator = decoder; the VAE's Normal likelihood has a learnt
sd), and scored the same way on fresh samples: modes covered, the share of high-quality samples (within 3
sigma of a mode), and both KL divergences to the true mixture, the model's density estimated from its
samples with a kernel density estimate (bandwidth by held-out likelihood) and, for the VAE, also by its
importance-weighted log p(x). Figure: unify.png (samples of the data, the GAN and the VAE per data set).

examples:
  deepprob unify                         # ring and grid
  deepprob unify --datasets grid --json
"""

from __future__ import annotations

import argparse

import torch

from deepprob.errors import InputError

TITLES = {"data": "data", "gan": "standard GAN", "vae": "VAE"}


def main(args: argparse.Namespace) -> dict:
    from deepprob.adversarial.plots import plot_model_samples
    from deepprob.datasets.points import POINT_SETS

    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    unknown = [n for n in names if n not in POINT_SETS or n == "gaussian"]
    if unknown or not names:
        raise InputError(f"--datasets {args.datasets!r}: expected comma-separated mixtures from "
                         f"{', '.join(n for n in POINT_SETS if n != 'gaussian')}")
    results, rows = {}, {}
    for name in names:
        cloud = POINT_SETS[name](seed=args.seed)
        results[name], rows[name] = compare_on(cloud, args)
    figure = plot_model_samples(rows, args.out / "unify.png", TITLES)
    if not (args.json or args.quiet):
        print(f"latent {args.latent_dim}, hidden {args.hidden}; {args.eval_samples} samples scored; KL in nats, "
              "model density by KDE (VAE: IW log p(x) in brackets)")
        print(f"{'data':<12}{'model':<14}{'modes':>8}{'high quality':>14}{'KL(data||model)':>22}"
              f"{'KL(model||data)':>22}")
        for name, by_model in results.items():
            for model, m in by_model.items():
                iw = m.get("iw", {})
                forward = f"{m['kl_data_model']:.2f}" + (f" [{iw['kl_data_model']:.2f}]" if iw else "")
                reverse = f"{m['kl_model_data']:.2f}" + (f" [{iw['kl_model_data']:.2f}]" if iw else "")
                print(f"{name:<12}{TITLES[model]:<14}{m['modes_covered']:>5}/{m['num_modes']:<2}"
                      f"{100 * m['high_quality_fraction']:13.1f}%{forward:>22}{reverse:>22}")
        print(f"figure: {figure}")
    return {"datasets": results, "figure": str(figure), "latent_dim": args.latent_dim, "hidden": args.hidden}


def compare_on(cloud, args: argparse.Namespace) -> tuple[dict, dict]:
    """The standard GAN and the VAE trained on ``cloud``, each scored; and the figure's row."""
    from deepprob.adversarial.kde import GaussianKDE
    from deepprob.adversarial.metrics import kl_both_ways
    from deepprob.adversarial.point_gan import evaluate_points, preset, train_point_gan
    from deepprob.adversarial.trainer import GANConfig
    from deepprob.inference.generative.point_vae import fit_point_vae

    device = args.device
    settings = preset("gan", cloud)  # `deepprob gan`'s standard GAN on this data set
    default_iterations = settings.pop("iterations")
    iterations = args.iterations or default_iterations
    gan = train_point_gan(cloud, GANConfig(**settings), iterations, latent_dim=args.latent_dim, hidden=args.hidden,
                          seed=args.seed, device=device, progress=not args.quiet, desc=f"{cloud.name} GAN")
    vae = fit_point_vae(cloud, latent_dim=args.latent_dim, hidden=args.hidden, epochs=args.vae_epochs,
                        seed=args.seed, device=device, progress=not args.quiet, desc=f"{cloud.name} VAE")
    samplers = {"gan": gan["trainer"].generate, "vae": vae.sample}
    data = cloud.sample(args.kl_samples, generator=torch.Generator().manual_seed(args.seed + 1), device=device)
    true_log_prob = cloud.dist.log_prob
    out, row = {}, {"centres": cloud.centres, "points": {"data": data[:args.eval_samples]}, "captions": {}}
    for model, sample in samplers.items():
        shown = sample(args.eval_samples)
        metrics = evaluate_points(cloud, shown.cpu(), args.min_count)
        kde = GaussianKDE.fitted(sample(args.kde_samples))
        fresh = sample(args.kl_samples)  # one set of model draws for both density estimates
        metrics.update(kl_both_ways(true_log_prob, data, fresh, kde.log_prob), kde_bandwidth=kde.bandwidth)
        if model == "vae":
            metrics["iw"] = kl_both_ways(true_log_prob, data, fresh, vae.log_prob)
        metrics.pop("mode_counts")
        out[model] = metrics
        row["points"][model] = shown
        row["captions"][model] = (f"{metrics['modes_covered']}/{metrics['num_modes']} modes, "
                                  f"{100 * metrics['high_quality_fraction']:.0f}% high quality\n"
                                  f"KL(P||Q) {metrics['kl_data_model']:.2f}, KL(Q||P) {metrics['kl_model_data']:.2f}")
    out["gan"]["train_seconds"] = round(gan["seconds"], 2)
    out["vae"]["train_seconds"] = round(sum(vae.history["seconds"]), 2)
    return out, row
