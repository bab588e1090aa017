"""Run-time plumbing: worker processes, the quick exit of the command, Inductor's ISA verdict."""

import os
import subprocess
import sys

import pytest
import torch

from deepprob.compiler.compiling import trust_reported_isa
from deepprob.errors import InputError
from deepprob.pool import available_cores, map_forked, resolve_jobs


def test_map_forked_keeps_the_order_and_runs_in_other_processes():
    offset = torch.arange(3.0)  # a closure over a tensor: the workers inherit it, nothing is pickled but results

    def task(i):
        return i, os.getpid(), offset + i

    results = map_forked(task, list(range(5)), jobs=2)
    assert [r[0] for r in results] == list(range(5))
    assert all(torch.equal(r[2], offset + i) for i, r in enumerate(results))
    assert os.getpid() not in {r[1] for r in results}
    assert {r[1] for r in map_forked(task, [0, 1], jobs=1)} == {os.getpid()}  # jobs=1: here, no processes


def test_map_forked_reports_each_result_as_it_finishes():
    import time

    def task(i):
        time.sleep(0.6 if i == 0 else 0.0)  # the first item is the slowest: the others finish before it
        return i * 10

    for jobs in (1, 2):
        seen: list = []
        results = map_forked(task, [0, 1, 2], jobs=jobs, on_result=lambda i, r, seen=seen: seen.append((i, r)))
        assert results == [0, 10, 20]
        assert sorted(seen) == [(0, 0), (1, 10), (2, 20)]
        assert seen[-1 if jobs == 2 else 0] == (0, 0)  # forked: the slow one last; here: in order


def test_map_forked_nests():
    """A worker that runs a map_forked of its own (the tour running compare) still runs its next items."""
    def inner(i):
        return i + 1

    def outer(i):
        return map_forked(inner, [i, i], jobs=2)

    assert map_forked(outer, [0, 10, 20, 30], jobs=2) == [[1, 1], [11, 11], [21, 21], [31, 31]]


def test_map_forked_raises_the_workers_error():
    def task(i):
        if i == 2:
            raise ValueError(f"task {i} failed")
        return i

    with pytest.raises(ValueError, match="task 2 failed"):
        map_forked(task, [0, 1, 2, 3], jobs=2)


def test_resolve_jobs(monkeypatch):
    cpu = torch.device("cpu")
    assert resolve_jobs(0, 100, cpu) == available_cores()
    assert resolve_jobs(0, 1, cpu) == 1 and resolve_jobs(8, 3, cpu) == 3 and resolve_jobs(2, 5, cpu) == 2
    assert resolve_jobs(4, 5, torch.device("cuda")) == 1  # a CUDA context does not survive a fork
    monkeypatch.setattr(sys, "platform", "darwin")
    assert resolve_jobs(4, 5, cpu) == 1  # no fork off Linux
    with pytest.raises(InputError, match="--jobs -1"):
        resolve_jobs(-1, 5, cpu)


def test_the_isa_verdict_is_kept_only_when_the_check_confirms_every_reported_isa(tmp_path):
    calls = []

    def check(result):
        def run():
            calls.append(1)
            return result
        return run

    verdict = tmp_path / "deepprob" / "vec-isa-ok-x"
    assert not trust_reported_isa(verdict, ["avx512", "avx2"], check(["avx2"]))  # AVX-512 failed its check
    assert not verdict.exists()
    assert trust_reported_isa(verdict, ["avx512", "avx2"], check(["avx512", "avx2"])) and verdict.exists()
    assert trust_reported_isa(verdict, ["avx512", "avx2"], check([]))  # kept: not checked again
    assert len(calls) == 2


@pytest.mark.parametrize("argv, code, stream, text", [
    (["linreg", "--num-points", "12", "--steps", "20", "--json", "--quiet"], 0, "stdout", '"example": "linreg"'),
    (["linreg", "--data", "missing.csv"], 2, "stderr", "missing.csv"),
])
def test_the_command_exits_with_its_code_and_flushed_output(tmp_path, argv, code, stream, text):
    run = subprocess.run([sys.executable, "-m", "deepprob", *argv, "--device", "cpu", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == code, run.stderr
    assert text in getattr(run, stream)


FORKED_COMPILES = """
import math
import random

import torch
from deepprob.compiler.compiling import compile_step
from deepprob.pool import map_forked

torch.set_num_threads(1)

def compiled(shift):  # the number is written into the kernel's C++: a new shift, a new kernel to compile
    step = compile_step(lambda x: (x + shift).exp().sum().reshape(1), [torch.zeros(3)])
    return float(step(torch.zeros(3))[0]), 3 * math.exp(shift)

shifts = [random.random() for _ in range(3)]
value, expected = compiled(shifts[0])  # the parent compiles first: Inductor's thread pool exists
assert abs(value - expected) < 1e-4 * expected
print(map_forked(compiled, shifts[1:], jobs=2))
"""


def test_forked_workers_compile_after_their_parent_did():
    # a forked child inherits Inductor's compile thread pool without its threads; unhandled, it waits forever
    run = subprocess.run([sys.executable, "-c", FORKED_COMPILES], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    values = eval(run.stdout.strip().splitlines()[-1])  # noqa: S307 - our own printed list
    assert len(values) == 2 and all(abs(value - expected) < 1e-4 * expected for value, expected in values)


def test_forked_workers_compute_after_a_multithreaded_parent():
    """The parent's OpenMP threads do not survive a fork: a worker's matrix product must not wait for them."""
    code = (
        "import torch\n"
        "from deepprob.pool import map_forked\n"
        "torch.set_num_threads(2)\n"
        "a = torch.randn(400, 400)\n"
        "(a @ a).sum()  # the parent's thread pool, started\n"
        "print(map_forked(lambda i: float((a @ a).sum() * 0 + i), [0, 1, 2], jobs=2))\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.strip() == "[0.0, 1.0, 2.0]", run.stderr


def test_atomic_path_replaces_whole_or_not_at_all_with_the_umask_permissions(tmp_path):
    import stat

    from deepprob.files import atomic_path, atomic_write_bytes

    target = tmp_path / "checkpoint.pt"
    atomic_write_bytes(target, b"old")
    umask = os.umask(0o022)
    try:
        atomic_write_bytes(target, b"new")
        assert stat.S_IMODE(target.stat().st_mode) == 0o644  # not mkstemp's private 0o600
    finally:
        os.umask(umask)
    with pytest.raises(RuntimeError, match="crash"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("crash while writing")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary file left behind
