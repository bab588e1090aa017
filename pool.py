"""Worker processes: independent tasks side by side on forks of this process, their progress drawn here."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import torch

from deepprob.errors import InputError
from deepprob.progress import in_worker, listening, report_once


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
