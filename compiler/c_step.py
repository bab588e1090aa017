"""A traced step as one plain C function, compiled by the system's C compiler in a fraction of a second.

Inductor turns a small model's training step into fast code, but its first compile costs seconds
(its Python passes, then one g++ run per kernel with the 150 MB precompiled header of ATen). For the
static graphs of SVI on this project's models, small or over a large data set, this module does the
same job the simple way:

1. ``make_fx(functionalize(step))`` traces the step into aten operations without views or in-place
   updates (those become plain functions; the updates of the inputs are ``copy_`` at the end);
2. every value gets a buffer of its static size, or is a strided view of another value's buffer
   (views cost nothing, their strides are worked out on meta tensors); constants (a captured data set)
   are passed in a layout of ours: a long axis innermost, X and X^T one copy
   (:meth:`~deepprob.compiler.c.emitter.Emitter.constant`);
3. every operation becomes a C loop nest over its static shape (elementwise with broadcasting,
   reductions, ``mm``/``bmm``, triangular solves, scatters into views), in one function. Elementwise
   operations, full sums and the matrix products of a short or a long k over the same shape are fused
   into one loop (:class:`~deepprob.compiler.c.loops.LoopGroup`), scheduled out of order where the
   dependencies allow (:meth:`~deepprob.compiler.c.emitter.Emitter.fusing`): the forward pass, loss and
   backward pass of a model over N data rows become one pass over the data, with no intermediate of N
   elements in memory;
4. ``cc -O3 -march=native`` compiles it (vector math from glibc's libmvec through ``omp declare
   simd``), and ``ctypes`` calls it with the tensors' data pointers.

An operation outside the supported set raises :class:`Unsupported`; the caller then compiles with
Inductor. So does dense linear algebra where BLAS and LAPACK win (a matrix product, Cholesky
factorisation or triangular solve of more than :data:`DENSE_MAX_WORK` multiply-adds with no dimension
under :data:`DENSE_MIN_DIM`), and a graph whose intermediates, after fusion, need more than
:data:`MAX_BUFFER_BYTES` of memory (they live in static buffers between calls). The compiled library is
cached on disk by the hash of its source, in a folder of the user's own that no one else can write
(:func:`~deepprob.compiler.c_library.cache_dir`; else in a private one).

It computes what eager torch computes: arithmetic is IEEE single/double as torch's (float32 values stay
float32, libm's float functions), NaN and inf propagate as in torch (``relu``, ``maximum``, ``amax`` of
a NaN are NaN, a matrix product with a NaN is NaN), sums and the sums of products of matrix products
accumulate in double, so results agree with torch's to float rounding (not bit for bit: sums are
vectorised, in another order than torch's). What torch raises for, it raises for: an index out of range
(``IndexError``, with torch's message), a failed Cholesky factorisation that the graph checks
(``torch.linalg.LinAlgError``, raised by torch's own check on the same info), a call with tensors of
other sizes, strides, dtypes or devices than compiled for (``TypeError``). On an error the inputs are
left as they were (their updates come last).

This module traces and compiles (:func:`compile_c`); the code generator is the sub-package
:mod:`deepprob.compiler.c` (the graph walk, and one module per family of operations).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from deepprob.compiler.c.emitter import MAX_BUFFER_BYTES
from deepprob.compiler.c.generator import Generator
from deepprob.compiler.c.linalg import DENSE_MAX_WORK, DENSE_MIN_DIM
from deepprob.compiler.c.loops import STRIP
from deepprob.compiler.c.matmul import matmul_plan
from deepprob.compiler.c.values import Ref
from deepprob.compiler.c_library import (
    CStep,
    Layout,
    Unsupported,
    agrees_to_rounding,
    build_library,
    c_compiler,
    rebuilt_if_broken,
    trusted_cache_dir,
)
from deepprob.compiler.tracing import trace

__all__ = ["DENSE_MAX_WORK", "DENSE_MIN_DIM", "MAX_BUFFER_BYTES", "STRIP", "CStep", "Generator", "Ref", "Unsupported",
           "c_compiler", "compile_c", "matmul_plan"]

aten = torch.ops.aten
AS_STRIDED = (aten.as_strided_copy.default, aten.as_strided_scatter.default)


def _check_functionalised(step: Callable, gm, example_inputs: Sequence[torch.Tensor]) -> None:
    """Raise :class:`Unsupported` where the functionalised graph ``gm`` does not compute what ``step`` computes
    at the example inputs (outputs, and the inputs' updates), from the same random numbers.

    Run where the graph has an ``as_strided`` view: torch 2.13's functionalisation can drop a view's storage
    offset in the gradient of an in-place write into a slice (``h[t] = ...``, autograd's ``CopySlices``),
    reading element 0 where the step reads element t (``tests/test_c_step_semantics.py``).
    """
    results = []
    for fn in (step, gm):
        inputs = [x.clone() for x in example_inputs]
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(0)
            out = fn(*inputs)
        results.append(_tensors_in((out, inputs)))
    if not all(agrees_to_rounding(got, want) for want, got in zip(*results)):
        raise Unsupported("torch's functionalisation of this step computes other values (an as_strided view: the "
                          "gradient of an in-place write into a slice)")


def _tensors_in(value) -> list:
    """The tensors of nested tuples and lists, in order."""
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors_in(v)]
    return [value] if isinstance(value, torch.Tensor) else []


def compile_c(step: Callable, example_inputs: Sequence[torch.Tensor]) -> CStep:
    """``step`` traced and compiled to C (see the module's docstring).

    Raises:
        Unsupported: an operation, dtype, device or platform this backend does not handle.
    """
    from torch.func import functionalize

    if c_compiler() is None:
        raise Unsupported("not a Linux x86-64 machine with a C compiler")
    if any(x.device.type != "cpu" for x in example_inputs):
        raise Unsupported("tensors not on the CPU")
    gm = trace(functionalize(step, remove="mutations_and_views"), example_inputs)
    if any(node.target in AS_STRIDED for node in gm.graph.nodes):
        _check_functionalised(step, gm, example_inputs)
    # the limits as this module has them now (one place to change them: the tests lower MAX_BUFFER_BYTES and
    # watch matmul_plan here)
    gen = Generator(gm, example_inputs, max_buffer_bytes=MAX_BUFFER_BYTES, matmul_plan=matmul_plan)
    gen.generate()

    def load() -> CStep:
        library = build_library(gen.source())
        return CStep(library, gen.constants, gen.outputs, [Layout.of(x) for x in example_inputs], gen.output_spec,
                     gen.checks)

    try:
        return rebuilt_if_broken(load, [trusted_cache_dir()])
    except OSError as err:  # the library does not load (a missing libmvec, say)
        raise Unsupported(f"loading the compiled step failed: {err}") from err
