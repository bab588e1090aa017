"""Figures: matplotlib without a display, saved as PNG and closed."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import matplotlib


def use_headless_backend() -> None:
    """Agg (no display), except in a notebook's kernel: there the inline backend stays, so that the figures a user
    draws beside deepprob's still show."""
    if "ipykernel" not in sys.modules:
        matplotlib.use("Agg")


use_headless_backend()
import matplotlib.pyplot as plt  # noqa: E402

from deepprob.errors import one_line  # noqa: E402


def new_figure(ncols: int = 1, nrows: int = 1, size: tuple[float, float] = (5.0, 4.0), **kwargs):
    """A figure with ``nrows x ncols`` axes, each ``size`` inches."""
    return plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False, **kwargs)


def save(fig, path: str | Path) -> Path:
    """Save ``fig`` as PNG at ``path`` (tight layout, 110 dpi) and close it."""
    import warnings

    path = Path(path)
    with warnings.catch_warnings():  # ArviZ's forest and pair plots have axes tight_layout leaves as they are
        warnings.filterwarnings("ignore", message="This figure includes Axes that are not compatible")
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def grid_2d(X, n: int = 120, pad: float = 0.25):
    """A regular n x n grid over the bounding box of ``X`` (N, 2), widened by ``pad`` of its size.

    Returns (xx, yy, points): two (n, n) numpy arrays and the (n*n, 2) float tensor of grid points.
    """
    import numpy as np
    import torch

    X = X.detach().cpu().numpy()
    lo, hi = X.min(0), X.max(0)
    lo, hi = lo - pad * (hi - lo), hi + pad * (hi - lo)
    xx, yy = np.meshgrid(np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n))
    points = torch.as_tensor(np.stack([xx.ravel(), yy.ravel()], 1), dtype=torch.float32)
    return xx, yy, points


def decision_surface(ax, xx, yy, prob, X, y, title: str = "") -> None:
    """Filled contours of p(y=1 | x) (shape of ``xx``) with the 0.5 boundary and the data coloured by label."""
    import numpy as np

    contour = ax.contourf(xx, yy, np.asarray(prob).reshape(xx.shape), levels=np.linspace(0, 1, 11), cmap="RdBu_r",
                          alpha=0.8)
    ax.contour(xx, yy, np.asarray(prob).reshape(xx.shape), levels=[0.5], colors="k", linewidths=1)
    X, y = X.detach().cpu().numpy(), y.detach().cpu().numpy()
    ax.scatter(X[:, 0], X[:, 1], c=y, cmap="RdBu_r", s=6, edgecolors="k", linewidths=0.2)
    ax.set(title=title, xlabel="x1", ylabel="x2")
    ax.figure.colorbar(contour, ax=ax, label="p(y = 1 | x)")


def drawn(what: str, draw: Callable[[], Path]) -> Path | None:
    """``draw()``, the path of the figure it saved; where it fails (a plot that cannot be made of these draws: a
    guide collapsed to a point, say) one line on stderr says which figure and why, and None is returned. Results
    are never lost to a figure."""
    try:
        return draw()
    except Exception as err:  # noqa: BLE001 - any plotting failure: the figure is skipped, the run goes on
        plt.close("all")
        print(f"deepprob: figure {what} skipped ({one_line(err, 160)})", file=sys.stderr, flush=True)
        return None
