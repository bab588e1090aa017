"""``deepprob <example> [options]``: one subcommand per example (see :mod:`deepprob.examples`)."""

from __future__ import annotations

import atexit
import os
import sys
import time

from deepprob.errors import FitDivergedError, InputError

# under torchrun, how long the other processes wait before saying an error that process 0 says as well
ERROR_GRACE_SECONDS = 5.0


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: the process's), run the example; returns the exit status.

    Bad input is one line on stderr and status 2; ``--help`` prints the help and returns 0.
    """
    from deepprob.examples.commands import UsageError, parse, run_example

    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parse(argv)
    except UsageError as err:
        print(f"{err.prog}: error: {err}", file=sys.stderr)
        return 2
    except SystemExit as exit_:  # argparse, after printing --help
        return exit_.code if isinstance(exit_.code, int) else 0
    try:
        metrics = run_example(args)
    except (InputError, FitDivergedError, FileNotFoundError) as err:
        rank = os.environ.get("RANK", "0")
        if rank != "0" and os.environ.get("WORLD_SIZE", "1") != "1":
            # under torchrun every process meets the same bad input (or the same all-reduced NaN), and process
            # 0 says it; torchrun ends the others once one exits, so they wait first, and speak after that only
            # where the error was theirs alone
            time.sleep(ERROR_GRACE_SECONDS)
            print(f"deepprob {args.example} (process {rank}): error: {err}", file=sys.stderr)
        else:
            print(f"deepprob {args.example}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"deepprob {args.example}: interrupted", file=sys.stderr)
        return 130
    if args.json and os.environ.get("RANK", "0") == "0":  # one JSON line: process 0's under torchrun
        from deepprob.files import dumps_metrics

        print(dumps_metrics(metrics), flush=True)
    return 0


_exit_status = 0


def _end_without_teardown() -> None:
    """The last exit handler: flush the streams and end the process, skipping the interpreter's teardown.

    Python's own exit tears down every module and object one by one; after torch, Pyro, ArviZ and
    Inductor are loaded that takes 0.7-1.5 s, longer than some examples' work. Registered before any
    other exit handler, this one runs after all of them (they run last-registered first), when
    everything a run writes is closed (and checkpoints synced).
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`deepprob ... | head`): nothing more can be said
            pass
    os._exit(_exit_status)


def console_main() -> None:
    """The ``deepprob`` command: :func:`main`, then a quick exit (:func:`_end_without_teardown`)."""
    global _exit_status
    atexit.register(_end_without_teardown)
    _exit_status = 1  # until main returns: a crash (its traceback printed) must not end with status 0
    _exit_status = main()
    sys.exit(_exit_status)


if __name__ == "__main__":
    console_main()
