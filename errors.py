"""Errors a user can fix. The command line prints them as one line, without a traceback."""

import math

NAN_HINT = "lower --lr, raise --num-particles, or check the data for extreme values"


class InputError(ValueError):
    """Bad input: names the argument, the value and what was expected."""


class FitDivergedError(RuntimeError):
    """The optimisation produced a non-finite loss; the message names the step and a hint."""


def check_loss(loss: float, step: int) -> None:
    """Stop a fit whose loss is NaN or infinite, naming the step (every fitting loop calls this)."""
    if not math.isfinite(loss):
        raise FitDivergedError(f"the loss became {loss} at step {step}; {NAN_HINT}")
