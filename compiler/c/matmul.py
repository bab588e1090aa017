"""Matrix products (``mm``, ``bmm``, ``matmul``, ``mv``): summed in double in the order of k, in the loop
order that suits the sizes and strides (:func:`matmul_plan`). Those of a short k, or of a few outputs over a
long k, are fused with the loops around them; the others are loop nests of their own."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from deepprob.compiler.c.emitter import Emitter, Op, into_new_buffer
from deepprob.compiler.c.linalg import dense_work_check
from deepprob.compiler.c.values import C_TYPES, FLOATS, Ref, accumulator_type, for_loop, transposed
from deepprob.compiler.c_library import Unsupported

# matmul loop orders (matmul_plan): a sum of products written out for k up to MATMUL_INLINE_K; sums fused
# into the loops over k for up to MATMUL_FUSED_SUMS outputs; k outermost for outputs up to
# MATMUL_SMALL_OUTPUT elements; columns of b by blocks of MATMUL_BLOCK
MATMUL_INLINE_K = 16
MATMUL_FUSED_SUMS = 16
MATMUL_SMALL_OUTPUT = 1024
MATMUL_STREAM_K = 64
MATMUL_BLOCK = 256


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


def matmul(gen: Emitter, out: Ref, a: Ref, b: Ref) -> None:
    """out = a @ b: (M, K) @ (K, N), or batched (Q, M, K) @ (Q, K, N) (a batch of 1 broadcasts), in the loop
    order of the generator's ``matmul_plan`` (:func:`matmul_plan`)."""
    if len(a.sizes) != len(b.sizes) or len(a.sizes) not in (2, 3):
        raise Unsupported("matmul of these ranks")
    batch = len(a.sizes) == 3
    M, K = a.sizes[-2:]
    N = b.sizes[-1]
    dense_work_check("matrix product", (out.sizes[0] if batch else 1) * M * N * K, (M, N, K))
    order, transpose = gen.matmul_plan(a, b, M, N, K, batch)
    if order == "inline":
        matmul_inline(gen, out, a, b, K)
        return
    if order == "sums":
        matmul_sums(gen, out, a, b, M, N, K)
        return
    if transpose:  # out^T = b^T a^T: the loops below then read b^T's rows (a's columns) contiguously
        a, b, out, M, N = transposed(b), transposed(a), transposed(out), N, M
    body = LOOP_NESTS[order](Product(out, a, b, M, N, K, batch))
    batch_loops = [for_loop("q", out.sizes[0])] if batch else []
    gen.emit(["  {", *("  " + loop for loop in batch_loops), *("  " + line for line in body),
              *("  }" for _ in batch_loops), "  }"])


@dataclass(frozen=True)
class Product:
    """out = a @ b as a loop nest of its own (orders ``dot``, ``k_outer``, ``axpy``): the operands, sizes, and
    the C of their elements (in the loop over the batch ``q``, if ``batch``)."""

    out: Ref
    a: Ref
    b: Ref
    M: int
    N: int
    K: int
    batch: bool

    @property
    def acc(self) -> str:
        return accumulator_type(self.out.dtype)

    @property
    def ctype(self) -> str:
        return C_TYPES[self.out.dtype]

    def el(self, ref: Ref, i: str, j: str) -> str:
        """Element (i, j) of the matrix ``ref`` (of batch q)."""
        terms = [str(ref.offset)] if ref.offset else []
        if self.batch and ref.sizes[0] != 1:
            terms.append(f"q * {ref.strides[0]}")
        terms += [f"{i} * {ref.strides[-2]}", f"{j} * {ref.strides[-1]}"]
        return f"{ref.buf}[{' + '.join(terms)}]"


def dot_loops(p: Product) -> list[str]:
    """k innermost: one dot product per element (rows of a, columns of b contiguous), vectorised over k."""
    acc, el = p.acc, p.el
    return [f"{for_loop('m', p.M)} {for_loop('n', p.N)}",
            f"  {acc} acc = 0;",
            "  #pragma omp simd reduction(+:acc)",
            f"  {for_loop('k', p.K)} acc += ({acc}){el(p.a, 'm', 'k')} * ({acc}){el(p.b, 'k', 'n')}; }}",
            f"  {el(p.out, 'm', 'n')} = ({p.ctype})acc;",
            "}}"]


