"""Rows picked or updated by an index tensor: ``x[idx]`` (``index``: a minibatch's rows of a data set) and
``index_put`` (its gradient: rows added up). Every index is checked in range first, before anything is
written: one out of range returns ``INDEX_ERROR``, and the step raises torch's ``IndexError``."""

from __future__ import annotations

import math

import torch

from deepprob.compiler.c.emitter import Emitter, Op, identity, into_new_buffer
from deepprob.compiler.c.values import Ref
from deepprob.compiler.c_library import ERRORS, Unsupported

# a gather from a table bigger than this prefetches the rows it picks (see row_index)
PREFETCH_BYTES = 2 * 2**20


def row_index(gen: Emitter, indices, rows: int, source: Ref | None = None) -> Ref:
    """The one index tensor of ``x[idx]`` (rows: the first dimension), its values checked first: one out of
    range returns ``INDEX_ERROR`` (torch raises IndexError), before anything is written.

    With ``source`` (the ``x`` of a gather, rows contiguous) bigger than the caches, the same pass asks for
    each picked row ahead (``__builtin_prefetch``): a minibatch's random rows of a large table are then
    fetched from memory side by side, not one cache miss after another (at 10^6 rows, a third of a step).
    """
    if len(indices) != 1 or not isinstance(indices[0], Ref) or indices[0].dtype not in (torch.int64, torch.int32):
        raise Unsupported("indexing other than x[integer tensor]")
    idx = indices[0]
    row_bytes = math.prod(source.sizes[1:]) * source.dtype.itemsize if source is not None else 0
    prefetch = (source is not None and rows * row_bytes > PREFETCH_BYTES and len(idx.sizes) == 1
                and (len(source.sizes) == 1 or source.strides[-1] == 1))

    def body(vars_, shape, merged):
        r = gen.index(idx, shape, vars_)
        lines = [f"if ({r} < -{rows} || {r} >= {rows}) {{ step_error[0] = {r}; step_error[1] = {rows}; "
                 f"return {ERRORS['index']}; }}"]
        return lines + (prefetch_lines(source, r, rows, row_bytes) if prefetch else [])
    gen.loop_nest(idx.sizes, [idx], body, simd=False)
    return idx


def prefetch_lines(source: Ref, r: str, rows: int, row_bytes: int) -> list[str]:
    """Prefetches of the first and last element of row ``r`` of ``source``."""
    start = f"{source.offset} + row_at((int64_t){r}, {rows}) * {source.strides[0]}"
    lines = [f"__builtin_prefetch(&{source.buf}[{start}]);"]
    if row_bytes > 1:
        last = f"({row_bytes // source.dtype.itemsize - 1})"
        lines.append(f"__builtin_prefetch(&{source.buf}[{start} + {last}]);")
    return lines


def write_gather(gen: Emitter, op: Op, out: Ref) -> None:
    """``index(x, [idx])``: out[j..., b...] = x[idx[j...], b...]."""
    x, indices = op.args[:2]
    rows, rest = x.sizes[0], x.sizes[1:]
    idx = row_index(gen, indices, rows, source=x)
    row_ref = Ref(x.buf, x.dtype, rest, x.strides[1:], x.offset)
    k = len(idx.sizes)

    def body(vars_, shape, merged):
        r = f"row_at((int64_t){gen.index(idx, shape[:k], vars_[:k])}, {rows})"
        element = gen.index(row_ref, shape[k:], vars_[k:], f" + {r} * {x.strides[0]}")
        return [f"{gen.index(out, shape, vars_)} = {element};"]
    gen.loop_nest(out.sizes, [], body, keep_last=len(out.sizes), simd=False)


def write_scatter_rows(gen: Emitter, op: Op, out: Ref) -> None:
    """``index_put(base, [idx], values, accumulate)``: out = base; out[idx[j...], b...] (+)= values[j..., b...],
    in order (repeated rows add up)."""
    base, indices, values = op.args[:3]
    accumulate = op.arg(3, "accumulate")
    rows = out.sizes[0]
    idx = row_index(gen, indices, rows)
    gen.elementwise(out, [base], identity)
    k = len(idx.sizes)
    row_ref = Ref(out.buf, out.dtype, out.sizes[1:], out.strides[1:])
    shape = idx.sizes + out.sizes[1:]
    assign = "+=" if accumulate else "="

    def body(vars_, shape_, merged):
        r = f"row_at((int64_t){gen.index(idx, shape[:k], vars_[:k])}, {rows})"
        target = gen.index(row_ref, shape[k:], vars_[k:], f" + {r} * {out.strides[0]}")
        return [f"{target} {assign} {gen.index(values, shape, vars_)};"]
    gen.loop_nest(shape, [], body, keep_last=len(shape), simd=False)


# the rows picked from a data set (a subsample) are laid out for the loops over the rows that read them
OPS = {"index": into_new_buffer(write_gather, long_axis=True), "index_put": into_new_buffer(write_scatter_rows),
       "_index_put_impl": into_new_buffer(write_scatter_rows)}
