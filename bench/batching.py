"""What a model gains by broadcasting: the same model written as users write it (``x @ beta``, ``a[g]``, ``h[t]``,
run by ``torch.func.vmap`` over the draws, or one draw at a time) and written to broadcast over a leading dim of
draws (one pass for all draws), timed side by side in one run.

    python bench/batching.py [--repeats 3]

Per model of ``tests/corpus`` that has both forms: seconds for 2,000 draws put through the model (what
``to_inference_data`` and ``compare`` do) and SVI steps per second of a full-rank guide on the compiled engine
with 4 particles, for the broadcasting form, the written form (vmap) and the written form forced to a loop
(which the compiled engine declines: a trace would fix a loop model's branches, so its steps are "nan");
medians of ``--repeats`` runs, and the ratios.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from pathlib import Path

import torch

import deepprob
from deepprob.inference.evaluation.draws import draws_from_guide
from deepprob.logdensity import ModelStructure

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "corpus"
MODELS = ["hierarchical_logistic", "negative_binomial_offset", "stochastic_volatility", "gaussian_process",
          "radon_varying_slopes"]


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, CORPUS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def as_loop(model, data):
    """The written model, its structure forced to run draw by draw in a Python loop."""
    structure = ModelStructure.of(model, data)
    structure._probe = {**structure._probe, "how": "loop"}
    return structure


def timings(model, data, repeats: int) -> tuple[float, float]:
    """(seconds for 2,000 draws, compiled SVI steps per second: NaN where the compiled engine declines, a model
    run by a loop)."""
    loop = ModelStructure.of(model, data).batching == "loop"
    engine = "pyro" if loop else "compiled"
    fit = deepprob.fit(model, data, guide="fullrank", steps=2000 if not loop else 50, num_particles=4, engine=engine,
                       elbo_particles=0, progress=False)
    draw_seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        draws_from_guide(model, fit.guide, data, num_samples=2000)
        draw_seconds.append(time.perf_counter() - start)
    if loop:
        return statistics.median(draw_seconds), float("nan")
    steps = [deepprob.fit(model, data, guide="fullrank", steps=2000, num_particles=4, engine="compiled",
                          elbo_particles=0, progress=False).extras["steps_per_second"] for _ in range(repeats)]
    return statistics.median(draw_seconds), statistics.median(steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    print(f"{'model':<26} {'form':<13} {'2000 draws, s':>13} {'steps/s':>9} {'draws ratio':>11} {'steps ratio':>11}")
    for name in MODELS:
        module = load(name)
        data = module.data()
        rows = {"broadcasting": timings(module.broadcasting, data, args.repeats),
                ModelStructure.of(module.model, data).batching: timings(module.model, data, args.repeats)}
        saved = ModelStructure.of(module.model, data)._probe
        as_loop(module.model, data)
        rows["loop"] = timings(module.model, data, args.repeats)
        ModelStructure.of(module.model, data)._probe = saved
        base_draws, base_steps = rows["broadcasting"]
        for form, (draw_s, steps) in rows.items():
            print(f"{name:<26} {form:<13} {draw_s:13.3f} {steps:9.0f} {draw_s / base_draws:11.2f} "
                  f"{base_steps / steps:11.2f}", flush=True)


if __name__ == "__main__":
    main()
