"""Elementwise operations: arithmetic, comparisons and math functions of tensors and Python numbers
(broadcasting; numbers as C literals), ``where``, ``clamp``, ``softplus``, ``tril``/``triu``. Each is one
:meth:`~deepprob.compiler.c.emitter.Emitter.elementwise` operation, fused with the loops around it.

The C expressions compute what torch computes in the same type: NaN propagates as in torch (``relu``,
``maximum``, ``minimum`` of a NaN are NaN), comparisons run in the operands' promoted type."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from deepprob.compiler.c.emitter import Emitter, Expression, Op, into_new_buffer
from deepprob.compiler.c.values import C_TYPES, Ref, c_literal, math_call, math_fn
from deepprob.compiler.c_library import Unsupported

# operations whose arithmetic runs in the operands' promoted type, not the result's
COMPARISONS = {"gt", "ge", "lt", "le", "eq", "ne", "logical_and", "logical_or", "logical_not"}
# the keyword arguments the expressions below implement (others, as div's rounding_mode, are declined)
KNOWN_KWARGS = {"alpha", "min", "max"}


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
    """The C expression of the binary operation ``name`` of ``a`` and ``b`` in ``dtype``, or None if unknown.
    ``alpha``: add/sub's multiplier of ``b`` (None for 1), threshold_backward's threshold."""
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


# pow by these exponents: products, a square root, a division (exact, and faster than pow)
POWERS = {2.0: lambda x, dtype: f"({x} * {x})", 1.0: lambda x, dtype: x,
          0.5: lambda x, dtype: math_call("sqrt", dtype, x), -1.0: lambda x, dtype: f"(({C_TYPES[dtype]})1 / {x})",
          3.0: lambda x, dtype: f"({x} * {x} * {x})"}


@dataclass
class Operands:
    """The arguments of an elementwise operation as its loop sees them: the tensors (``refs``, read at each
    element), and for each argument (``slots``) its index in ``refs``, its C literal (a number), or None
    (anything else). ``compute``: the type the arithmetic runs in."""

    compute: torch.dtype
    refs: list[Ref]
    slots: list

    @classmethod
    def of(cls, op: Op, out: Ref) -> Operands:
        compute = out.dtype
        if op.name in COMPARISONS:  # the operands' promoted type
            metas = [a.meta() if isinstance(a, Ref) else a for a in op.args[:2]]
            compute = torch.result_type(*metas) if len(metas) == 2 else metas[0].dtype
        if compute not in C_TYPES:
            raise Unsupported(f"dtype {compute}")
        refs, slots = [], []
        for a in op.args:
            if isinstance(a, Ref):
                slots.append(len(refs))
                refs.append(a)
            elif isinstance(a, (int, float, bool)):
                slots.append(c_literal(a, compute))
            else:
                slots.append(None)
        return cls(compute, refs, slots)

    @property
    def ctype(self) -> str:
        return C_TYPES[self.compute]

    def cast(self, values: list[str]) -> list:
        """The arguments at the loop's elements ``values`` (of ``refs``): tensors' cast to the compute type."""
        it = iter(values)
        return [f"(({self.ctype}){next(it)})" if isinstance(s, int) else s for s in self.slots]

    def literal(self, value) -> str:
        return c_literal(value, self.compute)


def select(x: Operands, slots: list) -> Expression:
    """``cond ? a : b`` of the arguments in ``slots`` (cond, a, b): the condition as it is, the two values in
    the result's type."""
    def expr(v, _):
        cond, a, b = (v[slot] if isinstance(slot, int) else slot for slot in slots)
        return f"({cond} ? (({x.ctype}){a}) : (({x.ctype}){b}))"
    return expr


def where(op: Op, x: Operands) -> Expression:
    """where(cond, a, b)."""
    return select(x, x.slots[:3])


def masked_fill(op: Op, x: Operands) -> Expression:
    """masked_fill(x, mask, value): x with value where mask, which is where(mask, value, x)."""
    return select(x, [x.slots[1], x.slots[2], x.slots[0]])


def clamp(op: Op, x: Operands) -> Expression:
    """clamp, clamp_min, clamp_max by numbers (not tensors); NaN stays NaN (both comparisons are false)."""
    lo = None if op.name == "clamp_max" else op.arg(1, "min")
    hi = op.arg(1, "max") if op.name == "clamp_max" else op.arg(2, "max")
    if isinstance(lo, Ref) or isinstance(hi, Ref):
        raise Unsupported("clamp by tensors")

    def expr(v, _):
        y = x.cast(v)[0]
        if lo is not None:
            y = f"({y} < {x.literal(lo)} ? {x.literal(lo)} : {y})"
        if hi is not None:
            y = f"({y} > {x.literal(hi)} ? {x.literal(hi)} : {y})"
        return y
    return expr


