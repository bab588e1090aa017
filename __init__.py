"""deepprob: deep probabilistic methods with Pyro and PyTorch.

The path from conjugate Bayesian regression to deep generative models, and a tool to compare the
approximate posteriors of any Pyro model:

    import deepprob
    fit = deepprob.fit(model, data, guide="fullrank")            # SVI, a guide by name (settings: FitSettings)
    idata = deepprob.to_inference_data(fit)                      # ArviZ InferenceData of its draws
    result = deepprob.compare(model, data, reference="nuts")     # every guide against a reference
    result.table                                                 # pandas: ELBO, errors, W2, k-hat, ...

- ``deepprob.datasets``: the shared data layer (synthetic sets, CSV tables, digits, MNIST, Stan JSON).
- ``deepprob.models``: Pyro models (the generative stories).
- ``deepprob.guides``: variational families, selected by name from one registry.
- ``deepprob.inference``: by concern: ``fitting`` (SVI, its one settings object, Pyro's and the compiled
  engine), ``evaluation`` (compare, references, diagnostics), ``generative`` (the VAE's and AVB's training).
- ``deepprob.compiler``: plain torch: a step traced once and compiled (C or Inductor).
- ``deepprob.adversarial``: plain torch modules (discriminators, GANs); no Pyro.
- ``deepprob.examples``: one ``main(args)`` per ``deepprob <example>`` subcommand.

The names below are imported when first used, so that ``import deepprob`` (and the command line's
``--help``) stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "fit": "deepprob.inference.evaluation.auto",
    "fit_svi": "deepprob.inference.fitting.svi",
    "FitResult": "deepprob.inference.fitting.result",
    "FitSettings": "deepprob.inference.fitting.settings",
    "compare": "deepprob.inference.evaluation.compare",
    "Comparison": "deepprob.inference.evaluation.compare",
    "vsbc": "deepprob.inference.evaluation.vsbc",
    "to_inference_data": "deepprob.inference.evaluation.arviz_data",
    "build_guide": "deepprob.guides.registry",
    "GuideOptions": "deepprob.guides.registry",
    "GUIDES": "deepprob.guides.registry",
    "DEFAULT_GUIDES": "deepprob.guides.registry",
}
__all__ = list(_EXPORTS)

if TYPE_CHECKING:
    from deepprob.guides.registry import DEFAULT_GUIDES, GUIDES, GuideOptions, build_guide  # noqa: F401
    from deepprob.inference.evaluation.arviz_data import to_inference_data  # noqa: F401
    from deepprob.inference.evaluation.auto import fit  # noqa: F401
    from deepprob.inference.evaluation.compare import Comparison, compare  # noqa: F401
    from deepprob.inference.evaluation.vsbc import vsbc  # noqa: F401
    from deepprob.inference.fitting.result import FitResult  # noqa: F401
    from deepprob.inference.fitting.settings import FitSettings  # noqa: F401
    from deepprob.inference.fitting.svi import fit_svi  # noqa: F401


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'deepprob' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
