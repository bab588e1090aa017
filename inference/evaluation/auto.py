r"""``guide="auto"``: a ladder of families, cheap to rich, fitted until one is trusted.

    fit = deepprob.fit(model, data, guide="auto")
    fit.extras["auto"]            # {"family": "fullrank", "trust": "yes", "reason": ..., "tried": [...]}
    result = deepprob.compare(model, data, guides=["auto", "meanfield"], reference=None)
    result.rows["auto"]["family"] # the family it chose

The ladder (:data:`~deepprob.guides.registry.AUTO_LADDER`: laplace, fullrank, mixture, flow) is climbed one rung at
a time; each rung is fitted, drawn from, and judged by the verdict of :mod:`.trust` (no reference needed). The climb
stops at the first rung trusted as it is (``"yes"``) or through its PSIS-corrected draws (``"corrected"``), and says
why it stopped. Where no rung is trusted it says so (trust ``"no"``) and keeps the richest rung's fit: it never
claims a trust it has not shown.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pyro
import torch

from deepprob.errors import FitDivergedError, ModelError
from deepprob.guides.fixed import FixedPosterior, Particles
from deepprob.guides.protocol import declared
from deepprob.guides.registry import AUTO, AUTO_LADDER, GuideOptions, build_guide
from deepprob.inference.fitting.result import FitResult
from deepprob.inference.fitting.settings import FitSettings
from deepprob.inference.fitting.svi import fit as fit_family
from deepprob.logdensity import ModelStructure
from deepprob.names import flatten

__all__ = ["Climb", "climb", "fit"]

TRUSTED = ("yes", "corrected")


@dataclass
class Climb:
    """Where the ladder stopped: the ``family`` chosen, its ``result`` (whatever ``attempt`` returned for it), its
    verdict, why the climb stopped there, and every rung tried: ``{"guide", "trust", "trust_reason", "seconds"}``."""

    family: str
    result: object
    trust: str
    reason: str
    tried: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict:
        return {"family": self.family, "trust": self.trust, "reason": self.reason, "tried": self.tried,
                "seconds": self.seconds}


def climb(attempt: Callable[[str], object], row_of: Callable[[object], dict],
          ladder: tuple[str, ...] = AUTO_LADDER) -> Climb:
    """Fit ``attempt(family)`` up ``ladder`` until ``row_of(result)["trust"]`` is ``"yes"`` or ``"corrected"``.

    ``attempt`` returns a fit's result, or a :class:`~deepprob.errors.FitDivergedError` / ``ModelError`` (that rung
    failed: the climb goes on). Raises the last rung's error where every rung failed.
    """
    began, tried, fitted, error = time.perf_counter(), [], None, None
    for family in ladder:
        start = time.perf_counter()
        result = attempt(family)
        seconds = time.perf_counter() - start
        if isinstance(result, (FitDivergedError, ModelError)):
            tried.append({"guide": family, "trust": "no", "trust_reason": f"failed: {result}", "seconds": seconds})
            error = result
            continue
        row = row_of(result)
        tried.append({"guide": family, "trust": row["trust"], "trust_reason": row["trust_reason"],
                      "seconds": seconds, "gradient_evaluations": row.get("gradient_evaluations")})
        fitted = (family, result)
        if row["trust"] in TRUSTED:
            how = "trusted" if row["trust"] == "yes" else "trusted through its PSIS-corrected draws"
            cheaper = f" ({', '.join(t['guide'] for t in tried[:-1])} not)" if len(tried) > 1 else ""
            return Climb(family, result, row["trust"], f"{family} is the first {how}{cheaper}", tried,
                         time.perf_counter() - began)
    if fitted is None:
        raise error
    return Climb(fitted[0], fitted[1], "no", f"no family of {', '.join(ladder)} was trusted; {fitted[0]} kept, the "
                 "richest that fitted", tried, time.perf_counter() - began)


def fit(model: Callable, *args, guide="fullrank", options: GuideOptions | None = None,
        settings: FitSettings | None = None, model_kwargs: dict | None = None, draws: int = 2000,
        **svi_options) -> FitResult:
    """Fit a guide to ``model(*args, **model_kwargs)`` by SVI: ``deepprob.fit``.

    Args:
        guide: a name of the registry (``deepprob.guides.GUIDES``: ``laplace``, ``meanfield``,
            ``fullrank``, ``lowrank``, ``mixture``, ...), a guide object (an ``AutoGuide`` of Pyro's, say), or
            ``"auto"``: the ladder of :data:`~deepprob.guides.registry.AUTO_LADDER` climbed until the verdict of
            :mod:`~deepprob.inference.evaluation.trust` trusts a family, on ``draws`` of each.
        options: the registry guide's options (:class:`~deepprob.guides.registry.GuideOptions`: the
            initialisation, the mixture's components, the low-rank guide's rank).
        settings: the fit's :class:`~deepprob.inference.fitting.settings.FitSettings`; ``svi_options``, any of its
            fields as keywords (``steps``, ``lr``, ``num_particles``, ``engine``, ...), change it.

    Returns:
        :class:`~deepprob.inference.fitting.result.FitResult`: the fitted guide, the loss at every step, the time, a
        fresh ELBO estimate. With ``"auto"``, ``extras["auto"]`` says which family was chosen, its verdict and why,
        and every rung tried; where the verdict is ``"corrected"`` the guide is its PSIS-resampled draws (a guide of
        ``draws`` particles, no density).

        >>> fit = deepprob.fit(model, data, guide="meanfield", steps=5000)
        >>> fit.elbo, fit.guide.median(data)
    """
    if guide != AUTO:
        return fit_family(model, *args, guide=guide, options=options, settings=settings, model_kwargs=model_kwargs,
                          **svi_options)
    # the verdict's modules import ArviZ (about a second): a fit of one family does not wait for them
    from deepprob.inference.evaluation.draws import draws_from_guide
    from deepprob.inference.evaluation.trust import corrected_indices, trust_row

    kwargs = dict(model_kwargs or {})
    settings = FitSettings.of(settings, **svi_options)
    seed = torch.initial_seed()

    def attempt(family: str):
        pyro.set_rng_seed(seed)  # every rung from the same seed, as compare's rows
        try:
            fitted = fit_family(model, *args, guide=build_guide(family, model, options),
                                settings=settings.replace(desc=f"auto/{family}"), model_kwargs=kwargs)
        except FitDivergedError as err:
            return err
        sampled = draws_from_guide(model, fitted.guide, *args, num_samples=draws, **kwargs)
        row = trust_row(declared(fitted.guide).q_density, flatten(sampled.sites()), sampled.log_weights)
        return fitted, sampled, row

    chosen = climb(attempt, lambda result: result[2])
    fitted, sampled, _ = chosen.result
    if chosen.trust == "corrected":
        index = corrected_indices(sampled.log_weights, draws, torch.Generator().manual_seed(seed))
        structure = ModelStructure.of(model, *args, **kwargs)
        particles = structure.pack_draws(sampled.take(index).latents)
        fitted.guide = FixedPosterior(model, Particles(particles), *args, q_density="particles", **kwargs)
    fitted.extras["auto"] = chosen.summary()
    return fitted
