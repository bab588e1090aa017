"""Fitting and checking posteriors: SVI, comparisons, exact conjugate answers, divergences, diagnostics.

- :mod:`~deepprob.inference.svi`: ``fit``, ``fit_svi``, ``fit_map`` (the engines: :mod:`.engines`, the
  compiled one: :mod:`.compiled`);
- :mod:`~deepprob.inference.compare`: ``compare`` and its ``Comparison``;
- :mod:`~deepprob.inference.draws`: posterior draws put through the model; :mod:`.arviz_data`: as ArviZ data;
- :mod:`~deepprob.inference.references`: NUTS, exact and given reference draws;
- :mod:`.diagnostics`, :mod:`.divergences`, :mod:`.exact`, :mod:`.kl`, :mod:`.vae_fit`, :mod:`.vae_eval`.

The names below are imported when first used (the plain-torch modules of :mod:`.compiled` must not load Pyro).
"""

import importlib

_EXPORTS = {
    "FitResult": "svi", "fit": "svi", "fit_svi": "svi", "fit_map": "svi", "estimate_elbo": "svi", "optimise": "svi",
    "compare": "compare", "Comparison": "compare", "to_inference_data": "arviz_data",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'deepprob.inference' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"deepprob.inference.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
