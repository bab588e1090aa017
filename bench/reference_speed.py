"""Effective draws per second of the NUTS reference, side by side: ours (multinomial NUTS on the compiled log
density, :mod:`deepprob.inference.evaluation.nuts`), Pyro's NUTS and NumPyro's NUTS, on the README's eight schools
and three posteriordb posteriors (arK, kidiq, diamonds).

    python bench/reference_speed.py [--posteriordb DIR] [--cases a,b] [--repeats R] [--no-pyro]

Effective draws per second: the smallest bulk ESS over the latent scalars (ArviZ's), over the run's wall time.
Ours and NumPyro's: 4 chains one after another, 1,000 warmup steps and 1,000 draws each, one thread, float64; the
median of ``--repeats`` runs with seeds 0, 1, ... NumPyro's first run compiles its sampler: that run is printed,
and left out of its median (NumPyro's best case); its warm runs stop once they have taken 300 s. Ours counts its
start (the mode and curvature) and its compile in every run. Pyro's: one run of one chain of 500 warmup steps and
500 draws (its steps are ~20x dearer; ESS/s does not depend much on the number of draws), stopped at 120 s. The
last line is a JSON object with every row and ``ratio_vs_numpyro``, the median over the cases of ours / NumPyro's
effective draws per second.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from deepprob.datasets.stan_json import load_model_data
from deepprob.devices import default_dtype
from deepprob.examples.compare import load_model
from deepprob.inference.evaluation.nuts import NUTSBudget, run_nuts
from deepprob.inference.evaluation.posteriors import database, load_posterior

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "posteriordb" / "posterior_database"
CASES = {"eight_schools": None, "arK": "arK-arK", "kidiq": "kidiq-kidscore_momiq", "diamonds": "diamonds-diamonds"}
CHAINS, WARMUP, DRAWS = 4, 1000, 1000
PYRO_SECONDS = 120.0  # Pyro's run is stopped here (diamonds: 239 of 1,000 iterations in 300 s); its ESS/s is then null
NUMPYRO_SECONDS = 300.0  # NumPyro's warm runs stop once they have taken this long (diamonds: minutes each)


class _OutOfTime(Exception):
    pass


def min_bulk_ess(by_chain: dict[str, np.ndarray]) -> float:
    """The smallest bulk ESS over every scalar of the sites' draws, each (chains, draws, *shape)."""
    return min(float(np.min(az.ess(np.asarray(v, dtype=np.float64).reshape(v.shape[:2] + (-1,))[..., i])))
               for v in by_chain.values() for i in range(int(np.prod(v.shape[2:], dtype=int))))


# --- the same models in NumPyro -----------------------------------------------------------------------------------

def numpyro_model(case: str):
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as nd
    from numpyro.distributions import constraints

    def eight_schools(d):
        mu = numpyro.sample("mu", nd.Normal(0.0, 5.0))
        tau = numpyro.sample("tau", nd.HalfCauchy(5.0))
        with numpyro.plate("schools", len(d["y"])):
            theta_trans = numpyro.sample("theta_trans", nd.Normal(0.0, 1.0))
            numpyro.sample("y", nd.Normal(mu + tau * theta_trans, d["sigma"]), obs=d["y"])

    def arK(d):
        y, K, T = d["y"], int(d["K"]), int(d["T"])
        lags = jnp.stack([y[K - k:T - k] for k in range(1, K + 1)], 1)
        alpha = numpyro.sample("alpha", nd.Normal(0.0, 10.0))
        beta = numpyro.sample("beta", nd.Normal(jnp.zeros(K), 10.0).to_event(1))
        sigma = numpyro.sample("sigma", nd.HalfCauchy(2.5))
        with numpyro.plate("data", T - K):
            numpyro.sample("y", nd.Normal(alpha + lags @ beta, sigma), obs=y[K:])

    def kidiq(d):
        beta = numpyro.sample("beta", nd.ImproperUniform(constraints.real, (), (2,)))
        sigma = numpyro.sample("sigma", nd.HalfCauchy(2.5))
        with numpyro.plate("data", len(d["kid_score"])):
            numpyro.sample("kid_score", nd.Normal(beta[0] + beta[1] * d["mom_iq"], sigma), obs=d["kid_score"])

    def diamonds(d):
        X, Y = d["X"], d["Y"]
        means = X[:, 1:].mean(0)
        Xc = X[:, 1:] - means
        b = numpyro.sample("b", nd.Normal(jnp.zeros(Xc.shape[1]), 1.0).to_event(1))
        intercept = numpyro.sample("Intercept", nd.StudentT(3.0, 8.0, 10.0))
        sigma = numpyro.sample("sigma", nd.FoldedDistribution(nd.StudentT(3.0, 0.0, 10.0)))
        with numpyro.plate("data", len(Y)):
            numpyro.sample("Y", nd.Normal(intercept + Xc @ b, sigma), obs=Y)

    return {"eight_schools": eight_schools, "arK": arK, "kidiq": kidiq, "diamonds": diamonds}[case]


