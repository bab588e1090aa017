"""Pieces the regression examples share: fitting the guide of ``--guide`` with the SVI options, reporting."""

from __future__ import annotations

import argparse

from deepprob.guides import GuideOptions
from deepprob.inference.svi import FitResult, fit


def fit_guide(model, args: argparse.Namespace, *model_args, init_loc_fn=None, desc=None) -> FitResult:
    """``deepprob.fit`` of ``args.guide`` for ``model`` with the shared SVI options of ``args``."""
    options = GuideOptions(init_loc_fn=init_loc_fn, components=args.components, rank=args.rank, start=args.start)
    return fit(model, *model_args, guide=args.guide, options=options, steps=args.steps, lr=args.lr,
               num_particles=args.num_particles, progress=not args.quiet, desc=desc or f"{args.example}/{args.guide}",
               engine=args.engine)


def say(args: argparse.Namespace, *lines: str) -> None:
    """Print the human-readable report (not with --json or --quiet)."""
    if not (args.json or args.quiet):
        print(*lines, sep="\n")
