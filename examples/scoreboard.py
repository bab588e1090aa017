"""Every guide on every posterior of posteriordb, scored against its gold-standard draws, with NUTS beside.

posteriordb (stan-dev/posteriordb) holds real models and data, each with 10,000 reference draws from
long, checked runs of Stan's NUTS. For every posterior of --posteriordb whose model is translated
(``deepprob.models.posteriordb``), every guide is fitted and measured against those draws, as is Pyro's
NUTS on a short budget (what a user would otherwise run). One table and a heat map (scoreboard.png): per
(posterior, method) the worst error of a mean and of an sd in reference sds, W2 in reference sds with the
reference's own noise floor, k-hat, seconds and gradient evaluations. Then the best guide of each
posterior against the goal (both errors at most 0.1), and the two-by-two of k-hat < 0.7 against accurate
(both errors at most 0.2), naming the pairs where k-hat says fine but the guide is wrong.

    deepprob scoreboard --posteriordb ../shared/data/posteriordb/posterior_database
    deepprob scoreboard --posteriordb DIR --posteriors kidiq-kidscore_momiq,sblri-blr --guides meanfield,fullrank
    deepprob scoreboard --posteriordb DIR --no-nuts --json
"""

from __future__ import annotations

import torch

from deepprob.examples.common import say
from deepprob.examples.options import fit_settings, guide_options, nuts_budget
from deepprob.inference.evaluation.nuts import NUTSBudget
from deepprob.inference.evaluation.posteriors import database
from deepprob.inference.evaluation.scoreboard import scoreboard
from deepprob.plots import drawn


def main(args):
    if args.guide is not None:
        from deepprob.errors import InputError

        raise InputError(f"--guide {args.guide}: the scoreboard fits several guides; use --guides {args.guide}[,...]")
    db = database(args.posteriordb)
    names = [n.strip() for n in args.posteriors.split(",") if n.strip()] if args.posteriors else None
    nuts = None if args.no_nuts else NUTSBudget(**nuts_budget(args))
    board = scoreboard(db, names, args.guides, nuts=nuts, settings=fit_settings(args), draws=args.draws,
                       restarts=args.restarts,
                       seed=args.seed, jobs=args.jobs, progress=not args.quiet, out=args.out,
                       dtype=getattr(torch, args.dtype), options=guide_options(args))
    say(args, *board.report())  # the table first: a figure that cannot be drawn loses nothing
    figure = drawn("scoreboard.png", lambda: board.figure(args.out))
    if figure is not None:
        say(args, f"heat map: {figure}")
    return {**board.to_dict(), "figure": None if figure is None else str(figure)}
