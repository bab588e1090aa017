"""Whole training steps as compiled kernels: trace once with ``make_fx``, compile with Inductor.

For small models a training step is a few hundred tiny tensor operations, and Python's dispatch of
each costs more than its arithmetic. Tracing the step (loss, gradients by ``torch.func``, optimiser
update) into one graph of aten operations and compiling it removes that overhead. Used by the
compiled SVI engine (:mod:`deepprob.inference.fast_svi`); plain torch code can use it the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults


def adam_update_(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor], exp_avgs: Sequence[torch.Tensor],
                 exp_avg_sqs: Sequence[torch.Tensor], step: torch.Tensor | Sequence[torch.Tensor],
                 lr: torch.Tensor | float, betas: tuple[float, float] = ADAM_BETAS, eps: float = ADAM_EPS) -> None:
    """One Adam update, in place, with ``torch.optim.Adam``'s arithmetic (no weight decay, no amsgrad).

    ``step`` (a 0-dim tensor, the steps taken so far, or one per parameter as in ``torch.optim.Adam``'s
    state, all equal) is incremented in place. With t = step + 1:

        m <- m + (1 - b1) (g - m),   v <- b2 v + (1 - b2) g^2,
        p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

    Written with out-of-place arithmetic and ``copy_`` so that ``make_fx`` traces it as input mutations.
    """
    b1, b2 = betas
    counters = [step] if isinstance(step, torch.Tensor) else list(step)
    t = counters[0] + 1
    # in float64, as torch.optim.Adam computes them (from the step count as a Python float)
    step_size = lr / (1 - b1 ** t.double())
    root_bias2 = (1 - b2 ** t.double()).sqrt()
    for p, g, m, v in zip(params, grads, exp_avgs, exp_avg_sqs):
        m_new = m + (1 - b1) * (g - m)
        v_new = b2 * v + (1 - b2) * g * g
        p.copy_(p - step_size * m_new / (v_new.sqrt() / root_bias2 + eps))
        m.copy_(m_new)
        v.copy_(v_new)
    for counter in counters:
        counter.copy_(t)


def compile_step(step: Callable, example_inputs: list[torch.Tensor]) -> Callable:
    """``step`` (tensors -> tensors, in-place updates allowed) traced by ``make_fx`` and compiled by Inductor.

    The trace runs ``step`` once on ``example_inputs``. Subexpressions of constants are folded, and the
    error checks of factorisations of constants (which passed while tracing) are dropped: they are
    side effects, which would keep Inductor from caching the compiled graph on disk. With fake inputs
    that carry a shape environment, Inductor's FX graph cache applies: the same step (same graph,
    shapes and constants) compiles in well under a second the next time, in any process.
    """
    from torch._inductor import compile as inductor_compile
    from torch._inductor.constant_folding import constant_fold
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.proxy_tensor import make_fx
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    graph = make_fx(step)(*example_inputs)
    try:
        constant_fold(graph)
    except Exception:  # noqa: BLE001 - folding is an optimisation (it fails on some captured constants)
        graph = make_fx(step)(*example_inputs)
    for node in list(graph.graph.nodes):
        if node.target is torch.ops.aten._linalg_check_errors.default:
            graph.graph.erase_node(node)
    graph.recompile()
    fake_mode = FakeTensorMode(shape_env=ShapeEnv(), allow_non_fake_inputs=True)
    fakes = [fake_mode.from_tensor(x, static_shapes=True) for x in example_inputs]
    return inductor_compile(graph, fakes)
