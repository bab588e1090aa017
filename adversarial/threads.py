"""How many CPU threads the small networks of these examples get.

Their matrices are small (a few hundred rows and columns): a second intra-op thread gains little, and
when other jobs share the cores its OpenMP barriers stall. Measured on this 2-core machine with other
jobs running: a DCGAN epoch took 0.2 s with one thread against 2 to 4 s with two on the 8x8 digits,
and 14 s against 90 s on 8,000 MNIST images.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def cpu_threads(n: int | None):
    """Run the block with ``n`` torch intra-op threads (None: unchanged), then restore the setting."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
