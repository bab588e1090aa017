"""The figures of a :class:`~deepprob.inference.evaluation.compare.Comparison`: forest plot, pair plots, ELBO traces.

All are drawn from the compared quantities (draws x scalars, labelled ``name[i]``): in reference units
(x - reference mean) / reference sd where there is a reference, so that quantities of very different
scales read on one axis, the reference spans about -2..2 and a guide's offset and width read off
directly. Where there are many scalars, the figures show those on which the guides are furthest from
the reference (or, without one, the most uncertain).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from deepprob.inference.evaluation.arviz_data import az
from deepprob.plots import drawn, new_figure, save

FOREST_SCALARS = 16  # at most this many scalars in the forest plot
PAIR_SCALARS = 3     # ... and in each pair plot
FOREST_RANGE = 6.0   # the forest plot's axis is cut at this many reference sds either side


def _chosen(comparison, labels: list[str], k: int) -> list[str]:
    """The k labels where the guides' worst error is largest (the most uncertain without a reference), in order."""
    if len(labels) <= k:
        return labels
    if comparison.reference is not None:
        score = {label: max([0.0] + [max(row.get("mean_err_sd_each", {}).get(label, 0.0),
                                         row.get("sd_err_sd_each", {}).get(label, 0.0))
                                     for row in comparison.rows.values()]) for label in labels}
    else:
        values, own = next(iter(comparison.runs.values())).compared
        sds = dict(zip(own, values.std(0).tolist()))
        score = {label: sds.get(label, 0.0) for label in labels}
    top = set(sorted(labels, key=lambda label: -score[label])[:k])
    return [label for label in labels if label in top]


def _dataset(values: torch.Tensor, own: list[str], labels: list[str], chains: int, centre=None, scale=None):
    index = {label: i for i, label in enumerate(own)}
    data = {}
    for label in labels:
        column = values[:, index[label]].double()
        if centre is not None:
            column = (column - centre[label]) / scale[label]
        data[label] = column.reshape(chains, -1).cpu().numpy()
    return az.from_dict(posterior=data)


def comparison_figures(comparison, out: Path, name: str) -> list[Path]:
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    runs, reference = comparison.runs, comparison.reference
    paths = []
    if reference is not None and reference.stats.get("compared"):
        labels = reference.stats["compared"]
    elif runs:
        labels = next(iter(runs.values())).compared[1]
    else:
        labels = []
    centre = scale = None
    if reference is not None and labels:
        ref_values, ref_own = reference.compared
        index = {label: i for i, label in enumerate(ref_own)}
        centre = {label: float(ref_values[:, index[label]].mean()) for label in labels}
        scale = {label: max(float(ref_values[:, index[label]].std()), 1e-12) for label in labels}
    fits = ([("reference", reference.compared, reference.stats.get("chains", 1))] if reference is not None else [])
    fits += [(guide, run.compared, 1) for guide, run in runs.items()]
    fits = [(guide, compared, chains) for guide, compared, chains in fits if set(labels) <= set(compared[1])]
    display = {"reference": f"reference ({comparison.settings.reference})"}

    if labels and fits:
        paths.append(drawn(f"{name}_forest.png", lambda: _forest(comparison, out, name, labels, fits, centre, scale,
                                                                 display)))

    if reference is not None and labels and len(fits) > 1:
        shown = _chosen(comparison, labels, PAIR_SCALARS)
        ref_data = _dataset(reference.compared[0], reference.compared[1], shown, reference.stats.get("chains", 1))
        for guide, run in runs.items():
            if set(shown) <= set(run.compared[1]):
                path = out / f"{name}_pair_{guide}.png"
                paths.append(drawn(path.name, lambda path=path, run=run, guide=guide: _pair_plot(
                    path, ref_data, _dataset(run.compared[0], run.compared[1], shown, 1), shown,
                    display["reference"], guide)))

    fitted = {guide: run for guide, run in runs.items() if len(run.fit.losses)}  # not NUTS's row
    if fitted:
        paths.append(drawn(f"{name}_elbo.png", lambda: _elbo_traces(out / f"{name}_elbo.png", name, fitted)))
    plt.close("all")
    return [path for path in paths if path is not None]


