"""Command-line options shared by the examples (the CLI contract), in one place."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """--seed, --device, --out, --json, --quiet: every example has these."""
    group = parser.add_argument_group("run")
    group.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    group.add_argument(
        "--device", default="auto", help="cpu, cuda or cuda:N (default: cuda when available, else cpu)"
    )
    group.add_argument("--out", default=None, help="folder for figures and artefacts (default: runs/<example>)")
    group.add_argument(
        "--json", action="store_true", help="print the run's metrics as one JSON object on the last line"
    )
    group.add_argument("--quiet", action="store_true", help="no progress bars and no text report")
    group.add_argument("--threads", type=non_negative_int, default=1,
                       help="torch CPU threads; the models are small, so one is fastest on a shared CPU "
                       "(0: torch's default, one per core) (default: %(default)s)")


def add_svi_arguments(parser: argparse.ArgumentParser, *, steps: int, lr: float, num_particles: int = 1) -> None:
    """--steps, --lr, --num-particles and --engine for examples fitted by SVI."""
    from deepprob.inference.fast_svi import ENGINES

    group = parser.add_argument_group("fitting (SVI with Trace_ELBO and Adam)")
    group.add_argument("--steps", type=positive_int, default=steps, help="SVI steps (default: %(default)s)")
    group.add_argument(
        "--lr", type=positive_float, default=lr, help="initial Adam learning rate, decayed 10x (default: %(default)s)"
    )
    group.add_argument(
        "--num-particles", type=positive_int, default=num_particles,
        help="ELBO samples per step (default: %(default)s)",
    )
    group.add_argument(
        "--engine", choices=ENGINES, default="auto",
        help="how the steps run: pyro (Pyro's Trace_ELBO each step), compiled (the same estimator and Adam "
             "compiled into one C function per step on the CPU: ~50-100x faster after a compile of about a "
             "second, cached on disk; Inductor where C does not apply, a GPU say), auto (compiled for fits "
             "of 2000 steps or more) (default: %(default)s)",
    )


def add_guide_arguments(parser: argparse.ArgumentParser, *, default: str = "fullrank") -> None:
    """--guide and the options of particular guides."""
    from deepprob.guides import GUIDES

    group = parser.add_argument_group("guide (variational family)")
    group.add_argument(
        "--guide", default=default, help=f"one of {', '.join(GUIDES)} (default: %(default)s)"
    )
    group.add_argument(
        "--components", type=positive_int, default=2, help="mixture guide: number of Gaussians (default: 2)"
    )
    group.add_argument("--rank", type=positive_int, default=None, help="lowrank guide: rank (default: about sqrt(D))")


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """--data, --target, --features: fit a user's CSV instead of the embedded data."""
    group = parser.add_argument_group("own data")
    group.add_argument("--data", default=None, help="a CSV file with a header row")
    group.add_argument("--target", default=None, help="the CSV column to predict")
    group.add_argument(
        "--features", default=None, help="comma-separated feature columns (default: all other numeric columns)"
    )
