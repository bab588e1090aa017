"""A traced step as one plain C function, compiled by the system's C compiler in a fraction of a second.

Inductor turns a small model's training step into fast code, but its first compile costs seconds
(its Python passes, then one g++ run per kernel with the 150 MB precompiled header of ATen). For the
static graphs of SVI on this project's models, small or over a large data set, this module does the
same job the simple way:

1. ``make_fx(functionalize(step))`` traces the step into aten operations without views or in-place
   updates (those become plain functions; the updates of the inputs are ``copy_`` at the end);
2. every value gets a buffer of its static size, or is a strided view of another value's buffer
   (views cost nothing, their strides are worked out on meta tensors); constants (a captured data set)
   are passed in a layout of ours: a long axis innermost, X and X^T one copy (:meth:`Generator.constant`);
3. every operation becomes a C loop nest over its static shape (elementwise with broadcasting,
   reductions, ``mm``/``bmm``, triangular solves, scatters into views), in one function. Elementwise
   operations, full sums and the matrix products of a short or a long k over the same shape are fused
   into one loop (:class:`LoopGroup`), scheduled out of order where the dependencies allow
   (:meth:`Generator.fusing`): the forward pass, loss and backward pass of a model over N data rows
   become one pass over the data, with no intermediate of N elements in memory;
4. ``cc -O3 -march=native`` compiles it (vector math from glibc's libmvec through ``omp declare
   simd``), and ``ctypes`` calls it with the tensors' data pointers.

An operation outside the supported set raises :class:`Unsupported`; the caller then compiles with
Inductor. So does dense linear algebra where BLAS and LAPACK win (a matrix product, Cholesky
factorisation or triangular solve of more than :data:`DENSE_MAX_WORK` multiply-adds with no dimension
under :data:`DENSE_MIN_DIM`), and a graph whose intermediates, after fusion, need more than
:data:`MAX_BUFFER_BYTES` of memory (they live in static buffers between calls). The compiled library is
cached on disk by the hash of its source, in a folder of the user's own that no one else can write
(:func:`cache_dir`; else in a private one).

It computes what eager torch computes: arithmetic is IEEE single/double as torch's (float32 values stay
float32, libm's float functions), NaN and inf propagate as in torch (``relu``, ``maximum``, ``amax`` of
a NaN are NaN, a matrix product with a NaN is NaN), sums and the sums of products of matrix products
accumulate in double, so results agree with torch's to float rounding (not bit for bit: sums are
vectorised, in another order than torch's). What torch raises for, it raises for: an index out of range
(``IndexError``, with torch's message), a failed Cholesky factorisation that the graph checks
(``torch.linalg.LinAlgError``, raised by torch's own check on the same info), a call with tensors of
other sizes, strides, dtypes or devices than compiled for (``TypeError``). On an error the inputs are
left as they were (their updates come last).
"""

from __future__ import annotations

import collections
import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from deepprob.compiler.c_library import (
    ERRORS,
    CStep,
    Layout,
    Unsupported,
    agrees_to_rounding,
    build_library,
    c_compiler,
    rebuilt_if_broken,
    trusted_cache_dir,
)

aten = torch.ops.aten

C_TYPES = {torch.float32: "float", torch.float64: "double", torch.bool: "unsigned char",
           torch.int64: "int64_t", torch.int32: "int32_t", torch.uint8: "unsigned char"}
FLOATS = (torch.float32, torch.float64)
# graphs whose intermediates need more memory than this (the static buffers left after fusion) are left
# to Inductor
MAX_BUFFER_BYTES = 256 << 20
# dense linear algebra where BLAS and LAPACK win: a matrix product, Cholesky factorisation or triangular
# solve of more multiply-adds than this, all of whose dimensions are at least DENSE_MIN_DIM, is left to
# Inductor (which calls them); below that, or with a thin dimension (a matrix-vector product, a data set's
# design matrix times a few weights), the loops here run at the speed of memory
DENSE_MAX_WORK = 1 << 24
DENSE_MIN_DIM = 32
# matmul loop orders (matmul_plan): a sum of products written out for k up to MATMUL_INLINE_K; sums fused
# into the loops over k for up to MATMUL_FUSED_SUMS outputs; k outermost for outputs up to
# MATMUL_SMALL_OUTPUT elements; columns of b by blocks of MATMUL_BLOCK
MATMUL_INLINE_K = 16
MATMUL_FUSED_SUMS = 16
MATMUL_SMALL_OUTPUT = 1024
MATMUL_STREAM_K = 64
MATMUL_BLOCK = 256
# a constant whose longest dimension is this many times the product of the others (a data set's design
# matrix, N x D) is kept with that dimension innermost: the loops over the data then read it contiguously
LONG_AXIS = 8
# a gather from a table bigger than this prefetches the rows it picks (see Generator._row_index)
PREFETCH_BYTES = 2 * 2**20
# loop groups kept open for fusion at once: finding the group an operation joins walks them and their
# predecessors, so a long unrolled graph (a model's loop over time, run draw by draw) would take time cubic in
# its length; past this many, the older half is emitted (what could still join them runs in a loop of its own)
MAX_PENDING = 48
# glibc's vector math (libmvec) as OpenMP "declare simd" functions: the loops calling them vectorise
SIMD_FUNCTIONS = ("exp", "log", "log1p", "expm1", "tanh", "pow", "sin", "cos")


@dataclass(frozen=True)
class Ref:
    """A tensor value of the generated code: ``buf[offset + sum_d i_d * strides[d]]`` over ``sizes``."""

    buf: str
    dtype: torch.dtype
    sizes: tuple[int, ...]
    strides: tuple[int, ...]
    offset: int = 0

    def meta(self) -> torch.Tensor:
        extent = self.offset + sum((s - 1) * st for s, st in zip(self.sizes, self.strides)) + 1
        base = torch.empty(max(extent, 1), dtype=self.dtype, device="meta")
        return base.as_strided(self.sizes, self.strides, self.offset)


def transposed(ref: Ref) -> Ref:
    """``ref`` with its last two dimensions swapped (a view)."""
    sizes, strides = list(ref.sizes), list(ref.strides)
    sizes[-2:], strides[-2:] = sizes[:-3:-1], strides[:-3:-1]
    return Ref(ref.buf, ref.dtype, tuple(sizes), tuple(strides), ref.offset)


def dense_work_check(what: str, work: int, dims: Sequence[int]) -> None:
    """Decline (``Unsupported``) dense linear algebra of ``work`` multiply-adds over ``dims`` where BLAS or
    LAPACK would be much faster than plain loops: large work, and no thin dimension."""
    if work > DENSE_MAX_WORK and min(dims) >= DENSE_MIN_DIM:
        raise Unsupported(f"a {what} of {work:.2e} multiply-adds ({' x '.join(map(str, dims))}): BLAS's job")


def matmul_plan(a: Ref, b: Ref, M: int, N: int, K: int, batch: bool) -> tuple[str, bool]:
    """The loop order of ``a @ b`` ((M, K) @ (K, N)) for these sizes and strides: ``(order, transpose)``,
    where ``transpose`` computes out^T = b^T a^T (then the roles of a's columns and b's rows swap).

    - ``inline``: a short k (at most ``MATMUL_INLINE_K``): an elementwise operation over the output, the
      sum of the K products written out (the forward product X w of an (N, D) design matrix), which
      fuses with the loops around it;
    - ``sums``: a few outputs (at most ``MATMUL_FUSED_SUMS``), a long k (at least ``MATMUL_STREAM_K``)
      along which a's rows and b's columns are contiguous: one sum over k per output, fused with the
      loops over k (the gradient X^T g, in the loop that computes g);
    - ``k_outer``: a small output (at most ``MATMUL_SMALL_OUTPUT`` elements) and a long k: k outermost,
      the output in double accumulators, so that a and b are each read once, in memory order; n
      innermost, vectorised where b's rows are contiguous;
    - ``dot``: a's rows and b's columns contiguous: a dot product per output element, vectorised over k;
    - ``axpy``: b's rows contiguous: for each row of the output, a times rows of b added into a block of
      double accumulators, vectorised over n;
    - otherwise ``dot``.
    """
    unit = lambda stride, size: stride == 1 or size == 1  # noqa: E731
    rows_b, cols_a = unit(b.strides[-1], N), unit(a.strides[-2], M)
    along_k = unit(a.strides[-1], K) and unit(b.strides[-2], K)
    if K <= MATMUL_INLINE_K:
        return "inline", False
    if not batch and M * N <= MATMUL_FUSED_SUMS and K >= MATMUL_STREAM_K and along_k and a.dtype in FLOATS:
        return "sums", False
    if M * N <= MATMUL_SMALL_OUTPUT and K >= MATMUL_STREAM_K and (rows_b or cols_a or not along_k):
        return "k_outer", not rows_b and cols_a and M > 1
    if along_k:
        return "dot", False
    if rows_b:
        return "axpy", False
    if cols_a:
        return "axpy", True
    return "dot", False


