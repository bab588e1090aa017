"""The C function being written (:class:`Emitter`): its buffers and constants, its loop nests, elementwise
operations fused into loop groups; and what the emitters of operations (the modules of each family) take and
give (:class:`Op` in, the value out: :data:`OpEmitter`)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from deepprob.compiler.c.loops import LoopGroup, coalesce, nest
from deepprob.compiler.c.values import C_TYPES, Ref, contiguous_strides
from deepprob.compiler.c_library import Unsupported

# graphs whose intermediates need more memory than this (the static buffers left after fusion) are left
# to Inductor
MAX_BUFFER_BYTES = 256 << 20
# a constant whose longest dimension is this many times the product of the others (a data set's design
# matrix, N x D) is kept with that dimension innermost: the loops over the data then read it contiguously
LONG_AXIS = 8
# loop groups kept open for fusion at once: finding the group an operation joins walks them and their
# predecessors, so a long unrolled graph (a model's loop over time, run draw by draw) would take time cubic in
# its length; past this many, the older half is emitted (what could still join them runs in a loop of its own)
MAX_PENDING = 48


def long_axis_order(sizes: Sequence[int]) -> list[int]:
    """The dimensions in the order of our layout of a tensor of these sizes (outermost first): as they are,
    but a dimension :data:`LONG_AXIS` times longer than all the others together goes innermost."""
    order = list(range(len(sizes)))
    if len(sizes) >= 2:
        longest = max(order, key=lambda d: sizes[d])
        if sizes[longest] >= LONG_AXIS * math.prod(n for d, n in enumerate(sizes) if d != longest):
            order = [d for d in order if d != longest] + [longest]
    return order


def traced_value(node: torch.fx.Node) -> torch.Tensor:
    """The (meta) tensor that ``node`` computed when traced: its shape and dtype."""
    val = node.meta.get("val")
    if not isinstance(val, torch.Tensor):
        raise Unsupported(f"{node.target}: output is not one tensor")
    return val


@dataclass
class Op:
    """One operation of the graph: its node, its name (aten's, without ``_copy``: functionalisation's twins of
    the views are the views), its arguments as values of the generated code (:class:`Ref` for tensors)."""

    node: torch.fx.Node
    name: str
    args: list
    kwargs: dict

    def arg(self, position: int, name: str, default=None):
        """The argument at ``position``, or passed by ``name``, or ``default``."""
        return self.args[position] if len(self.args) > position else self.kwargs.get(name, default)


# an elementwise expression: the C of one element of the result, from the operands' elements and the loop variables
Expression = Callable[[list[str], list[str]], str]
# the emitter of one operation: writes its code, returns its value (a Ref, a tuple of them, or None)
OpEmitter = Callable[["Emitter", Op], object]


def into_new_buffer(write: Callable[[Emitter, Op, Ref], None], long_axis: bool = False) -> OpEmitter:
    """The emitter of an operation that ``write(gen, op, out)`` computes into ``out``, a new buffer of the
    traced shape (in the layout of :func:`long_axis_order` with ``long_axis``)."""
    def emit(gen: Emitter, op: Op) -> Ref:
        val = traced_value(op.node)
        out = gen.new_buffer(tuple(val.shape), val.dtype, long_axis=long_axis)
        write(gen, op, out)
        return out
    return emit


def identity(v: list[str], _) -> str:
    """The elementwise expression of a copy: the operand's value (for :meth:`Emitter.elementwise`)."""
    return v[0]


