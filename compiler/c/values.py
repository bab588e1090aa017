"""Values of the generated C code and their spelling: :class:`Ref` (a strided view of a buffer), C types,
literals, math calls, loop headers."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

C_TYPES = {torch.float32: "float", torch.float64: "double", torch.bool: "unsigned char",
           torch.int64: "int64_t", torch.int32: "int32_t", torch.uint8: "unsigned char"}
FLOATS = (torch.float32, torch.float64)
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

    def view_of(self, view: torch.Tensor) -> Ref:
        """The view of this buffer that ``view`` (a view of :meth:`meta`) is: its sizes, strides and offset."""
        return Ref(self.buf, self.dtype, tuple(view.shape), tuple(view.stride()), view.storage_offset())


def transposed(ref: Ref) -> Ref:
    """``ref`` with its last two dimensions swapped (a view)."""
    sizes, strides = list(ref.sizes), list(ref.strides)
    sizes[-2:], strides[-2:] = sizes[:-3:-1], strides[:-3:-1]
    return Ref(ref.buf, ref.dtype, tuple(sizes), tuple(strides), ref.offset)


def contiguous_strides(sizes: Sequence[int]) -> tuple[int, ...]:
    strides, step = [], 1
    for s in reversed(sizes):
        strides.append(step)
        step *= max(s, 1)
    return tuple(reversed(strides))


def accumulator_type(dtype: torch.dtype) -> str:
    """The C type that sums of ``dtype`` accumulate in: double for floats (sums agree with torch's to float
    rounding whatever their order), the type itself for integers."""
    return "double" if dtype in FLOATS else C_TYPES[dtype]


def for_loop(var: str, size: int) -> str:
    return f"for (int64_t {var} = 0; {var} < {size}; {var}++) {{"


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
