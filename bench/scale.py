"""SVI as the data grows: logistic regression with 10 features on N = 10^3 .. 10^6 synthetic rows.

For each N, side by side in one run, steps per second of

- full batch: the engine ``fit_svi(engine="auto")`` picks (``auto``), Pyro's engine (``pyro``), NumPyro's
  SVI with ``jax.jit(svi.update)`` (``numpyro``, where installed: ``pip install -e ".[bench]"``);
- minibatch, B = ``--batch-size`` rows a step (the data plate subsamples, ``LogisticRegression(batch_size=B)``):
  ours (``auto``), Pyro's engine, NumPyro (its plate's ``subsample_size``);

the mean-field guide, one particle, one CPU thread each (XLA's too), medians of ``--repeats`` fits. Each N
runs in a fresh process, whose peak resident memory is reported (the data, in float32, is 44 MB at 10^6
rows). Then the accuracy of a minibatch fit at N = ``--accuracy-rows``: the largest errors of its means and
sds, in posterior sds, against NUTS (4 chains of 500 draws) and against the full data's Laplace
approximation, beside the full-batch fit's. The last line is JSON.

    python bench/scale.py
    python bench/scale.py --rows 1000,10000 --repeats 1     # quick
    python bench/scale.py --rows 1000000 --write-csv big.csv    # the CSV of the README's 10^6-row run:
    deepprob logreg --data big.csv --target y --batch-size 1024 --guide meanfield
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

FEATURES = 10


def synthetic(n: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, FEATURES)).astype(np.float32)
    w = rng.standard_normal(FEATURES) * 0.5
    y = (rng.random(n) < 1 / (1 + np.exp(-(X @ w + 0.3)))).astype(np.float32)
    return X, y


def torch_problem(n: int, batch_size: int | None, device: str = "cpu"):
    import torch

    from deepprob.models.logreg import LogisticRegression, with_bias
    from deepprob.models.standardise import Standardisation

    X, y = (torch.from_numpy(a).to(device) for a in synthetic(n))
    X1 = with_bias(X)
    st = Standardisation.of(X1)
    return LogisticRegression(st, batch_size=batch_size), (st.features(X1), y)


def time_ours(n, batch_size, engine, steps, device="cpu"):
    import pyro

    from deepprob.guides.registry import build_guide
    from deepprob.inference.fitting.svi import fit_svi

    model, args = torch_problem(n, batch_size, device)
    pyro.set_rng_seed(0)
    fit = fit_svi(model, build_guide("meanfield", model), *args, steps=steps, lr=0.02, elbo_particles=0,
                  progress=False, engine=engine)
    return fit.extras["steps_per_second"], fit.extras["compiled_by"] or fit.extras["engine"]


def time_numpyro(n, batch_size, steps):
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as nd
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoDiagonalNormal
    from numpyro.optim import Adam

    X, y = synthetic(n)
    X = jnp.concatenate([jnp.ones((n, 1), jnp.float32), jnp.asarray(X)], 1)
    y = jnp.asarray(y)

    def model(X, y):
        w = numpyro.sample("w", nd.Normal(jnp.zeros(X.shape[1]), 1.0).to_event(1))
        with numpyro.plate("data", X.shape[0], subsample_size=batch_size) as rows:
            numpyro.sample("y", nd.Bernoulli(logits=X[rows] @ w), obs=y[rows])

    svi = SVI(model, AutoDiagonalNormal(model), Adam(0.02), Trace_ELBO())
    state = svi.init(jax.random.PRNGKey(0), X, y)
    update = jax.jit(svi.update)
    state, loss = update(state, X, y)
    loss.block_until_ready()
    start = time.perf_counter()
    for _ in range(steps):
        state, loss = update(state, X, y)
    loss.block_until_ready()
    return steps / (time.perf_counter() - start)


def one_size(opts) -> dict:
    """Every timing at N = opts.one, in this process."""
    n, batch = opts.one, opts.batch_size
    row = {"rows": n}
    from deepprob.inference.fitting.engines import AUTO_COMPILE_STEPS

    # ours and NumPyro's: fits as long as auto compiles (as every default fit); Pyro's: seconds' worth
    full_steps = AUTO_COMPILE_STEPS
    pyro_steps = max(20, min(300, int(3e7 / (n * FEATURES))))
    cases = {"full": (None, full_steps), "minibatch": (batch, 3000)}
    try:
        import numpyro  # noqa: F401
        have_numpyro = True
    except ImportError:
        have_numpyro = False
    for label, (b, steps) in cases.items():
        if b is not None and b >= n:
            continue
        auto, pyro_rate, np_rate, by = [], [], [], None
        for _ in range(opts.repeats):
            rate, by = time_ours(n, b, "auto", steps, opts.device)
            auto.append(rate)
            pyro_rate.append(time_ours(n, b, "pyro", pyro_steps if b is None else 300, opts.device)[0])
            if have_numpyro and opts.device == "cpu":
                np_rate.append(time_numpyro(n, b, steps if b is None else 500))
        row[label] = {"auto": statistics.median(auto), "auto_by": by, "pyro": statistics.median(pyro_rate),
                      "numpyro": statistics.median(np_rate) if np_rate else None}
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return row


def accuracy(n: int, batch: int, steps: int) -> dict:
    """Errors of a minibatch and of a full-batch mean-field fit against NUTS and the Laplace approximation."""
    import pyro
    import torch

    from deepprob.guides.registry import build_guide
    from deepprob.inference.evaluation.diagnostics import moment_errors
    from deepprob.inference.evaluation.nuts import NUTSBudget, run_nuts
    from deepprob.inference.evaluation.references import laplace_reference
    from deepprob.inference.fitting.svi import fit_svi

    full_model, args = torch_problem(n, None)
    references = {"nuts": run_nuts(full_model, *args, budget=NUTSBudget(chains=4, warmup=500, samples=500),
                                   progress=False).latents["weight_std"],
                  "laplace": laplace_reference(full_model, *args)["weight_std"]}
    out = {}
    for label, b in (("minibatch", batch), ("full", None)):
        model, _ = torch_problem(n, b)
        pyro.set_rng_seed(0)
        guide = build_guide("meanfield", model)
        fit = fit_svi(model, guide, *args, steps=steps, lr=0.05, elbo_particles=0, progress=False)
        with torch.no_grad():
            ours = torch.stack([guide()["weight_std"] for _ in range(4000)])
        out[label] = {"seconds": fit.seconds}
        for ref, draws in references.items():
            mean_err, sd_err = moment_errors(ours, draws)
            out[label][ref] = {"mean_err_sd": float(mean_err.max()), "sd_err_sd": float(sd_err.max())}
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="1000,10000,100000,1000000", help="comma-separated N (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=1024, help="minibatch rows (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="fits per engine and case (default: %(default)s)")
    parser.add_argument("--accuracy-rows", type=int, default=10_000, help="N of the accuracy check; 0: none")
    parser.add_argument("--accuracy-steps", type=int, default=5000, help="SVI steps of the accuracy check")
    parser.add_argument("--device", default="cpu", help="torch's device for ours and Pyro's (NumPyro: CPU only)")
    parser.add_argument("--write-csv", default=None, metavar="PATH",
                        help="write the first of --rows synthetic rows as a CSV (columns x0..x9, y) and stop: the "
                        "table of `deepprob logreg --data PATH --target y --batch-size 1024`")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # one N, in a child process
    opts = parser.parse_args(argv)
    if opts.write_csv:
        import numpy as np

        X, y = synthetic(int(opts.rows.split(",")[0]))
        header = ",".join([f"x{i}" for i in range(FEATURES)] + ["y"])
        np.savetxt(opts.write_csv, np.column_stack([X, y]), delimiter=",", header=header, comments="", fmt="%.5g")
        return
    os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import logging

    import torch

    torch.set_num_threads(1)
    logging.getLogger("pyro").setLevel(logging.WARNING)
    if opts.one is not None:
        print(json.dumps(one_size(opts)))
        return
    rows = []
    print(f"steps/s, mean-field logistic regression, {FEATURES} features, 1 thread, median of {opts.repeats}; "
          f"minibatch B = {opts.batch_size}")
    print(f"{'N':>9} | {'full: auto':>12} {'pyro':>6} {'numpyro':>8} {'auto/pyro':>9} {'auto/np':>8} | "
          f"{'minibatch: auto':>15} {'pyro':>6} {'numpyro':>8} {'auto/np':>8} | {'peak MB':>8}")
    for n in (int(v) for v in opts.rows.split(",")):
        child = subprocess.run([sys.executable, __file__, "--one", str(n), "--batch-size", str(opts.batch_size),
                                "--repeats", str(opts.repeats), "--device", opts.device],
                               capture_output=True, text=True, check=True)
        row = json.loads(child.stdout.strip().splitlines()[-1])
        rows.append(row)
        f, m = row["full"], row.get("minibatch")
        fmt = lambda x: "null" if x is None else f"{x:.0f}"  # noqa: E731
        ratio = lambda a, b: "null" if not b else f"{a / b:.2f}x"  # noqa: E731
        mini = (f"{m['auto']:>11.0f} ({m['auto_by']}) {m['pyro']:>6.0f} {fmt(m['numpyro']):>8} "
                f"{ratio(m['auto'], m['numpyro']):>8}" if m else f"{'(B >= N)':>41}")
        print(f"{n:>9} | {f['auto']:>8.0f} ({f['auto_by']}) {f['pyro']:>6.0f} {fmt(f['numpyro']):>8} "
              f"{ratio(f['auto'], f['pyro']):>9} {ratio(f['auto'], f['numpyro']):>8} | {mini} | "
              f"{row['peak_rss_mb']:>8.0f}", flush=True)
    result = {"sizes": rows}
    if opts.accuracy_rows and opts.device == "cpu":
        result["accuracy"] = acc = accuracy(opts.accuracy_rows, opts.batch_size, opts.accuracy_steps)
        print(f"accuracy at N = {opts.accuracy_rows}, {opts.accuracy_steps} steps: largest errors in posterior sds")
        for label, row in acc.items():
            print(f"  {label:>9} ({row['seconds']:.1f} s): vs NUTS means {row['nuts']['mean_err_sd']:.3f}, sds "
                  f"{row['nuts']['sd_err_sd']:.3f}; vs Laplace means {row['laplace']['mean_err_sd']:.3f}, sds "
                  f"{row['laplace']['sd_err_sd']:.3f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
