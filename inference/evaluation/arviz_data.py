"""Posterior draws of a Pyro model as ArviZ ``InferenceData``: one layout for every guide and reference.

:func:`to_inference_data` (``deepprob.to_inference_data``) lays out the draws of one fit
(:class:`~.draws.Draws`, or a fitted guide's, drawn here) with named dims and coords:
groups ``posterior`` (the latent and deterministic sites), ``posterior_predictive`` (a replicate of each
observed site per draw), ``log_likelihood`` (each observed site's pointwise log p(y_n | z_s), for
PSIS-LOO), ``observed_data``, ``constant_data`` (what the caller gives: the inputs ``X``, say) and
``sample_stats`` (``lp`` = log p(y, z) and, for a guide, ``log_q``: their difference is PSIS's
log-weights). :func:`save_inference_data` writes NetCDF atomically.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from deepprob.files import atomic_path
from deepprob.inference.evaluation.draws import Draws, draws_from_guide

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)  # arviz 0.2x announces its 1.0 refactor at import
    import arviz as az


def _compact(values: np.ndarray) -> np.ndarray:
    """Integer-valued replicates (counts, 0/1 labels) as the smallest integer type that holds them."""
    if values.size and np.all(values == np.round(values)):
        for dtype in (np.int8, np.int16, np.int32):
            info = np.iinfo(dtype)
            if values.min() >= info.min and values.max() <= info.max:
                return values.astype(dtype)
    return values


def to_inference_data(source, *, num_draws: int = 1000, var_names: list[str] | None = None,
                      coords: dict | None = None, dims: dict | None = None,
                      constant_data: dict[str, torch.Tensor] | None = None,
                      attrs: dict | None = None) -> az.InferenceData:
    """ArviZ InferenceData of one fit: ``deepprob.to_inference_data``.

    Args:
        source: :class:`~.draws.Draws`, or a :class:`~deepprob.inference.fitting.svi.FitResult`
            (``num_draws`` independent draws of its guide are taken, with log q).
        var_names: the sites of the ``posterior`` group (default: every latent and deterministic site).
        coords, dims: ArviZ's: labels of dims, and the dims of each variable (without chain and draw).
        constant_data: data to keep beside the draws (the inputs ``X``, say).
        attrs: attributes of the InferenceData (the guide's name, say).
    """
    draws = source if isinstance(source, Draws) else draws_from_guide(
        source.model, source.guide, *source.args, num_samples=num_draws, **source.kwargs)
    chains = draws.chains
    per_chain = len(draws) // chains

    def by_chain(t: torch.Tensor) -> np.ndarray:
        return t.detach().cpu().numpy().reshape((chains, per_chain) + tuple(t.shape[1:]))

    sites = draws.sites()
    names = list(sites) if var_names is None else [name for name in var_names if name in sites]
    coords, dims = dict(coords or {}), dict(dims or {})
    for name in names:  # a vector site without dims of its own: labelled 1..K, as Stan and the compared labels
        shape = tuple(sites[name].shape[1:])
        if name not in dims and shape:
            dims[name] = [f"{name}_dim_{i}" for i in range(len(shape))]
            coords.update({dim: np.arange(1, n + 1) for dim, n in zip(dims[name], shape)})
    sample_stats = {"lp": by_chain(draws.log_joint)}
    if draws.log_q is not None:
        sample_stats["log_q"] = by_chain(draws.log_q)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return az.from_dict(
            posterior={name: by_chain(sites[name]) for name in names},
            posterior_predictive={name: _compact(by_chain(value)) for name, value in draws.y_rep.items()},
            log_likelihood={name: by_chain(value) for name, value in draws.log_lik.items()},
            observed_data={name: value.detach().cpu().numpy() for name, value in draws.observed.items()},
            constant_data={name: torch.as_tensor(value).detach().cpu().numpy()
                           for name, value in (constant_data or {}).items()},
            sample_stats=sample_stats,
            coords=coords,
            dims=dims,
            attrs=attrs or {},
        )


LOG_LIK_QUANTUM = 1e-6  # nats: a point's log-likelihood is kept to this, an elpd over N points to about N * 3e-7
QUANTISED = {"dtype": "int32", "scale_factor": LOG_LIK_QUANTUM, "_FillValue": np.iinfo(np.int32).min,
             "zlib": True, "shuffle": True, "complevel": 4}


def save_inference_data(idata: az.InferenceData, path: str | os.PathLike) -> Path:
    """Write ``idata`` as NetCDF at ``path`` (via a temporary file, so a crash never leaves half a file).

    Pointwise log-likelihoods are stored to :data:`LOG_LIK_QUANTUM` nats (see the code for why)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        # the pointwise log-likelihood (draws x points) is most of the file: stored to LOG_LIK_QUANTUM nats as
        # integers (CF scale_factor, read back as floats by ArviZ and xarray), zlib-compressed, it takes half
        # the bytes of float32 (whose random low bits no compressor shrinks); the other groups compress well
        big = [g for g in idata.groups() if g == "log_likelihood"]
        idata.to_netcdf(tmp, groups=[g for g in idata.groups() if g not in big])
        for group in big:
            data = idata[group]
            encoding = {name: QUANTISED for name, values in data.data_vars.items() if values.dtype.kind == "f"
                        and np.isfinite(values.values).all() and np.abs(values.values).max() < 2e9 * LOG_LIK_QUANTUM}
            data.to_netcdf(tmp, mode="a", group=group, encoding=encoding)
    return path


def summary_text(idata: az.InferenceData, var_names: list[str], mcmc: bool = False) -> str:
    """``az.summary`` as text: moments and HDI; with ``mcmc``, also R-hat, ESS and MCSE.

    Draws from a guide are independent, so MCMC diagnostics say nothing about them and are left out.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = az.summary(idata, var_names=var_names, kind="all" if mcmc else "stats", round_to=3)
    return table.to_string()
