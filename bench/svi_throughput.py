"""Steps/s of SVI on small models: plain Pyro (``fit_svi``) against the fast path (``fit_svi_fast``).

Models: the seed's logistic regression (``two_classes`` n=2000, ``LogisticRegression`` with
``Standardisation``) and the BNN (``two_moons`` n=400, hidden 5, classification), each with the
``meanfield`` and ``fullrank`` guides. NumPyro (the optional ``bench`` extra) is timed when importable
and reported as null otherwise. Each cell is the median over ``--repeats`` fits of ``--steps`` steps;
the two implementations alternate so that machine load falls on both alike. The last line is JSON:
``{"logreg_fullrank": {"ours": steps/s, "pyro": steps/s, "numpyro": steps/s or null}, ...}``.

    python bench/svi_throughput.py
    python bench/svi_throughput.py --steps 500 --repeats 5 --num-particles 8 --compile
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import pyro
import torch

from deepprob.datasets.synthetic import two_classes, two_moons
from deepprob.guides.registry import build_guide
from deepprob.inference.fast_svi import fit_svi_fast
from deepprob.inference.svi import fit_svi
from deepprob.models.bnn import BayesianNeuralNetwork
from deepprob.models.logreg import LogisticRegression, with_bias
from deepprob.models.standardise import Standardisation


def problems():
    t = two_classes(n=2000)
    X1 = with_bias(t.X)
    st = Standardisation.of(X1)
    moons = two_moons(n=400)
    return {
        "logreg": (LogisticRegression(st), (st.features(X1), t.y)),
        "bnn": (BayesianNeuralNetwork(moons.X.shape[1], hidden=5), (moons.X, moons.y)),
    }


def time_pyro(model, guide_name, args, steps, num_particles):
    guide = build_guide(guide_name, model)
    start = time.perf_counter()
    fit_svi(model, guide, *args, steps=steps, num_particles=num_particles, elbo_particles=1, progress=False)
    return steps / (time.perf_counter() - start)


def time_ours(model, guide_name, args, steps, num_particles, compile):
    guide = build_guide(guide_name, model)
    result = fit_svi_fast(model, guide, *args, steps=steps, num_particles=num_particles, elbo_particles=0,
                          compile=compile)
    return result.extras["steps_per_second"], result.extras["compile_seconds"]


def time_numpyro(problem, guide_name, args, steps, num_particles):
    """NumPyro steps/s on the same model and guide: not written yet (issue 7), so always None."""
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--num-particles", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--compile", action="store_true", help="torch.compile the fast path's ELBO")
    opts = parser.parse_args(argv)
    torch.set_num_threads(opts.threads)
    pyro.settings.set(module_local_params=True)
    try:
        import numpyro  # noqa: F401
        have_numpyro = True
    except ImportError:
        have_numpyro = False
        print("numpyro is not installed (optional `bench` extra): its column is null")
    else:
        print("numpyro is installed, but its timing is not written yet: its column is null")
    results = {}
    print(f"{'case':<18}{'pyro steps/s':>14}{'ours steps/s':>14}{'speed-up':>10}{'numpyro':>10}{'compile s':>11}")
    for name, (model, args) in problems().items():
        for guide_name in ("meanfield", "fullrank"):
            pyro.set_rng_seed(0)
            # one untimed fit of each, to warm up allocators and Pyro's caches
            time_pyro(model, guide_name, args, 20, opts.num_particles)
            time_ours(model, guide_name, args, 20, opts.num_particles, False)
            ours, theirs, compiles = [], [], []
            for _ in range(opts.repeats):
                theirs.append(time_pyro(model, guide_name, args, opts.steps, opts.num_particles))
                rate, compile_seconds = time_ours(model, guide_name, args, opts.steps, opts.num_particles,
                                                  opts.compile)
                ours.append(rate)
                compiles.append(compile_seconds)
            numpyro_rate = time_numpyro(name, guide_name, args, opts.steps, opts.num_particles) \
                if have_numpyro else None
            a, b = statistics.median(ours), statistics.median(theirs)
            results[f"{name}_{guide_name}"] = {"ours": round(a, 1), "pyro": round(b, 1), "numpyro": numpyro_rate}
            c = f"{statistics.median(compiles):.1f}" if opts.compile and compiles[0] is not None else "-"
            n = f"{numpyro_rate:.0f}" if numpyro_rate else "null"
            print(f"{name + '_' + guide_name:<18}{b:>14.0f}{a:>14.0f}{a / b:>9.2f}x{n:>10}{c:>11}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
