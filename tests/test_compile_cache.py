"""Interrupted runs leave nothing broken: a compile interrupted at any point, or a library left empty in the
compile cache (a Ctrl-C while Inductor wrote it), and the next run still works; a broken entry is rebuilt and
said once."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import sys, torch
from deepprob.compiler.compiling import compile_step
def step(x, w):
    return (torch.tanh(x @ w) ** 2).sum() * 2
torch.manual_seed(0)
x, w = torch.randn(8, 4), torch.randn(4, 3)
compiled = compile_step(step, [x, w], backend=sys.argv[1])
print(f"{float(compiled(x, w)):.5f} {float(step(x, w)):.5f} {compiled.by}")
"""


def run(tmp_path: Path, backend: str, **kwargs) -> subprocess.Popen:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "step.py").write_text(SCRIPT)
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "cache")}
    return subprocess.Popen([sys.executable, str(tmp_path / "step.py"), backend], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT.parent, **kwargs)


def finished(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=600)
    return process.returncode, out, err


def libraries(tmp_path: Path, backend: str) -> list[Path]:
    pattern = "deepprob-c/*.so" if backend == "c" else "**/*.main.so"
    return sorted((tmp_path / "cache").glob(pattern))


@pytest.mark.parametrize("backend", ["c", "inductor"])
def test_an_empty_library_in_the_cache_is_rebuilt_and_said_once(backend, tmp_path):
    status, out, err = finished(run(tmp_path, backend))
    assert status == 0, err
    value, reference, by = out.split()
    assert value == reference and by == backend
    broken = libraries(tmp_path, backend)
    assert broken
    for path in broken:  # what a Ctrl-C during the write leaves: a 0-byte library
        path.write_bytes(b"")
    status, out_again, err = finished(run(tmp_path, backend))
    assert status == 0, err
    assert out_again == out
    assert err.count("the compile cache held a broken library") == 1, err
    assert all(path.stat().st_size > 0 for path in libraries(tmp_path, backend))


@pytest.mark.parametrize("backend", ["c", pytest.param("inductor", marks=pytest.mark.slow)])
def test_a_compile_interrupted_at_random_points_leaves_the_next_run_working(backend, tmp_path):
    start = time.perf_counter()
    status, out, err = finished(run(tmp_path / "timing", backend))
    assert status == 0, err
    whole = time.perf_counter() - start
    rng = random.Random(0)
    for point in sorted(rng.uniform(0.3, 1.0) * whole for _ in range(3)):
        process = run(tmp_path, backend)
        time.sleep(point)
        process.send_signal(signal.SIGINT)  # Ctrl-C, wherever the run is: importing, tracing, compiling, loading
        finished(process)
        status, out_after, err = finished(run(tmp_path, backend))
        assert status == 0 and out_after == out, (point, err[-2000:])
