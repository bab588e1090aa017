"""Reference posteriors to measure guides against: exact draws, NUTS checked for convergence, given draws.

- :func:`exact_latents`: independent draws of a closed-form posterior (Bayesian linear regression).
- :func:`run_nuts`: Pyro's NUTS (Hoffman and Gelman 2014), several chains from dispersed starts,
  run one after another in this process (no worker processes to spawn on a small machine).
- :func:`given_draws`: draws made elsewhere (posteriordb's, Stan's, an InferenceData), as the model's sites.
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

from deepprob.errors import InputError
from deepprob.logdensity import ModelStructure, init_uniform
from deepprob.names import to_sites
from deepprob.subsample import FullData

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az

RHAT_MAX = 1.01  # Vehtari et al. (2021): use the draws only when R-hat < 1.01 for every quantity
ESS_MIN = 100     # ... and the bulk and tail ESS exceed about 100 (25 per chain for 4 chains)


def exact_latents(exact, structure: ModelStructure, num_samples: int) -> dict[str, torch.Tensor]:
    """``num_samples`` independent draws of an exact posterior: {site: (S, *site shape)}.

    ``exact``: a distribution over the model's latent vector (its latent sites flattened and joined in
    the model's order; every site of real support, so that this is also the guides' unconstrained
    vector), or ``{site: distribution}`` for a model with that one latent site.
    """
    if isinstance(exact, dict):
        if set(exact) != set(structure.latent) or len(exact) != 1:
            # a joint posterior over several sites does not factor into per-site laws
            raise InputError(f"reference: expected the exact posterior of the model's one latent site, got "
                             f"{sorted(exact)} for the sites {list(structure.latent)}")
        return {name: d.sample((num_samples,)) for name, d in exact.items()}
    if not structure.real_latents:
        raise InputError("reference: an exact distribution over the latent vector needs every latent site to have "
                         "real support (give {site: distribution} instead)")
    vector = exact.sample((num_samples,))
    if vector.shape[1:] != (structure.latent_dim,):
        raise InputError(f"reference: the exact distribution has event shape {list(vector.shape[1:])}; expected "
                         f"[{structure.latent_dim}] (the model's latent vector)")
    return {site.name: value.reshape((num_samples,) + site.shape) for site, _, value in structure.unpack(vector)}


@dataclass
class Exact:
    """An exact posterior to compare against.

    Attributes:
        posterior: a torch distribution over the model's latent vector (its latent sites flattened and
            joined in the model's order, every one of real support), or ``{site: distribution}`` for a
            model with that one latent site.
        log_evidence: log p(y), when known (the report shows ELBO = log p(y) - KL(q || p)).
    """

    posterior: object
    log_evidence: float | None = None

    def over_latent_vector(self, structure: ModelStructure):
        """The posterior as a distribution over the guides' unconstrained latent vector (for KL(q || p))."""
        if isinstance(self.posterior, dict):
            (posterior,) = self.posterior.values()
            return posterior
        return self.posterior


@dataclass(frozen=True)
class NUTSBudget:
    """How long NUTS runs: ``chains`` chains (one after another) of ``warmup`` adaptation steps and
    ``samples`` kept draws, at most 2^``max_tree_depth`` gradient steps a draw."""

    chains: int = 4
    warmup: int = 500
    samples: int = 500
    max_tree_depth: int = 10
    target_accept: float = 0.8


@dataclass
class NutsRun:
    """Draws of a multi-chain NUTS run.

    Attributes:
        latents: each latent site, (chains * samples, *shape), chain-major.
        chains: number of chains.  divergences: divergent transitions after warmup, per chain.
        seconds: wall time of all chains.
        gradient_evaluations: of the log density, warmup included, over all chains.
    """

    latents: dict[str, torch.Tensor]
    chains: int
    divergences: list[int]
    seconds: float
    gradient_evaluations: int = 0


class CountingNUTS(NUTS):
    """Pyro's NUTS, counting its evaluations of the potential energy (each with its gradient)."""

    evaluations = 0

    def setup(self, *args, **kwargs):
        super().setup(*args, **kwargs)
        potential = self.potential_fn  # set by the setup (jit-compiled with jit_compile)

        def counted(params):
            self.evaluations += 1
            return potential(params)

        self.potential_fn = counted


def laplace_reference(model: Callable, *args, num_samples: int = 4000, **kwargs) -> dict[str, torch.Tensor]:
    """Draws of the Laplace approximation of the full data's posterior: the mode by L-BFGS from the prior's
    median, the Gaussian of the curvature there, in the unconstrained space, mapped to the latent sites,
    (num_samples, *site shape) each.

    Raises:
        InputError: no mode was found (the climb failed, or the curvature there is not positive).
    """
    from deepprob.guides.start import laplace_at_mode

    structure = ModelStructure.of(model, *args, **kwargs)
    start = laplace_at_mode(structure.log_joint_unconstrained(model, *args, **kwargs),
                            structure.initial_point(model, *args, **kwargs))
    if start is None:
        raise InputError("model: no mode found for a Laplace approximation (L-BFGS failed, or the curvature is "
                         "not positive there)")
    u = torch.distributions.MultivariateNormal(start.loc, covariance_matrix=start.covariance).sample((num_samples,))
    return {site.name: transform(value).reshape((num_samples,) + site.shape)
            for site, transform, value in structure.unpack(u)}


