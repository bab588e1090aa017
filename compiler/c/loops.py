"""Loop nests of the generated code: elementwise operations and full sums over one shape fused into one loop
nest (:class:`LoopGroup`), and the merging of the dimensions that every operand walks alike (:func:`coalesce`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from deepprob.compiler.c.values import SIMD_FUNCTIONS, Ref, for_loop

STRIP = 256  # iterations of a strip (LoopGroup.emit_in_strips): its values handed on stay in L1
CALL = re.compile(r"\b(?:" + "|".join(SIMD_FUNCTIONS) + r")f?\(")
SUM = re.compile(r"^(v\d+) \+= ")
DECLARATION = re.compile(r"^(?:const )?(.+?) (v\d+) = ")


def coalesce(shape: list[int], refs: Sequence[Ref], keep_last: int) -> tuple[list[int], list[Ref]]:
    """Merge adjacent dimensions that every ref (broadcast to ``shape``) walks with one stride, except the last
    ``keep_last``; drop the others' dimensions of size 1 (they loop once). Returns the merged shape and refs."""
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


def nest(vars_: Sequence[str], shape: Sequence[int], body: list[str], pragma: str | None) -> list[str]:
    """The loops over ``shape`` (variables ``vars_``, outermost first) around ``body``, indented in the
    function's body; ``pragma`` (``#pragma omp simd...``) before the innermost loop, if any."""
    lines, indent = [], "  "
    for d, (var, size) in enumerate(zip(vars_, shape)):
        if d == len(shape) - 1 and pragma is not None:
            lines.append(indent + pragma)
        lines.append(indent + for_loop(var, size))
        indent += "  "
    lines += [indent + line for line in body]
    return lines + [f"{'  ' * (d + 1)}}}" for d in reversed(range(len(shape)))]


class LoopGroup:
    """Elementwise operations (and full sums) over one shape, fused into one loop nest.

    Each operation's value is a local of the loop body, stored to its buffer too; a later operation of
    the group reads the local instead of memory, and :func:`~deepprob.compiler.c.assembly.function_source`
    drops the stores to buffers that nothing outside their group reads (most intermediates of a streaming graph
    are never written to memory). Each element read from memory is loaded once an iteration, and once before
    the loops where it is the same in every iteration. An operation joins only if the fused loop does what the
    separate loops did: every element of the group's buffers that it reads was computed in the same iteration,
    and what it writes was not read, nor written, at another element by the group (:meth:`accepts`).

    ``preds``: the pending groups that must run before this one (:meth:`Emitter.fusing
    <deepprob.compiler.c.emitter.Emitter.fusing>`).
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
        clause = f" reduction(+:{', '.join(self.sums)})" if self.sums else ""
        return ["  {", *(f"  {line}" for line in self.pre),
                *nest(self.vars, self.shape, self.body, f"#pragma omp simd{clause}"),
                *(f"  {line}" for line in self.after), "  }"]

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
        handed, first_tail, second_head = self._hand_on(first, second)
        size = self.shape[0]
        return ["  {", *(f"  {line}" for line in self.pre + handed),
                f"  for (int64_t s = 0; s < {size}; s += {STRIP}) {{",
                f"    const int64_t n = {size} - s < {STRIP} ? {size} - s : {STRIP};",
                *self._strip_loop(first + first_tail), *self._strip_loop(second_head + second), "  }",
                *(f"  {line}" for line in self.after), "  }"]

    @staticmethod
    def _hand_on(first: list[str], second: list[str]) -> tuple[list[str], list[str], list[str]]:
        """What the second loop of a strip takes from the first: the locals of ``first`` that ``second`` uses,
        loaded again where they are loads, else through an array of one strip. Returns (the arrays, declared
        before the strips; the first loop's stores into them; the second loop's loads of them or of memory)."""
        declared = {m.group(2): (m.group(1), line) for line in first if (m := DECLARATION.match(line))}
        defined = {m.group(2) for line in second if (m := DECLARATION.match(line))}
        used = [v for v in dict.fromkeys(re.findall(r"\bv\d+\b", "\n".join(second))) if v in declared
                and v not in defined]
        handed, stores, carry, reload = [], [], [], []
        for v in used:
            ctype, line = declared[v]
            if line.startswith("const __typeof__"):  # a load: again
                reload.append(line)
            else:
                handed.append(f"{ctype} {v}_strip[{STRIP}];")
                stores.append(f"{v}_strip[j] = {v};")
                carry.append(f"const {ctype} {v} = {v}_strip[j];")
        return handed, stores, reload + carry

    def _strip_loop(self, body: list[str]) -> list[str]:
        """One loop over the ``n`` iterations of the strip at ``s``, vectorised (with its sums)."""
        sums = [m.group(1) for line in body if (m := SUM.match(line))]
        clause = f" reduction(+:{', '.join(sums)})" if sums else ""
        return [f"    #pragma omp simd{clause}", "    for (int64_t j = 0; j < n; j++) {",
                f"      const int64_t {self.vars[0]} = s + j;", *(f"      {line}" for line in body), "    }"]