class Emitter:
    """The body of ``int step(void **args)`` being written, and its static buffers and constant arguments.

    Statements are added in order (:meth:`emit`), except elementwise operations and full sums: those join
    pending :class:`LoopGroup` s (:meth:`fusing`), emitted when something needs their results or when the
    function ends. ``max_buffer_bytes``: the most memory the intermediates may take (:data:`MAX_BUFFER_BYTES`);
    ``matmul_plan``: the loop order of a matrix product (:func:`~deepprob.compiler.c.matmul.matmul_plan`).
    """

    def __init__(self, max_buffer_bytes: int, matmul_plan: Callable[..., tuple[str, bool]]):
        self.max_buffer_bytes, self.matmul_plan = max_buffer_bytes, matmul_plan
        self.lines: list[str] = []  # the function's body so far (emit())
        self.pending: list[LoopGroup] = []  # loop groups not yet emitted, in the order they were made
        self.n_locals = 0
        # constants passed, by (storage, dtype, offset): (dims as (size, stride), our strides of them, buffer)
        self.constant_layouts: dict[tuple, list[tuple[tuple, tuple, str]]] = {}
        self.gathered: set[tuple] = set()  # storages of constants whose rows are picked by index: rows contiguous
        self.buffers: dict[str, tuple[torch.dtype, int]] = {}  # name: (dtype, elements)
        self.constants: list[torch.Tensor] = []
        self.allocated = 0  # bytes of all buffers made
        self.checks: list[tuple[torch.Size, str, bool]] = []  # factorisation checks: (info shape, api, is_matrix)
        self.loop_depth = 0

    # buffers and arguments
    @staticmethod
    def arg_ref(t: torch.Tensor, index: int) -> Ref:
        if t.dtype not in C_TYPES:
            raise Unsupported(f"dtype {t.dtype}")
        return Ref(f"(({C_TYPES[t.dtype]}*)args[{index}])", t.dtype, tuple(t.shape), tuple(t.stride()), 0)

    def new_buffer(self, sizes: Sequence[int], dtype: torch.dtype, long_axis: bool = False) -> Ref:
        """A buffer of these sizes, contiguous; or with ``long_axis``, in the layout of :func:`long_axis_order`
        (for values that loops over a long axis read, their producer writing any layout)."""
        if dtype not in C_TYPES:
            raise Unsupported(f"dtype {dtype}")
        n = math.prod(sizes)
        self.allocated += n * dtype.itemsize
        if self.allocated > 8 * self.max_buffer_bytes:  # hopeless even if most are fused away: stop now
            raise Unsupported(f"intermediates of more than {8 * self.max_buffer_bytes / 2 ** 20:.2f} MiB before "
                              "fusion")
        name = f"b{len(self.buffers)}"
        self.buffers[name] = (dtype, n)
        if not long_axis:
            return Ref(name, dtype, tuple(sizes), contiguous_strides(sizes), 0)
        order = long_axis_order(sizes)
        strides = [0] * len(sizes)
        for d, st in zip(order, contiguous_strides([sizes[d] for d in order])):
            strides[d] = st
        return Ref(name, dtype, tuple(sizes), tuple(strides), 0)

    def emit(self, lines: list[str]) -> None:
        """Append statements other than fused loops: after the pending loop groups that touch any buffer
        they mention (and those groups' predecessors); the other groups stay pending (they commute)."""
        text = "\n".join(lines)
        mentioned = set(re.findall(r"\bb\d+\b|\(\([a-z0-9_ ]+\*\)args\[[^\]]+\]\)", text))
        self.flush([g for g in self.pending if g.buffers() & mentioned])
        self.lines += lines

    def new_local(self) -> str:
        self.n_locals += 1
        return f"v{self.n_locals}"

    @staticmethod
    def storage_key(t: torch.Tensor) -> tuple:
        return t.untyped_storage().data_ptr(), t.dtype, t.storage_offset()

    def constant(self, t: torch.Tensor) -> Ref:
        """A tensor computed now (a captured data set, a folded expression of constants), passed at every call:
        copied in a layout of ours (:data:`LONG_AXIS`); a permutation of the dimensions of one already passed
        (its transpose, as both X and X^T of a linear model) is a view of the same copy."""
        t = t.detach()
        if t.dtype not in C_TYPES:
            raise Unsupported(f"dtype {t.dtype}")
        dims = tuple((n, st) for n, st in zip(t.shape, t.stride()) if n != 1)
        key = self.storage_key(t) if t.numel() > 1 else None
        for base_dims, base_strides, buf in self.constant_layouts.get(key, []):
            if sorted(dims) == sorted(base_dims):
                return self._permuted_constant(t, base_dims, base_strides, buf)
        order = list(range(t.dim())) if key in self.gathered else long_axis_order(t.shape)
        copy = t.permute(order).contiguous()
        self.constants.append(copy)
        buf = self.arg_ref(copy, -len(self.constants)).buf  # numbered after the inputs at the end
        strides = [0] * t.dim()
        for i, d in enumerate(order):
            strides[d] = copy.stride(i)
        if key is not None:
            self.constant_layouts.setdefault(key, []).append(
                (dims, tuple(st for n, st in zip(t.shape, strides) if n != 1), buf))
        return Ref(buf, t.dtype, tuple(t.shape), tuple(strides), 0)

    @staticmethod
    def _permuted_constant(t: torch.Tensor, base_dims: tuple, base_strides: tuple, buf: str) -> Ref:
        """``t`` as a view of the constant ``buf`` already passed, whose dimensions (``base_dims``, as (size,
        stride) of the tensor it was copied from, laid out with ``base_strides``) are ``t``'s in another order."""
        free = list(range(len(base_dims)))
        strides = []
        for n, st in zip(t.shape, t.stride()):
            if n == 1:
                strides.append(0)
                continue
            j = next(j for j in free if base_dims[j] == (n, st))
            free.remove(j)
            strides.append(base_strides[j])
        return Ref(buf, t.dtype, tuple(t.shape), tuple(strides), 0)

    # loops
    def index(self, ref: Ref, shape: Sequence[int], vars_: Sequence[str], extra: str = "") -> str:
        """``ref`` broadcast to ``shape`` at loop variables ``vars_`` (plus the offset ``extra``): the C
        element expression."""
        return f"{ref.buf}[{self.offset(ref, shape, vars_)}{extra}]"

    @staticmethod
    def offset(ref: Ref, shape: Sequence[int], vars_: Sequence[str]) -> str:
        """The position of ``ref``'s element at loop variables ``vars_`` (``ref`` broadcast to ``shape``)."""
        nd = len(shape)
        if len(ref.sizes) > nd:
            raise Unsupported("broadcast to fewer dimensions")
        pad = nd - len(ref.sizes)
        terms = [str(ref.offset)] if ref.offset else []
        for d, (size, stride) in enumerate(zip(ref.sizes, ref.strides)):
            if size != 1 and stride != 0:
                if size != shape[pad + d]:
                    raise Unsupported(f"shape {ref.sizes} does not broadcast to {tuple(shape)}")
                terms.append(vars_[pad + d] if stride == 1 else f"{vars_[pad + d]} * {stride}")
        return " + ".join(terms) or "0"

    def loop_vars(self, depth: int) -> list[str]:
        """The variables of ``depth`` loops nested in the loops being written."""
        return [f"i{self.loop_depth + d}" for d in range(depth)]

    def loop_nest(self, shape: Sequence[int], refs: Sequence[Ref], body: Callable[..., list[str]],
                  keep_last: int = 0, simd: bool = True) -> None:
        """Emit loops over ``shape`` (dimensions merged where every ref allows it, except the last
        ``keep_last``); ``body(vars, merged shape, merged refs)`` gives the innermost loop's statements."""
        self.emit(self.loop_lines(shape, refs, body, keep_last, simd))

    def loop_lines(self, shape: Sequence[int], refs: Sequence[Ref], body: Callable[..., list[str]],
                   keep_last: int = 0, simd: bool = True) -> list[str]:
        """The lines of :meth:`loop_nest`."""
        merged_shape, merged_refs = coalesce(list(shape), refs, keep_last)
        depth = len(merged_shape)
        vars_ = self.loop_vars(depth)
        self.loop_depth += depth
        stmts = body(vars_, merged_shape, merged_refs)
        self.loop_depth -= depth
        return nest(vars_, merged_shape, stmts, "#pragma omp simd" if simd else None)

    def elementwise(self, out: Ref, operands: Sequence[Ref | str], expr: Expression, keep_last: int = 0) -> None:
        """out = expr(operand elements, loop variables) over out's shape; operands are Refs or C scalar
        expressions.

        Fused into the pending loop (:class:`LoopGroup`) when that runs over the same (merged) shape and
        nothing it writes is read here at another element: values it computed are then read from its
        locals rather than from memory."""
        refs = [out] + [o for o in operands if isinstance(o, Ref)]
        shape, merged = coalesce(list(out.sizes), refs, keep_last)
        vars_ = self.loop_vars(len(shape))
        target = (merged[0].buf, self.offset(merged[0], shape, vars_))
        reads = [(r.buf, self.offset(r, shape, vars_)) for r in merged[1:]]
        group = self.fusing(shape, reads, [target])
        it = iter(reads)
        values = [group.read(*next(it)) if isinstance(o, Ref) else o for o in operands]
        ctype = C_TYPES[out.dtype]
        group.write(*target, ctype, f"({ctype})({expr(values, vars_)})")

    def fused_sums(self, shape: Sequence[int], refs: Sequence[Ref], out: Ref) -> tuple[LoopGroup, list]:
        """The loop group over ``shape`` (merged as ``refs`` allow) that sums of elements of ``refs`` into ``out``
        join (their results written after the loop), and the (buffer, offset) of each ref's element in it."""
        merged_shape, merged = coalesce(list(shape), refs, 0)
        vars_ = self.loop_vars(len(merged_shape))
        at = [(r.buf, self.offset(r, merged_shape, vars_)) for r in merged]
        return self.fusing(merged_shape, at, [(out.buf, LoopGroup.AFTER)]), at

    def fusing(self, shape: Sequence[int], reads, writes) -> LoopGroup:
        """The pending loop group that an operation over ``shape`` reading and writing these elements
        ((buffer, offset) pairs) joins, or a new one.

        The operation must run after every pending group it conflicts with (that wrote what it reads, or
        touched what it writes): those become predecessors of the group it joins, which therefore must not
        be one of their predecessors. Of the groups that allow it, the latest; but a group of no loops
        (scalars) only if joining adds no predecessors the operation did not have: a scalar made from the
        inputs alone stays free to run before the loops that read it, which can then be one loop.
        """
        if len(self.pending) >= MAX_PENDING:
            self.flush(self.pending[:MAX_PENDING // 2])
        shape = tuple(shape)
        read_bufs, write_bufs = {buf for buf, _ in reads}, {buf for buf, _ in writes}
        preds = {g for g in self.pending if g.conflicts(read_bufs, write_bufs)}
        before = preds | self.ancestors(preds)
        chosen = None
        for group in reversed(self.pending):
            if not group.accepts(shape, reads, writes) or group in self.ancestors(preds - {group}):
                continue
            if not shape and not self.ancestors({group}) <= before:
                continue
            chosen = group
            break
        if chosen is None:
            chosen = LoopGroup(shape, self.loop_vars(len(shape)), self.new_local)
            self.pending.append(chosen)
        chosen.preds |= preds - {chosen}
        return chosen

    def ancestors(self, groups) -> set[LoopGroup]:
        """The pending groups that must run before any of ``groups``."""
        seen, todo = set(), list(groups)
        while todo:
            for pred in todo.pop().preds:
                if pred not in seen and pred in self.pending:
                    seen.add(pred)
                    todo.append(pred)
        return seen

    def flush(self, groups=None) -> None:
        """Emit ``groups`` (default: all pending) and their predecessors, predecessors first."""
        todo = set(self.pending) if groups is None else set(groups) | self.ancestors(groups)
        while todo:
            group = next(g for g in self.pending if g in todo and not (g.preds & todo))
            todo.discard(group)
            self.pending.remove(group)
            self.lines += group.emit()

    def materialise(self, ref: Ref) -> Ref:
        """A copy of ``ref`` in a new buffer (contiguous)."""
        out = self.new_buffer(ref.sizes, ref.dtype)
        self.elementwise(out, [ref], identity)
        return out
