"""Errors a user can fix. The command line prints them as one line, without a traceback."""


class InputError(ValueError):
    """Bad input: names the argument, the value and what was expected."""


class FitDivergedError(RuntimeError):
    """The optimisation produced a non-finite loss; the message names the step and a hint."""


def require(condition: bool, message: str) -> None:
    """Raise :class:`InputError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise InputError(message)