def softplus_parameters(op: Op, x: Operands, first: int) -> tuple[str, str]:
    """(beta, threshold) of softplus or its backward, at argument ``first`` on: C literals, torch's
    defaults (1, 20) when the graph leaves them out."""
    beta, threshold = op.args[first:first + 2] if len(op.args) > first + 1 else (1, 20)
    return x.literal(beta), x.literal(threshold)


def softplus(op: Op, x: Operands) -> Expression:
    """softplus(x, beta, threshold): log1p(exp(beta x)) / beta, or x where beta x > threshold (as torch)."""
    b, th = softplus_parameters(op, x, 1)
    f = math_fn(x.compute)

    def expr(v, _):
        y = x.cast(v)[0]
        return f"({y} * {b} > {th} ? {y} : {f('log1p', f('exp', f'{y} * {b}'))} / {b})"
    return expr


def softplus_backward(op: Op, x: Operands) -> Expression:
    """softplus_backward(g, x, beta, threshold): g sigmoid(beta x), or g where beta x > threshold."""
    b, th = softplus_parameters(op, x, 2)
    f = math_fn(x.compute)

    def expr(v, _):
        g, y = x.cast(v)[:2]
        z = f("exp", f"{y} * {b}")
        return f"({y} * {b} > {th} ? {g} : {g} * {z} / ({z} + 1))"
    return expr


def power(op: Op, x: Operands) -> Expression | None:
    """pow of a tensor by one of :data:`POWERS`; None for other exponents (the generic ``pow``)."""
    base, exponent = op.args[:2]
    if not (isinstance(exponent, (int, float)) and isinstance(base, Ref)) or float(exponent) not in POWERS:
        return None
    special = POWERS[float(exponent)]
    return lambda v, _: special(x.cast(v)[0], x.compute)


def arithmetic(op: Op, x: Operands) -> Expression | None:
    """The operations of the tables :func:`unary` and :func:`binary`, by the number of their tensor or number
    arguments; None for others."""
    name, compute = op.name, x.compute
    alpha = op.kwargs.get("alpha", op.args[2] if len(op.args) > 2 and name in ("add", "sub", "rsub") else None)
    alpha = None if alpha is None or alpha == 1 else x.literal(alpha)
    if name == "threshold_backward":  # grad where x > threshold, else 0
        alpha = x.literal(op.args[2])
    n_values = len([s for s in x.slots[:2] if s is not None])
    if n_values == 1 and unary(name, compute, "x") is not None:
        return lambda v, _: unary(name, compute, x.cast(v)[0])
    if n_values == 2 and binary(name, compute, "a", "b", alpha) is not None:
        return lambda v, _: binary(name, compute, *x.cast(v)[:2], alpha)
    return None


# the operations that are not one expression of their arguments' values (tables unary, binary): their own
FORMS: dict[str, Callable[[Op, Operands], Expression | None]] = {
    "where": where, "masked_fill": masked_fill, "clamp": clamp, "clamp_min": clamp, "clamp_max": clamp,
    "softplus": softplus, "softplus_backward": softplus_backward, "pow": power,
}


def write_pointwise(gen: Emitter, op: Op, out: Ref) -> None:
    """out = the elementwise operation ``op`` (the forms of :data:`FORMS`, else :func:`arithmetic`); declines
    (``Unsupported``) any other, and variants given by keyword arguments these do not implement."""
    unknown = set(op.kwargs) - KNOWN_KWARGS
    if unknown:
        raise Unsupported(f"{op.node.target} with {', '.join(sorted(unknown))}")
    if not any(isinstance(a, Ref) for a in op.args):
        raise Unsupported(f"{op.node.target}: no tensor operand")
    x = Operands.of(op, out)
    form = FORMS.get(op.name)
    expr = (form(op, x) if form is not None else None) or arithmetic(op, x)
    if expr is None:
        raise Unsupported(f"{op.node.target}")
    gen.elementwise(out, x.refs, expr)


def write_triangle(gen: Emitter, op: Op, out: Ref) -> None:
    """tril or triu of x: x where the column minus the row is at most (tril) or at least (triu) the diagonal
    k, else 0 (the last two dimensions kept apart: the condition reads their loop variables)."""
    k = op.arg(1, "diagonal", 0)
    cond = "<=" if op.name == "tril" else ">="
    gen.elementwise(out, [op.args[0]], lambda v, i: f"(({i[-1]} - {i[-2]}) {cond} {k} ? {v[0]} : 0)", keep_last=2)


# any operation no other family's table names is tried as an elementwise one
POINTWISE = into_new_buffer(write_pointwise)
OPS = {"tril": into_new_buffer(write_triangle), "triu": into_new_buffer(write_triangle)}
