"""Seeds: a run reproducible from one number, and work that leaves the random numbers after it as they were."""

from __future__ import annotations

import random

import numpy as np
import torch


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
