"""One fitting function for every Pyro model and guide: SVI with Trace_ELBO and Adam.

- :func:`fit`: a guide by name from the registry (or a guide object), fitted: ``deepprob.fit``.
- :func:`fit_svi`: the fit itself, on Pyro's engine or the compiled one (the same estimator), from one
  :class:`~deepprob.inference.fitting.settings.FitSettings`.
- :func:`fit_map`: the MAP point of every latent site.

The engines, one file each: :mod:`~deepprob.inference.fitting.pyro_engine` (Pyro's ``Trace_ELBO`` each step) and
:mod:`~deepprob.inference.fitting.compiled_engine` (the whole step compiled); what both end with is
:mod:`~deepprob.inference.fitting.result`'s.

What a fit asks of its guide is the guide's protocol (:mod:`deepprob.guides.protocol`), read through
:func:`~deepprob.guides.protocol.declared`.

Guides own their parameters (Pyro's ``module_local_params`` setting), so fitting several guides in one
process never mixes their parameters through the global param store.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pyro
import torch
from pyro.infer import ELBO
from pyro.infer.util import is_validation_enabled

from deepprob.errors import InputError
from deepprob.guides.protocol import declared
from deepprob.guides.registry import GuideOptions, build_guide
from deepprob.inference.fitting.engines import will_compile
from deepprob.inference.fitting.pyro_engine import fit_pyro, optimise
from deepprob.inference.fitting.result import FitResult, FitRun, estimate_elbo, finish, invalid_values_at
from deepprob.inference.fitting.settings import MAP, FitSettings, settings_from
from deepprob.logdensity import ModelStructure
from deepprob.optim import collect_parameters
from deepprob.progress import report_once
from deepprob.subsample import MinibatchIndices

pyro.settings.set(module_local_params=True)

__all__ = ["FitResult", "estimate_elbo", "fit", "fit_map", "fit_svi", "optimise"]


def fit_svi(model: Callable, guide: Callable, *args, settings: FitSettings | None = None, loss: ELBO | None = None,
            **kwargs) -> FitResult:
    """Maximise the ELBO of ``guide`` for ``model(*args, **kwargs)`` by stochastic gradient ascent.

    ``settings``: a :class:`~deepprob.inference.fitting.settings.FitSettings` (default: its defaults); any of its
    fields given as keywords (``steps=5000``, ``lr=0.02``, ...) change it; the other keywords are the model's.

    The estimator is Pyro's ``Trace_ELBO`` (``num_particles`` samples a step, vectorised), unless
    ``loss`` gives another ELBO. Parameters of the guide, and of the model when it is an ``nn.Module``
    (or a method of one, as in the VAE), are trained by Adam whose learning rate decays exponentially
    from ``lr`` to ``lr * final_lr_fraction``. Over the last ``average_fraction`` of the steps the
    iterates are averaged (Polyak-Ruppert) and the guide ends at their mean: the noise of the gradient
    estimates averages out instead of being frozen into the final parameters. Data and parameters stay
    on the device of ``args``. The returned ``elbo`` is a fresh estimate with ``elbo_particles`` draws
    from the final guide (for ``laplace``, of its Gaussian, not of the MAP point).

    ``objective`` (:mod:`~deepprob.inference.fitting.objectives`): ``"elbo"``, ``"renyi:ALPHA"`` (Pyro's
    ``RenyiELBO`` with ``num_particles`` draws) or ``"iwae:K"`` (the importance-weighted bound, K draws a
    step); the returned ``elbo`` is the ELBO whatever the objective. Guides that make a discrete choice
    (the mixture) take the ELBO only.

    ``engine`` picks how the steps run: ``"pyro"``, through Pyro's ``Trace_ELBO`` each step;
    ``"compiled"``, the same estimator and optimiser compiled into one function per step
    (:mod:`~deepprob.inference.fitting.compiled_engine`: tens of microseconds a step instead of a millisecond or two,
    after a compile of about a second); ``"auto"`` (default), compiled when the guide and model allow
    it (no custom ``loss``, a guide with a pure form, a model without parameters of its own) and the
    fit is long enough (``steps >= AUTO_COMPILE_STEPS``) to repay the compile. A fall-back from the
    engine asked for is reported once on stderr and in ``extras["fallback"]``.

    Raises:
        InputError: ``steps`` < 1, a bad learning rate, an unknown ``engine``, or ``engine="compiled"``
            for a model or guide it does not support.
        FitDivergedError: the loss became NaN or infinite (the message names the step).
    """
    settings = settings_from(settings, kwargs)
    family, objective = declared(guide), settings.parsed_objective
    if not objective.is_elbo and family.discrete_choice:
        raise InputError(f"--objective {objective}: the {type(guide).__name__} guide draws a discrete component, "
                         "which the Renyi and IWAE bounds do not take (Pyro's RenyiELBO neither); use elbo")
    start = time.perf_counter()
    structure = ModelStructure.of(model, *args, **kwargs).check()  # a model that cannot be fitted fails here, fast
    # Pyro's checks, where they apply: they refuse batch dims outside a plate, which a model may have (one
    # distribution for a vector of observations) and which the draws' plate is put left of
    validate = is_validation_enabled() and not structure.unplated
    if structure.batching_note:
        report_once(structure.batching_note)
    run = FitRun(model, guide, args, kwargs, settings, structure, validate, None, start)
    if family.fits_itself:  # pathfinder: an optimisation of its own, no SVI steps
        return _fit_itself(run)
    with torch.no_grad(), invalid_values_at(0), pyro.poutine.trace(param_only=True) as created:
        guide(*args, **kwargs)  # create the guide's parameters (on the data's device)
    params = collect_parameters(guide, model)
    params += [leaf for leaf in _param_store_leaves(created.trace) if all(leaf is not p for p in params)]
    if not params:
        raise InputError("guide: it has no trainable parameters")
    run.batches = minibatches(structure, params[0].device)
    problem = _compiled_engine_problem(run, loss)
    if problem is None:
        from deepprob.inference.fitting.compiled_engine import fit_compiled

        return fit_compiled(run)
    fallback = (report_once(f"the compiled engine cannot fit this: {problem}; Pyro's engine fits it")
                if problem and loss is None else None)
    return fit_pyro(run, params, loss, fallback)


def _param_store_leaves(trace) -> list[torch.Tensor]:
    """The unconstrained leaves of the param store's parameters in ``trace`` (those a guide written as a function
    made with ``pyro.param``), as Pyro's SVI collects them; a module's own parameters carry no such leaf."""
    leaves = [getattr(site["value"], "unconstrained", None) for site in trace.nodes.values()]
    return [leaf() for leaf in leaves if callable(leaf)]


def _compiled_engine_problem(run: FitRun, loss: ELBO | None) -> str | None:
    """None where the compiled engine takes the fit; else why not ("": not asked for, or too short to repay its
    compile). Raises InputError where ``engine="compiled"`` was asked for and cannot be had."""
    engine = run.settings.engine
    if engine == "pyro" or not will_compile(engine, run.settings.steps):
        return ""
    from deepprob.inference.fitting.svi_steps import compiled_path_problem

    problem = ("a custom loss was given" if loss is not None
               else compiled_path_problem(run.model, run.guide, run.args, run.kwargs))
    if engine == "compiled" and problem:
        raise InputError(f"--engine compiled: not possible here, {problem} (use --engine pyro or auto)")
    return problem


def minibatches(structure: ModelStructure, device) -> MinibatchIndices | None:
    """The rows each step sees, for a model whose plates subsample (:mod:`deepprob.subsample`), else None (also
    for a model run draw by draw, which runs over the full data)."""
    if structure.subsampled and structure.batching != "plate":
        report_once(f"model {structure.name} is run draw by draw: its plates run over the full data (no minibatches)")
        return None
    return MinibatchIndices(structure.subsampled, device) if structure.subsampled else None


def _fit_itself(run: FitRun) -> FitResult:
    """A guide fitted by an optimisation of its own (``guide.fit_without_svi``: pathfinder)."""
    s = run.settings
    fitted, losses, extras = run.guide.fit_without_svi(*run.args, progress=s.progress, desc=s.desc, **run.kwargs)
    extras = {"engine": type(run.guide).__name__, "compiled_by": None, "compile_seconds": 0.0, "fallback": None,
              "batching": run.structure.batching, **extras}
    extras["steps_per_second"] = None
    return finish(run, losses, extras, guide=fitted)


def fit(model: Callable, *args, guide="fullrank", options: GuideOptions | None = None,
        settings: FitSettings | None = None, model_kwargs: dict | None = None, **svi_options) -> FitResult:
    """Fit a guide to ``model(*args, **model_kwargs)`` by SVI: ``deepprob.fit``.

    Args:
        guide: a name of the registry (``deepprob.guides.GUIDES``: ``laplace``, ``meanfield``,
            ``fullrank``, ``lowrank``, ``mixture``) or a guide object (an ``AutoGuide`` of Pyro's, say).
        options: the registry guide's options (:class:`~deepprob.guides.registry.GuideOptions`: the
            initialisation, the mixture's components, the low-rank guide's rank).
        settings: the fit's :class:`~deepprob.inference.fitting.settings.FitSettings`; ``svi_options``, any of its
            fields as keywords (``steps``, ``lr``, ``num_particles``, ``engine``, ...), change it.

    Returns:
        :class:`FitResult`: the fitted guide, the loss at every step, the time, a fresh ELBO estimate.

        With ``model`` the normal mean (``mu ~ N(0, 5)``, ``y ~ N(mu, 1)``) and ``data`` four observations that sum
        to 5 (the posterior mean is 5 / 4.04):

        >>> fit = deepprob.fit(model, data, guide="meanfield", steps=2000, progress=False)
        >>> round(fit.guide.median(data)["mu"].item(), 1), fit.elbo < 0
        (1.2, True)
    """
    loss = svi_options.pop("loss", None)
    try:
        settings = FitSettings.of(settings, **svi_options)
    except TypeError as err:
        raise TypeError(f"fit() got an {err} (model keywords go in model_kwargs)") from None
    if isinstance(guide, str):
        guide = build_guide(guide, model, options)
    return fit_svi(model, guide, *args, settings=settings, loss=loss, **(model_kwargs or {}))


def fit_map(model: Callable, *args, settings: FitSettings = MAP, **kwargs) -> dict[str, torch.Tensor]:
    """The MAP estimate of every latent site: ``fit_svi`` of a point mass at one unconstrained vector (``settings``:
    :data:`~deepprob.inference.fitting.settings.MAP`, lr 0.05; any of its fields as keywords change it)."""
    from deepprob.guides.delta import PointMass

    settings = settings_from(settings, kwargs)
    guide = PointMass(model, **GuideOptions(start="prior").loc_kwargs())
    fit_svi(model, guide, *args, settings=settings, **kwargs)
    with torch.no_grad():
        return {name: value.detach() for name, value in guide(*args, **kwargs).items()}  # a point mass: its draw
