"""The walk over a traced graph (:class:`Generator`): inputs bound to the function's arguments, constants and
expressions of constants computed now, then each operation written by the emitter its name maps to
(:data:`EMITTERS`, the tables of the families), the outputs and the inputs' updates last."""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence

import torch

from deepprob.compiler.c import indexing, linalg, matmul, pointwise, reductions, views
from deepprob.compiler.c.assembly import function_source
from deepprob.compiler.c.emitter import MAX_BUFFER_BYTES, Emitter, Op, OpEmitter, identity
from deepprob.compiler.c.values import C_TYPES, Ref, contiguous_strides
from deepprob.compiler.c_library import Unsupported

aten = torch.ops.aten


def base_name(target) -> str:
    """The name of an aten op, without ``_copy``: functionalisation's twins of the views are the views."""
    name = target.__name__.split(".")[0]
    return name[:-5] if name.endswith("_copy") and name not in ("_to_copy",) else name


class Generator(Emitter):
    """C source of one traced graph: ``int step(void **args)`` with args = inputs, constants, outputs, then
    the info tensors of the graph's factorisation checks. It returns 0, or an error code (``ERRORS``) with
    its details in ``step_error``.

    ``max_buffer_bytes`` and ``matmul_plan``: as :class:`~deepprob.compiler.c.emitter.Emitter`'s.
    """

    def __init__(self, gm: torch.fx.GraphModule, example_inputs: Sequence[torch.Tensor],
                 max_buffer_bytes: int = MAX_BUFFER_BYTES,
                 matmul_plan: Callable[..., tuple[str, bool]] = matmul.matmul_plan):
        super().__init__(max_buffer_bytes, matmul_plan)
        self.gm, self.example_inputs = gm, list(example_inputs)
        self.refs: dict = {}  # node: its value (a Ref, a tuple of them, None)
        self.folded: dict = {}  # node: its value computed now (a constant, an expression of constants)
        self.n_args = 0
        self.outputs: list[tuple[torch.Size, torch.dtype]] = []
        self.output_spec = None
        self.input_updates: list[tuple[Ref, Ref]] = []  # (input, new value)

    def value(self, arg):
        """The value of a node's argument in the generated code: a node's Ref (a folded constant's is passed
        from its first use on), anything else as it is."""
        if isinstance(arg, torch.fx.Node):
            if arg not in self.refs:  # a folded constant, first used here
                value = self.folded[arg]
                if not isinstance(value, torch.Tensor):
                    return value
                self.refs[arg] = self.constant(value)
            return self.refs[arg]
        return arg

    def generate(self) -> None:
        placeholders = [n for n in self.gm.graph.nodes if n.op == "placeholder"]
        for i, (node, example) in enumerate(zip(placeholders, self.example_inputs)):
            self.refs[node] = self.arg_ref(example, i)
        self.n_args = len(placeholders)
        self.fold_constants()
        for node in self.gm.graph.nodes:
            if node.op == "call_function" and node not in self.folded:
                if node.target is operator.getitem:
                    self.refs[node] = self.value(node.args[0])[node.args[1]]
                else:
                    self.refs[node] = self.call(node)
            elif node.op == "output":
                self.write_outputs(node.args[0])
        self.write_input_updates()

    def fold_constants(self) -> None:
        """The values of constants, and of expressions of constants, computed now (:meth:`foldable`); and
        the storages of constants whose rows are picked by index (a subsample): they keep their rows
        contiguous."""
        for node in self.gm.graph.nodes:
            if node.op == "get_attr":
                self.folded[node] = getattr(self.gm, node.target)
            elif node.op == "call_function" and self.foldable(node):
                self.folded[node] = node.target(*torch.fx.node.map_arg(node.args, self.folded.__getitem__),
                                                **torch.fx.node.map_arg(node.kwargs, self.folded.__getitem__))
        self.gathered = {self.storage_key(self.folded[node.args[0]]) for node in self.gm.graph.nodes
                         if getattr(node.target, "overloadpacket", None) is aten.index
                         and isinstance(self.folded.get(node.args[0]), torch.Tensor)}

    def foldable(self, node) -> bool:
        """Whether ``node`` depends on constants only (so it is computed once, now)."""
        if isinstance(node.target, torch._ops.OpOverload) and (
                torch.Tag.nondeterministic_seeded in node.target.tags or node.target.overloadpacket is aten.copy_):
            return False
        return all(arg in self.folded for arg in node.all_input_nodes)

    def call(self, node):
        """The value of the operation ``node``, written by its emitter (an elementwise one by default)."""
        target = node.target
        if not hasattr(target, "overloadpacket"):
            raise Unsupported(f"{target}")
        args = list(torch.fx.node.map_aggregate(node.args, self.value))
        kwargs = dict(torch.fx.node.map_aggregate(dict(node.kwargs), self.value))
        op = Op(node, base_name(target.overloadpacket), args, kwargs)
        return EMITTERS.get(op.name, pointwise.POINTWISE)(self, op)

    def update_input(self, op: Op) -> Ref:
        """``copy_(input, value)``: functionalisation's update of an input, written last
        (:meth:`write_input_updates`)."""
        self.input_updates.append((op.args[0], op.args[1]))
        return op.args[0]

    def write_outputs(self, outputs) -> None:
        """The graph's outputs (tensors, in nested tuples and lists) copied into the output arguments."""
        flat, self.output_spec = torch.utils._pytree.tree_flatten(outputs)
        for node in flat:
            ref = self.value(node)
            if not isinstance(ref, Ref):
                raise Unsupported("non-tensor output")
            index = len(self.outputs)
            self.outputs.append((torch.Size(ref.sizes), ref.dtype))
            out = Ref(f"(({C_TYPES[ref.dtype]}*)args[OUT + {index}])", ref.dtype, ref.sizes,
                      contiguous_strides(ref.sizes))
            self.elementwise(out, [ref], identity)

    def write_input_updates(self) -> None:
        """The in-place updates of the inputs, last: after the outputs (which may read the inputs' old
        values), and with every value read from an updated input copied out before the first update."""
        updated = {dst.buf for dst, _ in self.input_updates}
        sources = [self.materialise(src) if src.buf in updated else src for _, src in self.input_updates]
        for (dst, _), src in zip(self.input_updates, sources):
            self.elementwise(dst, [src], identity)

    def source(self) -> str:
        """The C source of the step (after :meth:`generate`)."""
        n_inputs, n_constants = self.n_args, len(self.constants)
        self.flush()
        return function_source(self.lines, self.buffers, n_inputs, n_constants, len(self.outputs),
                               self.max_buffer_bytes)


# op name -> its emitter; any other operation is tried as an elementwise one (pointwise.POINTWISE)
EMITTERS: dict[str, OpEmitter] = {
    **views.OPS, **reductions.OPS, **matmul.OPS, **linalg.OPS, **indexing.OPS, **pointwise.OPS,
    "copy_": Generator.update_input,
}
