"""The compiler: a training step traced once and compiled to one C function, or by Inductor. Plain torch.

One small API::

    from deepprob.compiler import compile_step
    step = compile_step(fn, example_inputs)   # fn: tensors -> tensors (a whole step, optimiser included)
    outputs = step(*inputs)                   # what fn(*inputs) computes (checked on the example inputs)
    step.compiled_by                          # "c" or "inductor"

- :mod:`.compiling`: ``compile_step`` (the ``make_fx`` trace, then the C backend or Inductor) and its result;
- :mod:`.c_step`: the C backend (a traced graph to one C function; its code generator: the sub-package
  :mod:`.c`); :mod:`.c_library`: building, caching and calling its shared libraries, and the check that a
  compiled value is eager torch's.

It imports no Pyro and nothing of :mod:`deepprob.inference`; torch's private APIs it needs are confined here.
"""

from deepprob.compiler.c_library import Unsupported, agrees_to_rounding, c_compiler
from deepprob.compiler.compiling import Compiled, compile_step, prepare_inductor

__all__ = ["Compiled", "Unsupported", "agrees_to_rounding", "c_compiler", "compile_step", "prepare_inductor"]
