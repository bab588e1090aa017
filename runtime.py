"""Run-time plumbing shared by every example: devices, seeds, output folders, JSON metrics."""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepprob.errors import InputError
from deepprob.progress import in_worker, listening, say_in_parent

_reported: set[str] = set()


def report_once(message: str) -> str:
    """Print ``deepprob: message`` on stderr the first time this process says it (in a worker of
    :func:`map_forked`, the parent says it, once); returns ``message``.

    For what a user should know but that is not an error: a fall-back to a slower engine, say.
    """
    if message not in _reported:
        _reported.add(message)
        if not say_in_parent(message):
            print(f"deepprob: {message}", file=sys.stderr, flush=True)
    return message


def resolve_device(name: str | None) -> torch.device:
    """``"cpu"``, ``"cuda"`` (or ``"cuda:N"``), or ``None``/``"auto"`` for cuda when available."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {name}: no CUDA device is available on this machine (use --device cpu)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise InputError(f"--device {name!r}: expected 'cpu', 'cuda' or 'cuda:N'") from None


@contextlib.contextmanager
def cpu_threads(n: int | None):
    """Run the block with ``n`` torch intra-op threads (None or 0: unchanged), then restore the setting.

    The models here are small (a few hundred rows and columns at most): a second intra-op thread gains
    little, and when other jobs share the cores its OpenMP barriers stall. Measured on a 2-core machine
    with other jobs running: a DCGAN epoch on digits took 0.2 s with one thread against 2-4 s with two;
    ``deepprob linreg`` took 20 s against 2 minutes.
    """
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    """torch's default dtype set to ``dtype`` for the block (a model's Python-number parameters, ``Normal(0.,
    5.)``, and its flat priors then live in the data's precision), restored after."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy, torch and Pyro so that a run is reproducible on CPU."""
    import pyro

    random.seed(seed)
    np.random.seed(seed)
    pyro.set_rng_seed(seed)  # seeds torch as well


def rng_untouched(device: torch.device):
    """A context in which random draws leave torch's RNG (of the CPU and of ``device``) as it was.

    For work that must not shift the random numbers that come after it: checks, traces, compiles.
    """
    devices = [device] if device.type == "cuda" else []
    return torch.random.fork_rng(devices=devices)


def prepare_out(out: str | os.PathLike | None, example: str) -> Path:
    """The folder for figures and artefacts: ``out`` or ``runs/<example>``, created if needed."""
    path = Path(out) if out else Path("runs") / example
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """A temporary path beside ``path`` to write; on leaving the block without an error it replaces ``path``
    (so a crash leaves the old file or the new one, never half), else it is removed.

    The file gets the permissions of any file this process creates (the umask's), not mkstemp's private ones.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old file or the new one, never half."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through :func:`atomic_write_bytes` (checkpoints are never left corrupt)."""
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def jsonable(value: Any) -> Any:
    """Turn tensors, arrays, numpy scalars and paths into plain JSON values (NaN/inf become None)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def dumps_metrics(metrics: dict) -> str:
    """One line of JSON, keys in the order the example produced them."""
    return json.dumps(jsonable(metrics))


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def resolve_jobs(jobs: int, tasks: int, device: torch.device) -> int:
    """Worker processes for ``tasks`` independent tasks: ``jobs`` (0: one per available core), at most one
    per task; 1 on a GPU (a CUDA context does not survive a fork) and off Linux (the workers are forks:
    Windows has no fork, and macOS's system libraries are not safe to use after one)."""
    if jobs < 0:
        raise InputError(f"--jobs {jobs}: expected 0 (one per CPU core) or a positive number of processes")
    if device.type != "cpu" or not sys.platform.startswith("linux"):
        return 1
    return max(1, min(jobs or available_cores(), tasks))


_forked_task: Any = None  # the function the workers of map_forked run: inherited by fork, never pickled
_forked_listener: listening | None = None  # where the workers' progress goes


def _run_forked_task(item: Any) -> bytes:
    import pickle

    in_worker(_forked_listener)  # its bars and notices are drawn by the parent
    # one torch thread: the OpenMP runtime a multi-threaded parent leaves to a fork deadlocks in the child
    torch.set_num_threads(1)

    return pickle.dumps(_forked_task(item), protocol=pickle.HIGHEST_PROTOCOL)


def map_forked(fn, items: list, jobs: int, on_result: Callable[[int, Any], None] | None = None) -> list:
    """``[fn(item) for item in items]`` over ``jobs`` worker processes forked from this one, in order.

    The workers are forks: they start with this process's imports, data and settings (Inductor; one
    torch thread each, as a fork cannot use the OpenMP threads of its parent), so ``fn`` may be any closure
    and needs no pickling; ``items`` and the results are pickled
    (tensors by value). Items are handed out in order, so put long tasks first. With ``jobs <= 1`` (or
    one item, or where there is no fork) everything runs here, the same code path without processes.
    ``on_result(i, result)`` is called here as each item finishes (in the order they finish), for progress.
    The workers' progress bars and notices (:mod:`deepprob.progress`, :func:`report_once`) are drawn here.
    Where ``fn`` raises, the exception is raised here with its type and message.
    """
    if jobs <= 1 or len(items) <= 1 or not hasattr(os, "fork"):
        results = []
        for i, item in enumerate(items):
            results.append(fn(item))
            if on_result is not None:
                on_result(i, results[-1])
        return results
    import multiprocessing
    import pickle
    from concurrent.futures import ProcessPoolExecutor, as_completed

    global _forked_task, _forked_listener
    # restored after, not cleared: this may be a worker of an outer map_forked, which runs more of its items
    previous = _forked_task, _forked_listener
    try:
        with listening(report_once) as listener, \
                ProcessPoolExecutor(min(jobs, len(items)), mp_context=multiprocessing.get_context("fork")) as pool:
            _forked_task, _forked_listener = fn, listener
            futures = {pool.submit(_run_forked_task, item): i for i, item in enumerate(items)}
            results: list = [None] * len(items)
            for future in as_completed(futures):
                i = futures[future]
                results[i] = pickle.loads(future.result())
                if on_result is not None:
                    on_result(i, results[i])
            return results
    finally:
        _forked_task, _forked_listener = previous
