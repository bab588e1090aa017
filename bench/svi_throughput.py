"""Steps per second of SVI on small models: Pyro's engine, our compiled engine, and NumPyro.

Models: the seed's logistic regression (``two_classes`` n=2000, ``LogisticRegression`` with
``Standardisation``) and Bayesian NN (``two_moons`` n=400, hidden 5, classification), each with the
``meanfield`` (AutoDiagonalNormal) and ``fullrank`` (AutoMultivariateNormal) guides, one particle a step.

- pyro: ``fit_svi(engine="pyro")``, Pyro's ``Trace_ELBO`` each step.
- ours: ``fit_svi(engine="compiled")``: the same estimator and Adam, the whole step one compiled C
  function (``deepprob.compiler.c_step``; the "by" column says which compiler built it: ``c``, or ``inductor``
  where the C backend does not apply).
- numpyro (the optional ``bench`` extra, ``pip install -e ".[bench]"``): the same model and guide written
  in NumPyro, ``jax.jit(svi.update)`` called once a step; skipped, with a note, when not installed.

Every engine gets one CPU thread (``--threads``; XLA's too), so the comparison is of the engines, not of
how they share the machine. Steps/s is the median over ``--repeats`` fits of ``--steps`` steps, the
engines alternating. Compile time is reported separately: ours cold (the first fit of a case in a fresh
compile cache directory) and warm (the on-disk cache hit of the later fits); NumPyro's is the first
``update`` call (JAX traces and compiles in-process every time), median over the repeats. Once per
process, torch's first ``make_fx`` trace loads its tracing machinery (about a second): that start-up
is printed apart, as JAX's import is. "5000-step fit" is
compile + 5000 steps, the cost of a default ``deepprob logreg`` fit: ours cold (the first fit ever of
that model, data and guide) and warm (every later one), NumPyro's (the same every time). "fixed s" is measured:
the wall time of a whole default ``deepprob.fit(..., steps=5000)`` on the compiled engine (the guide's Laplace
start, the trace, the compile from a warm cache, the steps, the final 1,000-draw ELBO) less its steps' own time,
median over the repeats, in a process that has fitted before. The last line is JSON:
``{"logreg_fullrank": {"ours": steps/s, "pyro": steps/s, "numpyro": steps/s or null, ...}, ...}``.

    python bench/svi_throughput.py
    python bench/svi_throughput.py --steps 5000 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time


def problems():
    from deepprob.datasets.synthetic import two_classes, two_moons
    from deepprob.models.bnn import BayesianNeuralNetwork
    from deepprob.models.logreg import LogisticRegression, with_bias
    from deepprob.models.standardise import Standardisation

    t = two_classes(n=2000)
    X1 = with_bias(t.X)
    st = Standardisation.of(X1)
    moons = two_moons(n=400)
    return {
        "logreg": (LogisticRegression(st), (st.features(X1), t.y)),
        "bnn": (BayesianNeuralNetwork(moons.X.shape[1], hidden=5), (moons.X, moons.y)),
    }


def time_torch(model, guide_name, args, steps, engine):
    """(steps/s of the loop, compile seconds, compiler) of one ``fit_svi`` on the given engine."""
    from deepprob.guides.registry import build_guide
    from deepprob.inference.fitting.svi import fit_svi

    guide = build_guide(guide_name, model)
    fit = fit_svi(model, guide, *args, steps=steps, lr=0.01, elbo_particles=0, progress=False, engine=engine)
    return fit.extras["steps_per_second"], fit.extras["compile_seconds"], fit.extras["compiled_by"]


def fixed_cost(model, guide_name, args, steps=5000):
    """Seconds of a whole default 5,000-step ``deepprob.fit`` on the compiled engine that are not its steps."""
    import deepprob

    start = time.perf_counter()
    fit = deepprob.fit(model, *args, guide=guide_name, steps=steps, engine="compiled", progress=False)
    return time.perf_counter() - start - steps / fit.extras["steps_per_second"]


def numpyro_case(name, model, args):
    """The same model in NumPyro: a function of (X, y) and its data as JAX arrays."""
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as nd

    X, y = (jnp.asarray(a.numpy()) for a in args)
    if name == "logreg":
        scale_tril = jnp.asarray(model.standardisation.prior_scale_tril(model.alpha).numpy())

        def np_model(X, y):
            w = numpyro.sample("weight_std", nd.MultivariateNormal(jnp.zeros(X.shape[1]), scale_tril=scale_tril))
            with numpyro.plate("data", X.shape[0]):
                numpyro.sample("y", nd.Bernoulli(logits=X @ w), obs=y)
    else:
        D, H, scale = model.num_features, model.hidden, model.alpha**-0.5

        def np_model(X, y):
            W1 = numpyro.sample("W1", nd.Normal(jnp.zeros((D, H)), scale).to_event(2))
            b1 = numpyro.sample("b1", nd.Normal(jnp.zeros(H), scale).to_event(1))
            W2 = numpyro.sample("W2", nd.Normal(jnp.zeros(H), scale).to_event(1))
            b2 = numpyro.sample("b2", nd.Normal(jnp.zeros(1), scale).to_event(1))
            f = jnp.tanh(X @ W1 + b1) @ W2 + b2
            with numpyro.plate("data", X.shape[0]):
                numpyro.sample("y", nd.Bernoulli(logits=f), obs=y)
    return np_model, X, y


def time_numpyro(case, guide_name, steps, seed):
    import jax
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoDiagonalNormal, AutoMultivariateNormal
    from numpyro.optim import Adam

    np_model, X, y = case
    guide = (AutoDiagonalNormal if guide_name == "meanfield" else AutoMultivariateNormal)(np_model)
    svi = SVI(np_model, guide, Adam(0.01), Trace_ELBO())
    start = time.perf_counter()
    state = svi.init(jax.random.PRNGKey(seed), X, y)
    update = jax.jit(svi.update)
    state, loss = update(state, X, y)
    loss.block_until_ready()
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        state, loss = update(state, X, y)
    loss.block_until_ready()
    return steps / (time.perf_counter() - start), compile_seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000, help="steps per timed fit (default: %(default)s)")
    parser.add_argument("--pyro-steps", type=int, default=500, help="steps per Pyro fit (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="fits per engine and case (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of every engine (default: %(default)s)")
    opts = parser.parse_args(argv)
    # before torch and jax start: one thread each, and a fresh compile cache (ours and Inductor's), so that
    # compiles are cold
    os.environ["XLA_FLAGS"] = (f"--xla_cpu_multi_thread_eigen={'true' if opts.threads > 1 else 'false'} "
                               f"intra_op_parallelism_threads={opts.threads}")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="deepprob-bench-cache-")
    import logging

    import pyro
    import torch
    from torch.fx.experimental.proxy_tensor import make_fx

    torch.set_num_threads(opts.threads)
    logging.getLogger("pyro").setLevel(logging.WARNING)
    start = time.perf_counter()
    make_fx(torch.func.functionalize(torch.exp))(torch.zeros(1))
    trace_start = time.perf_counter() - start
    try:
        import numpyro  # noqa: F401
        have_numpyro = True
    except ImportError:
        have_numpyro = False
        print('NumPyro is not installed (the optional extra: pip install -e ".[bench]"): its columns are null')

    results = {}
    header = (f"{'case':<18}{'by':>3}{'pyro':>7}{'ours':>9}{'numpyro':>9}{'ours/pyro':>10}{'ours/np':>9}"
              f"{'compile s: ours cold':>22}{'warm':>6}{'numpyro':>9}{'5000-step fit s: ours cold':>28}{'warm':>6}"
              f"{'numpyro':>9}{'fixed s':>9}")
    print(f"steps/s, median of {opts.repeats} fits ({opts.steps} steps; Pyro {opts.pyro_steps}), "
          f"{opts.threads} thread(s)")
    print(f"start-up, once per process (torch's first make_fx trace, its lazy imports): {trace_start:.2f} s, "
          "not counted below")
    print(header)
    for name, (model, args) in problems().items():
        case = numpyro_case(name, model, args) if have_numpyro else None
        for guide_name in ("meanfield", "fullrank"):
            pyro.set_rng_seed(0)
            ours, pyros, nps, compiles, np_compiles, fixed = [], [], [], [], [], []
            for repeat in range(opts.repeats):
                rate, seconds, compiled_by = time_torch(model, guide_name, args, opts.steps, "compiled")
                ours.append(rate)
                compiles.append(seconds)
                fixed.append(fixed_cost(model, guide_name, args))
                pyros.append(time_torch(model, guide_name, args, opts.pyro_steps, "pyro")[0])
                if case is not None:
                    rate, seconds = time_numpyro(case, guide_name, opts.steps, repeat)
                    nps.append(rate)
                    np_compiles.append(seconds)
            a, b = statistics.median(ours), statistics.median(pyros)
            c = statistics.median(nps) if nps else None
            cold, warm = compiles[0], statistics.median(compiles[1:] or compiles)
            np_compile = statistics.median(np_compiles) if np_compiles else None
            fit_ours, fit_warm = cold + 5000 / a, warm + 5000 / a
            fit_np = np_compile + 5000 / c if c else None
            results[f"{name}_{guide_name}"] = {
                "ours": round(a), "pyro": round(b), "numpyro": round(c) if c else None, "ours_compiled_by": compiled_by,
                "ours_compile_s_cold": round(cold, 2), "ours_compile_s_warm": round(warm, 2),
                "numpyro_compile_s": round(np_compile, 2) if np_compile else None,
                "ours_5000_step_fit_s_cold": round(fit_ours, 2), "ours_5000_step_fit_s_warm": round(fit_warm, 2),
                "numpyro_5000_step_fit_s": round(fit_np, 2) if c else None,
                "ours_fixed_s": round(statistics.median(fixed), 3),
            }
            fmt = lambda x, f: "null" if x is None else format(x, f)  # noqa: E731
            print(f"{name + '_' + guide_name:<18}{compiled_by or 'eager':>3}{b:>7.0f}{a:>9.0f}{fmt(c, '.0f'):>9}"
                  f"{a / b:>9.1f}x"
                  f"{fmt(c and a / c, '.2f'):>8}x{cold:>22.2f}{warm:>6.2f}{fmt(np_compile, '.2f'):>9}"
                  f"{fit_ours:>28.2f}{fit_warm:>6.2f}{fmt(fit_np, '.2f'):>9}"
                  f"{statistics.median(fixed):>9.3f}", flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
