r"""``guide="auto"``: a ladder of families, cheap to rich, fitted until one is trusted.

    fit = deepprob.fit(model, data, guide="auto")
    fit.extras["auto"]            # {"family": "fullrank", "trust": "yes", "reason": ..., "tried": [...]}
    result = deepprob.compare(model, data, guides=["auto", "meanfield"], reference=None)
    result.rows["auto"]["family"] # the rung it chose

The ladder (:data:`~deepprob.guides.registry.AUTO_LADDER`: laplace, fullrank, mixture, then full rank by the
importance-weighted bound and a deeper IAF trained longer, :class:`~deepprob.guides.registry.Rung`) is climbed one
rung at a time; each rung is fitted, drawn from, and judged by the verdict of :mod:`.trust` (no reference needed).
The climb stops at the first rung trusted as it is (``"yes"``); a rung trusted only through its PSIS-corrected draws
(``"corrected"``) is kept where no rung before the last resorts (:attr:`~deepprob.guides.registry.Rung.last_resort`)
is trusted as it is (of several, the one estimated nearest), and the climb says why it stopped. Where no rung is
trusted it says so (trust ``"no"``) and keeps the rung whose own draws come nearest to trusting it (:func:`nearest`:
of those whose weights can check it, k-hat < 0.7 and enough effective draws, the smallest estimated error; else
the most effective draws; else the richest that fitted).
It never claims a trust it has not shown.
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
from deepprob.guides.registry import AUTO, AUTO_LADDER, GuideOptions, Rung, build_guide
from deepprob.inference.fitting.result import FitResult
from deepprob.inference.fitting.settings import FitSettings
from deepprob.inference.fitting.svi import fit as fit_family
from deepprob.logdensity import ModelStructure
from deepprob.names import flatten

__all__ = ["Climb", "climb", "fit"]


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


def climb(attempt: Callable[[Rung], object], row_of: Callable[[object], dict],
          ladder: tuple[Rung, ...] = AUTO_LADDER) -> Climb:
    """Fit ``attempt(rung)`` up ``ladder`` until ``row_of(result)["trust"]`` is ``"yes"``; where only ``"corrected"``
    rungs are found before the last resorts (or at the end), keep the corrected one estimated nearest.

    ``attempt`` returns a fit's result, or a :class:`~deepprob.errors.FitDivergedError` / ``ModelError`` (that rung
    failed: the climb goes on). Where no rung is trusted, the one kept is the nearest to it (:func:`nearest`).
    Raises the last rung's error where every rung failed.
    """
    began, tried, fitted, error = time.perf_counter(), [], [], None

    def done(label, result, trust, reason):
        return Climb(label, result, trust, reason, tried, time.perf_counter() - began)

    for rung in ladder:
        corrected = [entry for entry in fitted if entry[2]["trust"] == "corrected"]
        if rung.last_resort and corrected:
            return done(*least_corrected(corrected, tried))
        start = time.perf_counter()
        result = attempt(rung)
        seconds = time.perf_counter() - start
        if isinstance(result, (FitDivergedError, ModelError)):
            tried.append({"guide": rung.label, "trust": "no", "trust_reason": f"failed: {result}", "seconds": seconds})
            error = result
            continue
        row = row_of(result)
        tried.append({"guide": rung.label, "trust": row["trust"], "trust_reason": row["trust_reason"],
                      "seconds": seconds, "gradient_evaluations": row.get("gradient_evaluations"),
                      "estimated_error": checked_error(row), "ess": row.get("ess")})
        fitted.append((rung.label, result, row))
        if row["trust"] == "yes":
            cheaper = f" ({', '.join(t['guide'] for t in tried[:-1])} not)" if len(tried) > 1 else ""
            return done(rung.label, result, "yes", f"{rung.label} is the first trusted{cheaper}")
    corrected = [entry for entry in fitted if entry[2]["trust"] == "corrected"]
    if corrected:
        return done(*least_corrected(corrected, tried))
    if not fitted:
        raise error
    label, result, why = nearest(fitted)
    rungs = ", ".join(rung.label for rung in ladder)
    return done(label, result, "no", f"no rung of {rungs} was trusted; {why}")


def least_corrected(corrected: list[tuple[str, object, dict]], tried: list[dict]) -> tuple[str, object, str, str]:
    """Of rungs trusted only through their PSIS-corrected draws, the one estimated nearest already (its resampled
    draws lean least on the weights): ``(label, result, "corrected", why)``."""
    def estimated(entry):
        error = checked_error(entry[2])
        return float("inf") if error is None else error

    label, result, row = min(corrected, key=estimated)
    others = [t["guide"] for t in tried if t["guide"] != label]
    nearest_of = "; of the corrected, the one estimated nearest" if len(corrected) > 1 else ""
    why = (f"{label} is trusted through its PSIS-corrected draws, none as it is"
           + (f" ({', '.join(others)} not{nearest_of})" if others else ""))
    return label, result, "corrected", why


def nearest(fitted: list[tuple[str, object, dict]]) -> tuple[str, object, str]:
    """Of untrusted rungs ``(label, result, row)``, the one whose own draws come nearest to trusting it, and why:

    1. of those whose weights can check them (:func:`checked_error`), the smallest estimated error;
    2. else, of those whose weights have k-hat < 0.7 but too few effective draws to check them, the most effective
       draws (the self-normalised weights' ESS / S is about 1 / (1 + chi^2(p || q)): a q too narrow and a q too wide
       both have few);
    3. else the richest (the last) that fitted.
    """
    errors = [(label, result, checked_error(row)) for label, result, row in fitted]
    checked = [entry for entry in errors if entry[2] is not None]
    if checked:
        label, result, worst = min(checked, key=lambda entry: entry[2])
        return label, result, f"{label} kept, estimated {worst:.2f} sds off, the nearest of those its draws could check"
    weighed = [(label, result, row["ess"]) for label, result, row in fitted if row.get("ess") is not None]
    if weighed:
        label, result, ess = max(weighed, key=lambda entry: entry[2])
        return label, result, (f"{label} kept, its weights the least heavy-tailed ({ess:.0f} effective draws, too few "
                               "to check it)")
    label, result, _ = fitted[-1]
    return label, result, f"{label} kept, the richest that fitted (no rung's draws could check it)"


def checked_error(row: dict) -> float | None:
    """A rung's worst estimated error (:mod:`.trust`), where its draws can check it (k-hat below the limit and enough
    effective draws, the estimate in ``row``), else None."""
    from deepprob.inference.evaluation.trust import MIN_ESS  # imports ArviZ: where a ladder is climbed only

    if row.get("mean_err_est") is None or row.get("ess", 0) < MIN_ESS:
        return None
    return max(row["mean_err_est"], row["sd_err_est"])


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

        With ``model`` the normal mean (``mu ~ N(0, 5)``, ``y ~ N(mu, 1)``) and ``data`` four observations that sum
        to 5 (the posterior mean is 5 / 4.04):

        >>> fit = deepprob.fit(model, data, guide="meanfield", steps=2000, progress=False)
        >>> round(fit.guide.median(data)["mu"].item(), 1)
        1.2
        >>> auto = deepprob.fit(model, data, guide="auto", steps=2000, progress=False)
        >>> auto.extras["auto"]["family"], auto.extras["auto"]["trust"]  # Laplace is exact here
        ('laplace', 'yes')
    """
    if guide != AUTO:
        return fit_family(model, *args, guide=guide, options=options, settings=settings, model_kwargs=model_kwargs,
                          **svi_options)
    # the verdict's modules import ArviZ (about a second): a fit of one family does not wait for them
    from deepprob.inference.evaluation.draws import draws_from_guide
    from deepprob.inference.evaluation.trust import RESAMPLING_POOL, corrected_indices, trust_row

    kwargs = dict(model_kwargs or {})
    settings = FitSettings.of(settings, **svi_options)
    seed = torch.initial_seed()

    def attempt(rung: Rung):
        pyro.set_rng_seed(seed)  # every rung from the same seed, as compare's rows
        try:
            guide = build_guide(rung.family, model, rung.guide_options(options or GuideOptions()))
            fitted = fit_family(model, *args, guide=guide, model_kwargs=kwargs,
                                settings=rung.settings(settings).replace(desc=f"auto/{rung.label}"))
        except FitDivergedError as err:
            return err
        sampled = draws_from_guide(model, fitted.guide, *args, num_samples=draws, **kwargs)
        row = trust_row(declared(fitted.guide).q_density, flatten(sampled.sites()), sampled.log_weights)
        return fitted, sampled, row

    chosen = climb(attempt, lambda result: result[2])
    fitted, sampled, _ = chosen.result
    if chosen.trust == "corrected":  # resampled from a larger pool of the guide's draws
        more = draws_from_guide(model, fitted.guide, *args, num_samples=(RESAMPLING_POOL - 1) * draws, **kwargs)
        sampled = sampled.joined(more)
        index = corrected_indices(sampled.log_weights, draws, torch.Generator().manual_seed(seed))
        structure = ModelStructure.of(model, *args, **kwargs)
        particles = structure.pack_draws(sampled.take(index).latents)
        fitted.guide = FixedPosterior(model, Particles(particles), *args, q_density="particles", **kwargs)
    fitted.extras["auto"] = chosen.summary()
    return fitted
