"""A long NUTS reference for a model of the test corpus, made once and shipped small.

    python bench/corpus_reference.py stochastic_volatility

Runs the reference NUTS (:func:`deepprob.inference.evaluation.nuts.run_nuts`, its defaults: 4 chains of 1,000 warmup
steps and at least 1,000 draws, until R-hat < 1.01, bulk and tail ESS >= 400 and no divergence) on the model and
data of ``tests/corpus/NAME.py`` (``data(seed=0)``), and writes every fourth draw of its latent sites, in float32, to
``tests/corpus/references/NAME.npz`` (chain-major, with the run's checks beside them).
"""

from __future__ import annotations

import importlib.util
import io
import json
import sys
from pathlib import Path

import numpy as np
import torch

from deepprob.devices import default_dtype
from deepprob.files import atomic_write_bytes
from deepprob.inference.evaluation.nuts import run_nuts

ROOT = Path(__file__).resolve().parents[1]
THIN = 4


def main(argv=None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or ["stochastic_volatility"]
    torch.set_num_threads(1)
    for name in names:
        path = ROOT / "tests" / "corpus" / f"{name}.py"
        if not path.is_file():
            print(f"{name}: no such model in tests/corpus", file=sys.stderr)
            return 2
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        with default_dtype(torch.float64):
            run = run_nuts(module.model, module.data(0), seed=0)
        print(f"{name}: {run.seconds:.0f} s, converged {run.converged}, {run.checks}, "
              f"{sum(run.divergences)} divergences", flush=True)
        draws = {k: v.reshape((run.chains, -1) + v.shape[1:])[:, ::THIN].numpy().astype(np.float32)
                 for k, v in run.latents.items()}
        out = ROOT / "tests" / "corpus" / "references" / f"{name}.npz"
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **draws, checks=json.dumps({**run.checks, "converged": run.converged,
                                                               "divergences": sum(run.divergences),
                                                               "seconds": run.seconds, "thin": THIN}))
        atomic_write_bytes(out, buffer.getvalue())
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
