"""The figures of ``deepprob avb``: the codes of each encoder by class, and how well T knows the log ratio."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from deepprob.examples.vae_figures import one_per_label, project_2d  # noqa: E402

TITLES = {"vae": "Gaussian encoder (VAE)", "avb": "implicit encoder (AVB)"}


@torch.no_grad()
def save_latent_codes(models: dict, x_test: torch.Tensor, labels: torch.Tensor, path: Path,
                      images: int = 400, draws: int = 10) -> Path:
    """Codes z ~ q(z | x), ``draws`` for each of ``images`` test images, coloured by label: one panel per
    model, the prior's 1, 2 and 3 sd circles behind (first two principal components beyond 2-D)."""
    index = torch.arange(min(images, len(x_test)))
    names = [n for n in ("vae", "avb") if n in models]
    fig, axes = plt.subplots(1, len(names), figsize=(4.6 * len(names), 4.4), squeeze=False)
    for ax, name in zip(axes[0], names):
        codes = models[name].sample_codes(x_test[index.to(x_test.device)], draws)  # (draws, n, d)
        xy, axis = project_2d(codes.reshape(-1, codes.shape[-1]))
        colour = labels[index].repeat(draws).numpy()
        ax.scatter(xy[:, 0], xy[:, 1], c=colour, cmap="tab10", s=3, alpha=0.5, vmin=-0.5, vmax=9.5)
        if axis == "z":
            for r in (1, 2, 3):
                ax.add_patch(plt.Circle((0, 0), r, fill=False, color="0.6", lw=0.8, ls=":"))
        ax.set_title(f"{TITLES[name]}: z ~ q(z | x)", fontsize=10)
        ax.set_xlabel(f"{axis} 1")
        ax.set_ylabel(f"{axis} 2")
        ax.set_aspect("equal", adjustable="datalim")
    fig.suptitle("codes of the test images, coloured by class (circles: 1, 2, 3 prior sds)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def ratio_checks(models: dict, x_test: torch.Tensor, labels: torch.Tensor, seed: int = 0,
                 steps: int = 2000) -> dict:
    """T(x, z) against log q(z | x) − log p(z) at fresh codes of the test images, where that is known.

    - ``vae`` (a Gaussian encoder): a fresh discriminator is trained by the density-ratio trick against the
      fixed encoder and compared with the exact log ratio (any latent size);
    - ``avb`` (2-D latent): the AVB's own T against a kernel density estimate of q(z | x) from 4,000 codes,
      for one test image of each of up to four classes.

    Returns ``{name: {"truth": ..., "rmse": ..., "correlation": ..., "estimate": (M,), "true": (M,)}}``.
    """
    from deepprob.adversarial.kde import GaussianKDE
    from deepprob.inference.generative.avb_fit import fit_adversary
    from deepprob.models.avb import JointDiscriminator

    torch.manual_seed(seed)
    checks = {}
    if "vae" in models:
        vae = models["vae"]
        adversary = JointDiscriminator(vae.event_shape, vae.z_dim, vae.hidden).to(x_test.device)
        fit_adversary(adversary, vae.sample_codes, x_test, steps=steps)
        with torch.no_grad():
            x = x_test[:500]
            loc, scale = vae.encoder(x)
            z = torch.distributions.Normal(loc, scale).sample()
            true = torch.distributions.Normal(loc, scale).log_prob(z).sum(-1) - vae.prior(x).log_prob(z)
            checks["vae"] = _scores("the exact log ratio (Gaussian encoder, T trained against it)",
                                    adversary(x, z), true)
    if "avb" in models and models["avb"].z_dim == 2:
        avb = models["avb"]
        estimate, true = [], []
        with torch.no_grad():
            for i in one_per_label(labels, 4):
                x = x_test[int(i):int(i) + 1]
                codes = avb.sample_codes(x, 4250)[:, 0]  # (M, 2)
                kde = GaussianKDE.fitted(codes[:4000])
                z = codes[4000:]
                true.append(kde.log_prob(z).float() - avb.prior(x).log_prob(z).cpu())
                estimate.append(avb.adversary(x.expand(len(z), *x.shape[1:]), z).cpu())
        checks["avb"] = _scores("a kernel density estimate of log q - log p (4,000 codes an image)",
                                torch.cat(estimate), torch.cat(true))
    return checks


def _scores(truth: str, estimate: torch.Tensor, true: torch.Tensor) -> dict:
    estimate, true = estimate.detach().float().cpu(), true.detach().float().cpu()
    correlation = float(torch.corrcoef(torch.stack([estimate, true]))[0, 1])
    return {"truth": truth, "rmse": float((estimate - true).pow(2).mean().sqrt()), "correlation": correlation,
            "mean_true": float(true.mean()), "mean_estimate": float(estimate.mean()),
            "estimate": estimate, "true": true}


def save_ratio_figure(checks: dict, path: Path) -> Path:
    """One scatter per check: T(x, z) against the log ratio it estimates, with the identity line."""
    fig, axes = plt.subplots(1, len(checks), figsize=(4.4 * len(checks), 4.2), squeeze=False)
    for ax, (name, check) in zip(axes[0], checks.items()):
        true, estimate = check["true"].numpy(), check["estimate"].numpy()
        ax.scatter(true, estimate, s=4, alpha=0.4)
        lo, hi = np.percentile(np.concatenate([true, estimate]), [0.5, 99.5])
        ax.plot([lo, hi], [lo, hi], color="k", lw=0.8)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel("log q(z | x) - log p(z)")
        ax.set_ylabel("T(x, z)")
        ax.set_title(f"{TITLES[name]}\nagainst {check['truth'].split(' (')[0]}\nRMSE {check['rmse']:.2f}, "
                     f"correlation {check['correlation']:.3f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
