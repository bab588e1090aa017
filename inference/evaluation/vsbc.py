r"""Validation of a family by simulation (VSBC, Yao, Vehtari, Simpson & Gelman 2018, "Yes, but did it work?"):
``deepprob.vsbc``.

    result = deepprob.vsbc(model, data, guide="laplace", datasets=100)
    result.calibrated, result.flagged   # False, ["rate"]: q is biased there
    result.table                        # per parameter: mean of p, p-value

A single fit cannot show that a family is biased for a model; fits to data the model simulates itself can.
For m = 1..M: draw :math:`\theta^*_m` and :math:`y^*_m` from the model's prior and prior predictive (its observed sites
unconditioned), fit the guide to :math:`y^*_m`, and take each scalar parameter's
:math:`p_m = \Pr_q(\theta < \theta^*_m)`. Were q the exact posterior, the :math:`p_m` would be uniform; for any q
that is not biased they are at least **symmetric about 1/2**, which is what VSBC tests, per parameter, with a
Bonferroni correction over the parameters (:data:`ALPHA`). A q shifted one way gives :math:`p_m` piled on one side.
Yao et al. test it by a two-sample Kolmogorov-Smirnov test of :math:`\{p_m\}` against :math:`\{1 - p_m\}`; but the
two are the same numbers mirrored, not independent samples, so that test's null distribution does not hold (it
flagged the exact posterior at p = 0.047 on 60 data sets). Here the test of symmetry about a known centre whose null
holds exactly: Wilcoxon's signed-rank test of :math:`p_m - 1/2`.

It needs a model that can simulate its data (its observed sites sampled when unobserved, as Pyro's
``poutine.uncondition`` does) and costs ``datasets`` fits: an option, not part of every comparison.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyro
import torch
from pyro import poutine

from deepprob.errors import InputError, model_name, one_line
from deepprob.guides.registry import GuideOptions, build_guide, checked_guides
from deepprob.inference.evaluation.draws import draws_from_guide
from deepprob.inference.fitting.settings import FitSettings
from deepprob.inference.fitting.svi import fit_svi
from deepprob.logdensity import ModelStructure
from deepprob.names import flatten

#: the test's level over all parameters (Bonferroni: each parameter at ALPHA / P)
ALPHA = 0.05


@dataclass
class VSBCResult:
    """What :func:`vsbc` returns.

    Attributes:
        guide: the family tested. labels: the scalar parameters (``name`` or ``name[i]``).
        p: (M, P) each simulated data set's :math:`\\Pr_q(\\theta < \\theta^*)`.
        pvalues: per parameter, the p-value of the test that p is symmetric about 1/2 (small: q biased).
        flagged: the parameters whose p-value is below ALPHA / P. calibrated: none is.
    """

    guide: str
    labels: list[str]
    p: np.ndarray
    pvalues: dict[str, float]
    flagged: list[str] = field(default_factory=list)

    @property
    def calibrated(self) -> bool:
        return not self.flagged

    @property
    def table(self):
        """A pandas DataFrame, one row per parameter: the mean of p (1/2 where q is unbiased), the p-value,
        flagged."""
        import pandas as pd

        return pd.DataFrame({"mean_p": self.p.mean(0), "pvalue": [self.pvalues[k] for k in self.labels],
                             "flagged": [k in self.flagged for k in self.labels]}, index=pd.Index(self.labels,
                                                                                                  name="parameter"))

    def summary(self) -> str:
        what = ("symmetric on every parameter: no bias shown" if self.calibrated else
                "biased on " + ", ".join(f"{k} (mean p {self.p[:, self.labels.index(k)].mean():.2f}, p-value "
                                         f"{self.pvalues[k]:.1g})" for k in self.flagged))
        return f"VSBC of {self.guide} over {len(self.p)} simulated data sets: {what}"


def symmetry_pvalue(p: np.ndarray) -> float:
    """The p-value of Wilcoxon's signed-rank test that the sample ``p`` (M,) is symmetric about 1/2 (1 where every
    p is 1/2: nothing to test)."""
    from scipy.stats import wilcoxon

    if np.all(p == 0.5):
        return 1.0
    return float(wilcoxon(p - 0.5, zero_method="zsplit").pvalue)


def _simulated(model: Callable, args: tuple, kwargs: dict):
    """A trace of the model with its observed sites drawn (the prior predictive), or one line saying why not."""
    try:
        with torch.no_grad():
            return poutine.trace(poutine.uncondition(model)).get_trace(*args, **kwargs)
    except Exception as err:  # noqa: BLE001 - the user's model: one line naming it, not a traceback
        raise InputError(f"model {model_name(model)}: it cannot simulate its own data for VSBC (its observed sites "
                         f"drawn from the model): {one_line(err)}") from None


def vsbc(model: Callable, *args, guide="fullrank", datasets: int = 100, draws: int = 1000,
         settings: FitSettings | None = None, options: GuideOptions | None = None, seed: int = 0,
         progress: bool = False, model_kwargs: dict | None = None, name: str | None = None,
         **fit_options) -> VSBCResult:
    """VSBC of the family ``guide`` (a registry name, or ``model -> guide``: a family of yours, called ``name``) for
    ``model(*args)``: ``datasets`` fits to data the model simulates, ``draws`` draws of each (see the module).

    Raises:
        InputError: fewer than 10 data sets, or a model with no observed site to simulate.
    """
    if datasets < 10:
        raise InputError(f"--vsbc {datasets}: expected at least 10 simulated data sets (a test of symmetry needs them)")
    if isinstance(guide, str):
        name = checked_guides([guide])[0]
    kwargs = dict(model_kwargs or {})
    structure = ModelStructure.of(model, *args, **kwargs).check()
    if not structure.observed:
        raise InputError("model: it has no observed site, so no data to simulate (VSBC fits simulated data sets)")
    settings = FitSettings.of(settings, **fit_options).replace(progress=False)
    name = name or "guide"
    ps, labels = [], None
    for m in range(datasets):
        pyro.set_rng_seed(seed + m)
        simulated = _simulated(model, args, kwargs)
        truth = {site: simulated.nodes[site]["value"].unsqueeze(0) for site in structure.latent}
        data = {site: simulated.nodes[site]["value"] for site in structure.observed}
        conditioned = poutine.condition(model, data=data)
        q = build_guide(guide, conditioned, options) if isinstance(guide, str) else guide(conditioned)
        fit = fit_svi(conditioned, q, *args, settings=settings.replace(desc=f"vsbc {name} {m + 1}/{datasets}"),
                      **kwargs)
        sampled = draws_from_guide(conditioned, fit.guide, *args, num_samples=draws, **kwargs)
        values, labels = flatten(sampled.latents)
        star, _ = flatten(truth)
        ps.append((values < star).double().mean(0).numpy())
        if progress:
            print(f"\rvsbc {name}: {m + 1}/{datasets} data sets", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr, flush=True)
    p = np.stack(ps)
    pvalues = {label: symmetry_pvalue(p[:, j]) for j, label in enumerate(labels)}
    flagged = [label for label in labels if pvalues[label] < ALPHA / len(labels)]
    return VSBCResult(name, labels, p, pvalues, flagged)
