"""Whole training steps as compiled code: trace once with ``make_fx``, compile with Inductor or to C.

For small models a training step is a few hundred tiny tensor operations, and Python's dispatch of
each costs more than its arithmetic. Tracing the step (loss, gradients by ``torch.func``, optimiser
update) into one graph of aten operations and compiling it removes that overhead. Used by the
compiled SVI engine (:mod:`~deepprob.inference.fitting.svi_steps`, through the C backend of
:mod:`~deepprob.compiler.c_step` where it applies), the VAE and the GAN trainers (Inductor).
Plain torch: the GAN code uses it without Pyro.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from deepprob.compiler.tracing import trace


@functools.cache
def prepare_inductor() -> None:
    """Import Inductor and settle the CPU's vector instruction set, once per process.

    Inductor checks each vector ISA the CPU reports (AVX2, AVX-512, ...) by compiling a test program
    and loading it in a fresh Python subprocess: about a second in every process, even when the
    programs are cached. Once that check has confirmed every ISA the CPU reports, the verdict is kept
    in Inductor's cache folder (keyed by torch version, compiler and CPU), and later processes tell
    Inductor to trust the CPU's report (``config.cpp.vec_isa_ok``) instead of checking again. Where
    the check rejected an ISA the CPU reports, nothing is kept and every process checks.

    Also makes forked children compile safely (see below). Called by :func:`compile_step`; call it
    before forking workers so that they inherit the work.
    """
    import torch._inductor.compile_fx  # noqa: F401 - the import is the work
    from torch._inductor import config, cpu_vec_isa
    from torch._inductor.async_compile import AsyncCompile
    from torch._inductor.codecache import cache_dir

    # Inductor compiles kernels on a thread pool, made once per process; a forked child inherits the pool
    # but not its threads, and would wait forever on its first compile. The child makes a pool of its own.
    os.register_at_fork(after_in_child=AsyncCompile.pool.cache_clear)
    if config.cpp.vec_isa_ok is not None or platform.machine() not in ("x86_64", "AMD64"):
        return
    try:
        flags = cpu_vec_isa.x86_isa_checker()
        reported = [str(isa) for isa in cpu_vec_isa.supported_vec_isa_list
                    if all(flag in flags for flag in str(isa).split())]
        machine = f"{torch.__version__} {config.cpp.cxx} {platform.processor()} {' '.join(reported)}"
        verdict = Path(cache_dir()) / "deepprob" / f"vec-isa-ok-{hashlib.sha256(machine.encode()).hexdigest()[:16]}"
        trusted = trust_reported_isa(verdict, reported, lambda: [str(isa) for isa in cpu_vec_isa.valid_vec_isa_list()])
    except Exception:  # noqa: BLE001 - private Inductor API: without it, Inductor checks as it always does
        return
    if trusted:
        # also in the process that checked: the setting is part of Inductor's cache key, so every process
        # compiles, and finds cached kernels, under the same key
        config.cpp.vec_isa_ok = True


def trust_reported_isa(verdict: Path, reported: list[str], check: Callable[[], list[str]]) -> bool:
    """Whether the CPU's ``reported`` vector ISAs can be used unchecked: yes when the file ``verdict``
    exists, or when ``check()`` (Inductor's check, slow) confirms every one of them, which creates it."""
    if verdict.exists():
        return True
    if check() != reported:
        return False
    verdict.parent.mkdir(parents=True, exist_ok=True)
    verdict.touch()
    return True


BACKENDS = ("inductor", "c", "auto")


@dataclass
class Compiled:
    """A compiled step: call ``fn`` with tensors laid out as the example inputs were.

    Attributes:
        fn: the compiled function.
        by: the compiler that built it, ``"c"`` or ``"inductor"``.
        fallback: with ``backend="auto"``, why the C backend declined (then ``by`` is ``"inductor"``).
    """

    fn: Callable
    by: str
    fallback: str | None = None

    def __call__(self, *inputs):
        return self.fn(*inputs)

    def bind(self, leading: Sequence[torch.Tensor]) -> Callable:
        """The step with its first inputs fixed to ``leading`` (a fit's state tensors, updated in place):
        a function of the remaining inputs. The C step checks the fixed tensors once, here, and the others
        at every call."""
        bind = getattr(self.fn, "bind", None)
        if bind is not None:
            return bind(leading)
        leading, fn = list(leading), self.fn
        return lambda *rest: fn(*leading, *rest)


def compile_step(step: Callable, example_inputs: list[torch.Tensor], check_inputs: bool = True,
                 backend: str = "inductor", inductor_options: dict | None = None) -> Compiled:
    """``step`` (tensors -> tensors, in-place updates allowed) traced by ``make_fx`` and compiled.

    ``backend``: ``"inductor"``; ``"c"``, one plain C function (:mod:`~deepprob.compiler.c_step`:
    CPU only, a subset of aten operations, compiled in well under a second, for small graphs and for
    graphs that stream over a large data set, but not large matrix products: those are BLAS's); ``"auto"``,
    C where it applies, else Inductor (the reason is reported once on stderr and kept in ``fallback``).

    The compiled step takes tensors of the sizes, strides and dtypes of ``example_inputs`` (the C step
    checks them at every call, and raises for others). With ``check_inputs=False`` Inductor's step no
    longer checks, at each call, that they have them (and are aligned as the examples): a call with any
    other tensor is then undefined. That saves about a microsecond an input a call, a third of the time
    of a small model's training step with its 30-odd inputs (parameters, Adam's moments, averages); it
    is for callers that always pass the same tensors, or fresh ones made the same way.

    The trace runs ``step`` once on ``example_inputs``. Subexpressions of constants are folded, and the
    error checks of factorisations of constants (which passed while tracing) are dropped: they are
    side effects, which would keep Inductor from caching the compiled graph on disk; checks of values
    computed from the inputs stay. With fake inputs that carry a shape environment, Inductor's FX graph
    cache applies: the same step (same graph, shapes and constants) compiles in well under a second the
    next time, in any process.

    ``inductor_options``: settings of Inductor's config for this compile (``fallback_random=True``: the step
    draws torch's own random numbers, as eager torch does from the same seed).
    """
    from torch._inductor import compile as inductor_compile
    from torch._inductor import config
    from torch._inductor.constant_folding import constant_fold
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    fallback = None
    if backend != "inductor":
        from deepprob.compiler.c_step import Unsupported, compile_c

        try:
            return Compiled(compile_c(step, example_inputs), "c")
        except Unsupported as err:
            if backend == "c":
                raise
            from deepprob.progress import report_once

            fallback = report_once(f"the C step does not handle this step ({err}); it is compiled by Inductor "
                                   "instead (seconds to compile, not a fraction of one)")
    prepare_inductor()

    def build() -> Compiled:  # from the trace on: Inductor changes the graph it compiles
        graph = trace(step, example_inputs)
        try:
            constant_fold(graph)
        except Exception:  # noqa: BLE001 - folding is an optimisation (it fails on some captured constants)
            graph = trace(step, example_inputs)
        for node in list(graph.graph.nodes):
            if node.target is torch.ops.aten._linalg_check_errors.default and all(
                    arg.op == "get_attr" for arg in node.all_input_nodes):
                graph.graph.erase_node(node)
        graph.recompile()
        fake_mode = FakeTensorMode(shape_env=ShapeEnv(), allow_non_fake_inputs=True)
        fakes = [fake_mode.from_tensor(x, static_shapes=True) for x in example_inputs]
        with config.patch(size_asserts=check_inputs, alignment_asserts=check_inputs, **(inductor_options or {})):
            return Compiled(inductor_compile(graph, fakes), "inductor", fallback)

    from torch._inductor.codecache import cache_dir

    from deepprob.compiler.c_library import rebuilt_if_broken

    # Inductor writes its libraries in place: a compile interrupted by Ctrl-C can leave a 0-byte one behind
    return rebuilt_if_broken(build, [Path(cache_dir())])
