"""Posterior draws of a Pyro model, put back through the model: one layout for every guide and reference.

A fit, whether a variational guide q(z) or a reference (exact draws, NUTS, draws of a user's), is
reduced to S joint draws z_s of the model's latent sites. Each draw is put back through the model,
vectorised over the draws as Pyro's ``Trace_ELBO`` does with its particles
(:func:`deepprob.traces.run_model`; a model that does not broadcast over them runs draw by draw,
:mod:`deepprob.batching`), which gives

- the latent sites in their constrained space, and the deterministic ones (``weight``, ``theta``);
- the pointwise log-likelihood log p(y_n | z_s) of each observed site, (S, N), for PSIS-LOO;
- a replicate y_s ~ p(y | z_s) of each observed site: the posterior predictive;
- the log joint log p(y, z_s) and, for a guide, log q(z_s): the importance weights
  log w_s = log p(y, z_s) - log q(z_s) of PSIS (Yao et al. 2018). Both are densities of the
  constrained z, so they are consistent: the guide's ``Delta`` sites carry log |det dz/du|^{-1}, the
  change of variables from its unconstrained vector u.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pyro
import torch

from deepprob.logdensity import ModelStructure
from deepprob.seeds import rng_untouched
from deepprob.traces import log_prob_sum, run_model, site_log_prob


@dataclass
class Draws:
    """S joint posterior draws and what the model says of each (torch tensors, draws first).

    Attributes:
        latents: each latent sample site, (S, *site shape), constrained space.
        deterministic: each deterministic site, (S, *site shape).
        log_lik: each observed site's pointwise log p(y_n | z_s), (S, N_site).
        y_rep: each observed site's replicate y_s ~ p(y | z_s), (S, *site shape).
        observed: each observed site's data, (*site shape).
        log_joint: log p(y, z_s), (S,).
        log_q: log q(z_s) of the guide that drew them, (S,); ``None`` for reference draws.
        chains: the draws are ``chains`` chains of S / chains draws each, chain-major.
    """

    latents: dict[str, torch.Tensor]
    deterministic: dict[str, torch.Tensor]
    log_lik: dict[str, torch.Tensor]
    y_rep: dict[str, torch.Tensor]
    observed: dict[str, torch.Tensor]
    log_joint: torch.Tensor
    log_q: torch.Tensor | None = None
    chains: int = 1

    def __len__(self) -> int:
        return len(self.log_joint)

    @property
    def log_weights(self) -> torch.Tensor:
        """log w_s = log p(y, z_s) - log q(z_s), (S,): the importance weights of q towards the posterior."""
        if self.log_q is None:
            raise ValueError("log_weights: these draws do not come from a guide (no log q)")
        return self.log_joint - self.log_q

    def take(self, index: torch.Tensor) -> Draws:
        """The draws at ``index`` (K,), in that order (repeats allowed: resampled draws). They are no longer draws
        of the guide's density, so they carry no log q."""
        def pick(values: dict) -> dict:
            return {name: value[index] for name, value in values.items()}

        return Draws(pick(self.latents), pick(self.deterministic), pick(self.log_lik), pick(self.y_rep), self.observed,
                     self.log_joint[index])

    def joined(self, *others: Draws) -> Draws:
        """These draws and ``others`` (of the same model, one chain) as one set, in that order."""
        return _concat([self, *others], self.chains)

    def sites(self) -> dict[str, torch.Tensor]:
        """The latent and deterministic sites."""
        return {**self.latents, **self.deterministic}

    def pointwise_log_lik(self) -> torch.Tensor:
        """log p(y_n | z_s) of every observation of every observed site, (S, N) (for PSIS-LOO)."""
        return torch.cat(list(self.log_lik.values()), 1) if self.log_lik else self.log_joint.new_zeros(len(self), 0)


def _pointwise(log_prob: torch.Tensor, n: int, structure: ModelStructure, name: str) -> torch.Tensor:
    batch = structure.observed[name].batch_shape
    shape = (n,) + (1,) * (structure.nesting - len(batch)) + tuple(batch)
    return log_prob.expand(torch.broadcast_shapes(log_prob.shape, shape)).reshape(n, -1)


def _replicate(node, n: int, site, nesting: int) -> torch.Tensor:
    """A replicate of an observed site per draw, (n, *site shape): its distribution expanded to the draws and to
    the data's shape (a likelihood that does not depend on the draws, or one distribution for many data)."""
    fn = node["fn"]
    batch = torch.broadcast_shapes(fn.batch_shape, (n,) + (1,) * max(0, nesting - len(site.batch_shape))
                                   + tuple(site.batch_shape))
    if batch != fn.batch_shape:
        fn = fn.expand(batch)
    return fn.sample().reshape((n,) + tuple(site.shape))


