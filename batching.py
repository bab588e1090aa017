"""How a model runs at S draws at once: broadcast in a plate of draws, or draw by draw.

deepprob evaluates a model at S draws of its latent variables at once, in a plate of draws left of the
model's own plates (:func:`deepprob.traces.run_model`, as ``Trace_ELBO(vectorize_particles=True)`` does with
its particles): every latent site then holds S values along that dim, and so does every tensor the model
computes from them. That is fast, one pass for all draws, but it asks the model to broadcast, and models as
people write them often do not: ``x @ beta`` with ``beta`` of shape (K,) meets a (S, 1, K) tensor, ``a[g]``
indexes the draws' dim instead of the groups', ``h[t]`` in a loop over time picks a draw, not a time.

:func:`choose` runs the model at a few points as Pyro runs it (one value a site, the shapes the user wrote
for), then the faster ways, and keeps the first that gives the same log densities and deterministic values:

- ``"plate"``: the model broadcasts; it runs as it is.
- ``"vmap"``: ``torch.func.vmap`` over the draws: the model sees one draw's shapes and torch batches each of
  its operations, nearly as fast as broadcasting. It needs no Python control flow on the latent values
  (``if sigma > 1``, ``.item()``) and no in-place writes of them into other tensors.
- ``"loop"``: one draw at a time, in Python: always right, S times the work of the Python code.

:class:`BroadcastingTwin` turns a model that needs ``"vmap"`` or ``"loop"`` into one that broadcasts: the
same sites, in the same plates, with the same values and log densities, each computed draw by draw inside.
Whatever runs models in a plate of draws (Pyro's ``Trace_ELBO`` with vectorised particles, the draws put
through the model, the compiled engine) takes the twin as it takes any model, and its guide's draws use the
random numbers they would use with a model that broadcasts: the same numbers from the same seed.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable

import pyro
import torch
from pyro import poutine
from pyro.distributions import TorchDistribution, constraints

from deepprob.errors import one_line, raised_at
from deepprob.subsample import full_data
from deepprob.traces import draws_first, in_plate_layout, run_model, site_log_prob

HOWS = ("plate", "vmap", "loop")
PROBE_DRAWS = 3       # draws at which the ways are compared (at least): the initial point and points near it
PROBE_SPREAD = 0.1    # how far from it, in the unconstrained space
RTOL, ATOL = 1e-4, 1e-5


def one_draw(model: Callable, args: tuple, kwargs: dict, structure, values: dict[str, torch.Tensor],
             replicate: bool = False) -> dict[str, dict[str, torch.Tensor]]:
    """The model at one draw of its latent sites (``values``, their own shapes), traced apart from any handler
    around it: ``{"log_prob": {sample site: (*batch)}, "value": {deterministic or observed site: value}}``, and
    with ``replicate`` ``{"replicate": {observed site: a draw of its distribution}}`` instead."""
    with poutine.block(), full_data():
        trace = poutine.trace(poutine.condition(model, values)).get_trace(*args, **kwargs)
    nodes = trace.nodes
    if replicate:
        return {"replicate": {name: nodes[name]["fn"].sample() for name in structure.observed}}
    log_prob = {name: site_log_prob(nodes[name]).expand(site.batch_shape)
                for name, site in {**structure.latent, **structure.observed}.items()}
    value = {name: nodes[name]["value"] for name in {**structure.deterministic, **structure.observed}}
    return {"log_prob": log_prob, "value": value}


def over_draws(fn: Callable, values: dict[str, torch.Tensor], how: str, randomness: str = "error"):
    """``fn`` (one draw's values -> nested dicts of tensors) at S draws ``values`` ({site: (S, *shape)}): the
    same dicts, each tensor (S, ...). ``how``: ``"vmap"`` or ``"loop"``; ``randomness``: vmap's (what random
    draws inside ``fn`` do: ``"error"``, or ``"different"`` for a replicate per draw)."""
    if how == "vmap":
        # distributions check their arguments with Python branches on tensor values, which vmap cannot batch
        with pyro.validation_enabled(False):
            return torch.func.vmap(fn, randomness=randomness)(values)
    S = len(next(iter(values.values())))
    outs = [fn({name: value[s] for name, value in values.items()}) for s in range(S)]
    return {group: {name: torch.stack([out[group][name] for out in outs]) for name in outs[0][group]}
            for group in outs[0]}


def probe_draws(structure, args: tuple, kwargs: dict) -> int:
    """How many draws the ways are compared at: at least :data:`PROBE_DRAWS`, and no size of any dim of the
    model's data or sites (a plate of draws of the data's length would broadcast by coincidence)."""
    sizes = set()

    def collect(value):
        if isinstance(value, torch.Tensor):
            sizes.update(value.shape)
        elif isinstance(value, dict):
            for v in value.values():
                collect(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                collect(v)

    collect((args, kwargs))
    for site in {**structure.latent, **structure.observed, **structure.deterministic}.values():
        sizes.update(site.shape)
    draws = PROBE_DRAWS
    while draws in sizes:
        draws += 1
    return draws


def probe_values(structure, u0: torch.Tensor, draws: int = PROBE_DRAWS) -> dict[str, torch.Tensor]:
    """``draws`` draws of the latent sites, {site: (S, *shape)}: the unconstrained point ``u0`` (D,) and points
    near it (from a generator of their own: the global random numbers are not touched)."""
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn((draws - 1, len(u0)), generator=generator, dtype=u0.dtype).to(u0.device)
    u = torch.cat([u0.unsqueeze(0), u0 + PROBE_SPREAD * noise])
    return {site.name: transform(value).reshape((len(u),) + site.shape)
            for site, transform, value in structure.unpack(u)}


def _differ(got: dict, want: dict) -> str | None:
    """Where two evaluations' outputs differ (``"site 'y': ..."``), or None when they agree."""
    for group, sites in want.items():
        for name, expected in sites.items():
            value = got[group][name]
            if value.shape != expected.shape:
                return f"site {name!r} has shape {list(value.shape)[1:]}, not {list(expected.shape)[1:]}"
            if not torch.allclose(value.double(), expected.double(), rtol=RTOL, atol=ATOL, equal_nan=True):
                return f"site {name!r} has other values than the draws' one by one"
    return None