def k_outer_loops(p: Product) -> list[str]:
    """k outermost, the whole (small) output in accumulators: a and b read once each, in order."""
    acc, el, M, N = p.acc, p.el, p.M, p.N
    return [f"{acc} acc[{M * N}];",
            "#pragma omp simd",
            f"for (int64_t j = 0; j < {M * N}; j++) acc[j] = 0;",
            f"{for_loop('k', p.K)} {for_loop('m', M)}",
            f"  {acc} am = ({acc}){el(p.a, 'm', 'k')};",
            "  #pragma omp simd",
            f"  {for_loop('n', N)} acc[m * {N} + n] += am * ({acc}){el(p.b, 'k', 'n')}; }}",
            "}}",
            f"{for_loop('m', M)} {for_loop('n', N)} {el(p.out, 'm', 'n')} = ({p.ctype})acc[m * {N} + n]; }}}}"]


def axpy_loops(p: Product) -> list[str]:
    """n innermost over a block of columns: rows of b read contiguously, into vector accumulators."""
    acc, el, N = p.acc, p.el, p.N
    block = min(N, MATMUL_BLOCK)
    n = "(n0 + n)"
    return [f"{acc} acc[{block}];",
            f"for (int64_t n0 = 0; n0 < {N}; n0 += {block}) {{",
            f"  int64_t nb = {N} - n0 < {block} ? {N} - n0 : {block};",
            f"  {for_loop('m', p.M)}",
            "    #pragma omp simd",
            "    for (int64_t n = 0; n < nb; n++) acc[n] = 0;",
            f"    {for_loop('k', p.K)}",
            f"      {acc} am = ({acc}){el(p.a, 'm', 'k')};",
            "      #pragma omp simd",
            f"      for (int64_t n = 0; n < nb; n++) acc[n] += am * ({acc}){el(p.b, 'k', n)};",
            "    }",
            "    #pragma omp simd",
            f"    for (int64_t n = 0; n < nb; n++) {el(p.out, 'm', n)} = ({p.ctype})acc[n];",
            "  }", "}"]


# the loop orders of matmul_plan that are loop nests of their own (in the loop over the batch)
LOOP_NESTS: dict[str, Callable[[Product], list[str]]] = {"dot": dot_loops, "k_outer": k_outer_loops,
                                                         "axpy": axpy_loops}


def matmul_inline(gen: Emitter, out: Ref, a: Ref, b: Ref, K: int) -> None:
    """out = a @ b as an elementwise operation: the sum over k of column k of a (broadcast along n) times
    row k of b (broadcast along m), in double, k in order."""
    acc = accumulator_type(out.dtype)

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
    gen.elementwise(out, operands, expr)


def matmul_sums(gen: Emitter, out: Ref, a: Ref, b: Ref, M: int, N: int, K: int) -> None:
    """out = a @ b as M * N sums over k of a's row m times b's column n, in one loop group over k (fused
    with the loops that compute a or b)."""
    rows = [Ref(a.buf, a.dtype, (K,), (a.strides[-1],), a.offset + m * a.strides[-2]) for m in range(M)]
    cols = [Ref(b.buf, b.dtype, (K,), (b.strides[-2],), b.offset + n * b.strides[-1]) for n in range(N)]
    group, at = gen.fused_sums([K], rows + cols, out)
    ctype = C_TYPES[out.dtype]
    for m in range(M):
        for n in range(N):
            target = f"{out.buf}[{out.offset + m * out.strides[-2] + n * out.strides[-1]}]"
            group.accumulate(f"(double){group.read(*at[m])} * (double){group.read(*at[M + n])}", out.buf,
                             lambda acc, target=target: f"{target} = ({ctype})({acc});")


def write_matmul(gen: Emitter, op: Op, out: Ref) -> None:
    """mm, bmm, matmul."""
    matmul(gen, out, op.args[0], op.args[1])


def write_mv(gen: Emitter, op: Op, out: Ref) -> None:
    """mv: (M, K) @ (K,), the product with v as a column."""
    m, v = op.args[:2]
    matmul(gen, Ref(out.buf, out.dtype, out.sizes + (1,), out.strides + (1,), out.offset), m,
           Ref(v.buf, v.dtype, v.sizes + (1,), v.strides + (1,), v.offset))


OPS = {"mm": into_new_buffer(write_matmul), "bmm": into_new_buffer(write_matmul),
       "matmul": into_new_buffer(write_matmul), "mv": into_new_buffer(write_mv)}