def long_axis_order(sizes: Sequence[int]) -> list[int]:
    """The dimensions in the order of our layout of a tensor of these sizes (outermost first): as they are,
    but a dimension :data:`LONG_AXIS` times longer than all the others together goes innermost."""
    order = list(range(len(sizes)))
    if len(sizes) >= 2:
        longest = max(order, key=lambda d: sizes[d])
        if sizes[longest] >= LONG_AXIS * math.prod(n for d, n in enumerate(sizes) if d != longest):
            order = [d for d in order if d != longest] + [longest]
    return order


def for_loop(var: str, size: int) -> str:
    return f"for (int64_t {var} = 0; {var} < {size}; {var}++) {{"


def contiguous_strides(sizes: Sequence[int]) -> tuple[int, ...]:
    strides, step = [], 1
    for s in reversed(sizes):
        strides.append(step)
        step *= max(s, 1)
    return tuple(reversed(strides))


def c_literal(value, dtype: torch.dtype) -> str:
    ctype = C_TYPES[dtype]
    if isinstance(value, bool):
        value = int(value)
    if dtype in FLOATS:
        value = float(value)
        if math.isnan(value):
            return f"(({ctype})NAN)"
        if math.isinf(value):
            return f"(({ctype})({'-' if value < 0 else ''}INFINITY))"
        return f"(({ctype}){value!r})"
    return f"(({ctype}){int(value)})"


def math_call(name: str, dtype: torch.dtype, *args: str) -> str:
    suffix = "f" if dtype == torch.float32 else ""
    return f"{name}{suffix}({', '.join(args)})"


def math_fn(dtype: torch.dtype) -> Callable[..., str]:
    return lambda name, *args: math_call(name, dtype, *args)


# --- operations -----------------------------------------------------------------------------------

# views: the non-copying op that gives the strides (functionalize turns views into their *_copy twins)
VIEW_OPS = {
    "view": aten.view.default, "_unsafe_view": aten.view.default, "reshape": aten.reshape.default,
    "alias": aten.alias.default, "detach": aten.alias.default, "clone": aten.alias.default,
    "lift_fresh": aten.alias.default, "lift_fresh_copy": aten.alias.default,
    "permute": aten.permute.default, "t": aten.t.default, "transpose": aten.transpose.int,
    "expand": aten.expand.default, "slice": aten.slice.Tensor, "select": aten.select.int,
    "diagonal": aten.diagonal.default, "squeeze": None, "unsqueeze": aten.unsqueeze.default,
    "as_strided": aten.as_strided.default,
}
# scatters: value = base with the view (of base's shape) replaced by src
SCATTER_OPS = {"slice_scatter": aten.slice.Tensor, "select_scatter": aten.select.int,
               "diagonal_scatter": aten.diagonal.default, "as_strided_scatter": aten.as_strided.default}
# backward of a view: zeros of input_sizes with the view replaced by grad
VIEW_BACKWARD_OPS = {"slice_backward": aten.slice.Tensor, "select_backward": aten.select.int,
                     "diagonal_backward": aten.diagonal.default}
CREATION_OPS = {"full", "zeros", "ones", "empty", "new_zeros", "new_ones", "new_full", "new_empty", "zeros_like",
                "ones_like", "full_like", "empty_like", "scalar_tensor", "eye", "arange", "fill", "empty_permuted",
                "empty_strided", "new_empty_strided"}
REDUCTIONS = {"sum", "mean", "amax", "amin", "prod"}


def _base_name(target) -> str:
    name = target.__name__.split(".")[0]
    return name[:-5] if name.endswith("_copy") and name not in ("_to_copy",) else name


def unary(name: str, dtype: torch.dtype, a: str) -> str | None:
    """The C expression of the unary operation ``name`` of ``a`` in ``dtype``, or None if unknown."""
    f = math_fn(dtype)
    table = {
        "neg": lambda: f"(-{a})", "exp": lambda: f("exp", a), "log": lambda: f("log", a),
        "log1p": lambda: f("log1p", a), "expm1": lambda: f("expm1", a), "sqrt": lambda: f("sqrt", a),
        "rsqrt": lambda: f"(({C_TYPES[dtype]})1 / {f('sqrt', a)})", "tanh": lambda: f("tanh", a),
        "sigmoid": lambda: f"(({C_TYPES[dtype]})1 / (({C_TYPES[dtype]})1 + {f('exp', '-' + a)}))",
        "abs": lambda: f("fabs", a), "reciprocal": lambda: f"(({C_TYPES[dtype]})1 / {a})",
        "sin": lambda: f("sin", a), "cos": lambda: f("cos", a), "relu": lambda: f"(({a} > 0 || {a} != {a}) ? {a} : 0)",
        "logical_not": lambda: f"(!{a})", "sign": lambda: f"(({a} > 0) - ({a} < 0))",
        "sgn": lambda: f"(({a} > 0) - ({a} < 0))",
        "square": lambda: f"({a} * {a})",
    }
    return table[name]() if name in table else None


def binary(name: str, dtype: torch.dtype, a: str, b: str, alpha: str | None) -> str | None:
    """The C expression of the binary operation ``name`` of ``a`` and ``b`` (``alpha``: add/sub's
    multiplier of ``b``) in ``dtype``, or None if unknown."""
    scaled_b = b if alpha is None else f"({alpha} * {b})"
    f = math_fn(dtype)
    table = {
        "add": lambda: f"({a} + {scaled_b})", "sub": lambda: f"({a} - {scaled_b})",
        "rsub": lambda: f"({b} - {a if alpha is None else f'({alpha} * {a})'})",
        "mul": lambda: f"({a} * {b})", "div": lambda: f"({a} / {b})",
        # NaN wins, as in torch (a bare a > b ? a : b would return b when a is NaN)
        "pow": lambda: f("pow", a, b), "maximum": lambda: f"(({a} > {b} || {a} != {a}) ? {a} : {b})",
        "minimum": lambda: f"(({a} < {b} || {a} != {a}) ? {a} : {b})", "atan2": lambda: f("atan2", a, b),
        "gt": lambda: f"({a} > {b})", "ge": lambda: f"({a} >= {b})", "lt": lambda: f"({a} < {b})",
        "le": lambda: f"({a} <= {b})", "eq": lambda: f"({a} == {b})", "ne": lambda: f"({a} != {b})",
        "logical_and": lambda: f"({a} && {b})", "logical_or": lambda: f"({a} || {b})",
        "bitwise_and": lambda: f"({a} & {b})", "bitwise_or": lambda: f"({a} | {b})",
        "bitwise_xor": lambda: f"({a} ^ {b})",
        "tanh_backward": lambda: f"({a} * (1 - {b} * {b}))",
        "threshold_backward": lambda: f"({b} <= {alpha} ? 0 : {a})",
        # x log y, 0 where x is 0 (but NaN where y is), as torch
        "xlogy": lambda: f"({b} != {b} ? {b} : ({a} == 0 ? 0 : {a} * {f('log', b)}))",
        "sigmoid_backward": lambda: f"({a} * {b} * (1 - {b}))",
    }
    return table[name]() if name in table else None


# operations whose arithmetic runs in the operands' promoted type, not the result's
COMPARISONS = {"gt", "ge", "lt", "le", "eq", "ne", "logical_and", "logical_or", "logical_not"}