def in_plate(model: Callable, args: tuple, kwargs: dict, structure, values: dict[str, torch.Tensor]) -> dict:
    """What :func:`one_draw` gives, for S draws at once in the plate of draws (the model broadcasting)."""
    S = len(next(iter(values.values())))
    trace, _ = run_model(model, args, kwargs, draws=S, nesting=structure.nesting,
                         values=structure.broadcastable(values))
    nodes = trace.nodes
    log_prob = {name: draws_first(site_log_prob(nodes[name]).expand(_plate_shape(S, site.batch_shape, structure)),
                                  S, site.batch_shape)
                for name, site in {**structure.latent, **structure.observed}.items()}
    value = {name: draws_first(nodes[name]["value"], S, site.shape)
             for name, site in {**structure.deterministic, **structure.observed}.items()}
    return {"log_prob": log_prob, "value": value}


def _plate_shape(S: int, batch_shape: torch.Size, structure) -> tuple:
    return (S,) + (1,) * max(0, structure.nesting - len(batch_shape)) + tuple(batch_shape)


def choose(model: Callable, args: tuple, kwargs: dict, structure, values: dict[str, torch.Tensor],
           reference: dict) -> tuple[str, str | None]:
    """``(how, why not "plate")``: the first of :data:`HOWS` whose evaluation at the draws ``values``
    ({site: (S, *shape)}) gives ``reference``, the model's outputs draw by draw (:func:`one_draw`)."""
    try:
        problem = _differ(in_plate(model, args, kwargs, structure, values), reference)
    except Exception as err:  # noqa: BLE001 - whatever the model does with a dim it was not written for
        where = raised_at(err, model)
        problem = f"{where + ': ' if where else ''}{one_line(err, 160)}"
    if problem is None:
        return "plate", None
    try:
        batched = over_draws(functools.partial(one_draw, model, args, kwargs, structure), values, "vmap")
        if _differ(batched, reference) is None:
            return "vmap", problem
    except Exception:  # noqa: BLE001 - a construct vmap cannot batch: the loop takes it
        pass
    return "loop", problem


# --- the broadcasting twin of a model that does not broadcast --------------------------------------


class _Computed(TorchDistribution):
    """A twin's site: its log density (and, for an observed site, its replicates) computed draw by draw by the
    twin's :class:`_Evaluation`, once every latent value is known. No sample of a latent site is ever drawn
    here: the twin's latent sites are replayed from a guide or conditioned on values."""

    arg_constraints = {}

    def __init__(self, evaluation: _Evaluation, name: str, site, batch_shape=None):
        self.evaluation, self.name, self.site = evaluation, name, site
        batch_shape = site.batch_shape if batch_shape is None else torch.Size(batch_shape)
        super().__init__(batch_shape, site.event_shape, validate_args=False)

    @property
    def support(self):
        return self.site.support if self.site.support is not None else constraints.real

    def expand(self, batch_shape, _instance=None):
        return _Computed(self.evaluation, self.name, self.site, batch_shape)

    def log_prob(self, value):
        return self.evaluation.log_prob(self.name)

    def sample(self, sample_shape=()):
        return self.evaluation.replicate(self.name, torch.Size(sample_shape))


