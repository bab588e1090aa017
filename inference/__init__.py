"""Pyro inference, by concern: fitting, evaluation, deep generative models.

- :mod:`~deepprob.inference.fitting`: SVI (``fit``, ``fit_svi``, ``fit_map``), its settings, objectives and
  engines; the compiled engine's SVI steps (the compiler itself is :mod:`deepprob.compiler`, plain torch).
- :mod:`~deepprob.inference.evaluation`: how good a posterior is: ``compare``, reference posteriors (exact,
  NUTS, posteriordb's draws), draws and ArviZ data, diagnostics, KL divergences, the scoreboard.
- :mod:`~deepprob.inference.generative`: training and evaluating the deep generative models (the VAE, AVB).

The names below are imported when first used (``import deepprob`` stays light).
"""

import importlib

_EXPORTS = {
    "FitResult": "fitting.result", "fit": "fitting.svi", "fit_svi": "fitting.svi", "fit_map": "fitting.svi",
    "estimate_elbo": "fitting.result", "optimise": "fitting.pyro_engine", "FitSettings": "fitting.settings",
    "compare": "evaluation.compare", "Comparison": "evaluation.compare",
    "to_inference_data": "evaluation.arviz_data",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'deepprob.inference' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"deepprob.inference.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
