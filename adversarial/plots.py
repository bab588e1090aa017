"""Figures of the GAN example: point-cloud snapshots side by side, image grids and strips (PNG, Agg)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def _pyplot():
    from deepprob.plots import plt  # Agg, but in a notebook's kernel

    return plt


def tile(images: torch.Tensor, nrow: int, pad: int = 1, scale: int = 1) -> np.ndarray:
    """(N, 1, H, W) images in [0, 1] -> one (rows·(H+pad)+pad, nrow·(W+pad)+pad) array, white between
    tiles, each pixel repeated ``scale`` times in both directions (nearest neighbour: no smoothing)."""
    images = images.detach().cpu().float()
    n, _, h, w = images.shape
    rows = (n + nrow - 1) // nrow
    canvas = np.ones((rows * (h + pad) + pad, nrow * (w + pad) + pad), dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, nrow)
        canvas[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = images[
            i, 0
        ].numpy()
    if scale > 1:
        canvas = canvas.repeat(scale, 0).repeat(scale, 1)
    return canvas


def save_image_grid(images: torch.Tensor, path: str | Path, nrow: int, scale: int = 4) -> Path:
    """Save a grid of greyscale images pixel for pixel (``imsave``: no axes, no resampling), so that the
    same images always give the same file."""
    path = Path(path)
    _pyplot().imsave(path, tile(images, nrow, scale=scale), cmap="gray", vmin=0.0, vmax=1.0)
    return path


def plot_snapshots(
    runs: dict[str, list[tuple[int, torch.Tensor]]], data: torch.Tensor, centres, path, metrics=None
) -> Path:
    """One row per run (e.g. the standard GAN and a remedy), one column per snapshot of the generated
    cloud during training; the data in grey and the mode centres as crosses behind every panel."""
    plt = _pyplot()
    names = list(runs)
    ncols = max(len(v) for v in runs.values())
    fig, axes = plt.subplots(
        len(names), ncols, figsize=(2.4 * ncols, 2.5 * len(names)), squeeze=False, sharex=True, sharey=True
    )
    shown = data[torch.randperm(len(data))[:1500]].cpu()
    lo, hi = data.min(0).values.cpu(), data.max(0).values.cpu()
    pad = 0.15 * (hi - lo)
    for r, name in enumerate(names):
        for c in range(ncols):
            ax = axes[r, c]
            ax.scatter(shown[:, 0], shown[:, 1], s=1, color="0.8")
            if centres is not None:
                ax.scatter(centres[:, 0].cpu(), centres[:, 1].cpu(), marker="x", s=20, color="k", lw=0.8)
            if c < len(runs[name]):
                iteration, points = runs[name][c]
                points = points.cpu()
                ax.scatter(points[:, 0], points[:, 1], s=1.5, color="C3" if r else "C0", alpha=0.5)
                ax.set_title(f"{name}: {iteration}", fontsize=8)
            ax.set_xlim(float(lo[0] - pad[0]), float(hi[0] + pad[0]))
            ax.set_ylim(float(lo[1] - pad[1]), float(hi[1] + pad[1]))
            ax.set_xticks([])
            ax.set_yticks([])
        if metrics is not None and name in metrics and metrics[name].get("num_modes"):
            m = metrics[name]
            axes[r, 0].set_ylabel(
                f"{name}\n{m['modes_covered']}/{m['num_modes']} modes, {100 * m['high_quality_fraction']:.0f}% HQ",
                fontsize=8,
            )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_arithmetic(
    groups: list[torch.Tensor], group_means: list[torch.Tensor], result: torch.Tensor, labels, path
) -> Path:
    """Rows A, B, C: the chosen samples and, at the right, the decoded mean of their latent vectors;
    last row: the result of mean A − mean B + mean C (and a few neighbours of it)."""
    plt = _pyplot()
    width = max(max(len(g) for g in groups) + 2, len(result))
    mean_col = max(len(g) for g in groups) + 1  # one empty column between a group and its mean
    fig, axes = plt.subplots(4, width, figsize=(1.1 * width, 4.6), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for r, (images, mean, label) in enumerate(zip(groups, group_means, labels[:3])):
        for c, image in enumerate(images):
            axes[r, c].imshow(image[0].cpu(), cmap="gray", vmin=0, vmax=1)
        axes[r, mean_col].imshow(mean[0].cpu(), cmap="gray", vmin=0, vmax=1)
        axes[r, mean_col].set_title("G(mean z)", fontsize=7)
        axes[r, 0].set_title(label, fontsize=7, loc="left")
    for c, image in enumerate(result):
        axes[3, c].imshow(image[0].cpu(), cmap="gray", vmin=0, vmax=1)
    axes[3, 0].set_title(labels[3], fontsize=7, loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_model_samples(rows: dict[str, dict], path, titles: dict[str, str] | None = None) -> Path:
    """One row per data set, one column per source (the data, then each model): ``rows[name]`` holds
    ``"centres"`` (K, 2), ``"points"`` {source: (N, 2)} and ``"captions"`` {source: text under its title}."""
    plt = _pyplot()
    sources = list(next(iter(rows.values()))["points"])
    fig, axes = plt.subplots(len(rows), len(sources), figsize=(3.3 * len(sources), 3.5 * len(rows)), squeeze=False)
    for r, (name, row) in enumerate(rows.items()):
        centres = row["centres"].cpu()
        lo, hi = centres.min(0).values, centres.max(0).values
        pad = 0.25 * (hi - lo).max() + 0.5
        for c, source in enumerate(sources):
            ax = axes[r, c]
            points = row["points"][source].detach().cpu()
            ax.scatter(points[:, 0], points[:, 1], s=2, alpha=0.35, color="C0" if c else "0.3", rasterized=True)
            ax.scatter(centres[:, 0], centres[:, 1], marker="+", s=30, color="C3", lw=0.8)
            ax.set_xlim(float(lo[0] - pad), float(hi[0] + pad))
            ax.set_ylim(float(lo[1] - pad), float(hi[1] + pad))
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            title = (titles or {}).get(source, source)
            caption = row["captions"].get(source, "")
            ax.set_title(f"{name}: {title}" + (f"\n{caption}" if caption else ""), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