class _Evaluation:
    """One run of a :class:`BroadcastingTwin`: its latent values, then the model's outputs draw by draw."""

    def __init__(self, twin: BroadcastingTwin, args: tuple, kwargs: dict):
        self.twin, self.args, self.kwargs = twin, args, kwargs
        self.values: dict[str, torch.Tensor] = {}
        self.outputs: dict | None = None
        self.replicates: dict | None = None

    def run(self) -> None:
        structure = self.twin.structure
        shapes = {name: structure.latent[name].shape for name in self.values}
        self.draws = max(value.numel() // max(1, math.prod(shapes[name])) for name, value in self.values.items())
        # a plate of draws around the twin (run_model's, Trace_ELBO's particles): the values have more dims
        self.plated = any(value.dim() > len(shapes[name]) for name, value in self.values.items())
        self.draw_values = {name: draws_first(value, self.draws, shapes[name]) for name, value in self.values.items()}
        self.outputs = over_draws(self._one, self.draw_values, self.twin.how)

    def _one(self, values, replicate=False):
        return one_draw(self.twin.model, self.args, self.kwargs, self.twin.structure, values, replicate)

    def _layout(self, value: torch.Tensor, batch_dims: int) -> torch.Tensor:
        """Draws-first (S, ...) as the twin's caller lays out its draws: in the plate, or one draw's own."""
        return in_plate_layout(value, batch_dims, self.twin.structure.nesting) if self.plated else value[0]

    def log_prob(self, name: str) -> torch.Tensor:
        site = self.twin.structure.latent.get(name) or self.twin.structure.observed[name]
        return self._layout(self.outputs["log_prob"][name], len(site.batch_shape))

    def value(self, name: str) -> torch.Tensor:
        """A deterministic site's value, in the caller's layout (its draws first in a plate)."""
        value = self.outputs["value"][name]
        return in_plate_layout(value, 0, self.twin.structure.nesting) if self.plated else value[0]

    def observed(self, name: str) -> torch.Tensor:
        return self.outputs["value"][name][0]  # the data: the same at every draw

    def replicate(self, name: str, sample_shape: torch.Size) -> torch.Tensor:
        """A replicate of observed site ``name`` per draw (all sites' drawn at the first call)."""
        if name not in self.twin.structure.observed:
            raise RuntimeError(f"site {name!r} of the broadcasting twin was not replayed or conditioned; "
                               "a twin's latent sites are never drawn")
        if self.replicates is None:
            one = functools.partial(self._one, replicate=True)
            try:
                self.replicates = over_draws(one, self.draw_values, self.twin.how, randomness="different")
            except Exception:  # noqa: BLE001 - a sampler vmap cannot batch: one draw at a time
                self.replicates = over_draws(one, self.draw_values, "loop")
        site = self.twin.structure.observed[name]
        value = self._layout(self.replicates["replicate"][name], len(site.batch_shape))
        return value.expand(sample_shape + value.shape) if sample_shape else value


def _plates(site, made: dict) -> contextlib.ExitStack:
    """The site's plates, each made once a run (``made``, by name: a plate's name is a site of the trace, which
    Pyro records once) and entered as often as sites lie in it."""
    stack = contextlib.ExitStack()
    for name, size, dim in site.plates:
        if name not in made:
            made[name] = pyro.plate(name, size, dim=dim)
        stack.enter_context(made[name])
    return stack


class BroadcastingTwin:
    """A model that broadcasts over a plate of draws, made from one that does not (``how``: ``"vmap"`` or
    ``"loop"``, see the module's doc): its latent sites, then its deterministic and observed ones, in the
    model's plates, with the model's values and log densities, computed one draw at a time inside.

    Args:
        model: the model as written; ``structure``: its :class:`~deepprob.logdensity.ModelStructure`.
    """

    def __init__(self, model: Callable, structure, how: str):
        if how not in ("vmap", "loop"):
            raise ValueError(f"how {how!r}: expected 'vmap' or 'loop'")
        self.model, self.structure, self.how = model, structure, how
        functools.update_wrapper(self, model, updated=())

    def __call__(self, *args, **kwargs):
        structure = self.structure
        evaluation, plates = _Evaluation(self, args, kwargs), {}
        for name, site in structure.latent.items():
            with _plates(site, plates):
                evaluation.values[name] = pyro.sample(name, _Computed(evaluation, name, site))
        evaluation.run()
        for name in structure.deterministic:
            pyro.deterministic(name, evaluation.value(name))
        for name, site in structure.observed.items():
            with _plates(site, plates):
                pyro.sample(name, _Computed(evaluation, name, site), obs=evaluation.observed(name))
