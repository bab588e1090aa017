"""Dense linear algebra other than products: Cholesky factorisation (``linalg_cholesky_ex``), triangular
solves (``linalg_solve_triangular``), and the graph's check of a factorisation (``_linalg_check_errors``),
which returns an error code where torch would raise. Large dense problems are declined
(:func:`dense_work_check`): LAPACK and BLAS, through Inductor, do them much faster than plain loops."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from deepprob.compiler.c.emitter import Emitter, Op, identity, into_new_buffer
from deepprob.compiler.c.values import C_TYPES, Ref, contiguous_strides, for_loop, transposed
from deepprob.compiler.c_library import ERRORS, Unsupported

# dense linear algebra where BLAS and LAPACK win: a matrix product, Cholesky factorisation or triangular
# solve of more multiply-adds than this, all of whose dimensions are at least DENSE_MIN_DIM, is left to
# Inductor (which calls them); below that, or with a thin dimension (a matrix-vector product, a data set's
# design matrix times a few weights), the loops here run at the speed of memory
DENSE_MAX_WORK = 1 << 24
DENSE_MIN_DIM = 32


def dense_work_check(what: str, work: int, dims: Sequence[int]) -> None:
    """Decline (``Unsupported``) dense linear algebra of ``work`` multiply-adds over ``dims`` where BLAS or
    LAPACK would be much faster than plain loops: large work, and no thin dimension."""
    if work > DENSE_MAX_WORK and min(dims) >= DENSE_MIN_DIM:
        raise Unsupported(f"a {what} of {work:.2e} multiply-adds ({' x '.join(map(str, dims))}): BLAS's job")


def emit_cholesky(gen: Emitter, op: Op) -> tuple[Ref, Ref]:
    """(L, info) of ``linalg_cholesky_ex``: L L^T = A, lower, over the batch. As LAPACK's ``potrf``:
    where the leading minor of order j is not positive definite (its pivot <= 0 or NaN), info = j and
    that factorisation stops (L is then undefined, as in torch); info = 0 where it succeeds."""
    A = op.args[0]
    if op.arg(1, "upper", False):
        raise Unsupported("linalg_cholesky_ex(upper=True)")
    n, batch, ctype = A.sizes[-1], math.prod(A.sizes[:-2]), C_TYPES[A.dtype]
    dense_work_check("Cholesky factorisation", batch * n ** 3 // 3, (n,))
    L = gen.new_buffer(A.sizes, A.dtype)
    info = gen.new_buffer(A.sizes[:-2], torch.int32)
    gen.elementwise(L, [A], lambda v, i: f"({i[-1]} <= {i[-2]} ? {v[0]} : 0)", keep_last=2)
    gen.emit([  # column by column, in place on the lower triangle of L
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


def emit_check_errors(gen: Emitter, op: Op) -> None:
    """``_linalg_check_errors(info, api_name, is_matrix)``: where any info is not 0, copy the info out (the
    check's argument) and return ``LINALG_ERROR`` with the check's number; torch's own check then raises on
    that info (:class:`~deepprob.compiler.c_library.CStep`), with torch's message."""
    info, api, is_matrix = op.args[0], op.arg(1, "api_name"), op.arg(2, "is_matrix", True)
    k = len(gen.checks)
    gen.checks.append((torch.Size(info.sizes), api, bool(is_matrix)))
    target = Ref(f"((int32_t*)args[CHECK + {k}])", torch.int32, info.sizes, contiguous_strides(info.sizes))
    gen.emit(["  {", "  int64_t bad = 0;",
              *gen.loop_lines(info.sizes, [info], lambda vars_, shape, merged: [
                  f"bad |= ({gen.index(merged[0], shape, vars_)} != 0);"], simd=False),
              "  if (bad) {",
              *gen.loop_lines(info.sizes, [target, info], lambda vars_, shape, merged: [
                  f"{gen.index(merged[0], shape, vars_)} = {gen.index(merged[1], shape, vars_)};"]),
              f"  step_error[0] = {k}; return {ERRORS['linalg']};", "  }", "  }"])


def write_solve_triangular(gen: Emitter, op: Op, out: Ref) -> None:
    """X with A X = B (``left``, the default) or X A = B, A (..., n, n) triangular (``upper`` or lower, with a
    diagonal of ones if ``unitriangular``), over broadcast batch dimensions: B copied into X, then substitution
    in place, column by column, in double."""
    A, B = op.args[:2]
    upper = op.arg(2, "upper")
    if upper is None:
        raise Unsupported("linalg_solve_triangular without upper")
    if not op.kwargs.get("left", True):  # X A = B  <=>  A^T X^T = B^T
        A, B, out, upper = transposed(A), transposed(B), transposed(out), not upper
    n, k = out.sizes[-2:]
    batch = out.sizes[:-2]
    dense_work_check("triangular solve", math.prod(batch) * n * n * k // 2, (n, k))
    gen.elementwise(out, [B], identity)
    bvars = [f"p{d}" for d in range(len(batch))]
    a_base = gen.offset(Ref(A.buf, A.dtype, A.sizes[:-2], A.strides[:-2], A.offset), batch, bvars)
    o_base = gen.offset(Ref(out.buf, out.dtype, batch, out.strides[:-2], out.offset), batch, bvars)
    (sa, ta), (so, to) = A.strides[-2:], out.strides[-2:]
    a = lambda i, j: f"(double){A.buf}[{a_base} + {i} * {sa} + {j} * {ta}]"  # noqa: E731
    x = lambda i, j: f"{out.buf}[{o_base} + {i} * {so} + {j} * {to}]"  # noqa: E731
    rows = f"for (int64_t r = {n} - 1; r >= 0; r--)" if upper else f"for (int64_t r = 0; r < {n}; r++)"
    solved = f"for (int64_t s = r + 1; s < {n}; s++)" if upper else "for (int64_t s = 0; s < r; s++)"
    divide = "" if op.kwargs.get("unitriangular", False) else f" / {a('r', 'r')}"
    gen.emit(["  {", *("  " + for_loop(v, size) for v, size in zip(bvars, batch)),
              f"  {for_loop('c', k)} {rows} {{",
              f"    double acc = {x('r', 'c')};",
              f"    {solved} acc -= {a('r', 's')} * (double){x('s', 'c')};",
              f"    {x('r', 'c')} = ({C_TYPES[out.dtype]})(acc{divide});",
              "  }}", *("  }" for _ in batch), "  }"])


OPS = {"linalg_cholesky_ex": emit_cholesky, "_linalg_check_errors": emit_check_errors,
       "linalg_solve_triangular": into_new_buffer(write_solve_triangular)}
