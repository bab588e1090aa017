"""Discriminators learn density ratios: train a classifier between data (label 1) and points drawn
uniformly from a box around them (label 0, density u known), then read the data density off it as
p(x) ~ u(x) D(x) / (1 - D(x)).

The default data are 10,000 draws from a correlated 2-D Normal (mean (1, 2), covariance
[[2, 1.2], [1.2, 1]]), whose true density gives the error of the recovered one on a grid: mean absolute
error (mae) and total variation (tv). The normalising constant of the recovered density over the box
(integral) should be close to 1 whatever the data. Figure: ratio.png (learnt against true density).

  deepprob ratio
  deepprob ratio --data points.csv          # any 2-D CSV (two numeric columns, optional header)
"""

from __future__ import annotations

import argparse

import torch


def main(args: argparse.Namespace) -> dict:
    from deepprob.adversarial.ratio import RatioDensity, UniformBox, evaluate_on_grid, fit_ratio
    from deepprob.datasets.points import correlated_gaussian, read_numeric_csv

    hidden = args.hidden
    if args.data is None:
        cloud = correlated_gaussian(n=args.n, seed=args.seed)
        data, truth, name = cloud.points, cloud.dist.log_prob, "correlated Normal"
    else:
        data, truth, name = read_numeric_csv(args.data, "--data"), None, args.data
    reference = UniformBox.around(data, args.margin)
    model = RatioDensity(reference, hidden).to(args.device)
    losses = fit_ratio(
        model,
        data.to(args.device),
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        progress=not args.quiet,
    )
    grid = evaluate_on_grid(model, args.resolution, truth, device=args.device)
    figure = plot(grid, data, args.out / "ratio.png")
    metrics = {
        "integral": grid["integral"],
        "mae": grid.get("mae"),
        "tv": grid.get("tv"),
        "max_true_density": float(grid["truth"].max()) if truth is not None else None,
        "final_loss": losses[-1],
        "num_points": len(data),
        "box": {"low": reference.low.tolist(), "high": reference.high.tolist()},
        "figure": str(figure),
    }
    if not (args.json or args.quiet):
        print(
            f"data: {name}, {len(data)} points; reference: uniform on the box "
            f"{[round(v, 2) for v in reference.low.tolist()]} .. {[round(v, 2) for v in reference.high.tolist()]}"
        )
        print(f"  integral of the recovered density over the box: {grid['integral']:.4f} (should be ~1)")
        if truth is not None:
            print(
                f"  against the true density on a {args.resolution}x{args.resolution} grid: "
                f"MAE {grid['mae']:.5f} (peak density {metrics['max_true_density']:.3f}), TV {grid['tv']:.4f}"
            )
        print(f"  figure: {figure}")
    return metrics


def plot(grid: dict, data: torch.Tensor, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("learnt: u(x) D/(1-D)", grid["density"])]
    if "truth" in grid:
        panels.append(("true density", grid["truth"]))
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(4.2 * (len(panels) + 1), 3.8), squeeze=False)
    extent = [float(grid["x"][0]), float(grid["x"][-1]), float(grid["y"][0]), float(grid["y"][-1])]
    vmax = max(float(d.max()) for _, d in panels)
    for ax, (title, density) in zip(axes[0], panels):
        image = ax.imshow(
            density.numpy(), origin="lower", extent=extent, aspect="auto", vmin=0, vmax=vmax, cmap="viridis"
        )
        ax.set_title(title)
        fig.colorbar(image, ax=ax, fraction=0.046)
    ax = axes[0, -1]
    shown = data[torch.randperm(len(data))[:2000]]
    ax.scatter(shown[:, 0], shown[:, 1], s=2, alpha=0.4, color="0.3", label="data")
    reference = grid.get("truth", grid["density"])
    levels = [f * float(reference.max()) for f in (0.05, 0.25, 0.5, 0.75)]  # explicit: no level at 0
    if "truth" in grid:
        ax.contour(grid["x"], grid["y"], grid["truth"].numpy(), levels, colors="C1", linewidths=1.5)
    ax.contour(grid["x"], grid["y"], grid["density"].numpy(), levels, colors="C0", linewidths=1.5, linestyles="--")
    ax.set_title("contours: learnt (dashed), true (solid)" if "truth" in grid else "data and learnt contours")
    ax.set_xlim(extent[:2])
    ax.set_ylim(extent[2:])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
