"""Steps per second of every guide of the registry, on Pyro's engine and on the compiled one, side by side.

Model: eight schools (non-centred, posteriordb's data, 10 latent dimensions), float64. Each guide fits
``--steps`` steps with four particles a step (svgd: its 50 particles; pathfinder takes no SVI steps and is
timed whole), once per engine per repeat, the engines alternating; the median steps/s over ``--repeats`` is
printed with the compiler that built the step (``c``, ``inductor``) or why the compiled engine declined.
Compile time is not in the steps/s (it is printed apart). The last line is JSON.

    python bench/guide_steps.py
    python bench/guide_steps.py --steps 2000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import pyro
import torch

from deepprob.devices import default_dtype
from deepprob.errors import InputError
from deepprob.guides import GUIDES, build_guide
from deepprob.inference import fit_svi
from deepprob.inference.evaluation.posteriors import database, load_posterior


def one_fit(problem, name: str, engine: str, steps: int) -> dict:
    pyro.set_rng_seed(0)
    guide = build_guide(name, problem.model)
    start = time.perf_counter()
    fit = fit_svi(problem.model, guide, problem.data, steps=steps, lr=0.01, num_particles=4, engine=engine,
                  elbo_particles=0, progress=False)
    seconds = time.perf_counter() - start
    return {"steps_per_second": fit.extras.get("steps_per_second"), "by": fit.extras.get("compiled_by"),
            "compile_seconds": fit.extras.get("compile_seconds", 0.0), "seconds": seconds,
            "engine": fit.extras.get("engine")}


def main(args):
    torch.set_num_threads(1)
    out = {}
    with default_dtype(torch.float64):
        problem = load_posterior("eight_schools-eight_schools_noncentered", database(None), torch.float64)
        print(f"{'guide':<11} {'pyro steps/s':>12} {'compiled steps/s':>16} {'ratio':>6}  by / compile s", flush=True)
        for name in GUIDES:
            runs = {"pyro": [], "compiled": []}
            declined = None
            for _ in range(args.repeats):
                for engine in ("pyro", "compiled"):
                    if engine == "compiled" and declined:
                        continue
                    try:
                        runs[engine].append(one_fit(problem, name, engine, args.steps))
                    except InputError as err:
                        declined = str(err).split("not possible here, ")[-1]
            if name == "pathfinder":
                seconds = statistics.median(r["seconds"] for r in runs["pyro"])
                out[name] = {"seconds": seconds}
                print(f"{name:<11} {'(no SVI steps: ' + format(seconds, '.3f') + ' s a fit)':>36}", flush=True)
                continue
            pyro_rate = statistics.median(r["steps_per_second"] for r in runs["pyro"])
            row = {"pyro": pyro_rate}
            if runs["compiled"]:
                rate = statistics.median(r["steps_per_second"] for r in runs["compiled"])
                by, compile_s = runs["compiled"][0]["by"], runs["compiled"][0]["compile_seconds"]
                row.update(compiled=rate, by=by, compile_seconds=compile_s)
                print(f"{name:<11} {pyro_rate:12.0f} {rate:16.0f} {rate / pyro_rate:6.1f}  {by} / {compile_s:.1f}",
                      flush=True)
            else:
                row["declined"] = declined
                print(f"{name:<11} {pyro_rate:12.0f} {'-':>16} {'-':>6}  declined: {declined[:90]}", flush=True)
            out[name] = row
    print(json.dumps(out))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    main(parser.parse_args())
