"""Views, and the copies and scatters made of them: a view costs nothing (a :class:`Ref` of other strides on
the same buffer, worked out by torch on meta tensors); a scatter (``slice_scatter``, the backward of a view,
...) is a copy of the base with the view's elements replaced; ``cat`` and ``stack`` copy each part into its
view of the result; values that depend on no input (``zeros``, ``eye``, ``arange``, ...) are computed now
and passed as constants."""

from __future__ import annotations

import torch

from deepprob.compiler.c.emitter import Emitter, Op, identity, into_new_buffer, traced_value
from deepprob.compiler.c.values import Ref, c_literal
from deepprob.compiler.c_library import Unsupported

aten = torch.ops.aten


def like_aten(view_op):
    """A view taken by the non-copying aten op ``view_op`` (functionalize turns views into their *_copy
    twins; the strides are the view's)."""
    return lambda m, args, kwargs: view_op(m, *args, **kwargs)


def alias(m: torch.Tensor, args, kwargs) -> torch.Tensor:
    """The tensor itself (alias, detach; clone, whose memory_format allows any layout)."""
    return m


def squeeze(m: torch.Tensor, args, kwargs) -> torch.Tensor:
    return m.squeeze(*args) if args else m.squeeze()


# views: name -> the view of a meta tensor, given the op's other arguments (args, kwargs)
VIEWS = {
    "view": like_aten(aten.view.default), "_unsafe_view": like_aten(aten.view.default),
    "reshape": like_aten(aten.reshape.default), "alias": alias, "detach": alias, "clone": alias,
    "lift_fresh": alias, "lift_fresh_copy": alias, "permute": like_aten(aten.permute.default),
    "t": like_aten(aten.t.default), "transpose": like_aten(aten.transpose.int),
    "expand": like_aten(aten.expand.default), "slice": like_aten(aten.slice.Tensor),
    "select": like_aten(aten.select.int), "diagonal": like_aten(aten.diagonal.default), "squeeze": squeeze,
    "unsqueeze": like_aten(aten.unsqueeze.default), "as_strided": like_aten(aten.as_strided.default),
}
# scatters: value = base with the view (of base's shape) replaced by src
SCATTERS = {"slice_scatter": aten.slice.Tensor, "select_scatter": aten.select.int,
            "diagonal_scatter": aten.diagonal.default, "as_strided_scatter": aten.as_strided.default}
# backward of a view: zeros of input_sizes with the view replaced by grad
VIEW_BACKWARDS = {"slice_backward": aten.slice.Tensor, "select_backward": aten.select.int,
                  "diagonal_backward": aten.diagonal.default}
CREATIONS = {"full", "zeros", "ones", "empty", "new_zeros", "new_ones", "new_full", "new_empty", "zeros_like",
             "ones_like", "full_like", "empty_like", "scalar_tensor", "eye", "arange", "fill", "empty_permuted",
             "empty_strided", "new_empty_strided"}
# uninitialised in torch: any value will do
EMPTIES = {"empty", "empty_like", "new_empty", "empty_permuted", "empty_strided", "new_empty_strided"}


def emit_view(gen: Emitter, op: Op) -> Ref:
    """A view of the source's buffer; of a contiguous copy of it where torch cannot view the source's layout
    so (a ``view`` of a transposed tensor)."""
    shape = tuple(traced_value(op.node).shape)
    src = op.args[0]
    if not isinstance(src, Ref):
        raise Unsupported(f"{op.name} of a non-tensor")
    take, args = VIEWS[op.name], list(op.args[1:])
    try:
        res = take(src.meta(), args, op.kwargs)
    except RuntimeError:
        src = gen.materialise(src)
        res = take(src.meta(), args, op.kwargs)
    if tuple(res.shape) != shape:
        raise Unsupported(f"{op.name}: shape {tuple(res.shape)} != traced {shape}")
    return src.view_of(res)


def scatter(gen: Emitter, out: Ref, src, view_op, view_args, kwargs) -> None:
    """out's view ``view_op(out, *view_args, **kwargs)`` = src (a tensor, or a number)."""
    target = out.view_of(view_op(out.meta(), *view_args, **kwargs))
    if isinstance(src, Ref):
        gen.elementwise(target, [src], identity)
    else:
        gen.elementwise(target, [], lambda v, _: c_literal(src, out.dtype))


def write_scatter(gen: Emitter, op: Op, out: Ref) -> None:
    """``*_scatter(base, src, *view_args)``: base, with its view replaced by src."""
    gen.elementwise(out, [op.args[0]], identity)
    scatter(gen, out, op.args[1], SCATTERS[op.name], op.args[2:], op.kwargs)


def write_view_backward(gen: Emitter, op: Op, out: Ref) -> None:
    """``*_backward(grad, input_sizes, *view_args)``: zeros, with the view replaced by grad."""
    gen.elementwise(out, [], lambda v, _: "0")
    scatter(gen, out, op.args[0], VIEW_BACKWARDS[op.name], op.args[2:], op.kwargs)


def write_concatenation(gen: Emitter, op: Op, out: Ref) -> None:
    """cat (along ``dim``) or stack (at a new ``dim``) of ``parts``: each copied into its slice of ``out``."""
    parts, stack = op.args[0], op.name == "stack"
    if not all(isinstance(p, Ref) for p in parts):
        raise Unsupported("cat or stack of other than tensors")
    dim = op.arg(1, "dim", 0) % len(out.sizes)
    start = 0
    for part in parts:
        if stack:
            view = out.meta().select(dim, start)
            start += 1
        else:
            size = part.sizes[dim] if len(part.sizes) == len(out.sizes) else 0
            if size == 0:  # torch lets a (0,)-shaped tensor join any cat
                continue
            view = out.meta().narrow(dim, start, size)
            start += size
        gen.elementwise(out.view_of(view), [part], identity)


def write_copy(gen: Emitter, op: Op, out: Ref) -> None:
    """copy(dst, src) (functionalised: a new tensor of dst's layout), _to_copy(src) (dtype conversions)."""
    gen.elementwise(out, [op.args[1] if op.name == "copy" else op.args[0]], identity)


def emit_creation(gen: Emitter, op: Op) -> Ref:
    """Values that depend on no input (zeros, eye, arange, ...): computed now, passed as constants. A tensor
    argument (zeros_like's) matters by its shape and dtype only."""
    def concrete(a):
        if isinstance(a, torch.fx.Node):
            v = traced_value(a)
            return torch.zeros(v.shape, dtype=v.dtype)
        return a
    node = op.node
    if op.name in EMPTIES:
        val = traced_value(node)
        return gen.constant(torch.zeros(val.shape, dtype=val.dtype))
    kwargs = {k: concrete(v) for k, v in node.kwargs.items()}
    kwargs.pop("pin_memory", None)
    if "device" in kwargs:
        kwargs["device"] = "cpu"
    return gen.constant(node.target(*[concrete(a) for a in node.args], **kwargs))


OPS = {
    **dict.fromkeys(VIEWS, emit_view),
    **dict.fromkeys(CREATIONS, emit_creation),
    **dict.fromkeys(SCATTERS, into_new_buffer(write_scatter)),
    **dict.fromkeys(VIEW_BACKWARDS, into_new_buffer(write_view_backward)),
    "cat": into_new_buffer(write_concatenation), "stack": into_new_buffer(write_concatenation),
    "copy": into_new_buffer(write_copy), "_to_copy": into_new_buffer(write_copy),
}
