"""The guide registry: every variational family by name, built the same way for every model."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from deepprob.errors import InputError


@dataclass
class GuideOptions:
    """Options a guide may use; each guide ignores the ones that do not concern it.

    Attributes:
        init_loc_fn: Pyro per-site initialisation (``None``: the prior median,
            :func:`deepprob.logdensity.init_median`, which also starts flat priors, that cannot be sampled).
        init_scale: initial posterior standard deviation in unconstrained space.
        components: number of Gaussians of the ``mixture`` guide.
        rank: rank of the ``lowrank`` guide (``None``: about sqrt of the latent dimension).
        depth, width: the ``flow`` and ``iaf`` guides' number of transforms and hidden units (None: Pyro's).
        particles: the ``svgd`` guide's number of particles.
        paths, resample: ``pathfinder``'s number of paths (more than one: their equal-weight mixture) and
            whether the mixture's draws are importance resampled.
        start: ``"laplace"`` (default): every family starts at the Laplace approximation (the mode by L-BFGS
            from ``init_loc_fn``'s point, and the curvature there, :mod:`deepprob.guides.start`), SVI refining
            it; ``"prior"``: at ``init_loc_fn``'s point with sd ``init_scale`` (Pyro's start).
        start_jitter: a start displaced at random (a restart's, for the trust checks): a draw of the Laplace
            Gaussian widened this many times instead of its mode, or (``start="prior"``) a uniform point in (-2, 2)
            of the unconstrained space (Stan's inits) instead of ``init_loc_fn``'s.
    """

    init_loc_fn: Callable | None = None
    init_scale: float = 0.1
    components: int = 2
    rank: int | None = None
    depth: int = 2
    width: int | None = None
    particles: int = 50
    paths: int = 1
    resample: bool = False
    start: str = "laplace"
    start_jitter: float = 0.0

    def __post_init__(self):
        if self.start not in STARTS:
            raise InputError(f"--start {self.start!r}: expected one of {', '.join(STARTS)}")
        if not self.start_jitter >= 0:
            raise InputError(f"start_jitter {self.start_jitter}: expected a number of sds >= 0")

    def loc_kwargs(self) -> dict:
        from deepprob.logdensity import init_median

        return {"init_loc_fn": self.init_loc_fn or init_median}


STARTS = ("laplace", "prior")

#: Every guide by name: ``name -> "module:function"`` that builds it from ``(model, GuideOptions)``. Adding a guide
#: is one file and one line here.
GUIDES: dict[str, str] = {
    "laplace": "deepprob.guides.laplace:build",
    "meanfield": "deepprob.guides.meanfield:build",
    "fullrank": "deepprob.guides.fullrank:build",
    "lowrank": "deepprob.guides.lowrank:build",
    "mixture": "deepprob.guides.mixture:build",
    "delta": "deepprob.guides.delta:build",
    "flow": "deepprob.guides.flow:build",
    "iaf": "deepprob.guides.flow:build_iaf",
    "pathfinder": "deepprob.guides.pathfinder:build",
    "svgd": "deepprob.guides.svgd:build",
}
#: What ``compare`` and the scoreboard fit unless told: the Gaussian families and the mixture.
DEFAULT_GUIDES = ("laplace", "meanfield", "fullrank", "lowrank", "mixture")
#: not one family but a ladder of them, cheap to rich, fitted until one is trusted (deepprob.fit, compare)
AUTO = "auto"


@dataclass(frozen=True)
class Rung:
    """One rung of ``guide="auto"``'s ladder: a family of :data:`GUIDES`, the options it changes, and how its fit
    differs from the fit asked for (its steps, learning rate and particles scaled, its objective replaced).

    Attributes:
        family: the guide's name in :data:`GUIDES`.
        tag: what sets the rung apart from the family with the options asked for (its label is ``family:tag``).
        options: :class:`GuideOptions` fields it sets.
        steps, lr, particles: factors on the fit's steps, learning rate and particles a step.
        objective: the objective it is trained by (None: the fit's own).
        last_resort: climbed only where no rung before it is trusted even through its corrected draws (a rich,
            slow family); the cheaper rungs before it are all fitted first, so that one trusted as it is beats an
            earlier one trusted only through its corrected draws.
    """

    family: str
    tag: str = ""
    options: dict = field(default_factory=dict)
    steps: float = 1.0
    lr: float = 1.0
    particles: float = 1.0
    objective: str | None = None
    last_resort: bool = False

    @property
    def label(self) -> str:
        return f"{self.family}:{self.tag}" if self.tag else self.family

    def guide_options(self, options: GuideOptions) -> GuideOptions:
        return replace(options, **self.options) if self.options else options

    def settings(self, settings):
        """``settings`` (a ``FitSettings``) as this rung changes them."""
        return settings.replace(steps=max(1, round(settings.steps * self.steps)), lr=settings.lr * self.lr,
                                num_particles=max(1, round(settings.num_particles * self.particles)),
                                objective=self.objective or settings.objective)


#: ``guide="auto"``'s ladder, cheap to rich. The last two rungs are for the posteriors that no Gaussian fitted by the
#: ELBO covers. Full rank by the importance-weighted bound (K = 128 draws a step; twice the steps at twice the
#: learning rate) covers the mass where the ELBO's mode seeking leaves a Gaussian too narrow (a latent volatility
#: series of 100 states: the ELBO's full rank 0.9 sds off in sd, this one within 0.15). An IAF of 4 transforms of
#: two 64-unit layers (at least D), trained five times as long at 0.4 times the learning rate with twice the
#: particles: a flow's networks start near the identity and have far to go, in small steps (posteriordb's latent GP
#: gp_pois_regr: 0.03 / 0.08 sds, where the Gaussians and the mixture were 0.4-0.6 off, and the registry's iaf,
#: 2 transforms over the same steps as the Gaussians, 0.12 / 0.33).
AUTO_LADDER = (
    Rung("laplace"),
    Rung("fullrank"),
    Rung("mixture"),
    Rung("fullrank", "iwae", steps=2.0, lr=2.0, objective="iwae:128", last_resort=True),
    Rung("iaf", "deep", {"depth": 4, "width": 64}, steps=5.0, lr=0.4, particles=2.0, last_resort=True),
)
#: the ladder in words, as --help and the docs show it
AUTO_LADDER_TEXT = " -> ".join(rung.label for rung in AUTO_LADDER)


def checked_guides(names: Iterable[str], auto: bool = False) -> list[str]:
    """``names`` without repeats, in order, each a guide of :data:`GUIDES` (or :data:`AUTO`, where ``auto``): the
    one check of a guide's name.

    Raises:
        InputError: "unknown guide 'x'; expected one of laplace, meanfield, ..." (or none given).
    """
    names = list(dict.fromkeys(names))
    known = list(GUIDES) + ([AUTO] if auto else [])
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        what = f"unknown guide {', '.join(map(repr, unknown))}" if unknown else "no guide given"
        hint = " (auto is a ladder of them: deepprob.fit or compare)" if AUTO in unknown else ""
        raise InputError(f"{what}; expected one of {', '.join(known)}{hint}")
    return names


def build_guide(name: str, model: Callable, options: GuideOptions | None = None):
    """A fresh guide of family ``name`` for ``model``; its parameters are created on the first call."""
    import importlib

    try:
        checked_guides([name])
    except InputError as err:
        raise InputError(f"--guide {name!r}: {err}") from None
    import pyro

    # guides own their parameters (as every fit of deepprob.fit_svi expects): set before the guide is made, for a
    # guide built before any fit module is imported
    pyro.settings.set(module_local_params=True)
    options = options or GuideOptions()
    if options.start_jitter and options.start == "prior":
        from dataclasses import replace

        from deepprob.logdensity import init_uniform

        options = replace(options, init_loc_fn=init_uniform)
    module_name, function = GUIDES[name].split(":")
    guide = getattr(importlib.import_module(module_name), function)(model, options)
    guide.start_jitter = options.start_jitter  # every family of the registry is a Family (the protocol's)
    return guide