def run_nuts(model: Callable, *args, budget: NUTSBudget = NUTSBudget(), seed: int = 0, jit: bool = True,
             progress: bool = True, **kwargs) -> NutsRun:
    """NUTS on ``model(*args, **kwargs)``: ``budget.chains`` chains of ``budget.warmup`` adaptation and
    ``budget.samples`` kept steps.

    Chain c starts from a point drawn uniformly in (-2, 2) of the unconstrained space (Pyro's
    ``init_to_uniform``, for flat priors too: :func:`deepprob.logdensity.init_uniform`) with seed
    ``seed + c``: starts dispersed enough for R-hat to see chains that do not meet. ``jit`` compiles the
    potential energy with TorchScript, about twice as fast for small models. Plates that subsample run
    over the full data (:class:`~deepprob.subsample.FullData`): NUTS needs the exact log density.
    """
    start = time.perf_counter()
    model = FullData(model)
    parts: dict[str, list[torch.Tensor]] = {}
    divergences = []
    # the plate nesting given, not guessed by Pyro (its guess runs the model, sampling every prior: flat ones fail)
    nesting = ModelStructure.of(model, *args, **kwargs).nesting
    evaluations = 0
    for chain in range(budget.chains):
        pyro.set_rng_seed(seed + chain)
        kernel = CountingNUTS(model, target_accept_prob=budget.target_accept, max_tree_depth=budget.max_tree_depth,
                      jit_compile=jit, ignore_jit_warnings=True, init_strategy=init_uniform,
                      max_plate_nesting=nesting)
        mcmc = MCMC(kernel, num_samples=budget.samples, warmup_steps=budget.warmup, num_chains=1,
                    disable_progbar=not progress)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TorchScript tracer chatter
            mcmc.run(*args, **kwargs)
        for name, value in mcmc.get_samples().items():
            parts.setdefault(name, []).append(value.detach())
        divergences.append(len(mcmc.diagnostics()["divergences"]["chain 0"]))
        evaluations += kernel.evaluations
    latents = {name: torch.cat(values) for name, values in parts.items()}
    return NutsRun(latents, budget.chains, divergences, time.perf_counter() - start, evaluations)


def given_draws(source, structure: ModelStructure, what: str = "reference draws") -> tuple[dict, int]:
    """Draws made elsewhere as ({site: (chains * draws, *site shape)} chain-major, chains).

    ``source``: an ArviZ InferenceData (its ``posterior`` group), or a dict of arrays named by sites or
    by Stan-style labels (``theta[1]``), each (draws, ...) or (chains, draws, ...) before the site's
    shape. Sites may be latent or deterministic ones of the model.

    Raises:
        InputError: names the model does not record, or draws of the wrong shape.
    """
    if hasattr(source, "posterior"):
        source = {name: np.asarray(var.values) for name, var in source.posterior.data_vars.items()}
    elif not isinstance(source, dict):
        raise InputError(f"{what}: expected an InferenceData or a dict of arrays, got {type(source).__name__}")
    if not source:
        raise InputError(f"{what}: no draws given")
    shapes = {name: tuple(site.shape) for name, site in {**structure.latent, **structure.deterministic}.items()}
    sites = to_sites({k: np.asarray(torch.as_tensor(v).detach().cpu()) if isinstance(v, torch.Tensor) else v
                      for k, v in source.items()}, shapes, what)
    leads = {name: value.shape[:value.ndim - len(shapes[name])] for name, value in sites.items()}
    if len(set(leads.values())) != 1 or len(next(iter(leads.values()))) not in (1, 2):
        raise InputError(f"{what}: expected every parameter as (draws,) or (chains, draws) before its own shape, "
                         f"got {', '.join(f'{n} {list(lead)}' for n, lead in list(leads.items())[:6])}")
    lead = next(iter(leads.values()))
    chains = lead[0] if len(lead) == 2 else 1
    if lead[-1] < 2:
        raise InputError(f"{what}: {lead[-1]} draw(s) per chain; expected at least 2")
    return {name: torch.as_tensor(value.reshape((-1,) + shapes[name])) for name, value in sites.items()}, chains


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


def check_convergence(stats: dict[str, float], what: str, divergences: int = 0, method: str = "NUTS") -> bool:
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
        advice = "raise --chains/--warmup/--samples" if method == "NUTS" else "check how the draws were made"
        print(f"WARNING: the {method} reference has not converged on {what}: {'; '.join(problems)}. Distances to it "
              f"are suspect: {advice}.", file=sys.stderr, flush=True)
    return not problems
