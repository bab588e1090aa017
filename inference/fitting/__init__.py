"""Fitting a guide to a Pyro model: SVI on Pyro's engine or the compiled one, from one :class:`FitSettings`.

- :mod:`.settings`: :class:`~deepprob.inference.fitting.settings.FitSettings`, every default of a fit and the
  rules that pick them, validated once;
- :mod:`.svi`: ``fit``, ``fit_svi``, ``fit_map``, ``estimate_elbo``;
- :mod:`.objectives`: ``elbo``, ``renyi:ALPHA``, ``iwae:K``; :mod:`.engines`: ``pyro``, ``compiled``, ``auto``;
- :mod:`.svi_steps`: the compiled engine's SVI steps (a model's log density and a guide's pure form, compiled
  by :mod:`deepprob.compiler`).
"""
