"""Reference posteriors to measure guides against: exact draws, or NUTS checked for convergence.

- :func:`exact_latents`: independent draws of a closed-form posterior (Bayesian linear regression).
- :func:`run_nuts`: Pyro's NUTS (Hoffman and Gelman 2014), several chains from dispersed starts,
  run one after another in this process (no worker processes to spawn on a small machine).
- :func:`convergence`: split R-hat and bulk/tail ESS (Vehtari et al. 2021) with ArviZ, and
  :func:`check_convergence` to warn loudly when a chain set is not fit to be a reference.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyro
import torch
from pyro.infer import MCMC, NUTS

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az

RHAT_MAX = 1.01  # Vehtari et al. (2021): use the draws only when R-hat < 1.01 for every quantity
ESS_MIN = 100     # ... and the bulk and tail ESS exceed about 100 (25 per chain for 4 chains)


def exact_latents(exact: dict[str, torch.distributions.Distribution], num_samples: int) -> dict[str, torch.Tensor]:
    """``num_samples`` independent draws of each site's exact posterior: {site: (S, *shape)}."""
    if len(exact) != 1:
        # a joint posterior over several sites does not factor into per-site laws
        raise ValueError(f"exact_latents: expected the posterior of one latent site, got {sorted(exact)}")
    return {name: d.sample((num_samples,)) for name, d in exact.items()}


@dataclass
class NutsRun:
    """Draws of a multi-chain NUTS run.

    Attributes:
        latents: each latent site, (chains * samples, *shape), chain-major.
        chains: number of chains.  divergences: divergent transitions after warmup, per chain.
        seconds: wall time of all chains.
    """

    latents: dict[str, torch.Tensor]
    chains: int
    divergences: list[int]
    seconds: float


def run_nuts(model: Callable, *args, chains: int = 4, warmup: int = 500, samples: int = 500, seed: int = 0,
             target_accept: float = 0.8, max_tree_depth: int = 10, jit: bool = True,
             progress: bool = True) -> NutsRun:
    """NUTS on ``model(*args)``: ``chains`` chains of ``warmup`` adaptation and ``samples`` kept steps.

    Chain c starts from a point drawn uniformly in (-2, 2) of the unconstrained space (Pyro's
    ``init_to_uniform``) with seed ``seed + c``: starts dispersed enough for R-hat to see chains that do
    not meet. ``jit`` compiles the potential energy with TorchScript, about twice as fast for small models.
    """
    start = time.perf_counter()
    parts: dict[str, list[torch.Tensor]] = {}
    divergences = []
    for chain in range(chains):
        pyro.set_rng_seed(seed + chain)
        kernel = NUTS(model, target_accept_prob=target_accept, max_tree_depth=max_tree_depth, jit_compile=jit,
                      ignore_jit_warnings=True)
        mcmc = MCMC(kernel, num_samples=samples, warmup_steps=warmup, num_chains=1,
                    disable_progbar=not progress)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TorchScript tracer chatter
            mcmc.run(*args)
        for name, value in mcmc.get_samples().items():
            parts.setdefault(name, []).append(value.detach())
        divergences.append(len(mcmc.diagnostics()["divergences"]["chain 0"]))
    latents = {name: torch.cat(values) for name, values in parts.items()}
    return NutsRun(latents, chains, divergences, time.perf_counter() - start)


def convergence(idata: az.InferenceData, var_names: list[str] | None = None) -> dict[str, float]:
    """The worst split R-hat and the smallest bulk and tail ESS over every scalar of ``var_names``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rhat = az.rhat(idata, var_names=var_names)
        ess_bulk = az.ess(idata, var_names=var_names, method="bulk")
        ess_tail = az.ess(idata, var_names=var_names, method="tail")

    def worst(dataset, reduce) -> float:
        values = np.concatenate([np.ravel(dataset[name].values) for name in dataset.data_vars])
        return float(reduce(values))

    return {"rhat_max": worst(rhat, np.max), "ess_bulk_min": worst(ess_bulk, np.min),
            "ess_tail_min": worst(ess_tail, np.min)}


def check_convergence(stats: dict[str, float], what: str, divergences: int = 0) -> bool:
    """True if R-hat < 1.01 and both ESS >= 100 and no divergences; else print a loud warning to stderr.

    The warning goes to stderr whatever ``--quiet`` or ``--json`` say: a reference that has not
    converged makes every distance measured against it suspect.
    """
    problems = []
    if np.isnan(stats["rhat_max"]):
        problems.append("no R-hat (it needs at least 2 chains)")
    elif not stats["rhat_max"] < RHAT_MAX:
        problems.append(f"R-hat {stats['rhat_max']:.3f} > {RHAT_MAX}")
    if not min(stats["ess_bulk_min"], stats["ess_tail_min"]) >= ESS_MIN:
        problems.append(f"ESS {min(stats['ess_bulk_min'], stats['ess_tail_min']):.0f} < {ESS_MIN}")
    if divergences:
        problems.append(f"{divergences} divergent transition(s)")
    if problems:
        print(f"WARNING: the NUTS reference has not converged on {what}: {'; '.join(problems)}. Distances to it are "
              "suspect: raise --chains/--warmup/--samples.", file=sys.stderr, flush=True)
    return not problems