def _forest(comparison, out: Path, name: str, labels: list[str], fits: list, centre, scale, display) -> Path:
    shown = _chosen(comparison, labels, FOREST_SCALARS)
    datasets = [_dataset(values, own, shown, chains, centre, scale) for _, (values, own), chains in fits]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        axes = az.plot_forest(datasets, model_names=[display.get(g, g) for g, _, _ in fits], var_names=shown,
                              combined=True, hdi_prob=0.94,
                              figsize=(7, 1.5 + 0.3 * len(fits) * len(shown)))
    ax = np.ravel(axes)[0]
    ax.set_title(f"{name}: 94% intervals" + (" in reference sds" if centre is not None else "")
                 + (f" ({len(shown)} of {len(labels)} scalars, the furthest)" if len(shown) < len(labels) else ""),
                 fontsize=10)
    if centre is not None:
        ax.axvline(0, color="k", lw=0.5)
        ax.set_xlabel("(value - reference mean) / reference sd")
        low, high = ax.get_xlim()
        if low < -FOREST_RANGE or high > FOREST_RANGE:  # a fit far off would squeeze the others to a line
            ax.set_xlim(max(low, -FOREST_RANGE), min(high, FOREST_RANGE))
            ax.set_xlabel(f"(value - reference mean) / reference sd (axis cut at +-{FOREST_RANGE:g})")
    return save(ax.figure, out / f"{name}_forest.png")


def _thin(data, points: int = 600):
    """About ``points`` draws of a cloud: enough to see a shape, few enough to see through."""
    sizes = data.posterior.sizes
    return data.isel(draw=slice(None, None, max(1, sizes["draw"] * sizes["chain"] // points)))


def _pair_plot(path: Path, ref_data, guide_data, labels: list[str], ref_name: str, guide: str) -> Path:
    import matplotlib.lines as mlines

    size = 2.2 * len(labels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        axes = az.plot_pair(_thin(ref_data), var_names=labels, kind="scatter", marginals=True, figsize=(size, size),
                            textsize=9, scatter_kwargs={"color": "k", "alpha": 0.3, "s": 4},
                            marginal_kwargs={"color": "k"})
        az.plot_pair(_thin(guide_data), var_names=labels, kind="scatter", marginals=True, ax=axes, textsize=9,
                     scatter_kwargs={"color": "C1", "alpha": 0.3, "s": 4}, marginal_kwargs={"color": "C1"})
    fig = np.ravel(axes)[0].figure
    fig.legend(handles=[mlines.Line2D([], [], color="k", marker="o", ls="", label=ref_name),
                        mlines.Line2D([], [], color="C1", marker="o", ls="", label=guide)],
               loc="upper right", fontsize=10)
    return save(fig, path)


def _elbo_traces(path: Path, name: str, runs: dict) -> Path:
    fig, axes = new_figure(size=(7, 4.5))
    ax = axes[0, 0]
    tails = []
    for i, (guide, run) in enumerate(runs.items()):
        elbo = -run.fit.losses
        window = max(1, len(elbo) // 50)
        smooth = np.convolve(elbo, np.ones(window) / window, mode="valid")
        objective = ", MAP objective" if guide == "laplace" else ""
        ax.plot(np.arange(len(smooth)) + window // 2, smooth, color=f"C{i}", lw=1,
                ls="--" if guide == "laplace" else "-", label=f"{guide} (final {run.row['elbo']:.1f}){objective}")
        tails.append(smooth[len(smooth) // 5:])
    finite = [t[np.isfinite(t)] for t in tails if np.isfinite(t).any()]
    if finite:
        low = min(np.quantile(t, 0.02) for t in finite)
        high = max(np.max(t) for t in finite)
        ax.set_ylim(low - 0.05 * (high - low + 1), high + 0.05 * (high - low + 1))
    ax.set(title=f"{name}: ELBO estimates during the fits (moving average)", xlabel="step", ylabel="ELBO")
    ax.legend(fontsize=8)
    return save(fig, path)
