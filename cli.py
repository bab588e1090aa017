"""``deepprob <example> [options]``: one subcommand per example (see :mod:`deepprob.examples`)."""

from __future__ import annotations

import argparse
import importlib
import sys
import time

from deepprob.errors import FitDivergedError, InputError
from deepprob.examples import EXAMPLES
from deepprob.examples.options import add_run_arguments


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's layout; adds "(default: X)" where the help does not already say it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" not in text and action.default not in (None, False, argparse.SUPPRESS):
            text += " (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line (no usage block): ``deepprob linreg: error: ...``."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``deepprob`` parser; with ``only``, just that example's module is imported (faster start)."""
    parser = _Parser(
        prog="deepprob",
        description="Deep probabilistic methods with Pyro and PyTorch. "
        "Run `deepprob <example> --help` for an example's options.",
        epilog="examples:\n" + "\n".join(f"  {name:<9} {text}" for name, (_, text) in EXAMPLES.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="example", metavar="<example>", required=True)
    for name, (module_name, text) in EXAMPLES.items():
        if only is not None and name != only:
            sub.add_parser(name, help=text)
            continue
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=text, description=module.__doc__, formatter_class=_Formatter)
        module.add_arguments(p)
        add_run_arguments(p)
        p.set_defaults(_main=module.main)
    return parser


def run_example(args: argparse.Namespace) -> dict:
    """Seed, pick the device and the output folder, run the example and time it.

    Returns the example's metrics with ``example``, ``seconds`` and ``device`` added.
    """
    import logging

    import pyro  # noqa: F401  (imports pyro.logger, which sets its level to INFO)
    from tqdm import tqdm

    from deepprob.runtime import cpu_threads, prepare_out, resolve_device, seed_everything

    logging.getLogger("pyro").setLevel(logging.WARNING)  # no "Guessed max_plate_nesting" on every fit
    # no tqdm monitor thread: workers are forked (runtime.map_forked), and a fork while that thread holds
    # tqdm's lock would leave the child's progress bars waiting for it forever
    tqdm.monitor_interval = 0

    args.device = resolve_device(args.device)
    args.out = prepare_out(args.out, args.example)
    seed_everything(args.seed)
    start = time.perf_counter()
    with cpu_threads(args.threads if args.device.type == "cpu" else None):
        metrics = args._main(args)
    seconds = time.perf_counter() - start
    return {"example": args.example, **metrics, "seconds": round(seconds, 3), "device": str(args.device)}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(only=chosen if chosen in EXAMPLES else None)
    args = parser.parse_args(argv)
    try:
        metrics = run_example(args)
    except (InputError, FitDivergedError, FileNotFoundError) as err:
        print(f"deepprob {args.example}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"deepprob {args.example}: interrupted", file=sys.stderr)
        return 130
    if args.json:
        from deepprob.runtime import dumps_metrics

        print(dumps_metrics(metrics), flush=True)
    return 0


def console_main() -> None:
    """The ``deepprob`` command: :func:`main`, then a quick exit.

    Python's own exit tears down every module and object one by one; after torch, Pyro, ArviZ and
    Inductor are loaded that takes 0.7-1.5 s, longer than some examples' work. Everything a run writes
    is closed (and checkpoints synced) by then, so after the exit handlers run and the streams are
    flushed, the process ends without the teardown.
    """
    import atexit
    import os

    code = main()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:  # a closed pipe (`deepprob ... | head`): nothing more can be said
            pass
    os._exit(code)


if __name__ == "__main__":
    console_main()
