"""The figures of ``deepprob vae``: what a trained VAE has learnt, saved as PNG files."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def mosaic(images: torch.Tensor, ncol: int, pad: int = 1) -> np.ndarray:
    """Images (N, C, H, W) (first channel shown) as one 2-D array of rows of ``ncol``, in a light grey frame."""
    images = images.detach().float().cpu()[:, 0]
    n, h, w = images.shape
    nrow = -(-n // ncol)
    out = 0.25 * np.ones((nrow * (h + pad) + pad, ncol * (w + pad) + pad), dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, ncol)
        out[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = images[i]
    return out


def _show(array: np.ndarray, path: Path, title: str, width: float = 6.0) -> None:
    height = max(1.0, width * array.shape[0] / array.shape[1]) + 0.4
    fig, ax = plt.subplots(figsize=(width, height))
    ax.imshow(array, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest", aspect="auto")
    ax.set_title(title, fontsize=10)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def one_per_label(labels: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of up to ``n`` examples, the first of each label first (so that every class shows)."""
    firsts = [int((labels == c).nonzero()[0]) for c in labels.unique()]
    rest = [i for i in range(len(labels)) if i not in set(firsts)]
    return torch.tensor((firsts + rest)[:n])


def project_2d(codes: torch.Tensor) -> tuple[np.ndarray, str]:
    """``codes`` (N, D) as (N, 2): themselves when D = 2, else their first two principal components."""
    codes = codes.detach().float().cpu()
    if codes.shape[1] <= 2:
        return codes.numpy(), "z"
    centred = codes - codes.mean(0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    return (centred @ v[:2].T).numpy(), "principal component"


@torch.no_grad()
def save_figures(vae, x_test, labels, codes, history: dict, out: Path, seed: int = 0) -> list[Path]:
    """Reconstructions, prior samples, an interpolation, the latent means and (2-D latent) the manifold.

    Args:
        vae: the trained :class:`~deepprob.models.vae.VAE`.
        x_test: binary test images (N, *event_shape); labels: their labels (N,).
        codes: the latent means of ``x_test`` (N, z_dim).
        history: the learning curves of :func:`~deepprob.inference.generative.vae_fit.fit_vae`.
    """
    out = Path(out)
    labels = labels.cpu()
    saved = []
    ncol = 10

    index = one_per_label(labels, 2 * ncol).to(x_test.device)
    inputs, recon = x_test[index], vae.reconstruct(x_test[index])
    rows = torch.cat([torch.cat([inputs[i:i + ncol], recon[i:i + ncol]]) for i in range(0, len(index), ncol)])
    _show(mosaic(rows.view(-1, *_as_image(vae)), ncol), out / "reconstructions.png",
          "test images (odd rows) and their reconstructions\n(pixel probabilities at z = mean of q(z | x))")
    saved.append(out / "reconstructions.png")

    # a generator of its own: the figure does not depend on how much randomness training used
    z = torch.randn(8 * ncol, vae.z_dim, generator=torch.Generator().manual_seed(seed)).to(x_test.device)
    _show(mosaic(vae.decode(z).view(-1, *_as_image(vae)), ncol), out / "samples.png",
          "samples from the prior, decoded: p(x | z), z ~ N(0, I)")
    saved.append(out / "samples.png")

    classes = labels.unique()
    pairs = [(int(classes[i]), int(classes[(i + 1) % len(classes)])) for i in range(min(4, len(classes)))]
    steps = torch.linspace(0, 1, ncol, device=x_test.device)[:, None]
    path = []
    for a, b in pairs:
        za, zb = codes[int((labels == a).nonzero()[0])], codes[int((labels == b).nonzero()[0])]
        path.append(vae.decode((1 - steps) * za + steps * zb))
    _show(mosaic(torch.cat(path).view(-1, *_as_image(vae)), ncol), out / "interpolation.png",
          "straight lines in latent space between the codes of two test images, decoded\n(rows: "
          + ", ".join(f"{a} to {b}" for a, b in pairs) + ")")
    saved.append(out / "interpolation.png")

    xy, axis = project_2d(codes)
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    points = ax.scatter(xy[:, 0], xy[:, 1], c=labels.numpy(), cmap="tab10", s=6, alpha=0.7,
                        vmin=-0.5, vmax=max(9, int(classes.max())) + 0.5)
    fig.colorbar(points, ax=ax, label="label", ticks=classes.tolist())
    ax.set_xlabel(f"{axis} 1")
    ax.set_ylabel(f"{axis} 2")
    ax.set_title("latent means of the test images", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "latent.png", dpi=120)
    plt.close(fig)
    saved.append(out / "latent.png")

    if vae.z_dim == 2:
        # an evenly spaced grid in probability: the prior's quantiles, as in Kingma and Welling's figure
        n = 15
        q = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, n))
        grid = torch.stack(torch.meshgrid(q, q.flip(0), indexing="xy"), -1).reshape(-1, 2).to(x_test.device)
        _show(mosaic(vae.decode(grid).view(-1, *_as_image(vae)), n), out / "manifold.png",
              "decoded grid of the 2-D latent space (5% to 95% prior quantiles)")
        saved.append(out / "manifold.png")

    if history["train_elbo"]:
        fig, ax = plt.subplots(figsize=(5.5, 3.5))
        epochs = np.arange(1, len(history["train_elbo"]) + 1)
        ax.plot(epochs, history["train_elbo"], label="train (during the epoch)")
        ax.plot(epochs, history["test_elbo"], label="test")
        ax.set_xlabel("epoch")
        ax.set_ylabel("ELBO (nats per example)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "learning_curve.png", dpi=120)
        plt.close(fig)
        saved.append(out / "learning_curve.png")
    return saved


def _as_image(vae) -> tuple[int, int, int]:
    shape = tuple(vae.event_shape)
    return shape if len(shape) == 3 else (1, 1, int(np.prod(shape)))
