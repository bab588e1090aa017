"""The scoreboard's heat map: the worst mean and sd errors of every method on every posterior."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepprob.plots import new_figure, save

CAP = 1.0  # colours saturate at one reference sd


def heat_map(board, out: Path) -> Path:
    entries = board.entries()
    posteriors = list(entries)
    methods = list(dict.fromkeys(m for methods in entries.values() for m in methods))
    fig, axes = new_figure(ncols=2, size=(0.9 * len(methods) + 3.5, 0.45 * len(posteriors) + 1.8))
    for ax, key, title in zip(axes[0], ("mean_err_sd", "sd_err_sd"), ("worst mean error", "worst sd error")):
        values = np.array([[_value(entries[p].get(m, {}).get(key)) for m in methods] for p in posteriors])
        image = ax.imshow(np.minimum(values, CAP), cmap="RdYlGn_r", vmin=0, vmax=CAP, aspect="auto")
        for i in range(len(posteriors)):
            for j in range(len(methods)):
                v = values[i, j]
                text = "-" if np.isnan(v) else (f"{v:.2f}" if v < 10 else f"{v:.0f}")
                ax.text(j, i, text, ha="center", va="center", fontsize=7,
                        color="black" if np.isnan(v) or v < 0.75 * CAP else "white")
        ax.set_xticks(range(len(methods)), methods, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(posteriors)), posteriors if ax is axes[0, 0] else [], fontsize=8)
        ax.set_title(f"{title} (reference sds)", fontsize=10)
    # beside the right panel only: a colour bar taken from both axes is laid over them by tight_layout
    fig.colorbar(image, ax=axes[0, 1], shrink=0.8, label=f"reference sds (capped at {CAP:g})")
    return save(fig, out / "scoreboard.png")


def _value(v) -> float:
    return np.nan if v is None else float(v)
