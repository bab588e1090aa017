"""Variational families (guides), selected by name: see :data:`GUIDES` and :func:`build_guide`.

Every guide is a Pyro ``AutoContinuous`` guide over the model's unconstrained latent vector, so
``guide.get_posterior()`` is a distribution over that vector whatever the family.
"""

from deepprob.guides.registry import DEFAULT_GUIDES, GUIDES, GuideOptions, build_guide

__all__ = ["DEFAULT_GUIDES", "GUIDES", "GuideOptions", "build_guide"]
