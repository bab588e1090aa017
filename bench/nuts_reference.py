"""The NUTS reference with its default settings on the README's eight schools and on every posteriordb posterior
with a translated model: does it converge (R-hat < 1.01, bulk and tail ESS >= 400, no divergence), how far are its
draws from posteriordb's gold-standard ones (worst mean and sd errors in reference sds), and in how many seconds.

    python bench/nuts_reference.py [--posteriordb DIR] [--posteriors a,b] [--json-only]

One line per posterior, then a summary; the last line is a JSON object with every row.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from deepprob.datasets.stan_json import load_model_data
from deepprob.devices import default_dtype
from deepprob.examples.compare import load_model
from deepprob.inference.evaluation.diagnostics import moment_errors
from deepprob.inference.evaluation.draws import draws_from_latents
from deepprob.inference.evaluation.nuts import NUTSBudget, run_nuts
from deepprob.inference.evaluation.posteriors import database, load_posterior, translated
from deepprob.inference.evaluation.references import given_draws
from deepprob.logdensity import ModelStructure
from deepprob.names import flatten

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "posteriordb" / "posterior_database"
GOAL = 0.1  # worst mean and sd errors, in reference sds


def problems(db, names):
    """(name, model, data, reference draws, reference_latents) of the README's eight schools and each posterior."""
    eight = load_posterior("eight_schools-eight_schools_noncentered", db)
    model = load_model(f"{ROOT / 'examples' / 'eight_schools.py'}:model")
    data = load_model_data(ROOT / "examples" / "eight_schools.json", torch.float64)
    yield "README eight schools", model, data, eight.draws
    for name in names:
        problem = load_posterior(name, db)
        yield name, problem.model, problem.data, problem.draws


def measure(name, model, data, draws, budget: NUTSBudget, seed: int) -> dict:
    start = time.perf_counter()
    run = run_nuts(model, data, budget=budget, seed=seed, progress=False)
    seconds = time.perf_counter() - start
    ours = draws_from_latents(model, run.latents, data, chains=run.chains).sites()
    reference, _ = given_draws(draws, ModelStructure.of(model, data))
    ref_values, labels = flatten(reference)
    values, own = flatten({k: ours[k] for k in reference})
    assert own == labels
    mean_err, sd_err = moment_errors(values, ref_values)
    return {"posterior": name, "seconds": round(seconds, 1), "converged": run.converged, "problems": run.problems,
            "rhat_max": round(run.checks["rhat_max"], 4), "ess_bulk_min": round(run.checks["ess_bulk_min"]),
            "ess_tail_min": round(run.checks["ess_tail_min"]), "divergences": sum(run.divergences),
            "draws_per_chain": run.draws, "rounds": run.rounds, "gradient_evaluations": run.gradient_evaluations,
            "compiled_by": run.compiled_by, "mean_err": round(float(mean_err.max()), 3),
            "sd_err": round(float(sd_err.max()), 3)}


def posteriors_asked(description: str, argv=None):
    """(database, posterior names, seed) of the shell's --posteriordb, --posteriors and --seed; one torch thread."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posteriordb", default=str(SHARED))
    parser.add_argument("--posteriors", default=None, help="comma-separated names (default: every translated one)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    db = database(args.posteriordb)
    return db, args.posteriors.split(",") if args.posteriors else translated(db), args.seed


def main(argv=None) -> int:
    db, names, seed = posteriors_asked(__doc__, argv)
    rows = []
    with default_dtype(torch.float64):
        for name, model, data, draws in problems(db, names):
            row = measure(name, model, data, draws, NUTSBudget(), seed)
            rows.append(row)
            ok = row["converged"] and max(row["mean_err"], row["sd_err"]) <= GOAL
            print(f"{name:<42} {row['seconds']:7.1f} s  R-hat {row['rhat_max']:.4f}  ESS {row['ess_bulk_min']:>5}/"
                  f"{row['ess_tail_min']:<5} div {row['divergences']}  draws/chain {row['draws_per_chain']:>5}  "
                  f"mean err {row['mean_err']:.3f}  sd err {row['sd_err']:.3f}  {'ok' if ok else 'FAILS'}"
                  + (f"  ({row['problems']})" if row["problems"] else ""), flush=True)
    good = sum(r["converged"] and max(r["mean_err"], r["sd_err"]) <= GOAL for r in rows)
    print(f"{good}/{len(rows)} converged and within {GOAL} reference sds; "
          f"{sum(r['seconds'] for r in rows):.0f} s in all", flush=True)
    print(json.dumps({"rows": rows, "good": good, "total": len(rows)}))
    return 0 if good == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
