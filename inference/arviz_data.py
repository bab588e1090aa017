"""Posterior draws of a Pyro model as ArviZ ``InferenceData``: one layout for every guide and reference.

A fit, whether a variational guide q(z) or a reference (exact draws, NUTS), is reduced to S joint
draws z_s of the model's latent sites. Each draw is put back through the model, vectorised over the
draws as Pyro's ``Trace_ELBO`` does with its particles (a plate left of the model's own), which gives

- the posterior sites in their constrained space, deterministic ones included (``weight``);
- the pointwise log-likelihood log p(y_n | z_s), shape (S, N), for PSIS-LOO;
- a replicate y_s ~ p(y | z_s) per draw: the posterior predictive;
- the log joint log p(y, z_s) and, for a guide, log q(z_s): the importance weights
  log w_s = log p(y, z_s) - log q(z_s) of PSIS (Yao et al. 2018). Both are densities of the
  constrained z, so they are consistent: the guide's ``Delta`` sites carry log |det dz/du|^{-1}, the
  change of variables from its unconstrained vector u.

:func:`to_inference_data` lays them out with named dims and coords (groups ``posterior``,
``posterior_predictive``, ``log_likelihood``, ``observed_data``, ``constant_data``, ``sample_stats``);
:func:`save_inference_data` writes NetCDF.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)  # arviz 0.2x announces its 1.0 refactor at import
    import arviz as az

OBS = "y"  # the observed site of every regression model


@dataclass
class Problem:
    """A model with its data, named for ArviZ: what the regression examples' ``prepare(args)`` returns.

    Attributes:
        name: the example (``"linreg"``, ``"logreg"``, ``"bnn"``).
        model: the Pyro model ``model(x, y)``; with ``y=None`` it draws y. Observed site ``y``, plate ``data``.
        x: the model's inputs for the N training rows, as the model takes them (standardised).
        y: the targets (N,).
        features: the training rows' raw inputs (N, F), named by ``coords["input"]``.
        to_inputs: raw rows (M, F) -> model inputs (M, ...), for new points (grids, the far point).
        var_names: the posterior sites stored and summarised (e.g. ``["weight"]``).
        dims: ArviZ dims of each site (without chain and draw); ``coords``: labels of each dim.
        likelihood: ``"bernoulli"`` or ``"normal"``.
        init_loc_fn: the guides' initialisation (``None``: each guide's default).
        evaluation: (x, y) on which predictive metrics are reported, or ``None``.
        exact: the exact posterior of each latent site when known in closed form (linreg), else ``None``.
        function_space: compare posteriors through f(x) at the evaluation inputs rather than through
            ``var_names``; needed where weight space has symmetries (a network's hidden units permute).
        far_point: (label, model input (1, ...)) where the Bayesian predictive is reported, or ``None``.
        extras: what the example's own report needs (design matrices, the standardisation, ...).
    """

    name: str
    model: Callable
    x: torch.Tensor
    y: torch.Tensor
    features: torch.Tensor
    to_inputs: Callable[[torch.Tensor], torch.Tensor]
    var_names: list[str]
    dims: dict[str, list[str]]
    coords: dict[str, list]
    likelihood: str
    init_loc_fn: Callable | None = None
    evaluation: tuple[torch.Tensor, torch.Tensor] | None = None
    exact: dict[str, torch.distributions.Distribution] | None = None
    function_space: bool = False
    far_point: tuple[str, torch.Tensor] | None = None
    extras: dict = field(default_factory=dict)

    @property
    def fit_args(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The arguments of ``model`` (and of its guides) for the training data."""
        return self.x, self.y


@dataclass
class Draws:
    """S joint posterior draws and what the model says of each (torch tensors, draws first).

    Attributes:
        latents: each latent sample site, (S, *site shape), constrained space.
        deterministic: each deterministic site, (S, *site shape).
        log_lik: log p(y_n | z_s), (S, N).
        y_rep: y_s ~ p(y | z_s), (S, N).
        log_joint: log p(y, z_s), (S,).
        log_q: log q(z_s) of the guide that drew them, (S,); ``None`` for reference draws.
        chains: the draws are ``chains`` chains of S / chains draws each, chain-major.
    """

    latents: dict[str, torch.Tensor]
    deterministic: dict[str, torch.Tensor]
    log_lik: torch.Tensor
    y_rep: torch.Tensor
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

    def sites(self) -> dict[str, torch.Tensor]:
        return {**self.latents, **self.deterministic}


# --- tracing draws through the model ---------------------------------------------------------------


@dataclass
class _Prototype:
    nesting: int            # how many plates the model nests: the draws' plate goes at dim -(nesting + 1)
    latent: list[str]       # latent sample sites, in the model's order
    deterministic: list[str]


def _prototype(model: Callable, x: torch.Tensor, y: torch.Tensor) -> _Prototype:
    with torch.no_grad(), poutine.block():
        trace = poutine.trace(model).get_trace(x, y)
    nesting, latent, deterministic = 0, [], []
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        frames = [f for f in site["cond_indep_stack"] if f.vectorized]
        nesting = max([nesting] + [-f.dim for f in frames])
        if site["infer"].get("_deterministic"):
            deterministic.append(name)
        elif not site["is_observed"] and name != OBS:  # y is drawn, not latent, when the model gets y=None
            latent.append(name)
    return _Prototype(nesting, latent, deterministic)


def _per_draw(value: torch.Tensor, n: int, nesting: int) -> torch.Tensor:
    """Sum a site's log-density over every dim but the draws' one (dim -(nesting+1)): shape (n,)."""
    value = value.reshape((1,) * max(0, nesting + 1 - value.dim()) + value.shape)
    return value.reshape(value.shape[0], -1).sum(-1).expand(n)


def _site_values(trace, names: list[str], n: int) -> dict[str, torch.Tensor]:
    return {name: trace.nodes[name]["value"].reshape((n,) + trace.nodes[name]["fn"].event_shape) for name in names}


def _broadcastable(values: dict[str, torch.Tensor], nesting: int) -> dict[str, torch.Tensor]:
    """(S, *shape) -> (S, 1, ..., 1, *shape): the draws' dim left of the model's plates."""
    return {k: v.reshape(v.shape[:1] + (1,) * nesting + v.shape[1:]) for k, v in values.items()}


def _trace_chunk(model, proto: _Prototype, x, y, n: int, guide=None, latents=None) -> Draws:
    with torch.no_grad(), poutine.block(), pyro.plate("_draws", n, dim=-proto.nesting - 1):
        if guide is not None:
            guide_trace = poutine.trace(guide).get_trace(x, y)
            run = poutine.replay(model, trace=guide_trace)
        else:
            guide_trace = None
            run = poutine.condition(model, _broadcastable(latents, proto.nesting))
        model_trace = poutine.trace(run).get_trace(x, y)
        model_trace.compute_log_prob()
        log_joint = sum(_per_draw(site["log_prob"], n, proto.nesting) for site in model_trace.nodes.values()
                        if site["type"] == "sample" and not site_is_subsample(site))
        log_q = None
        if guide_trace is not None:
            guide_trace.compute_log_prob()
            # the auxiliary latent vector's log q(u) plus the Delta sites' log-Jacobians: log q(z)
            log_q = sum(_per_draw(site["log_prob"], n, proto.nesting) for site in guide_trace.nodes.values()
                        if site["type"] == "sample" and not site_is_subsample(site))
        obs = model_trace.nodes[OBS]
        return Draws(
            latents=_site_values(model_trace, proto.latent, n),
            deterministic=_site_values(model_trace, proto.deterministic, n),
            log_lik=obs["log_prob"].reshape(n, -1),
            y_rep=obs["fn"].sample().reshape(n, -1),
            log_joint=log_joint,
            log_q=log_q,
        )


def _concat(parts: list[Draws], chains: int) -> Draws:
    cat = lambda get: torch.cat([get(p) for p in parts])  # noqa: E731
    first = parts[0]
    return Draws(
        latents={k: cat(lambda p, k=k: p.latents[k]) for k in first.latents},
        deterministic={k: cat(lambda p, k=k: p.deterministic[k]) for k in first.deterministic},
        log_lik=cat(lambda p: p.log_lik),
        y_rep=cat(lambda p: p.y_rep),
        log_joint=cat(lambda p: p.log_joint),
        log_q=None if first.log_q is None else cat(lambda p: p.log_q),
        chains=chains,
    )


def draws_from_guide(model: Callable, guide: Callable, x: torch.Tensor, y: torch.Tensor, num_samples: int,
                     chunk: int = 500) -> Draws:
    """``num_samples`` independent draws z_s ~ q of a fitted guide, with log q(z_s) (``chunk`` at a time)."""
    proto = _prototype(model, x, y)
    sizes = [min(chunk, num_samples - start) for start in range(0, num_samples, chunk)]
    return _concat([_trace_chunk(model, proto, x, y, n, guide=guide) for n in sizes], chains=1)


def draws_from_latents(model: Callable, latents: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                       chains: int = 1, chunk: int = 500) -> Draws:
    """Put given draws of every latent site, (S, *shape) each, through the model (reference posteriors)."""
    proto = _prototype(model, x, y)
    missing = set(proto.latent) - set(latents)
    if missing:
        raise ValueError(f"latents: no draws of the model's site(s) {sorted(missing)}")
    # the model's densities are in the data's precision (an exact posterior may come in float64)
    latents = {k: v.to(device=x.device, dtype=x.dtype if v.is_floating_point() else v.dtype)
               for k, v in latents.items()}
    total = len(next(iter(latents.values())))
    parts = [_trace_chunk(model, proto, x, y, min(chunk, total - start),
                          latents={k: v[start:start + chunk] for k, v in latents.items()})
             for start in range(0, total, chunk)]
    return _concat(parts, chains=chains)


def _latent_chunks(latents: dict[str, torch.Tensor], chunk: int) -> Iterator[dict[str, torch.Tensor]]:
    total = len(next(iter(latents.values())))
    for start in range(0, total, chunk):
        yield {k: v[start:start + chunk] for k, v in latents.items()}


def likelihood_at(model: Callable, latents: dict[str, torch.Tensor], x: torch.Tensor, chunk: int = 250,
                  statistic: str = "mean") -> torch.Tensor:
    """A statistic of the likelihood p(y | x_m, z_s) at new inputs ``x`` (M, ...) for each draw: (S, M).

    ``statistic``: ``"mean"`` (the probability p(y=1 | x, z) of a Bernoulli, the mean of a Normal),
    ``"location"`` (the logit of a Bernoulli, the mean of a Normal: the model's function f(x)) or
    ``"sample"`` (one draw y ~ p(y | x_m, z_s): the posterior predictive at x).
    """
    proto = _prototype(model, x, None)
    out = []
    for part in _latent_chunks(latents, chunk):
        n = len(next(iter(part.values())))
        with torch.no_grad(), poutine.block(), pyro.plate("_draws", n, dim=-proto.nesting - 1):
            trace = poutine.trace(poutine.condition(model, _broadcastable(part, proto.nesting))).get_trace(x, None)
        fn = trace.nodes[OBS]["fn"]
        while hasattr(fn, "base_dist"):  # Independent / expanded wrappers
            fn = fn.base_dist
        if statistic == "sample":
            value = trace.nodes[OBS]["value"]
        elif statistic == "location" and hasattr(fn, "logits"):
            value = fn.logits
        else:
            value = fn.mean
        out.append(value.expand(fn.batch_shape).reshape(n, -1))
    return torch.cat(out)


def predictive_mean(model: Callable, latents: dict[str, torch.Tensor], x: torch.Tensor,
                    chunk: int = 100) -> torch.Tensor:
    """The Bayesian predictive mean E_z[E(y | x_m, z)] at new inputs (M, ...): shape (M,).

    For a Bernoulli likelihood this is the posterior predictive p(y=1 | x_m), averaged over the draws.
    Draws are taken ``chunk`` at a time so that large grids stay within memory.
    """
    total, count = 0.0, 0
    for part in _latent_chunks(latents, chunk):
        mean = likelihood_at(model, part, x, chunk=chunk)
        total, count = total + mean.sum(0), count + len(mean)
    return total / count


# --- InferenceData -------------------------------------------------------------------------------


def to_inference_data(problem: Problem, draws: Draws, attrs: dict | None = None) -> az.InferenceData:
    """The draws with named dims and coords: ``posterior`` (``problem.var_names``), ``posterior_predictive``
    and ``log_likelihood`` (``y``, dims (chain, draw, obs)), ``observed_data`` (``y``), ``constant_data``
    (the raw inputs ``X``, dims (obs, input)) and ``sample_stats`` (``lp`` = log p(y, z) and, for a
    guide, ``log_q``: their difference is PSIS's log-weights).
    """
    chains = draws.chains
    per_chain = len(draws) // chains

    def by_chain(t: torch.Tensor) -> np.ndarray:
        return t.detach().cpu().numpy().reshape((chains, per_chain) + tuple(t.shape[1:]))

    sites = draws.sites()
    posterior = {name: by_chain(sites[name]) for name in problem.var_names if name in sites}
    sample_stats = {"lp": by_chain(draws.log_joint)}
    if draws.log_q is not None:
        sample_stats["log_q"] = by_chain(draws.log_q)
    y_rep = by_chain(draws.y_rep)
    if problem.likelihood == "bernoulli":
        y_rep = y_rep.astype(np.int8)  # 0/1 draws: an eighth of the file
    coords = {"obs": np.arange(len(problem.y)), **problem.coords}
    dims = {**problem.dims, OBS: ["obs"], "X": ["obs", "input"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return az.from_dict(
            posterior=posterior,
            posterior_predictive={OBS: y_rep},
            log_likelihood={OBS: by_chain(draws.log_lik)},
            observed_data={OBS: problem.y.detach().cpu().numpy()},
            constant_data={"X": problem.features.detach().cpu().numpy()},
            sample_stats=sample_stats,
            coords=coords,
            dims=dims,
            attrs={"model": problem.name, **(attrs or {})},
        )


def save_inference_data(idata: az.InferenceData, path: str | os.PathLike) -> Path:
    """Write ``idata`` as NetCDF at ``path`` (via a temporary file, so a crash never leaves half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        # zlib on the pointwise log-likelihood (draws x points floats) costs ~0.4 s for a ~10% smaller
        # file; the other groups are small or compress well (0/1 replicates)
        big = [g for g in idata.groups() if g == "log_likelihood"]
        idata.to_netcdf(tmp, groups=[g for g in idata.groups() if g not in big])
        if big:
            idata.to_netcdf(tmp, groups=big, compress=False, overwrite_existing=False)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; a result file is not
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def summary_text(idata: az.InferenceData, var_names: list[str], mcmc: bool = False) -> str:
    """``az.summary`` as text: moments and HDI; with ``mcmc``, also R-hat, ESS and MCSE.

    Draws from a guide are independent, so MCMC diagnostics say nothing about them and are left out.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = az.summary(idata, var_names=var_names, kind="all" if mcmc else "stats", round_to=3)
    return table.to_string()
