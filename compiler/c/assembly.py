"""The C source of the whole step function, from the statements of its body: the intermediates' static
buffers (those that nothing reads dropped, with their stores), the arguments numbered, each argument's pointer
loaded once, and the declarations the body needs."""

from __future__ import annotations

import collections
import re

import torch

from deepprob.compiler.c.values import C_TYPES, SIMD_FUNCTIONS
from deepprob.compiler.c_library import Unsupported

# a store of a fused loop's local to its buffer (dropped where nothing else reads the buffer)
STORE = re.compile(r"^\s*(b\d+)\[[^\]]*\] = v\d+;$")
# an argument's pointer, cast to its type, as the emitters write it: ((float*)args[3]), ((float*)args[5 + 1])
ARGUMENT = re.compile(r"\(\(([a-z0-9_ ]+)\*\)args\[(\d+(?: \+ \d+)?)\]\)")


def header() -> list[str]:
    """What comes before the buffers and the function: includes, the error details, helpers, and the vector
    math functions (glibc's libmvec, declared ``omp declare simd``: the loops calling them vectorise)."""
    decls = ["#include <math.h>", "#include <stdint.h>",
             # the details of the error a call returned (read by CStep)
             "int64_t step_error[2];",
             # row r of n, negative from the end (checked in range before: indexing.row_index)
             "static inline int64_t row_at(int64_t r, int64_t n) { return r < 0 ? r + n : r; }"]
    for suffix, ctype in (("f", "float"), ("", "double")):
        for f in SIMD_FUNCTIONS:
            args = f"{ctype}, {ctype}" if f == "pow" else ctype
            decls.append(f"#pragma omp declare simd notinbranch\n{ctype} {f}{suffix}({args});")
    return decls


def live_buffers(lines: list[str], buffers: dict[str, tuple[torch.dtype, int]]) -> tuple[list[str], dict]:
    """The buffers that something reads, and ``lines`` without the stores to the others (intermediates of fused
    loops, whose values stayed in locals): those are mentioned by their own stores only."""
    mentions = collections.Counter(re.findall(r"\bb\d+\b", "\n".join(lines)))
    stores = collections.Counter(m.group(1) for m in map(STORE.match, lines) if m)
    dead = {name for name in buffers if mentions[name] == stores[name]}
    lines = [line for line in lines if not ((m := STORE.match(line)) and m.group(1) in dead)]
    return lines, {name: v for name, v in buffers.items() if name not in dead}


def buffer_declarations(live: dict[str, tuple[torch.dtype, int]], max_bytes: int) -> list[str]:
    """The buffers, declared static (the graph's intermediates live between calls), aligned for vector loads;
    declined (``Unsupported``) where they need more than ``max_bytes``."""
    size = sum(n * dtype.itemsize for dtype, n in live.values())
    if size > max_bytes:
        raise Unsupported(f"intermediates of {size / 2 ** 20:.2f} MiB in memory "
                          f"(more than {max_bytes / 2 ** 20:.2f} MiB)")
    return [f"static {C_TYPES[dtype]} {name}[{max(n, 1)}] __attribute__((aligned(64)));"
            for name, (dtype, n) in live.items()]


def numbered_arguments(body: str, n_inputs: int, n_constants: int, n_outputs: int) -> str:
    """``body`` with its arguments numbered in the order CStep passes them: inputs, constants (numbered -1, -2,
    ... while generating), outputs (``OUT + k``), the infos of the checks (``CHECK + k``)."""
    for j in range(n_constants, 0, -1):
        body = body.replace(f"args[{-j}]", f"args[{n_inputs + j - 1}]")
    body = body.replace("args[OUT + ", f"args[{n_inputs + n_constants} + ")
    return body.replace("args[CHECK + ", f"args[{n_inputs + n_constants + n_outputs} + ")


def pointers_loaded_once(body: str) -> str:
    """``body`` with each argument's pointer loaded once, into a local: loops then see a base that does not
    change."""
    pointers = {}

    def pointer(match):
        ctype, k = match.group(1), sum(int(term) for term in match.group(2).split("+"))
        pointers[k] = f"  {ctype} *const p{k} = ({ctype}*)args[{k}];"
        return f"p{k}"
    body = ARGUMENT.sub(pointer, body)
    return "\n".join(pointers[k] for k in sorted(pointers)) + "\n" + body


def function_source(lines: list[str], buffers: dict[str, tuple[torch.dtype, int]], n_inputs: int,
                    n_constants: int, n_outputs: int, max_buffer_bytes: int) -> str:
    """The C source of ``int step(void **args)`` whose body is ``lines``, with its ``buffers`` (name: (dtype,
    elements)) and its arguments' counts."""
    lines, live = live_buffers(lines, buffers)
    declarations = buffer_declarations(live, max_buffer_bytes)
    body = pointers_loaded_once(numbered_arguments("\n".join(lines), n_inputs, n_constants, n_outputs))
    return "\n".join(header() + declarations + ["int step(void **args) {", body, "  return 0;", "}", ""])
