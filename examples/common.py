"""Pieces the regression examples share: fitting the guide of ``--guide`` with the SVI options, reporting."""

from __future__ import annotations

import argparse

from deepprob.examples.options import guide_options
from deepprob.inference.svi import FitResult, fit


def fit_guide(model, args: argparse.Namespace, *model_args, init_loc_fn=None, desc=None) -> FitResult:
    """``deepprob.fit`` of ``args.guide`` for ``model`` with the shared SVI options of ``args``."""
    return fit(model, *model_args, guide=args.guide, options=guide_options(args, init_loc_fn), steps=args.steps,
               lr=args.lr, num_particles=args.num_particles, progress=not args.quiet,
               desc=desc or f"{args.example}/{args.guide}", engine=args.engine, objective=args.objective)


def say(args: argparse.Namespace, *lines: str) -> None:
    """Print the human-readable report (not with --json or --quiet)."""
    if not (args.json or args.quiet):
        print(*lines, sep="\n")
