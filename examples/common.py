"""Pieces the regression examples share: reading the data, building and fitting the guide, reporting."""

from __future__ import annotations

import argparse

from deepprob.datasets import Table, load_csv
from deepprob.guides import GuideOptions, build_guide
from deepprob.inference import FitResult, fit_svi


def load_table(args: argparse.Namespace, default) -> Table:
    """The user's CSV when ``--data`` is given, else ``default()``; on ``args.device``."""
    if args.data is None:
        if args.target is not None or args.features is not None:
            from deepprob.errors import InputError

            raise InputError("--target/--features: only meaningful with --data FILE.csv")
        table = default()
    else:
        features = None if args.features is None else [f.strip() for f in args.features.split(",") if f.strip()]
        table = load_csv(args.data, args.target, features)
    return table.to(args.device)


def fit_guide(model, args: argparse.Namespace, *model_args, init_loc_fn=None, desc=None) -> FitResult:
    """Build ``args.guide`` for ``model`` and fit it with the shared SVI options of ``args``."""
    options = GuideOptions(init_loc_fn=init_loc_fn, components=args.components, rank=args.rank)
    guide = build_guide(args.guide, model, options)
    return fit_svi(
        model, guide, *model_args, steps=args.steps, lr=args.lr, num_particles=args.num_particles,
        progress=not args.quiet, desc=desc or f"{args.example}/{args.guide}", engine=args.engine,
    )


def say(args: argparse.Namespace, *lines: str) -> None:
    """Print the human-readable report (not with --json or --quiet)."""
    if not (args.json or args.quiet):
        print(*lines, sep="\n")
