"""The compiled engine: whole training steps traced once and compiled (reached through the fitting functions).

- :mod:`~deepprob.inference.compiled.compiling`: ``compile_step`` (``make_fx`` trace, then one C function or
  Inductor's kernels); plain torch.
- :mod:`~deepprob.inference.compiled.c_step`: the C backend (:mod:`~deepprob.inference.compiled.c_library`: building,
  caching and calling its libraries); plain torch.
- :mod:`~deepprob.inference.compiled.reparam`: the guides as pure functions of parameters and noise.
- :mod:`~deepprob.inference.compiled.svi_steps`: SVI steps of a model and guide (``fit_svi(engine="compiled")``).
- :mod:`~deepprob.inference.compiled.vae_steps`: the VAE trainer's steps (``fit_vae(engine="compiled")``).

Nothing is imported here: importing a plain-torch module of this package loads neither Pyro nor the others.
"""