class LoopGroup:
    """Elementwise operations (and full sums) over one shape, fused into one loop nest.

    Each operation's value is a local of the loop body, stored to its buffer too; a later operation of
    the group reads the local instead of memory, and :meth:`Generator.source` drops the stores to buffers
    that nothing outside their group reads (most intermediates of a streaming graph are never written to
    memory). Each element read from memory is loaded once an iteration, and once before the loops where it
    is the same in every iteration. An operation joins only if the fused loop does what the separate loops
    did: every element of the group's buffers that it reads was computed in the same iteration, and what
    it writes was not read, nor written, at another element by the group (:meth:`accepts`).

    ``preds``: the pending groups that must run before this one (:meth:`Generator.fusing`).
    """

    AFTER = "after the loop"  # the "element" written by a sum, whose value exists only after the loop

    def __init__(self, shape: tuple[int, ...], vars_: list[str], new_local: Callable[[], str]):
        self.shape, self.vars, self.new_local = shape, vars_, new_local
        self.pre: list[str] = []  # before the loops: accumulators, loads the same in every iteration
        self.body: list[str] = []
        self.after: list[str] = []
        self.sums: list[str] = []  # double accumulators, a reduction of the innermost (simd) loop
        self.values: dict[tuple[str, str], str] = {}  # (buffer, element offset): the local holding it now
        self.written: dict[str, set[str]] = {}  # buffer: the element offsets written (or AFTER)
        self.read_at: dict[str, set[str]] = {}  # buffer: the element offsets loaded from memory
        self.preds: set[LoopGroup] = set()

    def buffers(self) -> set[str]:
        return set(self.written) | set(self.read_at)

    def conflicts(self, reads: set[str], writes: set[str]) -> bool:
        """Whether an operation reading and writing these buffers must come after this group."""
        return bool(reads & set(self.written) or writes & self.buffers())

    def accepts(self, shape: tuple[int, ...], reads, writes) -> bool:
        if shape != self.shape:
            return False
        if any(buf in self.written and self.written[buf] != {at} for buf, at in reads):
            return False
        return all(self.read_at.get(buf, {at}) == {at} and self.written.get(buf, {at}) == {at}
                   for buf, at in writes)

    def read(self, buf: str, at: str) -> str:
        value = self.values.get((buf, at))
        if value is None:
            value = self.values[(buf, at)] = self.new_local()
            self.read_at.setdefault(buf, set()).add(at)
            invariant = not any(re.search(rf"\b{var}\b", at) for var in self.vars)
            (self.pre if invariant else self.body).append(f"const __typeof__({buf}[0]) {value} = {buf}[{at}];")
        return value

    def write(self, buf: str, at: str, ctype: str, value: str) -> None:
        local = self.new_local()
        self.body += [f"{ctype} {local} = {value};", f"{buf}[{at}] = {local};"]
        self.values[(buf, at)] = local
        self.written.setdefault(buf, set()).add(at)

    def accumulate(self, value: str, buf: str, result: Callable[[str], str]) -> None:
        """A double accumulator += ``value`` over the loop; then the statement ``result(accumulator)``,
        which writes ``buf``."""
        acc = self.new_local()
        self.sums.append(acc)
        self.pre.insert(0, f"double {acc} = 0;")
        self.body.append(f"{acc} += {value};")
        self.after.append(result(acc))
        self.written.setdefault(buf, set()).add(self.AFTER)

    def emit(self) -> list[str]:
        split = self.emit_in_strips()
        if split is not None:
            return split
        lines = ["  {", *(f"  {line}" for line in self.pre)]
        clause = f" reduction(+:{', '.join(self.sums)})" if self.sums else ""
        indent = "  "
        for d, (var, size) in enumerate(zip(self.vars, self.shape)):
            if d == len(self.shape) - 1:
                lines.append(f"{indent}#pragma omp simd{clause}")
            lines.append(indent + for_loop(var, size))
            indent += "  "
        lines += [indent + line for line in self.body]
        lines += [f"{'  ' * (d + 1)}}}" for d in reversed(range(len(self.shape)))]
        return lines + [f"  {line}" for line in self.after] + ["  }"]


    def emit_in_strips(self) -> list[str] | None:
        """A long loop whose sums come after its vector math calls, as strips of ``STRIP`` iterations, each
        two loops: up to the last call, then the rest (the sums, as the gradient X^T g after the loss's
        exp and log). No value is then live across a call (every vector register is the callee's): the
        second loop loads its elements again (from cache), and takes the first one's values from arrays
        of one strip."""
        if len(self.shape) != 1 or self.shape[0] < 2 * STRIP:
            return None
        calls = [i for i, line in enumerate(self.body) if CALL.search(line)]
        if not calls or not any(SUM.match(line) for line in self.body[calls[-1] + 1:]):
            return None
        first, second = self.body[:calls[-1] + 1], self.body[calls[-1] + 1:]
        declared = {m.group(2): (m.group(1), line) for line in first if (m := DECLARATION.match(line))}
        defined = {m.group(2) for line in second if (m := DECLARATION.match(line))}
        used = [v for v in dict.fromkeys(re.findall(r"\bv\d+\b", "\n".join(second))) if v in declared
                and v not in defined]
        handed, carry, reload = [], [], []
        for v in used:
            ctype, line = declared[v]
            if line.startswith("const __typeof__"):  # a load: again
                reload.append(line)
            else:
                handed.append(f"{ctype} {v}_strip[{STRIP}];")
                first = first + [f"{v}_strip[j] = {v};"]
                carry.append(f"const {ctype} {v} = {v}_strip[j];")

        def loop(body):
            sums = [m.group(1) for line in body if (m := SUM.match(line))]
            clause = f" reduction(+:{', '.join(sums)})" if sums else ""
            return [f"    #pragma omp simd{clause}", "    for (int64_t j = 0; j < n; j++) {",
                    f"      const int64_t {self.vars[0]} = s + j;", *(f"      {line}" for line in body), "    }"]
        size = self.shape[0]
        return ["  {", *(f"  {line}" for line in self.pre + handed),
                f"  for (int64_t s = 0; s < {size}; s += {STRIP}) {{",
                f"    const int64_t n = {size} - s < {STRIP} ? {size} - s : {STRIP};",
                *loop(first), *loop(reload + carry + second), "  }",
                *(f"  {line}" for line in self.after), "  }"]


STRIP = 256  # iterations of a strip (LoopGroup.emit_in_strips): its values handed on stay in L1
CALL = re.compile(r"\b(?:" + "|".join(SIMD_FUNCTIONS) + r")f?\(")
SUM = re.compile(r"^(v\d+) \+= ")
DECLARATION = re.compile(r"^(?:const )?(.+?) (v\d+) = ")


# a store of a fused loop's local to its buffer (dropped where nothing else reads the buffer)
STORE = re.compile(r"^\s*(b\d+)\[[^\]]*\] = v\d+;$")


