"""Mode coverage of the standard GAN and its remedies over several seeds, beside PacGAN's published table.

The protocol of VEEGAN (Srivastava et al. 2017) and PacGAN (Lin et al. 2018, Table 1): 2,500 generated
points; a point is high quality within 3 sigma of its nearest mode; a mode is covered with at least 20
high-quality points. Data: PacGAN's 2D-ring (8 modes on the unit circle, sigma 0.01: ``ring-pacgan``)
and 2D-grid (25 modes on {-4, -2, 0, 2, 4}^2, sigma 0.05: ``grid``). Each method trains with
``deepprob gan``'s settings for it on that data set (:func:`deepprob.adversarial.point_gan.preset`; the
grid's are longer runs with one discriminator step of batch 100), our MLPs (2 hidden layers of 128, latent
8), not the papers' larger networks (generator 4x400 with batch norm, maxout discriminator). Each
(data set, method, seed) is one run, side by side over ``--jobs`` processes. Prints a table of mean +- sd
over seeds and the published figures, then one JSON line with every run.

    python bench/mode_coverage.py                       # 5 seeds, both data sets, four methods
    python bench/mode_coverage.py --datasets grid --methods pack4 --seeds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from deepprob.adversarial.point_gan import evaluate_points, preset, train_point_gan
from deepprob.adversarial.trainer import GANConfig
from deepprob.datasets.points import POINT_SETS
from deepprob.pool import available_cores, map_forked

METHODS = {  # name -> (preset, GANConfig changes)
    "standard": ("gan", {}),
    "pack4": ("gan", {"pack": 4}),
    "unrolled5": ("unrolled", {"unrolled": 5}),
    "wgan-gp": ("wgan-gp", {"loss": "wgan-gp"}),
}
# PacGAN (Lin et al. 2018) Table 1, 10 trials: (modes, high-quality %); VEEGAN's and unrolled GAN's rows are
# VEEGAN's own paper's, as PacGAN quotes them. WGAN-GP was not in that table.
PUBLISHED = {
    "grid": {"standard": (17.3, 94.8), "pack4": (24.8, 93.6), "unrolled5": (23.6, 16.0), "veegan": (24.6, 40.0)},
    "ring-pacgan": {"standard": (6.3, 98.2), "pack4": (7.8, 95.9), "unrolled5": (7.6, 35.6), "veegan": (8.0, 52.9)},
}


def run(task: tuple[str, str, int]) -> dict:
    dataset, method, seed = task
    torch.set_num_threads(1)
    cloud = POINT_SETS[dataset](seed=seed)
    base, changes = METHODS[method]
    settings = preset(base, dataset)
    iterations = settings.pop("iterations")
    fit = train_point_gan(cloud, GANConfig(**{**settings, **changes}), iterations, seed=seed, progress=False)
    metrics = evaluate_points(cloud, fit["trainer"].generate(2500).cpu())
    return {"dataset": dataset, "method": method, "seed": seed, "iterations": iterations,
            "modes": metrics["modes_covered"], "num_modes": metrics["num_modes"],
            "high_quality": metrics["high_quality_fraction"], "seconds": round(fit["seconds"], 1)}


def mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {sd:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="ring-pacgan,grid")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=0, help="processes (0: one per core)")
    args = parser.parse_args()
    datasets, methods = args.datasets.split(","), args.methods.split(",")
    # the slowest first (unrolled), so that the processes finish together
    tasks = [(d, m, s) for m in sorted(methods, key=lambda m: m != "unrolled5") for d in datasets
             for s in range(args.seeds)]
    start = time.perf_counter()
    results = map_forked(run, tasks, args.jobs or available_cores())
    print(f"{len(tasks)} runs in {time.perf_counter() - start:.0f} s; mean ± sd over {args.seeds} seeds "
          "(published: PacGAN Table 1, mean of 10 trials)")
    print(f"{'data':<12}{'method':<11}{'iterations':>11}{'modes':>16}{'high quality %':>17}{'published':>18}")
    for dataset in datasets:
        for method in methods:
            rows = [r for r in results if r["dataset"] == dataset and r["method"] == method]
            published = PUBLISHED.get(dataset, {}).get(method)
            text = f"{published[0]} / {published[1]}%" if published else "-"
            print(f"{dataset:<12}{method:<11}{rows[0]['iterations']:>11}"
                  f"{mean_sd([r['modes'] for r in rows]) + ' /' + str(rows[0]['num_modes']):>16}"
                  f"{mean_sd([100 * r['high_quality'] for r in rows]):>17}{text:>18}")
    print(json.dumps({"runs": results}))


if __name__ == "__main__":
    main()
