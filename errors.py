"""Errors a user can fix. The command line prints them as one line, without a traceback."""

from __future__ import annotations

import functools
import sys
import traceback
from pathlib import Path

NAN_HINT = "lower --lr, raise --num-particles, or check the data for extreme values"


class InputError(ValueError):
    """Bad input: names the argument, the value and what was expected."""


class ModelError(InputError):
    """A user's model that cannot be used as written: names the model's file and function, and the site or the
    model's own line (:func:`model_name`, :func:`raised_at`)."""


class FitDivergedError(RuntimeError):
    """The optimisation produced a non-finite loss; the message names the step and a hint."""


def _unwrapped(model):
    """The function under wrappers: ``functools.partial``, ``functools.wraps`` (``__wrapped__``), a bound
    method, an object holding ``model`` (:class:`deepprob.subsample.FullData`)."""
    for _ in range(10):
        if isinstance(model, functools.partial):
            model = model.func
        elif hasattr(model, "__wrapped__"):
            model = model.__wrapped__
        elif hasattr(model, "__func__"):
            model = model.__func__
        elif not hasattr(model, "__code__") and hasattr(model, "model") and callable(model.model):
            model = model.model
        else:
            break
    return model


def model_name(model) -> str:
    """``file.py:function`` of a model (its class's name for a callable object)."""
    inner = _unwrapped(model)
    code = getattr(inner, "__code__", None)
    if code is None:
        return type(inner).__name__
    return f"{Path(code.co_filename).name}:{getattr(inner, '__qualname__', inner.__name__)}"


def _library_file(filename: str) -> bool:
    """Whether a frame's file is Python's, an installed package's, or deepprob's own (not the user's)."""
    path = Path(filename).resolve()
    if "site-packages" in path.parts or "dist-packages" in path.parts or filename.startswith("<"):
        return True
    roots = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, Path(__file__).parent)}
    return any(root in path.parents for root in roots)


def raised_at(err: BaseException, model=None) -> str:
    """Where an exception was raised in the user's own code: ``line N (source)`` of the last frame in the model's
    file, else of the last frame outside Python, the installed packages and deepprob; ``""`` if there is none."""
    frames = traceback.extract_tb(err.__traceback__)
    code = getattr(_unwrapped(model), "__code__", None)
    own = [f for f in frames if code is not None and f.filename == code.co_filename]
    frames = own or [f for f in frames if not _library_file(f.filename)]
    if not frames:
        return ""
    frame = frames[-1]
    source = f" ({frame.line.strip()})" if frame.line else ""
    return f"line {frame.lineno}{source}"


def one_line(err: BaseException, limit: int = 240) -> str:
    """``Type: message``, the message's first line, at most ``limit`` characters."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    text = text if len(text) <= limit else text[:limit - 3] + "..."
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


# what to try, for errors that models meet often
HINTS = {
    "tensors used as indices must be": "the data's arrays arrive as float tensors: index with data[...].long()",
}


def model_raised(model, err: BaseException, when: str = "") -> ModelError:
    """The ModelError for an exception the user's model raised: its file, function and line, and the error (and
    what to try, where :data:`HINTS` knows)."""
    where = raised_at(err, model)
    where = f", {where}" if where else ""
    when = f" {when}" if when else ""
    hints = [hint for text, hint in HINTS.items() if text in str(err)]
    hint = f"; {hints[0]}" if hints else ""
    return ModelError(f"model {model_name(model)}{where}: {one_line(err)}{when}{hint}")