def _trace_chunk(model, structure: ModelStructure, args, kwargs, n: int, guide=None, latents=None) -> Draws:
    values = None if latents is None else structure.broadcastable(latents)
    # unchecked: a draw far out (a scale that overflows) has log density -inf or NaN, which PSIS and the table
    # say; it is not an error of the model
    with torch.no_grad(), pyro.validation_enabled(False):
        model_trace, guide_trace = run_model(structure.broadcasting(model), args, kwargs, draws=n,
                                             nesting=structure.nesting, guide=guide, values=values)
        observed = structure.observed
        # the replicates from random numbers of their own (one seed from the run's): the next chunk's draws are
        # the same whatever drawing the replicates took, a model that broadcasts or one run draw by draw
        seed = int(torch.randint(2**62, ()))
        device = model_trace.nodes[next(iter(observed))]["value"].device if observed else torch.device("cpu")
        with rng_untouched(device):
            torch.manual_seed(seed)
            y_rep = {name: _replicate(model_trace.nodes[name], n, site, structure.nesting)
                     for name, site in observed.items()}
        return Draws(
            latents=structure.draws_of(model_trace, structure.latent, n),
            deterministic=structure.draws_of(model_trace, structure.deterministic, n),
            log_lik={name: _pointwise(site_log_prob(model_trace.nodes[name]), n, structure, name) for name in observed},
            y_rep=y_rep,
            observed={name: model_trace.nodes[name]["value"].reshape(site.shape) for name, site in observed.items()},
            log_joint=log_prob_sum(model_trace, n, structure.nesting),
            log_q=None if guide_trace is None else log_prob_sum(guide_trace, n, structure.nesting),
        )


def _concat(parts: list[Draws], chains: int) -> Draws:
    def cat(field):
        return {k: torch.cat([getattr(p, field)[k] for p in parts]) for k in getattr(parts[0], field)}

    first = parts[0]
    return Draws(latents=cat("latents"), deterministic=cat("deterministic"), log_lik=cat("log_lik"),
                 y_rep=cat("y_rep"), observed=first.observed, log_joint=torch.cat([p.log_joint for p in parts]),
                 log_q=None if first.log_q is None else torch.cat([p.log_q for p in parts]), chains=chains)


def _chunks(total: int, chunk: int) -> Iterator[tuple[int, int]]:
    for start in range(0, total, chunk):
        yield start, min(chunk, total - start)


def draws_from_guide(model: Callable, guide: Callable, *args, num_samples: int, chunk: int = 500,
                     **kwargs) -> Draws:
    """``num_samples`` independent draws z_s ~ q of a fitted guide, with log q(z_s) (``chunk`` at a time)."""
    structure = ModelStructure.of(model, *args, **kwargs)
    return _concat([_trace_chunk(model, structure, args, kwargs, n, guide=guide)
                    for _, n in _chunks(num_samples, chunk)], chains=1)


def draws_from_latents(model: Callable, latents: dict[str, torch.Tensor], *args, chains: int = 1, chunk: int = 500,
                       **kwargs) -> Draws:
    """Put given draws of every latent site, (S, *site shape) each, chain-major, through the model."""
    structure = ModelStructure.of(model, *args, **kwargs)
    missing = set(structure.latent) - set(latents)
    if missing:
        raise ValueError(f"latents: no draws of the model's site(s) {sorted(missing)}")
    like = first_float(args, kwargs)
    # the model's densities are in the data's precision (an exact posterior may come in float64)
    latents = {k: v.to(device=like.device if like is not None else v.device,
                       dtype=like.dtype if like is not None and v.is_floating_point() else v.dtype)
               for k, v in latents.items() if k in structure.latent}
    total = len(next(iter(latents.values())))
    return _concat([_trace_chunk(model, structure, args, kwargs, n,
                                 latents={k: v[start:start + n] for k, v in latents.items()})
                    for start, n in _chunks(total, chunk)], chains=chains)


def first_float(*values) -> torch.Tensor | None:
    """The first floating-point tensor among a model's arguments (nested in tuples and dicts): the data's
    device and precision."""
    for value in values:
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return value
        inner = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else ()
        found = first_float(*inner)
        if found is not None:
            return found
    return None


def likelihood_at(model: Callable, latents: dict[str, torch.Tensor], *args, site: str = "y", chunk: int = 250,
                  statistic: str = "mean", **kwargs) -> torch.Tensor:
    """A statistic of the likelihood p(y | x_m, z_s) of ``site`` at new inputs (``model(*args)`` draws
    it, e.g. ``model(x_new, None)``) for each draw: (S, M).

    ``statistic``: ``"mean"`` (the probability p(y=1 | x, z) of a Bernoulli, the mean of a Normal),
    ``"location"`` (the logit of a Bernoulli, the mean of a Normal: the model's function f(x)) or
    ``"sample"`` (one draw y ~ p(y | x_m, z_s): the posterior predictive at x).
    """
    structure = ModelStructure.of(model, *args, **kwargs)
    total = len(next(iter(latents.values())))
    out = []
    for start, n in _chunks(total, chunk):
        part = structure.broadcastable({k: v[start:start + n] for k, v in latents.items()})
        with torch.no_grad():
            trace, _ = run_model(structure.broadcasting(model), args, kwargs, draws=n, nesting=structure.nesting,
                                 values=part)
        fn = trace.nodes[site]["fn"]
        while hasattr(fn, "base_dist"):  # Independent / expanded wrappers
            fn = fn.base_dist
        if statistic == "sample":
            value = trace.nodes[site]["value"]
        elif statistic == "location" and hasattr(fn, "logits"):
            value = fn.logits
        else:
            value = fn.mean
        out.append(value.expand(fn.batch_shape).reshape(n, -1))
    return torch.cat(out)


def predictive_mean(model: Callable, latents: dict[str, torch.Tensor], *args, chunk: int = 100,
                    **kwargs) -> torch.Tensor:
    """The Bayesian predictive mean E_z[E(y | x_m, z)] at new inputs: shape (M,).

    For a Bernoulli likelihood this is the posterior predictive p(y=1 | x_m), averaged over the draws.
    Draws are taken ``chunk`` at a time so that large grids stay within memory.
    """
    mean = likelihood_at(model, latents, *args, chunk=chunk, **kwargs)
    return mean.mean(0)
