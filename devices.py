"""Devices and precision: the device a user names, torch's threads and default dtype for a block."""

from __future__ import annotations

import contextlib

import torch

from deepprob.errors import InputError


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


def synchronize(device: torch.device) -> None:
    """Wait for ``device``'s queued work (a CUDA device's kernels run asynchronously): before reading a clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