class Generator:
    """C source of one traced graph: ``int step(void **args)`` with args = inputs, constants, outputs, then
    the info tensors of the graph's factorisation checks. It returns 0, or an error code (``ERRORS``) with
    its details in ``step_error``."""

    def __init__(self, gm: torch.fx.GraphModule, example_inputs: Sequence[torch.Tensor]):
        self.gm, self.example_inputs = gm, list(example_inputs)
        self.lines: list[str] = []  # the function's body so far (emit())
        self.pending: list[LoopGroup] = []  # loop groups not yet emitted, in the order they were made
        self.n_locals = 0
        # constants passed, by (storage, dtype, offset): (dims as (size, stride), our strides of them, buffer)
        self.constant_layouts: dict[tuple, list[tuple[tuple, tuple, str]]] = {}
        self.buffers: dict[str, tuple[torch.dtype, int]] = {}  # name: (dtype, elements)
        self.constants: list[torch.Tensor] = []
        self.refs: dict = {}
        self.allocated = 0  # bytes of all buffers made
        self.n_args = 0
        self.outputs: list[tuple[torch.Size, torch.dtype]] = []
        self.input_updates: list[tuple[Ref, Ref]] = []  # (input, new value)
        self.checks: list[tuple[torch.Size, str, bool]] = []  # factorisation checks: (info shape, api, is_matrix)
        self.loop_depth = 0

    # buffers and arguments
    def arg_ref(self, t: torch.Tensor, index: int) -> Ref:
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
        if self.allocated > 8 * MAX_BUFFER_BYTES:  # hopeless even if most are fused away (source()): stop now
            raise Unsupported(f"intermediates of more than {8 * MAX_BUFFER_BYTES / 2 ** 20:.2f} MiB before fusion")
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
        order = list(range(t.dim())) if key in self.gathered else long_axis_order(t.shape)
        copy = t.permute(order).contiguous()
        self.constants.append(copy)
        buf = self.arg_ref(copy, -len(self.constants)).buf  # index fixed up in source()
        strides = [0] * t.dim()
        for i, d in enumerate(order):
            strides[d] = copy.stride(i)
        if key is not None:
            self.constant_layouts.setdefault(key, []).append(
                (dims, tuple(st for n, st in zip(t.shape, strides) if n != 1), buf))
        return Ref(buf, t.dtype, tuple(t.shape), tuple(strides), 0)

    # loops
    def index(self, ref: Ref, shape: Sequence[int], vars_: Sequence[str], extra: str = "") -> str:
        """``ref`` broadcast to ``shape`` at loop variables ``vars_`` (plus the offset ``extra``): the C
        element expression."""
        return f"{ref.buf}[{self.offset(ref, shape, vars_)}{extra}]"

    def offset(self, ref: Ref, shape: Sequence[int], vars_: Sequence[str]) -> str:
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

    def loop_nest(self, shape: Sequence[int], refs: Sequence[Ref], body: Callable[..., list[str]],
                  keep_last: int = 0, simd: bool = True) -> None:
        """Emit loops over ``shape`` (dimensions merged where every ref allows it, except the last
        ``keep_last``); ``body(vars, merged shape, merged refs)`` gives the innermost loop's statements."""
        self.emit(self.loop_lines(shape, refs, body, keep_last, simd))

    def loop_lines(self, shape: Sequence[int], refs: Sequence[Ref], body: Callable[..., list[str]],
                   keep_last: int = 0, simd: bool = True) -> list[str]:
        """The lines of :meth:`loop_nest`."""
        merged_shape, merged_refs = self._coalesce(list(shape), refs, keep_last)
        depth = len(merged_shape)
        vars_ = [f"i{self.loop_depth + d}" for d in range(depth)]
        self.loop_depth += depth
        stmts = body(vars_, merged_shape, merged_refs)
        self.loop_depth -= depth
        lines, indent = [], "  "
        for d, size in enumerate(merged_shape):
            if d == depth - 1 and simd:
                lines.append(f"{indent}#pragma omp simd")
            lines.append(indent + for_loop(vars_[d], size))
            indent += "  "
        lines += [indent + s for s in stmts]
        return lines + [f"{'  ' * (d + 1)}}}" for d in reversed(range(depth))]

    @staticmethod
    def _coalesce(shape: list[int], refs: Sequence[Ref], keep_last: int):
        """Merge adjacent dimensions that every ref (broadcast to ``shape``) walks with one stride."""
        nd = len(shape)
        full = []
        for ref in refs:
            pad = nd - len(ref.sizes)
            strides = [0] * pad + [0 if sz == 1 else st for sz, st in zip(ref.sizes, ref.strides)]
            full.append(strides)
        out_shape, out_strides = [], [[] for _ in refs]
        for d in range(nd):
            if shape[d] == 1 and nd - d > keep_last:
                continue  # a size-1 dimension loops once
            can_merge = (out_shape and nd - d > keep_last and nd - (d - 1) > keep_last
                         and all(s[-1] == st[d] * shape[d] for s, st in zip(out_strides, full)))
            if can_merge:
                out_shape[-1] *= shape[d]
                for s, st in zip(out_strides, full):
                    s[-1] = st[d]
            else:
                out_shape.append(shape[d])
                for s, st in zip(out_strides, full):
                    s.append(st[d])
        new_refs = [Ref(r.buf, r.dtype, tuple(out_shape), tuple(s), r.offset) for r, s in zip(refs, out_strides)]
        return out_shape, new_refs

    def elementwise(self, out: Ref, operands: Sequence[Ref | str], expr: Callable[[list[str], list[str]], str],
                    keep_last: int = 0) -> None:
        """out = expr(operand elements) over out's shape; operands are Refs or C scalar expressions.

        Fused into the pending loop (:class:`LoopGroup`) when that runs over the same (merged) shape and
        nothing it writes is read here at another element: values it computed are then read from its
        locals rather than from memory."""
        refs = [out] + [o for o in operands if isinstance(o, Ref)]
        shape, merged = self._coalesce(list(out.sizes), refs, keep_last)
        vars_ = [f"i{self.loop_depth + d}" for d in range(len(shape))]
        target = (merged[0].buf, self.offset(merged[0], shape, vars_))
        reads = [(r.buf, self.offset(r, shape, vars_)) for r in merged[1:]]
        group = self.fusing(shape, reads, [target])
        it = iter(reads)
        values = [group.read(*next(it)) if isinstance(o, Ref) else o for o in operands]
        ctype = C_TYPES[out.dtype]
        group.write(*target, ctype, f"({ctype})({expr(values, vars_)})")

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
            chosen = LoopGroup(shape, [f"i{self.loop_depth + d}" for d in range(len(shape))], self.new_local)
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
        out = self.new_buffer(ref.sizes, ref.dtype)
        self.elementwise(out, [ref], lambda v, _: v[0])
        return out

    # graph
    def value(self, arg):
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
        self.folded = {}
        for node in self.gm.graph.nodes:  # first the values of constants, and of expressions of constants
            if node.op == "get_attr":
                self.folded[node] = getattr(self.gm, node.target)
            elif node.op == "call_function" and self.foldable(node):
                self.folded[node] = node.target(*torch.fx.node.map_arg(node.args, self.folded.__getitem__),
                                                **torch.fx.node.map_arg(node.kwargs, self.folded.__getitem__))
        # the storages of constants whose rows are picked by index (a subsample): they keep their rows contiguous
        self.gathered = {self.storage_key(self.folded[node.args[0]]) for node in self.gm.graph.nodes
                         if getattr(node.target, "overloadpacket", None) is aten.index
                         and isinstance(self.folded.get(node.args[0]), torch.Tensor)}
        for node in self.gm.graph.nodes:
            if node.op == "call_function" and node not in self.folded:
                if node.target is operator.getitem:
                    self.refs[node] = self.value(node.args[0])[node.args[1]]
                else:
                    self.refs[node] = self.call(node)
            elif node.op == "output":
                self.write_outputs(node.args[0])
        self.write_input_updates()

    def write_input_updates(self) -> None:
        """The in-place updates of the inputs, last: after the outputs (which may read the inputs' old
        values), and with every value read from an updated input copied out before the first update."""
        updated = {dst.buf for dst, _ in self.input_updates}
        sources = [self.materialise(src) if src.buf in updated else src for _, src in self.input_updates]
        for (dst, _), src in zip(self.input_updates, sources):
            self.elementwise(dst, [src], lambda v, _: v[0])

    def foldable(self, node) -> bool:
        """Whether ``node`` depends on constants only (so it is computed once, now)."""
        if isinstance(node.target, torch._ops.OpOverload) and (
                torch.Tag.nondeterministic_seeded in node.target.tags or node.target.overloadpacket is aten.copy_):
            return False
        return all(arg in self.folded for arg in node.all_input_nodes)

    def write_outputs(self, outputs) -> None:
        flat, self.output_spec = torch.utils._pytree.tree_flatten(outputs)
        for node in flat:
            ref = self.value(node)
            if not isinstance(ref, Ref):
                raise Unsupported("non-tensor output")
            index = len(self.outputs)
            self.outputs.append((torch.Size(ref.sizes), ref.dtype))
            out = Ref(f"(({C_TYPES[ref.dtype]}*)args[OUT + {index}])", ref.dtype, ref.sizes,
                      contiguous_strides(ref.sizes))
            self.elementwise(out, [ref], lambda v, _: v[0])

    def node_meta(self, node) -> torch.Tensor:
        val = node.meta.get("val")
        if not isinstance(val, torch.Tensor):
            raise Unsupported(f"{node.target}: output is not one tensor")
        return val

    def call(self, node):
        target = node.target
        if target is aten._linalg_check_errors.default:
            info = self.value(node.args[0])
            api = node.args[1] if len(node.args) > 1 else node.kwargs["api_name"]
            is_matrix = node.args[2] if len(node.args) > 2 else node.kwargs.get("is_matrix", True)
            self.check_errors(info, api, is_matrix)
            return None
        name = _base_name(target.overloadpacket) if hasattr(target, "overloadpacket") else None
        if name is None:
            raise Unsupported(f"{target}")
        args = list(torch.fx.node.map_aggregate(node.args, self.value))
        kwargs = dict(torch.fx.node.map_aggregate(dict(node.kwargs), self.value))
        if name == "linalg_cholesky_ex":
            return self.cholesky(args[0], kwargs.get("upper", args[1] if len(args) > 1 else False))
        val = self.node_meta(node)
        shape, dtype = tuple(val.shape), val.dtype
        if name in VIEW_OPS:
            return self.view(name, args, kwargs, shape)
        if name in CREATION_OPS:
            return self.creation(node)
        if name == "copy_":  # functionalised update of an input: written by write_input_updates
            self.input_updates.append((args[0], args[1]))
            return args[0]
        # rows picked from a data set (a subsample): laid out for the loops over the rows that read them
        out = self.new_buffer(shape, dtype, long_axis=name == "index")
        if name in ("copy", "_to_copy"):
            src = args[1] if name == "copy" else args[0]
            self.elementwise(out, [src], lambda v, _: v[0])
        elif name in ("cat", "stack"):
            self.concatenate(out, args[0], args[1] if len(args) > 1 else kwargs.get("dim", 0), name == "stack")
        elif name in SCATTER_OPS:
            self.scatter(out, args[0], args[1], SCATTER_OPS[name], args[2:], kwargs)
        elif name in VIEW_BACKWARD_OPS:
            self.elementwise(out, [], lambda v, _: "0")
            self.scatter(out, None, args[0], VIEW_BACKWARD_OPS[name], args[2:], kwargs)
        elif name in REDUCTIONS:
            self.reduction(name, out, args, kwargs)
        elif name == "index":
            self.gather(out, args[0], args[1])
        elif name in ("index_put", "_index_put_impl"):
            self.scatter_rows(out, args[0], args[1], args[2], args[3] if len(args) > 3 else kwargs.get("accumulate"))
        elif name in ("_log_softmax", "_softmax", "logsumexp"):
            self.normalise(name, out, args[0], args[1])
        elif name in ("_log_softmax_backward_data", "_softmax_backward_data"):
            self.normalise_backward(name, out, args[0], args[1], args[2])
        elif name in ("mm", "bmm", "matmul"):
            self.matmul(out, args[0], args[1])
        elif name == "mv":  # (M, K) @ (K,): the product with v as a column
            v = args[1]
            self.matmul(Ref(out.buf, out.dtype, out.sizes + (1,), out.strides + (1,), out.offset), args[0],
                        Ref(v.buf, v.dtype, v.sizes + (1,), v.strides + (1,), v.offset))
        elif name == "linalg_solve_triangular":
            self.solve_triangular(out, args[0], args[1], kwargs.get("upper", args[2] if len(args) > 2 else None),
                                  kwargs.get("left", True), kwargs.get("unitriangular", False))
        elif name in ("tril", "triu"):
            k = args[1] if len(args) > 1 else kwargs.get("diagonal", 0)
            cond = "<=" if name == "tril" else ">="
            self.elementwise(out, [args[0]], lambda v, i: f"(({i[-1]} - {i[-2]}) {cond} {k} ? {v[0]} : 0)",
                             keep_last=2)
        else:
            self.pointwise(name, node, out, args, kwargs)
        return out

    def pointwise(self, name, node, out: Ref, args, kwargs) -> None:
        """Elementwise operations (broadcasting, Python scalars as literals)."""
        unknown = set(kwargs) - {"alpha", "min", "max"}
        if unknown:  # a variant (div's rounding_mode, say) the expressions below do not implement
            raise Unsupported(f"{node.target} with {', '.join(sorted(unknown))}")
        tensors = [a for a in args if isinstance(a, Ref)]
        if not tensors:
            raise Unsupported(f"{node.target}: no tensor operand")
        # the type the arithmetic runs in: the result's, or for comparisons the operands' promoted type
        if name in COMPARISONS:
            metas = [a.meta() if isinstance(a, Ref) else a for a in args[:2]]
            compute = torch.result_type(*metas) if len(metas) == 2 else metas[0].dtype
        else:
            compute = out.dtype
        if compute not in C_TYPES:
            raise Unsupported(f"dtype {compute}")
        ctype = C_TYPES[compute]
        operands, slots = [], []
        for a in args:
            if isinstance(a, Ref):
                slots.append(len(operands))
                operands.append(a)
            elif isinstance(a, (int, float, bool)):
                slots.append(c_literal(a, compute))
            else:
                slots.append(None)

        def cast(values):
            it = iter(values)
            return [f"(({ctype}){next(it)})" if isinstance(s, int) else s for s in slots]

        if name == "masked_fill":  # x with value where mask: where(mask, value, x)
            slots = [slots[1], slots[2], slots[0]]
            name = "where"
        if name == "where":  # the condition as it is, the two values in the result's type
            def select(v, _):
                cond, a, b = (v[slot] if isinstance(slot, int) else slot for slot in slots[:3])
                return f"({cond} ? (({ctype}){a}) : (({ctype}){b}))"
            self.elementwise(out, operands, select)
            return
        if name in ("clamp", "clamp_min", "clamp_max"):
            lo = args[1] if name in ("clamp", "clamp_min") else kwargs.get("min")
            hi = args[1] if name == "clamp_max" else (args[2] if len(args) > 2 else kwargs.get("max"))
            if isinstance(lo, Ref) or isinstance(hi, Ref):
                raise Unsupported("clamp by tensors")

            def clamp(v, _):
                x = cast(v)[0]
                if lo is not None:
                    x = f"({x} < {c_literal(lo, compute)} ? {c_literal(lo, compute)} : {x})"
                if hi is not None:
                    x = f"({x} > {c_literal(hi, compute)} ? {c_literal(hi, compute)} : {x})"
                return x
            self.elementwise(out, operands, clamp)
            return
        if name in ("softplus", "softplus_backward"):
            grad_first = name == "softplus_backward"
            beta, threshold = (args[2:4] if grad_first else args[1:3]) if len(args) > 2 + grad_first else (1, 20)
            b, th = c_literal(beta, compute), c_literal(threshold, compute)
            f = math_fn(compute)
            if grad_first:
                def expr(v, _):
                    g, x = cast(v)[:2]
                    z = f("exp", f"{x} * {b}")
                    return f"({x} * {b} > {th} ? {g} : {g} * {z} / ({z} + 1))"
            else:
                def expr(v, _):
                    x = cast(v)[0]
                    return f"({x} * {b} > {th} ? {x} : {f('log1p', f('exp', f'{x} * {b}'))} / {b})"
            self.elementwise(out, operands, expr)
            return
        if name == "pow" and isinstance(args[1], (int, float)) and isinstance(args[0], Ref):
            e = float(args[1])
            special = {2.0: lambda x: f"({x} * {x})", 1.0: lambda x: x, 0.5: lambda x: math_call("sqrt", compute, x),
                       -1.0: lambda x: f"(({ctype})1 / {x})", 3.0: lambda x: f"({x} * {x} * {x})"}
            if e in special:
                self.elementwise(out, operands, lambda v, _: special[e](cast(v)[0]))
                return
        alpha = kwargs.get("alpha", args[2] if len(args) > 2 and name in ("add", "sub", "rsub") else None)
        alpha = None if alpha is None or alpha == 1 else c_literal(alpha, compute)
        if name == "threshold_backward":  # grad where x > threshold, else 0
            alpha = c_literal(args[2], compute)
        n_values = len([s for s in slots[:2] if s is not None])
        if n_values == 1 and unary(name, compute, "x") is not None:
            self.elementwise(out, operands, lambda v, _: unary(name, compute, cast(v)[0]))
            return
        if n_values == 2 and binary(name, compute, "a", "b", alpha) is not None:
            self.elementwise(out, operands, lambda v, _: binary(name, compute, *cast(v)[:2], alpha))
            return
        raise Unsupported(f"{node.target}")

    def view(self, name: str, args, kwargs, shape) -> Ref:
        src = args[0]
        if not isinstance(src, Ref):
            raise Unsupported(f"{name} of a non-tensor")
        op = VIEW_OPS[name]
        meta_args = list(args[1:])
        for attempt in range(2):
            try:
                m = src.meta()
                if op is aten.alias.default:  # clone's memory_format: any layout will do
                    res = m
                elif name == "squeeze":
                    res = m.squeeze(*meta_args) if meta_args else m.squeeze()
                else:
                    res = op(m, *meta_args, **kwargs)
                break
            except RuntimeError:
                if attempt:
                    raise
                src = self.materialise(src)
        if tuple(res.shape) != shape:
            raise Unsupported(f"{name}: shape {tuple(res.shape)} != traced {shape}")
        return Ref(src.buf, src.dtype, tuple(res.shape), tuple(res.stride()), res.storage_offset())

    def scatter(self, out: Ref, base: Ref | None, src, view_op, view_args, kwargs) -> None:
        if base is not None:
            self.elementwise(out, [base], lambda v, _: v[0])
        m = view_op(out.meta(), *view_args, **kwargs)
        target = Ref(out.buf, out.dtype, tuple(m.shape), tuple(m.stride()), m.storage_offset())
        if isinstance(src, Ref):
            self.elementwise(target, [src], lambda v, _: v[0])
        else:
            self.elementwise(target, [], lambda v, _: c_literal(src, out.dtype))

    def concatenate(self, out: Ref, parts, dim: int, stack: bool) -> None:
        """cat (along ``dim``) or stack (at a new ``dim``) of ``parts``: each copied into its slice of ``out``."""
        if not all(isinstance(p, Ref) for p in parts):
            raise Unsupported("cat or stack of other than tensors")
        dim = dim % len(out.sizes)
        start = 0
        for part in parts:
            view = out.meta()
            if stack:
                view, source = view.select(dim, start), part
                start += 1
            else:
                size = part.sizes[dim] if len(part.sizes) == len(out.sizes) else 0
                if size == 0:  # torch lets a (0,)-shaped tensor join any cat
                    continue
                view, source = view.narrow(dim, start, size), part
                start += size
            target = Ref(out.buf, out.dtype, tuple(view.shape), tuple(view.stride()), view.storage_offset())
            self.elementwise(target, [source], lambda v, _: v[0])

    def creation(self, node) -> Ref:
        """Values that depend on no input (zeros, eye, arange, ...): computed now, passed as constants."""
        def concrete(a):
            if isinstance(a, torch.fx.Node):
                v = self.node_meta(a)
                return torch.zeros(v.shape, dtype=v.dtype)
            return a
        args = [concrete(a) for a in node.args]
        kwargs = {k: concrete(v) for k, v in node.kwargs.items()}
        kwargs.pop("pin_memory", None)
        if "device" in kwargs:
            kwargs["device"] = "cpu"
        name = _base_name(node.target.overloadpacket)
        if name in ("empty", "empty_like", "new_empty", "empty_permuted", "empty_strided", "new_empty_strided"):
            val = self.node_meta(node)
            value = torch.zeros(val.shape, dtype=val.dtype)  # uninitialised in torch: any value will do
        else:
            value = node.target(*args, **kwargs)
        return self.constant(value)

    def reduction(self, name: str, out: Ref, args, kwargs) -> None:
        """sum, mean, prod, amax or amin over some dimensions (all by default), accumulated in double for
        floats; ``out`` has the traced shape (with or without the kept size-1 dimensions: same layout)."""
        x = args[0]
        nd = len(x.sizes)
        dims = args[1] if len(args) > 1 else kwargs.get("dim")
        dims = range(nd) if dims is None or dims == [] else [dims] if isinstance(dims, int) else dims
        dims = sorted(d % nd for d in dims) if nd else []
        kept = [d for d in range(nd) if d not in dims]
        outer, inner = tuple(x.sizes[d] for d in kept), tuple(x.sizes[d] for d in dims)
        # x with the reduced dimensions innermost
        xp = Ref(x.buf, x.dtype, outer + inner, tuple(x.strides[d] for d in kept + dims), x.offset)
        if name in ("sum", "mean") and math.prod(outer) == 1:  # one total: fused with the loops over x's shape
            shape, (merged,) = self._coalesce(list(x.sizes), [x], 0)
            vars_ = [f"i{self.loop_depth + d}" for d in range(len(shape))]
            at = self.offset(merged, shape, vars_)
            group = self.fusing(shape, [(x.buf, at)], [(out.buf, LoopGroup.AFTER)])
            mean = f" / {math.prod(inner)}" if name == "mean" else ""
            group.accumulate(f"(double){group.read(x.buf, at)}", out.buf,
                             lambda acc: f"{out.buf}[{out.offset}] = ({C_TYPES[out.dtype]})({acc}{mean});")
            return
        acc = "double" if x.dtype in FLOATS or name in ("sum", "mean") else C_TYPES[x.dtype]
        init = {"sum": "0", "mean": "0", "prod": "1", "amax": "-INFINITY", "amin": "INFINITY"}[name]
        combine = {"sum": "acc += {v};", "mean": "acc += {v};", "prod": "acc *= {v};",
                   "amax": "acc = ({v} > acc || {v} != {v}) ? {v} : acc;",  # nan wins, as in torch
                   "amin": "acc = ({v} < acc || {v} != {v}) ? {v} : acc;"}[name]
        finish = f"acc / {math.prod(inner)}" if name == "mean" else "acc"
        outer_vars = [f"o{d}" for d in range(len(outer))]
        inner_vars = [f"r{d}" for d in range(len(inner))]
        lines = ["{"] + [for_loop(v, n) for v, n in zip(outer_vars, outer)] + [f"  {acc} acc = {init};"]
        for d, (v, n) in enumerate(zip(inner_vars, inner)):
            if d == len(inner) - 1 and name in ("sum", "mean"):
                lines.append("  #pragma omp simd reduction(+:acc)")
            lines.append("  " + for_loop(v, n))
        element = self.index(xp, outer + inner, outer_vars + inner_vars)
        lines.append("    " + combine.format(v=f"({acc}){element}"))
        lines += ["  }"] * len(inner)
        target = self.index(Ref(out.buf, out.dtype, outer, contiguous_strides(outer)), outer, outer_vars)
        lines.append(f"  {target} = ({C_TYPES[out.dtype]})({finish});")
        lines += ["}"] * len(outer) + ["}"]
        self.emit(["  " + line for line in lines])

    def reduce(self, name: str, x: Ref, dims: Sequence[int]) -> Ref:
        """A new buffer: ``name`` (sum, amax, ...) of ``x`` over ``dims``, the dimensions kept (size 1)."""
        nd = len(x.sizes)
        dims = [d % nd for d in dims]
        out = self.new_buffer(tuple(1 if d in dims else n for d, n in enumerate(x.sizes)), x.dtype)
        self.reduction(name, out, [x, dims, True], {})
        return out

    def normalise(self, name: str, out: Ref, x: Ref, dims) -> None:
        """log_softmax, softmax or logsumexp of ``x`` over ``dims``, with the maximum subtracted first."""
        dims = [dims] if isinstance(dims, int) else list(dims)
        f = math_fn(x.dtype)
        top = self.reduce("amax", x, dims)
        if name == "logsumexp":
            # as torch: an infinite maximum is replaced by 0, so that an all -inf slice gives -inf (not NaN)
            # and one with +inf gives +inf; softmax and log_softmax subtract the maximum as it is (NaN there)
            safe = self.new_buffer(top.sizes, top.dtype)
            self.elementwise(safe, [top], lambda v, _: f"(isinf({v[0]}) ? 0 : {v[0]})")
        else:
            safe = top
        shifted = self.new_buffer(x.sizes, x.dtype)
        self.elementwise(shifted, [x, safe], lambda v, _: f("exp", f"{v[0]} - {v[1]}"))
        total = self.reduce("sum", shifted, dims)
        if name == "logsumexp":
            flat = Ref(out.buf, out.dtype, total.sizes, total.strides)
            self.elementwise(flat, [total, safe], lambda v, _: f"{f('log', v[0])} + {v[1]}")
        elif name == "_log_softmax":
            self.elementwise(out, [x, safe, total], lambda v, _: f"{v[0]} - {v[1]} - {f('log', v[2])}")
        else:
            self.elementwise(out, [shifted, total], lambda v, _: f"{v[0]} / {v[1]}")

    def normalise_backward(self, name: str, out: Ref, grad: Ref, output: Ref, dim: int) -> None:
        f = math_fn(out.dtype)
        if name == "_log_softmax_backward_data":  # g - exp(y) sum(g)
            total = self.reduce("sum", grad, [dim])
            self.elementwise(out, [grad, output, total], lambda v, _: f"{v[0]} - {f('exp', v[1])} * {v[2]}")
        else:  # y (g - sum(g y))
            product = self.new_buffer(grad.sizes, grad.dtype)
            self.elementwise(product, [grad, output], lambda v, _: f"{v[0]} * {v[1]}")
            total = self.reduce("sum", product, [dim])
            self.elementwise(out, [output, grad, total], lambda v, _: f"{v[0]} * ({v[1]} - {v[2]})")

    def _row_index(self, indices, rows: int, source: Ref | None = None) -> Ref:
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
            r = self.index(idx, shape, vars_)
            lines = [f"if ({r} < -{rows} || {r} >= {rows}) {{ step_error[0] = {r}; step_error[1] = {rows}; "
                     f"return {ERRORS['index']}; }}"]
            if prefetch:
                start = f"{source.offset} + row_at((int64_t){r}, {rows}) * {source.strides[0]}"
                lines.append(f"__builtin_prefetch(&{source.buf}[{start}]);")
                if row_bytes > 1:
                    last = f"({row_bytes // source.dtype.itemsize - 1})"
                    lines.append(f"__builtin_prefetch(&{source.buf}[{start} + {last}]);")
            return lines
        self.loop_nest(idx.sizes, [idx], body, simd=False)
        return idx

    def gather(self, out: Ref, x: Ref, indices) -> None:
        """out[j..., b...] = x[idx[j...], b...]."""
        rows, rest = x.sizes[0], x.sizes[1:]
        idx = self._row_index(indices, rows, source=x)
        row_ref = Ref(x.buf, x.dtype, rest, x.strides[1:], x.offset)
        k = len(idx.sizes)

        def body(vars_, shape, merged):
            r = f"row_at((int64_t){self.index(idx, shape[:k], vars_[:k])}, {rows})"
            element = self.index(row_ref, shape[k:], vars_[k:], f" + {r} * {x.strides[0]}")
            return [f"{self.index(out, shape, vars_)} = {element};"]
        self.loop_nest(out.sizes, [], body, keep_last=len(out.sizes), simd=False)

    def scatter_rows(self, out: Ref, base: Ref, indices, values, accumulate) -> None:
        """out = base; out[idx[j...], b...] (+)= values[j..., b...], in order (repeated rows add up)."""
        rows = out.sizes[0]
        idx = self._row_index(indices, rows)
        self.elementwise(out, [base], lambda v, _: v[0])
        k = len(idx.sizes)
        row_ref = Ref(out.buf, out.dtype, out.sizes[1:], out.strides[1:])
        shape = idx.sizes + out.sizes[1:]
        op = "+=" if accumulate else "="

        def body(vars_, shape_, merged):
            r = f"row_at((int64_t){self.index(idx, shape[:k], vars_[:k])}, {rows})"
            target = self.index(row_ref, shape[k:], vars_[k:], f" + {r} * {out.strides[0]}")
            return [f"{target} {op} {self.index(values, shape, vars_)};"]
        self.loop_nest(shape, [], body, keep_last=len(shape), simd=False)

    def cholesky(self, A: Ref, upper) -> tuple[Ref, Ref]:
        """(L, info) of ``linalg_cholesky_ex``: L L^T = A, lower, over the batch. As LAPACK's ``potrf``:
        where the leading minor of order j is not positive definite (its pivot <= 0 or NaN), info = j and
        that factorisation stops (L is then undefined, as in torch); info = 0 where it succeeds."""
        if upper:
            raise Unsupported("linalg_cholesky_ex(upper=True)")
        n, batch, ctype = A.sizes[-1], math.prod(A.sizes[:-2]), C_TYPES[A.dtype]
        dense_work_check("Cholesky factorisation", batch * n ** 3 // 3, (n,))
        L = self.new_buffer(A.sizes, A.dtype)
        info = self.new_buffer(A.sizes[:-2], torch.int32)
        self.elementwise(L, [A], lambda v, i: f"({i[-1]} <= {i[-2]} ? {v[0]} : 0)", keep_last=2)
        self.emit([  # column by column, in place on the lower triangle of L
            "  " + for_loop("q", batch),
            f"    {ctype} *a = {L.buf} + q * {n * n};",
            f"    {info.buf}[q] = 0;",
            "    " + for_loop("j", n),
            f"      double acc = a[j * {n} + j];",
            f"      for (int64_t k = 0; k < j; k++) acc -= (double)a[j * {n} + k] * a[j * {n} + k];",
            f"      if (!(acc > 0)) {{ a[j * {n} + j] = ({ctype})acc; {info.buf}[q] = (int32_t)(j + 1); break; }}",
            f"      a[j * {n} + j] = ({ctype})sqrt(acc);",
            f"      for (int64_t i = j + 1; i < {n}; i++) {{",
            f"        double s = a[i * {n} + j];",
            f"        for (int64_t k = 0; k < j; k++) s -= (double)a[i * {n} + k] * a[j * {n} + k];",
            f"        a[i * {n} + j] = ({ctype})(s / a[j * {n} + j]);",
            "      }", "    }", "  }",
        ])
        return L, info

    def check_errors(self, info: Ref, api: str, is_matrix: bool) -> None:
        """``_linalg_check_errors``: where any info is not 0, copy the info out (the check's argument) and
        return ``LINALG_ERROR`` with the check's number; torch's own check then raises on that info."""
        k = len(self.checks)
        self.checks.append((torch.Size(info.sizes), api, bool(is_matrix)))
        target = Ref(f"((int32_t*)args[CHECK + {k}])", torch.int32, info.sizes, contiguous_strides(info.sizes))
        self.emit(["  {", "  int64_t bad = 0;",
                   *self.loop_lines(info.sizes, [info], lambda vars_, shape, merged: [
                       f"bad |= ({self.index(merged[0], shape, vars_)} != 0);"], simd=False),
                   "  if (bad) {",
                   *self.loop_lines(info.sizes, [target, info], lambda vars_, shape, merged: [
                       f"{self.index(merged[0], shape, vars_)} = {self.index(merged[1], shape, vars_)};"]),
                   f"  step_error[0] = {k}; return {ERRORS['linalg']};", "  }", "  }"])

    def matmul(self, out: Ref, a: Ref, b: Ref) -> None:
        """out = a @ b: (M, K) @ (K, N), or batched (Q, M, K) @ (Q, K, N) (a batch of 1 broadcasts), summed
        in double in the order of k, in the loop order of :func:`matmul_plan`."""
        if len(a.sizes) != len(b.sizes) or len(a.sizes) not in (2, 3):
            raise Unsupported("matmul of these ranks")
        batch = len(a.sizes) == 3
        M, K = a.sizes[-2:]
        N = b.sizes[-1]
        dense_work_check("matrix product", (out.sizes[0] if batch else 1) * M * N * K, (M, N, K))
        order, transpose = matmul_plan(a, b, M, N, K, batch)
        if order == "inline":
            self.matmul_inline(out, a, b, K)
            return
        if order == "sums":
            self.matmul_sums(out, a, b, M, N, K)
            return
        if transpose:  # out^T = b^T a^T: the loops below then read b^T's rows (a's columns) contiguously
            a, b, out, M, N = transposed(b), transposed(a), transposed(out), N, M
        acc = "double" if out.dtype in FLOATS else C_TYPES[out.dtype]
        ctype = C_TYPES[out.dtype]
        batch_loops = [for_loop("q", out.sizes[0])] if batch else []

        def el(ref, i, j):
            terms = [str(ref.offset)] if ref.offset else []
            if batch and ref.sizes[0] != 1:
                terms.append(f"q * {ref.strides[0]}")
            terms += [f"{i} * {ref.strides[-2]}", f"{j} * {ref.strides[-1]}"]
            return f"{ref.buf}[{' + '.join(terms)}]"
        if order == "dot":  # k innermost: one dot product per element (rows of a, columns of b contiguous)
            body = [f"{for_loop('m', M)} {for_loop('n', N)}",
                    f"  {acc} acc = 0;",
                    "  #pragma omp simd reduction(+:acc)",
                    f"  {for_loop('k', K)} acc += ({acc}){el(a, 'm', 'k')} * ({acc}){el(b, 'k', 'n')}; }}",
                    f"  {el(out, 'm', 'n')} = ({ctype})acc;",
                    "}}"]
        elif order == "k_outer":  # a small output, a long k: a and b read once each, in order
            body = [f"{acc} acc[{M * N}];",
                    "#pragma omp simd",
                    f"for (int64_t j = 0; j < {M * N}; j++) acc[j] = 0;",
                    f"{for_loop('k', K)} {for_loop('m', M)}",
                    f"  {acc} am = ({acc}){el(a, 'm', 'k')};",
                    "  #pragma omp simd",
                    f"  {for_loop('n', N)} acc[m * {N} + n] += am * ({acc}){el(b, 'k', 'n')}; }}",
                    "}}",
                    f"{for_loop('m', M)} {for_loop('n', N)} {el(out, 'm', 'n')} = ({ctype})acc[m * {N} + n]; }}}}"]
        else:  # "axpy", n innermost over a block of columns: rows of b read contiguously, into vector accumulators
            block = min(N, MATMUL_BLOCK)
            n = "(n0 + n)"
            body = [f"{acc} acc[{block}];",
                    f"for (int64_t n0 = 0; n0 < {N}; n0 += {block}) {{",
                    f"  int64_t nb = {N} - n0 < {block} ? {N} - n0 : {block};",
                    f"  {for_loop('m', M)}",
                    "    #pragma omp simd",
                    "    for (int64_t n = 0; n < nb; n++) acc[n] = 0;",
                    f"    {for_loop('k', K)}",
                    f"      {acc} am = ({acc}){el(a, 'm', 'k')};",
                    "      #pragma omp simd",
                    f"      for (int64_t n = 0; n < nb; n++) acc[n] += am * ({acc}){el(b, 'k', n)};",
                    "    }",
                    "    #pragma omp simd",
                    f"    for (int64_t n = 0; n < nb; n++) {el(out, 'm', n)} = ({ctype})acc[n];",
                    "  }", "}"]
        self.emit(["  {", *("  " + loop for loop in batch_loops), *("  " + line for line in body),
                   *("  }" for _ in batch_loops), "  }"])

    def matmul_inline(self, out: Ref, a: Ref, b: Ref, K: int) -> None:
        """out = a @ b as an elementwise operation: the sum over k of column k of a (broadcast along n) times
        row k of b (broadcast along m), in double, k in order."""
        acc = "double" if out.dtype in FLOATS else C_TYPES[out.dtype]

        def batch_part(ref):
            if len(out.sizes) == 2:
                return (), ()
            return (ref.sizes[0],), (ref.strides[0] if ref.sizes[0] != 1 else 0,)
        operands = []
        (sizes_a, strides_a), (sizes_b, strides_b) = batch_part(a), batch_part(b)
        for k in range(K):
            operands.append(Ref(a.buf, a.dtype, sizes_a + out.sizes[-2:], strides_a + (a.strides[-2], 0),
                                a.offset + k * a.strides[-1]))
            operands.append(Ref(b.buf, b.dtype, sizes_b + out.sizes[-2:], strides_b + (0, b.strides[-1]),
                                b.offset + k * b.strides[-2]))

        def expr(v, _):
            return " + ".join(f"({acc}){v[2 * k]} * ({acc}){v[2 * k + 1]}" for k in range(K)) or "0"
        self.elementwise(out, operands, expr)

    def matmul_sums(self, out: Ref, a: Ref, b: Ref, M: int, N: int, K: int) -> None:
        """out = a @ b as M * N sums over k of a's row m times b's column n, in one loop group over k (fused
        with the loops that compute a or b)."""
        rows = [Ref(a.buf, a.dtype, (K,), (a.strides[-1],), a.offset + m * a.strides[-2]) for m in range(M)]
        cols = [Ref(b.buf, b.dtype, (K,), (b.strides[-2],), b.offset + n * b.strides[-1]) for n in range(N)]
        shape, merged = self._coalesce([K], rows + cols, 0)
        vars_ = [f"i{self.loop_depth + d}" for d in range(len(shape))]
        at = [(r.buf, self.offset(r, shape, vars_)) for r in merged]
        group = self.fusing(shape, at, [(out.buf, LoopGroup.AFTER)])
        ctype = C_TYPES[out.dtype]
        for m in range(M):
            for n in range(N):
                target = f"{out.buf}[{out.offset + m * out.strides[-2] + n * out.strides[-1]}]"
                group.accumulate(f"(double){group.read(*at[m])} * (double){group.read(*at[M + n])}", out.buf,
                                 lambda acc, target=target: f"{target} = ({ctype})({acc});")

    def solve_triangular(self, out: Ref, A: Ref, B: Ref, upper, left, unitriangular) -> None:
        """X with A X = B (A (..., n, n) triangular), over broadcast batch dimensions."""
        if upper is None:
            raise Unsupported("linalg_solve_triangular without upper")
        if not left:  # X A = B  <=>  A^T X^T = B^T
            A, B, out, upper = transposed(A), transposed(B), transposed(out), not upper
        n, k = out.sizes[-2:]
        batch = out.sizes[:-2]
        dense_work_check("triangular solve", math.prod(batch) * n * n * k // 2, (n, k))
        # B copied into out (broadcast), then substitution in place, column by column, in double
        self.elementwise(out, [B], lambda v, _: v[0])
        bvars = [f"p{d}" for d in range(len(batch))]
        a_base = self.offset(Ref(A.buf, A.dtype, A.sizes[:-2], A.strides[:-2], A.offset), batch, bvars)
        o_base = self.offset(Ref(out.buf, out.dtype, batch, out.strides[:-2], out.offset), batch, bvars)
        (sa, ta), (so, to) = A.strides[-2:], out.strides[-2:]
        a = lambda i, j: f"(double){A.buf}[{a_base} + {i} * {sa} + {j} * {ta}]"  # noqa: E731
        x = lambda i, j: f"{out.buf}[{o_base} + {i} * {so} + {j} * {to}]"  # noqa: E731
        rows = f"for (int64_t r = {n} - 1; r >= 0; r--)" if upper else f"for (int64_t r = 0; r < {n}; r++)"
        solved = f"for (int64_t s = r + 1; s < {n}; s++)" if upper else "for (int64_t s = 0; s < r; s++)"
        divide = "" if unitriangular else f" / {a('r', 'r')}"
        self.emit(["  {", *("  " + for_loop(v, size) for v, size in zip(bvars, batch)),
                   f"  {for_loop('c', k)} {rows} {{",
                   f"    double acc = {x('r', 'c')};",
                   f"    {solved} acc -= {a('r', 's')} * (double){x('s', 'c')};",
                   f"    {x('r', 'c')} = ({C_TYPES[out.dtype]})(acc{divide});",
                   "  }}", *("  }" for _ in batch), "  }"])

    def source(self) -> str:
        n_in, n_const = self.n_args, len(self.constants)
        self.flush()
        lines = self.lines
        # buffers that nothing reads but their own stores (intermediates of fused loops): gone, with the stores
        mentions = collections.Counter(re.findall(r"\bb\d+\b", "\n".join(lines)))
        stores = collections.Counter(m.group(1) for m in map(STORE.match, lines) if m)
        dead = {name for name in self.buffers if mentions[name] == stores[name]}
        lines = [line for line in lines if not ((m := STORE.match(line)) and m.group(1) in dead)]
        live = {name: v for name, v in self.buffers.items() if name not in dead}
        size = sum(n * dtype.itemsize for dtype, n in live.values())
        if size > MAX_BUFFER_BYTES:
            raise Unsupported(f"intermediates of {size / 2 ** 20:.2f} MiB in memory "
                              f"(more than {MAX_BUFFER_BYTES / 2 ** 20:.2f} MiB)")
        # static: the graph's intermediates live between calls, aligned for vector loads
        buffers = [f"static {C_TYPES[dtype]} {name}[{max(n, 1)}] __attribute__((aligned(64)));"
                   for name, (dtype, n) in live.items()]
        body = "\n".join(lines)
        # constants were numbered -1, -2, ... while generating: they follow the inputs
        for j in range(n_const, 0, -1):
            body = body.replace(f"args[{-j}]", f"args[{n_in + j - 1}]")
        body = body.replace("args[OUT + ", f"args[{n_in + n_const} + ")
        body = body.replace("args[CHECK + ", f"args[{n_in + n_const + len(self.outputs)} + ")
        # each argument's pointer loaded once, into a local: loops then see a base that does not change
        pointers = {}

        def pointer(match):
            ctype, k = match.group(1), sum(int(term) for term in match.group(2).split("+"))
            pointers[k] = f"  {ctype} *const p{k} = ({ctype}*)args[{k}];"
            return f"p{k}"
        body = re.sub(r"\(\(([a-z0-9_ ]+)\*\)args\[(\d+(?: \+ \d+)?)\]\)", pointer, body)
        body = "\n".join(pointers[k] for k in sorted(pointers)) + "\n" + body
        decls = ["#include <math.h>", "#include <stdint.h>",
                 # the details of the error a call returned (read by CStep)
                 "int64_t step_error[2];",
                 # row r of n, negative from the end (checked in range before: _row_index)
                 "static inline int64_t row_at(int64_t r, int64_t n) { return r < 0 ? r + n : r; }"]
        for suffix, ctype in (("f", "float"), ("", "double")):
            for f in SIMD_FUNCTIONS:
                args = f"{ctype}, {ctype}" if f == "pow" else ctype
                decls.append(f"#pragma omp declare simd notinbranch\n{ctype} {f}{suffix}({args});")
        return "\n".join(decls + buffers + ["int step(void **args) {", body, "  return 0;", "}", ""])


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
    from torch.fx.experimental.proxy_tensor import make_fx

    if c_compiler() is None:
        raise Unsupported("not a Linux x86-64 machine with a C compiler")
    if any(x.device.type != "cpu" for x in example_inputs):
        raise Unsupported("tensors not on the CPU")
    gm = make_fx(functionalize(step, remove="mutations_and_views"))(*example_inputs)
    if any(node.target in AS_STRIDED for node in gm.graph.nodes):
        _check_functionalised(step, gm, example_inputs)
    gen = Generator(gm, example_inputs)
    gen.generate()
    def load() -> CStep:
        library = build_library(gen.source())
        return CStep(library, gen.constants, gen.outputs, [Layout.of(x) for x in example_inputs], gen.output_spec,
                     gen.checks)

    try:
        return rebuilt_if_broken(load, [trusted_cache_dir()])
    except OSError as err:  # the library does not load (a missing libmvec, say)
        raise Unsupported(f"loading the compiled step failed: {err}") from err
