"""``guide="auto"`` against the converged NUTS reference, side by side, on every posteriordb posterior with a
translated model: the family the ladder chose, its verdict, its true errors against posteriordb's gold-standard draws
(worst mean and sd errors in reference sds, of the draws it stands by: the PSIS-corrected ones where the verdict is
"corrected"), and the wall time of ``deepprob.fit(model, data, guide="auto")`` against that of
:func:`~deepprob.inference.evaluation.nuts.run_nuts` run until it converges (R-hat < 1.01, bulk and tail ESS >= 400, no
divergence: the reference ``compare`` makes), in one process, one thread each, one after the other.

    python bench/auto_vs_nuts.py [--posteriordb DIR] [--posteriors a,b]

One line per posterior, then the summary (trusted, trusted and accurate, faster than NUTS, median time ratio); the
last line is a JSON object with every row.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import pyro
import torch
from nuts_reference import measure, posteriors_asked

import deepprob
from deepprob.devices import default_dtype
from deepprob.inference.evaluation.diagnostics import moment_errors
from deepprob.inference.evaluation.draws import draws_from_guide
from deepprob.inference.evaluation.nuts import NUTSBudget
from deepprob.inference.evaluation.posteriors import load_posterior
from deepprob.inference.evaluation.references import given_draws
from deepprob.inference.fitting.settings import compare_settings
from deepprob.logdensity import ModelStructure
from deepprob.names import flatten

ACCURATE = 0.2  # the trust issue's "accurate": worst mean and sd errors at most this many reference sds


def auto_row(problem, seed: int) -> dict:
    """``deepprob.fit(guide="auto")`` timed, and its draws measured against the reference draws."""
    pyro.set_rng_seed(seed)
    start = time.perf_counter()
    fit = deepprob.fit(problem.model, problem.data, guide="auto", settings=compare_settings("laplace").replace(
        progress=False))
    seconds = time.perf_counter() - start
    draws = draws_from_guide(problem.model, fit.guide, problem.data, num_samples=2000).sites()
    reference, _ = given_draws(problem.draws, ModelStructure.of(problem.model, problem.data))
    if problem.reference_latents is not None:
        reference = {k: v for k, v in reference.items() if k in draws}
    ref_values, labels = flatten(reference)
    values, own = flatten({k: draws[k] for k in reference})
    assert own == labels
    mean_err, sd_err = moment_errors(values, ref_values)
    auto = fit.extras["auto"]
    return {"family": auto["family"], "trust": auto["trust"], "seconds": round(seconds, 2),
            "tried": [f"{t['guide']}:{t['trust']}" for t in auto["tried"]],
            "mean_err": round(float(mean_err.max()), 3), "sd_err": round(float(sd_err.max()), 3)}


def main(argv=None) -> int:
    db, names, seed = posteriors_asked(__doc__, argv)
    rows = []
    with default_dtype(torch.float64):
        for name in names:
            problem = load_posterior(name, db, torch.float64)
            auto = auto_row(problem, seed)
            nuts = measure(name, problem.model, problem.data, problem.draws, NUTSBudget(), seed)
            row = {"posterior": name, **auto, "nuts_seconds": nuts["seconds"], "nuts_converged": nuts["converged"],
                   "ratio": round(nuts["seconds"] / auto["seconds"], 2)}
            rows.append(row)
            accurate = max(row["mean_err"], row["sd_err"]) <= ACCURATE
            print(f"{name:<42} auto -> {row['family']:<9} {row['trust']:<9} mean err {row['mean_err']:.3f} sd err "
                  f"{row['sd_err']:.3f} {'accurate' if accurate else 'NOT ACCURATE'}  {row['seconds']:6.1f} s   NUTS "
                  f"{row['nuts_seconds']:6.1f} s{'' if row['nuts_converged'] else ' (not converged)'}   "
                  f"NUTS/auto {row['ratio']:.1f}x   ({', '.join(row['tried'])})", flush=True)
    trusted = [r for r in rows if r["trust"] in ("yes", "corrected")]
    good = [r for r in trusted if max(r["mean_err"], r["sd_err"]) <= ACCURATE]
    faster = [r for r in trusted if r["seconds"] < r["nuts_seconds"]]
    print(f"auto trusted on {len(trusted)}/{len(rows)} posteriors, {len(good)} of them accurate (both errors <= "
          f"{ACCURATE}), {len(faster)} in less time than converged NUTS; median NUTS/auto time ratio "
          f"{statistics.median(r['ratio'] for r in rows):.1f}x; auto {sum(r['seconds'] for r in rows):.0f} s, NUTS "
          f"{sum(r['nuts_seconds'] for r in rows):.0f} s in all", flush=True)
    print(json.dumps({"rows": rows, "trusted": len(trusted), "accurate": len(good), "faster": len(faster),
                      "total": len(rows)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
