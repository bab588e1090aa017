"""Reductions: sum, mean, prod, amax, amin over some dimensions, and what is made of them (softmax,
log_softmax, logsumexp and their gradients). Sums of floats accumulate in double (they then agree with
torch's to float rounding, whatever the order); a full sum or mean joins the loop group over its operand."""

from __future__ import annotations

import math
from collections.abc import Sequence

from deepprob.compiler.c.emitter import Emitter, Op, into_new_buffer
from deepprob.compiler.c.values import C_TYPES, FLOATS, Ref, contiguous_strides, for_loop, math_fn

# per reduction: the accumulator's start, and the statement that takes in a value {v}
INITIAL = {"sum": "0", "mean": "0", "prod": "1", "amax": "-INFINITY", "amin": "INFINITY"}
COMBINE = {"sum": "acc += {v};", "mean": "acc += {v};", "prod": "acc *= {v};",
           "amax": "acc = ({v} > acc || {v} != {v}) ? {v} : acc;",  # nan wins, as in torch
           "amin": "acc = ({v} < acc || {v} != {v}) ? {v} : acc;"}


def reduction_dims(x: Ref, dims) -> list[int]:
    """The dimensions of ``x`` that ``dims`` (an int, a list, or None or [] for all) names, sorted."""
    nd = len(x.sizes)
    dims = range(nd) if dims is None or dims == [] else [dims] if isinstance(dims, int) else dims
    return sorted(d % nd for d in dims) if nd else []


def reduction(gen: Emitter, name: str, out: Ref, x: Ref, dims) -> None:
    """out = ``name`` of ``x`` over ``dims`` (all by default); ``out`` has the traced shape (with or without the
    kept size-1 dimensions: same layout)."""
    dims = reduction_dims(x, dims)
    kept = [d for d in range(len(x.sizes)) if d not in dims]
    outer, inner = tuple(x.sizes[d] for d in kept), tuple(x.sizes[d] for d in dims)
    if name in ("sum", "mean") and math.prod(outer) == 1:
        total(gen, out, x, math.prod(inner) if name == "mean" else None)
    else:
        # x with the reduced dimensions innermost
        xp = Ref(x.buf, x.dtype, outer + inner, tuple(x.strides[d] for d in kept + dims), x.offset)
        reduction_loops(gen, name, out, xp, len(outer))


def total(gen: Emitter, out: Ref, x: Ref, mean_of: int | None) -> None:
    """out = the sum of all of ``x`` (divided by ``mean_of``, a mean), fused with the loops over x's shape."""
    group, ((buf, at),) = gen.fused_sums(x.sizes, [x], out)
    mean = f" / {mean_of}" if mean_of is not None else ""
    group.accumulate(f"(double){group.read(buf, at)}", out.buf,
                     lambda acc: f"{out.buf}[{out.offset}] = ({C_TYPES[out.dtype]})({acc}{mean});")


def reduction_loops(gen: Emitter, name: str, out: Ref, xp: Ref, n_outer: int) -> None:
    """out = ``name`` of ``xp`` over its dimensions after the first ``n_outer``: a loop nest of its own, the
    innermost loop of a sum vectorised."""
    outer, inner = xp.sizes[:n_outer], xp.sizes[n_outer:]
    acc = "double" if xp.dtype in FLOATS or name in ("sum", "mean") else C_TYPES[xp.dtype]
    finish = f"acc / {math.prod(inner)}" if name == "mean" else "acc"
    outer_vars = [f"o{d}" for d in range(len(outer))]
    inner_vars = [f"r{d}" for d in range(len(inner))]
    lines = ["{"] + [for_loop(v, n) for v, n in zip(outer_vars, outer)] + [f"  {acc} acc = {INITIAL[name]};"]
    for d, (v, n) in enumerate(zip(inner_vars, inner)):
        if d == len(inner) - 1 and name in ("sum", "mean"):
            lines.append("  #pragma omp simd reduction(+:acc)")
        lines.append("  " + for_loop(v, n))
    element = gen.index(xp, outer + inner, outer_vars + inner_vars)
    lines.append("    " + COMBINE[name].format(v=f"({acc}){element}"))
    lines += ["  }"] * len(inner)
    target = gen.index(Ref(out.buf, out.dtype, outer, contiguous_strides(outer)), outer, outer_vars)
    lines.append(f"  {target} = ({C_TYPES[out.dtype]})({finish});")
    lines += ["}"] * len(outer) + ["}"]
    gen.emit(["  " + line for line in lines])


