"""Pathfinder against full-rank SVI on posteriordb: the evaluations each needs for the same worst mean error.

For every posterior with a translation: single-path Pathfinder (``guide="pathfinder"``) gives a worst mean
error E (in reference sds, against posteriordb's reference draws, as ``deepprob compare`` measures it) with
G gradient and F log-density evaluations (its ELBO draws included). Full-rank SVI (four particles a step)
runs at growing budgets of steps; the first budget whose worst mean error is at most E needs
G_svi = F_svi = steps x 4 evaluations (plus its start's L-BFGS search and Hessian, counted, with the Laplace
start). Printed: both, and the ratios G_svi / G and F_svi / F, against the paper's "one to two orders of
magnitude" (Zhang et al. 2022, against ADVI, Stan's full-rank or mean-field SVI started from the prior:
``--start prior`` here; ``--start laplace``, deepprob's default, starts at the Laplace approximation, near
the optimum already). A ratio with ">" means no budget reached E. The last line is JSON.

    python bench/pathfinder_evals.py                      # both starts, every posterior (about 10 minutes)
    python bench/pathfinder_evals.py --starts prior --posteriors eight_schools-eight_schools_noncentered
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch

from deepprob.devices import default_dtype
from deepprob.guides import GuideOptions
from deepprob.inference.evaluation.compare import compare
from deepprob.inference.evaluation.posteriors import database, load_posterior, translated

BUDGETS = (30, 100, 300, 1000, 3000, 10000)
PARTICLES = 4


def worst_mean_error(problem, guide: str, steps: int, start: str, seed: int) -> tuple[float, dict]:
    result = compare(problem.model, problem.data, guides=[guide], reference=problem.draws,
                     reference_latents=problem.reference_latents, steps=steps, num_particles=PARTICLES,
                     options=GuideOptions(start=start), draws=1000, seed=seed, name=problem.name)
    row = result.rows[guide]
    if "error" in row:
        return float("inf"), row
    return row["mean_err_sd"], row


def main(args):
    db = database(args.posteriordb)
    names = args.posteriors.split(",") if args.posteriors else translated(db)
    out = {}
    for name in names:
        with default_dtype(torch.float64):
            problem = load_posterior(name, db, torch.float64)
            target, row = worst_mean_error(problem, "pathfinder", 1, "prior", args.seed)
            gradients = row["gradient_evaluations"]
            densities = row.get("density_evaluations", gradients)
            out[name] = {"pathfinder": {"mean_err_sd": target, "gradient_evaluations": gradients,
                                        "density_evaluations": densities}}
            print(f"{name}: pathfinder worst mean error {target:.3f} sds, {gradients} gradients, "
                  f"{densities} log densities", flush=True)
            for start in args.starts.split(","):
                reached = None
                for steps in BUDGETS:
                    error, svi_row = worst_mean_error(problem, "fullrank", steps, start, args.seed)
                    if error <= target:
                        reached = (steps, error, svi_row["gradient_evaluations"])
                        break
                if reached is None:
                    evals = BUDGETS[-1] * PARTICLES
                    out[name][start] = {"reached": False, "gradient_evaluations": evals,
                                        "ratio_gradients": evals / gradients, "ratio_densities": evals / densities}
                    print(f"  fullrank from {start}: not within {target:.3f} sds in {BUDGETS[-1]} steps "
                          f"(ratio > {evals / gradients:.0f} gradients, > {evals / densities:.1f} densities)",
                          flush=True)
                    continue
                steps, error, evals = reached
                out[name][start] = {"reached": True, "steps": steps, "mean_err_sd": error,
                                    "gradient_evaluations": evals, "ratio_gradients": evals / gradients,
                                    "ratio_densities": evals / densities}
                print(f"  fullrank from {start}: {error:.3f} sds at {steps} steps, {evals} gradients: ratio "
                      f"{evals / gradients:.1f} (gradients), {evals / densities:.1f} (log densities)", flush=True)
    for start in args.starts.split(","):
        ratios = [v[start]["ratio_gradients"] for v in out.values()]
        dens = [v[start]["ratio_densities"] for v in out.values()]
        print(f"from {start}: median ratio {statistics.median(ratios):.1f} (gradients), "
              f"{statistics.median(dens):.1f} (log densities) over {len(ratios)} posteriors")
    print(json.dumps(out))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posteriordb", default=None, help="posteriordb folder (default: the bundled copy)")
    parser.add_argument("--posteriors", default=None, help="comma-separated names (default: every translated one)")
    parser.add_argument("--starts", default="prior,laplace", help="SVI starts to compare (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    main(parser.parse_args())
