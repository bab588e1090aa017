"""Log densities of Pyro programs: the one place where a model and a guide become log p and log q.

Every computation of log p(x, z) - log q(z) in deepprob comes through here: the compiled SVI step,
the Laplace approximation, the mixture guide's search for modes, the importance weights of PSIS and
of a VAE's log-likelihood, the pointwise log-likelihood of ArviZ's InferenceData.

- :class:`ModelStructure`: what one trace of a model says, found once: its plate nesting, its latent,
  observed and deterministic sites with their shapes and supports, and the packing of the latent
  sites into one unconstrained vector (the order and shapes of Pyro's ``AutoContinuous`` guides).
  The trace draws no sample from a prior (:func:`init_median`): flat priors (``ImproperUniform``, as
  in Stan models that declare none) cannot be sampled.
  :meth:`ModelStructure.check` fails fast on a model that cannot be used, naming its file, line or site;
  :meth:`ModelStructure.broadcasting` gives the model in a form that runs S draws at once, whether or not
  it broadcasts as written (:mod:`deepprob.batching`).
- :mod:`deepprob.traces`: the log densities of traces, and the model run for S draws at once.
- :meth:`ModelStructure.log_joint_unconstrained`: log p(x, T(u)) + log |det dT/du| at unconstrained
  vectors u (S, D): the density that guides over the unconstrained space approximate.
- :func:`init_median`, :func:`init_feasible`, :func:`init_uniform`: Pyro's initialisation rules, for
  priors that cannot be sampled too.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pyro
import torch
from pyro import poutine
from pyro.distributions.util import sum_rightmost
from pyro.infer.autoguide import init_to_median
from pyro.infer.autoguide.initialization import InitMessenger
from torch.distributions import biject_to, transform_to
from torch.distributions.transforms import IndependentTransform, identity_transform

from deepprob.batching import BroadcastingTwin, choose, one_draw, over_draws, probe_draws, probe_values
from deepprob.errors import InputError, ModelError, model_name, model_raised
from deepprob.subsample import full_data
from deepprob.traces import draws_first, in_plate_layout, log_prob_sum, run_model, sample_sites

# --- initialisation without sampling the prior ---------------------------------------------------


def _unconstrained_like(site, fill: Callable[[torch.Size], torch.Tensor]) -> torch.Tensor:
    fn = site["fn"]
    transform = transform_to(fn.support)
    value = transform(fill(transform.inverse_shape(fn.batch_shape + fn.event_shape)))
    value._pyro_custom_init = False
    return value


def init_feasible(site=None):
    """The point 0 of the unconstrained space (Pyro's ``init_to_feasible``, without drawing a sample)."""
    if site is None:
        return init_feasible
    return _unconstrained_like(site, lambda shape: torch.zeros(shape))


def init_uniform(site=None, radius: float = 2.0):
    """Uniform in (-radius, radius) of the unconstrained space (Pyro's ``init_to_uniform``, without
    drawing a sample): dispersed starts for NUTS chains and for a search of modes."""
    if site is None:
        return functools.partial(init_uniform, radius=radius)
    return _unconstrained_like(site, lambda shape: torch.rand(shape) * (2 * radius) - radius)


def init_sample(site=None):
    """A draw of the prior (Pyro's ``init_to_sample``); for a prior that cannot be sampled, uniform in
    (-2, 2) of the unconstrained space (:func:`init_uniform`)."""
    if site is None:
        return init_sample
    try:
        value = site["fn"].sample().detach()
    except NotImplementedError:
        return init_uniform(site)
    value._pyro_custom_init = False
    return value


def init_median(site=None):
    """The prior median (Pyro's ``init_to_median``); a prior that cannot be sampled (a flat
    ``ImproperUniform``) starts at :func:`init_feasible`."""
    if site is None:
        return init_median
    try:
        return init_to_median(site, fallback=init_feasible)
    except NotImplementedError:  # a multivariate prior, which Pyro starts with one sample of it
        return init_feasible(site)


# --- the structure of a model --------------------------------------------------------------------


@dataclass(frozen=True)
class Site:
    """One site of a model as its prototype trace shows it (one draw).

    Attributes:
        batch_shape, event_shape: of the site's distribution (batch dims come from plates).
        support: its constraint (latent sites).
        plates: the plates it lies in, (name, size, dim) each.
        value_shape: the shape of its value (of an observed site: the data's).
    """

    name: str
    batch_shape: torch.Size
    event_shape: torch.Size
    support: object = None
    plates: tuple[tuple[str, int, int], ...] = ()
    value_shape: torch.Size | None = None

    @property
    def shape(self) -> torch.Size:
        return self.batch_shape + self.event_shape


def bare_model(model: Callable) -> Callable:
    """``model`` without the initialisation handlers that Pyro's ``AutoContinuous`` guides wrap their model in
    (``guide.model`` is ``InitMessenger(init_loc_fn)(model)``): run conditioned on values, such a handler still
    draws the prior medians it would start from, random numbers a log density must not use.

    A handler wraps a function as ``partial(_context_wrap, handler, fn)``, Pyro's private layout, read here
    alone (``tests/test_batching.py`` fails if it changes).
    """
    while (isinstance(model, functools.partial) and len(model.args) == 2
           and isinstance(model.args[0], InitMessenger)):
        model = model.args[1]
    return model


_STRUCTURES: collections.OrderedDict = collections.OrderedDict()  # (model, arguments' fingerprint) -> structure
_STRUCTURES_KEPT = 16


def _fingerprint(value) -> object:
    """What identifies a model's arguments for :data:`_STRUCTURES`: each tensor by identity, shape, type and
    version (an in-place change makes a new fingerprint), containers by their contents, other values as they are
    (or by identity where they cannot be hashed)."""
    if isinstance(value, torch.Tensor):
        return ("tensor", id(value), tuple(value.shape), value.dtype, value.device, value._version)
    if isinstance(value, dict):
        return ("dict",) + tuple((key, _fingerprint(v)) for key, v in value.items())
    if isinstance(value, (list, tuple)):
        return (type(value).__name__,) + tuple(_fingerprint(v) for v in value)
    try:
        hash(value)
    except TypeError:
        return ("object", id(value))
    return value


@dataclass
class ModelStructure:
    """The plate nesting and the sites of ``model(*args, **kwargs)``, from one trace (see the module doc).

    The trace is of the full data: a plate that subsamples runs over all its rows (:mod:`deepprob.subsample`).

    Attributes:
        nesting: how many plate dims the model nests (draws go at dim -(nesting + 1)); at least as many as any
            site's batch dims (a vector of observations of one scalar distribution, without a plate, has one).
        latent, observed, deterministic: the sites by name, in the model's order.
        subsampled: the plates that subsample, {name: (size N, subsample size B)}.
        local: the latent sites inside a plate that subsamples (one variable a row).
        name: the model's ``file.py:function``, for messages.
    """

    nesting: int
    latent: dict[str, Site]
    observed: dict[str, Site]
    deterministic: dict[str, Site]
    subsampled: dict[str, tuple[int, int]] = dataclasses.field(default_factory=dict)
    local: tuple[str, ...] = ()
    name: str = "model"
    model: Callable | None = dataclasses.field(default=None, repr=False, compare=False)
    args: tuple = dataclasses.field(default=(), repr=False, compare=False)
    kwargs: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @property
    def unplated(self) -> bool:
        """Whether some site has batch dims that no plate claims (then :attr:`nesting` counts them too)."""
        return any(len(site.batch_shape) > max([0] + [-dim for _, _, dim in site.plates])
                   for site in {**self.latent, **self.observed}.values())

    @classmethod
    def of(cls, model: Callable, *args, **kwargs) -> ModelStructure:
        """The structure of ``model(*args, **kwargs)`` (the same object again for the same model and arguments).

        Raises:
            ModelError: the model raised (the message names its file, function and line).
        """
        model = bare_model(model)
        key = (model, _fingerprint((args, kwargs, torch.get_default_dtype())))
        try:
            found = _STRUCTURES.get(key)
        except TypeError:  # a model that cannot be hashed: not kept
            found, key = None, None
        if found is not None:
            _STRUCTURES.move_to_end(key)
            return found
        structure = cls._trace(model, args, kwargs)
        if key is not None:
            _STRUCTURES[key] = structure
            while len(_STRUCTURES) > _STRUCTURES_KEPT:
                _STRUCTURES.popitem(last=False)
        return structure

    @classmethod
    def _trace(cls, model: Callable, args: tuple, kwargs: dict) -> ModelStructure:
        # off the record: the trace's draws (the prior medians) leave the random numbers as they were
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        subsampled = {}
        try:
            with full_data(record=subsampled), torch.random.fork_rng(devices), torch.no_grad(), poutine.block(), \
                    InitMessenger(init_median):
                trace = poutine.trace(model).get_trace(*args, **kwargs)
        except (InputError, KeyboardInterrupt):
            raise
        except Exception as err:  # noqa: BLE001 - the user's code: one line naming where it failed
            raise model_raised(model, err) from err
        nesting, latent, observed, deterministic, local = 0, {}, {}, {}, []
        for name, site in sample_sites(trace):
            frames = [f for f in site["cond_indep_stack"] if f.vectorized]
            nesting = max([nesting] + [-f.dim for f in frames])
            plates = tuple((f.name, f.size, f.dim) for f in frames)
            fn, value = site["fn"], site["value"]
            # data may broadcast the distribution's batch shape (one Normal for a vector of observations): the
            # site's log density has the shape of both
            batch = torch.broadcast_shapes(fn.batch_shape, value.shape[:max(0, value.dim() - len(fn.event_shape))])
            entry = Site(name, batch, fn.event_shape, fn.support, plates, value.shape)
            if not site["infer"].get("_deterministic"):  # batch dims outside any plate push the draws left too
                nesting = max(nesting, len(batch))
            if site["infer"].get("_deterministic"):
                # its value's shape (a deterministic site in a plate has the plate's dims twice in its fn)
                deterministic[name] = Site(name, torch.Size(), site["value"].shape, plates=plates)
            elif site["is_observed"]:
                observed[name] = entry
            else:
                latent[name] = entry
                if any(f.name in subsampled for f in frames):
                    local.append(name)
        return cls(nesting, latent, observed, deterministic, subsampled, tuple(local), model_name(model), model,
                   args, kwargs)

    def require_continuous(self) -> None:
        """Raise ModelError for a latent site that is discrete (SVI with these guides, and NUTS, need
        continuous latent variables)."""
        for site in self.latent.values():
            if site.support.is_discrete:
                raise ModelError(f"model {self.name}: the latent site {site.name!r} is discrete ({site.support}); "
                                 "expected continuous latent variables (marginalise it out, or observe it)")

    def check(self) -> ModelStructure:
        """Fail fast, before any fit: a model with no latent site, a discrete one, observed data that its site's
        distribution broadcasts beyond, or a log density that is not finite at the initial point (the prior
        medians) is a ModelError naming the model and the site. Returns the structure."""
        if not self.latent:
            raise ModelError(f"model {self.name}: no latent site (every pyro.sample has obs=...); expected at least "
                             "one latent variable to infer")
        self.require_continuous()
        for site in self.observed.values():
            times = math.prod(site.shape) // max(1, math.prod(site.value_shape))
            if times > 1:
                raise ModelError(
                    f"model {self.name}: site {site.name!r} has the shape {tuple(site.shape)} but its data "
                    f"{tuple(site.value_shape)}, so each observation would count {times} times; "
                    "expected the distribution's shape to be the data's (a (N, 1) mean against (N,) data, say: "
                    "reshape one of them)")
        self._packing  # noqa: B018 - a support without a map to the real line is an error here, not later
        probe = self._probe
        bad = {name: float(value) for name, value in probe["initial"].items() if not math.isfinite(float(value))}
        if bad:
            name, value = next(iter(bad.items()))
            more = f" (and {', '.join(list(bad)[1:])})" if len(bad) > 1 else ""
            raise ModelError(f"model {self.name}: site {name!r}{more} has log density {value} at the initial point "
                             "(the prior medians of the latent sites); expected a finite number: check the site's "
                             "parameters and its data")
        return self

    @functools.cached_property
    def _probe(self) -> dict:
        """The model at the initial point and near it, draw by draw (as Pyro runs it), and the way the draws run
        (:func:`deepprob.batching.choose`): ``how``, ``why`` (not ``"plate"``), ``initial`` ({site: its log
        density at the initial point})."""
        if not self.latent or any(site.support.is_discrete for site in self.latent.values()) or self.model is None:
            return {"how": "plate", "why": None, "initial": {}}
        model, args, kwargs = self.model, self.args, self.kwargs
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        # off the record: the medians drawn for the initial point leave the random numbers as they were
        # without argument checks: a density that is not finite is said as such, naming its site
        with torch.random.fork_rng(devices), torch.no_grad(), pyro.validation_enabled(False):
            u0 = self.initial_point(model, *args, **kwargs)
            values = probe_values(self, u0, probe_draws(self, args, kwargs))
            one = functools.partial(one_draw, model, args, kwargs, self)
            try:
                reference = over_draws(one, {k: v[:1] for k, v in values.items()}, "loop")
            except (InputError, KeyboardInterrupt):
                raise
            except Exception as err:  # noqa: BLE001 - the user's code, at the initial point
                raise model_raised(model, err, "(at the initial point: the prior medians)") from err
            initial = {name: lp[0].sum() for name, lp in reference["log_prob"].items()}
            try:  # near the initial point too, where the model can be evaluated there
                reference = over_draws(one, values, "loop")
            except Exception:  # noqa: BLE001
                values = {k: v[:1] for k, v in values.items()}
            how, why = choose(model, args, kwargs, self, values, reference)
        return {"how": how, "why": why, "initial": initial}

    @property
    def batching(self) -> str:
        """How the model runs at S draws at once: ``"plate"`` (it broadcasts), ``"vmap"`` or ``"loop"``
        (:mod:`deepprob.batching`)."""
        return self._probe["how"]

    @property
    def batching_note(self) -> str | None:
        """What a user is told when the model does not broadcast (None when it does)."""
        probe = self._probe
        if probe["how"] == "plate":
            return None
        way = ("torch.func.vmap over the draws" if probe["how"] == "vmap"
               else "a Python loop over the draws (vmap could not batch it): slower")
        return (f"model {self.name} does not broadcast over a leading dim of draws ({probe['why']}); its draws run "
                f"one by one, by {way} (a model that broadcasts runs them in one pass: the docs' guide/own_model, "
                "'Models as written')")

    def broadcasting(self, model: Callable | None = None) -> Callable:
        """``model`` (default: the one this structure is of) as a model that broadcasts over a plate of draws:
        itself where it does, else its :class:`~deepprob.batching.BroadcastingTwin`."""
        model = self.model if model is None else bare_model(model)
        if self.batching == "plate":
            return model
        return BroadcastingTwin(model, self, self.batching)

    # the unconstrained latent vector, packed as Pyro's AutoContinuous packs it
    @functools.cached_property
    def _packing(self) -> list[tuple[Site, object, torch.Size, int]]:
        out = []
        for site in self.latent.values():
            try:
                transform = biject_to(site.support)
            except NotImplementedError:
                raise ModelError(f"model {self.name}: site {site.name!r} has the support {site.support}, which has "
                                 "no map to an unconstrained space; expected a support of torch.distributions' "
                                 "constraints with a bijection (real, positive, interval, simplex, ...)") from None
            shape = torch.Size(transform.inverse_shape(site.shape))
            event_dim = len(site.event_shape) + len(shape) - len(site.shape)
            out.append((site, transform, shape, event_dim))
        return out

    @staticmethod
    def _is_identity(transform) -> bool:
        while isinstance(transform, IndependentTransform):
            transform = transform.base_transform
        return transform == identity_transform

    @property
    def real_latents(self) -> bool:
        """Every latent site has real support: the unconstrained latent vector holds the values themselves."""
        return all(self._is_identity(transform) for _, transform, _, _ in self._packing)

    @property
    def latent_dim(self) -> int:
        """D, the size of the unconstrained latent vector."""
        return sum(math.prod(shape) for _, _, shape, _ in self._packing)

    def pack(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """One draw's constrained latent values {site: value} as the unconstrained vector (D,)."""
        return torch.cat([transform.inv(values[site.name]).reshape(-1) for site, transform, _, _ in self._packing])

    def pack_draws(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """S draws of the latent sites {site: (S, *site shape)}, constrained, as unconstrained vectors (S, D)."""
        S = len(next(iter(values.values())))
        return torch.cat([transform.inv(values[site.name]).reshape(S, -1) for site, transform, _, _ in self._packing],
                         1)

    def unconstrained_labels(self) -> list[str]:
        """A label for each coordinate of the unconstrained vector: ``site`` or ``site[i]`` (1-based), and
        ``u(site)`` where the site's support is not the real line (its coordinate is transformed)."""
        from deepprob.names import labels_of

        out = []
        for site, transform, shape, _ in self._packing:
            name = site.name if self._is_identity(transform) else f"u({site.name})"
            out += labels_of(name, shape)
        return out

    def initial_point(self, model: Callable, *args, init_fn: Callable = init_median, **kwargs) -> torch.Tensor:
        """The unconstrained vector (D,) of the latent values that the per-site rule ``init_fn`` gives."""
        with full_data(), torch.no_grad(), poutine.block(), InitMessenger(init_fn):
            trace = poutine.trace(model).get_trace(*args, **kwargs)
        return self.pack({name: trace.nodes[name]["value"] for name in self.latent}).detach()

    def unpack(self, u: torch.Tensor) -> Iterator[tuple[Site, object, torch.Tensor]]:
        """(site, transform, unconstrained value) for S vectors ``u`` (S, D); each value broadcasts in the
        draws' plate (as ``AutoContinuous._unpack_latent`` lays it out)."""
        S, pos = u.shape[0], 0
        batch = (S,) + (1,) * self.nesting
        for site, transform, shape, event_dim in self._packing:
            size = math.prod(shape)
            value = u[:, pos:pos + size].reshape(torch.broadcast_shapes(shape, batch + (1,) * event_dim))
            yield site, transform, value
            pos += size

    def log_joint_unconstrained(self, model: Callable, *args, **kwargs) -> Callable[..., torch.Tensor]:
        """u (S, D) -> (S,): log p(x, T(u)) + log |det dT/du| at S unconstrained vectors, vectorised.

        ``log_joint(u, batch)`` with ``batch`` ({plate: indices (B,)}) estimates it from those rows of the
        subsampled plates (their log-likelihood scaled by N / B); without, it is of the full data.
        """
        program, args = self.broadcasting(model), tuple(args)

        def log_joint(u: torch.Tensor, batch: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
            S = u.shape[0]
            values, total = {}, u.new_zeros(S)
            for site, transform, unconstrained in self.unpack(u):
                values[site.name] = value = transform(unconstrained)
                ladj = transform.log_abs_det_jacobian(unconstrained, value)
                ladj = sum_rightmost(ladj, ladj.dim() - value.dim() + len(site.event_shape))
                total = total + ladj.reshape(S, -1).sum(-1)
            model_trace, _ = run_model(program, args, kwargs, draws=S, nesting=self.nesting, values=values,
                                       batch=batch)
            return total + log_prob_sum(model_trace, S, self.nesting)

        return log_joint

    def broadcastable(self, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Draws of sites, (S, *site shape) each, reshaped to lie in the draws' plate of :func:`run_model`."""
        out = {}
        for name, value in values.items():
            site = self.latent.get(name) or self.deterministic.get(name) or self.observed.get(name)
            out[name] = in_plate_layout(value, len(site.batch_shape) if site is not None else 0, self.nesting)
        return out

    def draws_of(self, trace, names, draws: int) -> dict[str, torch.Tensor]:
        """The values of the sites ``names`` in a trace of :func:`run_model`: (draws, *site shape) each
        (a value that does not depend on the draws is repeated)."""
        sites = {**self.latent, **self.observed, **self.deterministic}
        # detached: under no_grad a view of a parameter (a point mass's draw) still requires grad
        return {name: draws_first(trace.nodes[name]["value"].detach(), draws, sites[name].shape) for name in names}