def reduce(gen: Emitter, name: str, x: Ref, dims: Sequence[int]) -> Ref:
    """A new buffer: ``name`` (sum, amax, ...) of ``x`` over ``dims``, the dimensions kept (size 1)."""
    nd = len(x.sizes)
    dims = [d % nd for d in dims]
    out = gen.new_buffer(tuple(1 if d in dims else n for d, n in enumerate(x.sizes)), x.dtype)
    reduction(gen, name, out, x, dims)
    return out


def write_reduction(gen: Emitter, op: Op, out: Ref) -> None:
    """sum, mean, prod, amax or amin of x over ``dim`` (all by default)."""
    reduction(gen, op.name, out, op.args[0], op.arg(1, "dim"))


def write_normalised(gen: Emitter, op: Op, out: Ref) -> None:
    """log_softmax, softmax or logsumexp of ``x`` over ``dims``, with the maximum subtracted first."""
    name, x, dims = op.name, op.args[0], op.args[1]
    dims = [dims] if isinstance(dims, int) else list(dims)
    f = math_fn(x.dtype)
    top = reduce(gen, "amax", x, dims)
    if name == "logsumexp":
        # as torch: an infinite maximum is replaced by 0, so that an all -inf slice gives -inf (not NaN)
        # and one with +inf gives +inf; softmax and log_softmax subtract the maximum as it is (NaN there)
        safe = gen.new_buffer(top.sizes, top.dtype)
        gen.elementwise(safe, [top], lambda v, _: f"(isinf({v[0]}) ? 0 : {v[0]})")
    else:
        safe = top
    shifted = gen.new_buffer(x.sizes, x.dtype)
    gen.elementwise(shifted, [x, safe], lambda v, _: f("exp", f"{v[0]} - {v[1]}"))
    sums = reduce(gen, "sum", shifted, dims)
    if name == "logsumexp":
        flat = Ref(out.buf, out.dtype, sums.sizes, sums.strides)
        gen.elementwise(flat, [sums, safe], lambda v, _: f"{f('log', v[0])} + {v[1]}")
    elif name == "_log_softmax":
        gen.elementwise(out, [x, safe, sums], lambda v, _: f"{v[0]} - {v[1]} - {f('log', v[2])}")
    else:
        gen.elementwise(out, [shifted, sums], lambda v, _: f"{v[0]} / {v[1]}")


def write_normalised_backward(gen: Emitter, op: Op, out: Ref) -> None:
    """The gradients of log_softmax (g - exp(y) sum(g)) and softmax (y (g - sum(g y))), given g and y over
    ``dim``."""
    grad, output, dim = op.args[:3]
    f = math_fn(out.dtype)
    if op.name == "_log_softmax_backward_data":
        sums = reduce(gen, "sum", grad, [dim])
        gen.elementwise(out, [grad, output, sums], lambda v, _: f"{v[0]} - {f('exp', v[1])} * {v[2]}")
    else:
        product = gen.new_buffer(grad.sizes, grad.dtype)
        gen.elementwise(product, [grad, output], lambda v, _: f"{v[0]} * {v[1]}")
        sums = reduce(gen, "sum", product, [dim])
        gen.elementwise(out, [output, grad, sums], lambda v, _: f"{v[0]} * ({v[1]} - {v[2]})")


OPS = {
    **dict.fromkeys(INITIAL, into_new_buffer(write_reduction)),
    **dict.fromkeys(("_log_softmax", "_softmax", "logsumexp"), into_new_buffer(write_normalised)),
    **dict.fromkeys(("_log_softmax_backward_data", "_softmax_backward_data"),
                    into_new_buffer(write_normalised_backward)),
}
