"""``make_fx``'s trace with real tensors, without its per-operation cost.

Traced with real tensors, ``make_fx`` records each node's metadata (its shape, strides, dtype) as a fake tensor
made in a fresh ``FakeTensorMode`` per node, unless a tracing context offers one (``torch._guards``' private
``detect_fake_mode``). A mode's construction costs about half a millisecond (it records the Python stack and two
weak dictionaries): a logistic regression's SVI step (about 300 operations) spent 70 ms of its 180 ms trace
there, most of a warm compile. :func:`trace` offers one mode for the whole trace; the graph is the same
(``tests/test_compiling.py`` checks both, and fails if torch stops taking the offer).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def trace(fn: Callable, example_inputs: Sequence[torch.Tensor]) -> torch.fx.GraphModule:
    """``make_fx(fn)(*example_inputs)``, the node metadata's fake tensors all made in one ``FakeTensorMode``."""
    from torch._guards import TracingContext, tracing
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.proxy_tensor import make_fx

    with tracing(TracingContext(FakeTensorMode(allow_fallback_kernels=True))):
        return make_fx(fn)(*example_inputs)
