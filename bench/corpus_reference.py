"""A long NUTS reference for a model of the test corpus, made once and shipped small.

    python bench/corpus_reference.py stochastic_volatility
    python bench/corpus_reference.py latent_gp --thin 1

Runs the reference NUTS (:func:`deepprob.inference.evaluation.nuts.run_nuts`, its defaults: 4 chains of 1,000 warmup
steps and at least 1,000 draws, until R-hat < 1.01, bulk and tail ESS >= 400 and no divergence) on the model and
data of ``tests/corpus/NAME.py`` (``data(seed=0)``; ``--min-ess``: the bulk and tail ESS the run must reach,
400 by default; ``--thin``: every fourth draw by default), and, where the run passed its checks, writes its kept draws,
in float32, to ``tests/corpus/references/NAME.npz`` (chain-major, with the run's checks beside them), and the data
beside it as the shell reads data (``NAME.json``), so that the shell can compare against it:

    deepprob compare --model tests/corpus/NAME.py:model --data tests/corpus/references/NAME.json \
        --reference-draws tests/corpus/references/NAME.npz
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import sys
from pathlib import Path

import numpy as np
import torch

from deepprob.devices import default_dtype
from deepprob.files import atomic_write_bytes
from deepprob.inference.evaluation.nuts import NUTSBudget, run_nuts

ROOT = Path(__file__).resolve().parents[1]
THIN = 4


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=["stochastic_volatility"], help="models of tests/corpus")
    parser.add_argument("--min-ess", type=float, default=NUTSBudget().min_ess,
                        help="bulk and tail ESS the run must reach (default: %(default)s)")
    parser.add_argument("--thin", type=int, default=THIN, help="keep every THIN-th draw (default: %(default)s)")
    args = parser.parse_args(argv)
    names, budget = args.names, NUTSBudget(min_ess=args.min_ess, max_seconds=3600.0)
    torch.set_num_threads(1)
    for name in names:
        path = ROOT / "tests" / "corpus" / f"{name}.py"
        if not path.is_file():
            print(f"{name}: no such model in tests/corpus", file=sys.stderr)
            return 2
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        # a model whose centred form defeats NUTS brings the same posterior written otherwise (``whitened``) and
        # the map of its draws to the model's sites (``model_sites``)
        with default_dtype(torch.float64):
            run = run_nuts(getattr(module, "whitened", module.model), module.data(0), budget=budget, seed=0)
            latents = run.latents
            if hasattr(module, "model_sites"):
                latents = module.model_sites(latents, module.data(0))
        print(f"{name}: {run.seconds:.0f} s, converged {run.converged}, {run.checks}, "
              f"{sum(run.divergences)} divergences", flush=True)
        if not run.converged:  # a reference that failed its checks is no reference: the shipped one stays
            print(f"{name}: not written (the run did not pass its checks)", file=sys.stderr)
            return 1
        draws = {k: v.reshape((run.chains, -1) + v.shape[1:])[:, ::args.thin].numpy().astype(np.float32)
                 for k, v in latents.items()}
        out = ROOT / "tests" / "corpus" / "references" / f"{name}.npz"
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **draws, checks=json.dumps({**run.checks, "converged": run.converged,
                                                               "divergences": sum(run.divergences),
                                                               "seconds": run.seconds, "thin": args.thin}))
        atomic_write_bytes(out, buffer.getvalue())
        data = {k: v.tolist() if isinstance(v, torch.Tensor) else v for k, v in module.data(0).items()}
        atomic_write_bytes(out.with_suffix(".json"), json.dumps(data).encode())
        print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
