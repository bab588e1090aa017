"""The examples as commands: the parser of each (built without importing it) and the runner.

``deepprob compare`` is two commands in one: ``deepprob compare linreg|logreg|bnn [options]`` for a
built-in model, with that model's own data and model options, and ``deepprob compare --model FILE.py:FUNC
--data DATA.json`` for a user's model.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import time
from pathlib import Path

from deepprob.errors import InputError
from deepprob.examples import EXAMPLES, options

USER_MODEL_OPTIONS = ("--model", "--posterior")
# the examples that train data-parallel under torchrun --nproc_per_node=K (deepprob.parallel)
DATA_PARALLEL = {"vae": "", "gan": " --dataset digits|mnist"}


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's layout; adds "(default: X)" where the help does not already say it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" not in text and action.default not in (None, False, argparse.SUPPRESS):
            text += " (default: %(default)s)"
        return text


class UsageError(InputError):
    """A bad command line: argparse's complaint as one line (no usage block); ``prog`` names the command."""

    def __init__(self, message: str, prog: str):
        super().__init__(message)
        self.prog = prog


class Parser(argparse.ArgumentParser):
    """An argparse parser whose errors raise :class:`UsageError` (printed ``deepprob linreg: error: ...``)."""

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)", self.prog)


def module_doc(module_name: str) -> str:
    """The docstring of an example's module, read from its file (importing it would load torch and Pyro)."""
    spec = importlib.util.find_spec(module_name)
    return ast.get_docstring(ast.parse(Path(spec.origin).read_text())) or ""


def top_parser() -> Parser:
    parser = Parser(prog="deepprob", formatter_class=argparse.RawDescriptionHelpFormatter,
                    description="Deep probabilistic methods with Pyro and PyTorch. "
                    "Run `deepprob <example> --help` for an example's options.",
                    epilog="`deepprob compare linreg|logreg|bnn` compares the guides on a built-in model "
                    "(`deepprob compare linreg --help`).")
    sub = parser.add_subparsers(dest="example", metavar="<example>", required=True)
    for name, (_, text, _) in EXAMPLES.items():
        sub.add_parser(name, help=text, add_help=False)
    return parser


def _options(spec: str):
    name, _, argument = spec.partition(":")
    add = getattr(options, name)
    return add(argument) if argument else add


def command_parser(argv: list[str]) -> tuple[Parser, str, str]:
    """The parser of the command ``argv`` names (``argv[0]`` an example), its name and its module."""
    example = argv[0]
    module_name, _, spec = EXAMPLES[example]
    description = module_doc(module_name)
    add = _options(spec)
    prog = f"deepprob {example}"
    if example == "compare" and not any(a.split("=")[0] in USER_MODEL_OPTIONS for a in argv[1:]):
        builtin = next((a for a in argv[1:] if a in options.COMPARE_MODELS), None)
        if builtin is not None:
            prog += f" {builtin}"
            add = options.compare_builtin_arguments(builtin)
            description = (f"Every guide against a reference posterior on the built-in {builtin} model "
                           f"({options.COMPARE_MODELS[builtin][0]}), with that example's data and model options.")
    parser = Parser(prog=prog, description=description, formatter_class=Formatter)
    add(parser)
    options.add_run_arguments(parser)
    return parser, example, module_name


def parse(argv: list[str]) -> argparse.Namespace:
    """``argv`` parsed. Raises :class:`UsageError` for bad input, ``SystemExit(0)`` after printing --help."""
    if not argv or argv[0].startswith("-") or argv[0] not in EXAMPLES:
        top_parser().parse_args(argv)  # prints the help, or the error of an unknown example, and exits
    parser, example, module_name = command_parser(argv)
    args = parser.parse_args(argv[1:])
    args.example, args.module = example, module_name
    return args


def run_example(args: argparse.Namespace) -> dict:
    """Seed, pick the device and the output folder, run the example and time it.

    Under torchrun (``WORLD_SIZE`` > 1) the processes first join one process group
    (:func:`deepprob.parallel.init`), each on its device, and all but process 0 run quiet; they leave the
    group at the end.

    Returns the example's metrics with ``example``, ``seconds`` and ``device`` added.
    """
    import logging

    import pyro  # noqa: F401  (imports pyro.logger, which sets its level to INFO)
    from tqdm import tqdm

    import deepprob.parallel as parallel
    from deepprob.devices import cpu_threads, resolve_device
    from deepprob.files import prepare_out
    from deepprob.seeds import seed_everything

    world = parallel.launched_world_size()
    if world > 1 and args.example not in DATA_PARALLEL:
        supported = ", ".join(f"`deepprob {name}{extra}`" for name, extra in DATA_PARALLEL.items())
        raise InputError(f"torchrun with {world} processes: `deepprob {args.example}` runs as one process "
                         f"(data-parallel training: {supported})")
    logging.getLogger("pyro").setLevel(logging.WARNING)
    # no tqdm monitor thread: workers are forked (pool.map_forked), and a fork while that thread holds
    # tqdm's lock would leave the child's progress bars waiting for it forever
    tqdm.monitor_interval = 0

    main = importlib.import_module(args.module).main
    if world > 1:
        args.device = parallel.init(args.device)
        args.quiet = args.quiet or not parallel.is_writer()  # progress bars and text from process 0 only
    else:
        args.device = resolve_device(args.device)
    done = False
    try:
        args.out = prepare_out(args.out, args.example)
        seed_everything(args.seed)  # the same on every process: they draw the same global random numbers
        start = time.perf_counter()
        with cpu_threads(args.threads if args.device.type == "cpu" else None):
            metrics = main(args)
        seconds = time.perf_counter() - start
        done = True
    finally:
        if world > 1:
            parallel.shutdown(wait=done)  # after an error, no barrier: the other processes may never reach it
    return {"example": args.example, **metrics, "seconds": round(seconds, 3), "device": str(args.device)}