def time_numpyro(case: str, data: dict, repeats: int) -> tuple[list[float], float]:
    """(ESS/s of each warm run, ESS/s of the first run, which compiles)."""
    import jax
    from numpyro.infer import MCMC, NUTS

    jdata = {k: (np.asarray(v) if torch.is_tensor(v) else v) for k, v in data.items()}
    mcmc = MCMC(NUTS(numpyro_model(case)), num_warmup=WARMUP, num_samples=DRAWS, num_chains=CHAINS,
                chain_method="sequential", progress_bar=False)
    rates, spent = [], 0.0
    for seed in range(repeats + 1):
        began = time.perf_counter()
        mcmc.run(jax.random.PRNGKey(seed), jdata)
        samples = jax.block_until_ready(mcmc.get_samples(group_by_chain=True))
        seconds = time.perf_counter() - began
        rates.append(min_bulk_ess({k: np.asarray(v) for k, v in samples.items()}) / seconds)
        spent += seconds if seed else 0.0
        if spent > NUMPYRO_SECONDS:
            break
    return rates[1:], rates[0]


def time_ours(model, data, repeats: int) -> tuple[list[float], list[float]]:
    """(ESS/s, seconds) of each run."""
    rates, seconds = [], []
    budget = NUTSBudget(chains=CHAINS, warmup=WARMUP, samples=DRAWS, until_converged=False)
    for seed in range(repeats):
        began = time.perf_counter()
        run = run_nuts(model, data, budget=budget, seed=seed, progress=False)
        seconds.append(time.perf_counter() - began)
        by_chain = {k: v.reshape((CHAINS, -1) + v.shape[1:]).numpy() for k, v in run.latents.items()}
        rates.append(min_bulk_ess(by_chain) / seconds[-1])
    return rates, seconds


def time_pyro(model, data) -> tuple[float | None, str]:
    """(ESS/s or None, a note) of Pyro's NUTS, stopped at PYRO_SECONDS."""
    import pyro
    from pyro.infer import MCMC, NUTS

    from deepprob.logdensity import init_uniform

    pyro.set_rng_seed(0)
    began = time.perf_counter()
    done = 0

    def on_time(kernel, params, stage, i):
        nonlocal done
        done += 1
        if time.perf_counter() - began > PYRO_SECONDS:
            raise _OutOfTime

    # max_plate_nesting given: Pyro would guess it from a run of the model that samples flat priors (kidiq's)
    kernel = NUTS(model, init_strategy=init_uniform, max_plate_nesting=1)
    mcmc = MCMC(kernel, warmup_steps=WARMUP // 2, num_samples=DRAWS // 2, disable_progbar=True, hook_fn=on_time)
    try:
        mcmc.run(data)
    except _OutOfTime:
        return None, f"stopped at {PYRO_SECONDS:.0f} s after {done} of {WARMUP // 2 + DRAWS // 2} iterations"
    seconds = time.perf_counter() - began
    samples = {k: v.unsqueeze(0).numpy() for k, v in mcmc.get_samples().items()}
    return min_bulk_ess(samples) / seconds, ""


def load_case(case: str, db):
    if CASES[case] is None:
        return (load_model(f"{ROOT / 'examples' / 'eight_schools.py'}:model"),
                load_model_data(ROOT / "examples" / "eight_schools.json", torch.float64))
    problem = load_posterior(CASES[case], db)
    return problem.model, problem.data


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posteriordb", default=str(SHARED))
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-pyro", action="store_true", help="leave Pyro's NUTS out (its runs take minutes)")
    args = parser.parse_args(argv)
    cases = args.cases.split(",")
    unknown = [c for c in cases if c not in CASES]
    if unknown or args.repeats < 1:
        print(f"--cases {args.cases!r} / --repeats {args.repeats}: expected cases of {', '.join(CASES)} and at least "
              "one repeat", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    import jax

    jax.config.update("jax_enable_x64", True)
    db = database(args.posteriordb)
    rows = {}
    print(f"effective draws per second (min bulk ESS / wall s), 1 thread, float64; ours and NumPyro: {CHAINS} chains "
          f"x ({WARMUP} warmup + {DRAWS} draws), median of {args.repeats}; Pyro: 1 chain x ({WARMUP // 2} + "
          f"{DRAWS // 2}), stopped at {PYRO_SECONDS:.0f} s")
    print(f"{'case':<15}{'ours':>9}{'(s)':>7}{'numpyro':>9}{'(1st)':>8}{'pyro':>8}{'ours/numpyro':>14}{'ours/pyro':>11}",
          flush=True)
    with default_dtype(torch.float64):
        for case in cases:
            model, data = load_case(case, db)
            ours, seconds = time_ours(model, data, args.repeats)
            numpyro_rates, numpyro_first = time_numpyro(case, data, args.repeats)
            pyro_rate, pyro_note = (None, "not run") if args.no_pyro else time_pyro(model, data)
            row = {"ours": statistics.median(ours), "ours_seconds": statistics.median(seconds),
                   "numpyro": statistics.median(numpyro_rates), "numpyro_first_run": numpyro_first, "pyro": pyro_rate,
                   "pyro_note": pyro_note}
            row["ratio_vs_numpyro"] = row["ours"] / row["numpyro"]
            row["ratio_vs_pyro"] = None if pyro_rate is None else row["ours"] / pyro_rate
            rows[case] = row
            print(f"{case:<15}{row['ours']:>9.0f}{row['ours_seconds']:>7.1f}{row['numpyro']:>9.0f}{numpyro_first:>8.0f}"
                  f"{'-' if pyro_rate is None else f'{pyro_rate:.0f}':>8}{row['ratio_vs_numpyro']:>13.2f}x"
                  f"{'-' if pyro_rate is None else format(row['ratio_vs_pyro'], '.1f') + 'x':>11}  {pyro_note}",
                  flush=True)
    ratio = statistics.median(r["ratio_vs_numpyro"] for r in rows.values())
    print(json.dumps({"cases": rows, "ratio_vs_numpyro": round(ratio, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
