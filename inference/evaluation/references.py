"""Reference posteriors to measure guides against: exact draws, NUTS checked for convergence, given draws.

- :func:`exact_latents`: independent draws of a closed-form posterior (Bayesian linear regression).
- :func:`~.nuts.run_nuts` (:mod:`.nuts`): NUTS run until its draws pass
  the checks.
- :func:`given_draws`: draws made elsewhere (posteriordb's, Stan's, an InferenceData), as the model's sites.
- :func:`check_convergence`: split R-hat and bulk/tail ESS (Vehtari et al. 2021, :func:`~.nuts.\
convergence`) checked, with a loud warning when a chain set is not fit to be a reference.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from deepprob.errors import InputError
from deepprob.inference.evaluation.nuts import failed_checks
from deepprob.logdensity import ModelStructure
from deepprob.names import to_sites


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


def check_convergence(stats: dict[str, float], what: str, divergences: int = 0, method: str = "NUTS",
                      advice: str = "") -> bool:
    """True if R-hat < 1.01, both ESS >= 400 and no divergences (:func:`~.nuts.failed_checks`);
    else print a loud warning to stderr, with ``advice``.

    The warning goes to stderr whatever ``--quiet`` or ``--json`` say: a reference that has not
    converged makes every distance measured against it suspect.
    """
    problems = failed_checks(stats, divergences)
    if problems:
        advice = advice or (": check how the draws were made" if method != "NUTS" else "")
        print(f"WARNING: the {method} reference has not converged on {what}: {problems}{advice}. Distances to it "
              "are suspect.", file=sys.stderr, flush=True)
    return not problems
