"""Log densities of Pyro programs: the one place where a model and a guide become log p and log q.

Every computation of log p(x, z) - log q(z) in deepprob comes through here: the compiled SVI step,
the Laplace approximation, the mixture guide's search for modes, the importance weights of PSIS and
of a VAE's log-likelihood, the pointwise log-likelihood of ArviZ's InferenceData.

- :class:`ModelStructure`: what one trace of a model says, found once: its plate nesting, its latent,
  observed and deterministic sites with their shapes and supports, and the packing of the latent
  sites into one unconstrained vector (the order and shapes of Pyro's ``AutoContinuous`` guides).
  The trace draws no sample from a prior (:func:`init_median`): flat priors (``ImproperUniform``, as
  in Stan models that declare none) cannot be sampled.
- :func:`run_model`: the model traced for S draws at once, vectorised in a plate left of its own
  plates (as ``Trace_ELBO`` vectorises particles), replaying a guide's trace or conditioned on values.
- :func:`site_log_prob`, :func:`log_prob_sum`: the scaled and masked log densities of sample sites,
  summed over a trace, per draw or in all.
- :meth:`ModelStructure.log_joint_unconstrained`: log p(x, T(u)) + log |det dT/du| at unconstrained
  vectors u (S, D): the density that guides over the unconstrained space approximate.
- :func:`init_median`, :func:`init_feasible`, :func:`init_uniform`: Pyro's initialisation rules, for
  priors that cannot be sampled too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pyro
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask, sum_rightmost
from pyro.infer.autoguide import init_to_median
from pyro.infer.autoguide.initialization import InitMessenger
from pyro.poutine.util import site_is_subsample
from torch.distributions import biject_to, transform_to
from torch.distributions.transforms import IndependentTransform, identity_transform

from deepprob.errors import InputError
from deepprob.subsample import full_data, on_batch

DRAWS_PLATE = "_deepprob_draws"


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


# --- log densities of traces ---------------------------------------------------------------------


def sample_sites(trace) -> Iterator[tuple[str, dict]]:
    """The sample sites of ``trace`` (observed or not), without the subsample sites of plates."""
    for name, site in trace.nodes.items():
        if site["type"] == "sample" and not site_is_subsample(site):
            yield name, site


def site_log_prob(site) -> torch.Tensor:
    """log p of a sample site's value, summed over its event dims, scaled and masked as Pyro does."""
    return scale_and_mask(site["fn"].log_prob(site["value"]), site["scale"], site["mask"])


def per_draw(log_prob: torch.Tensor, draws: int, nesting: int) -> torch.Tensor:
    """A site's log density summed over every dim but the draws' (dim -(nesting + 1)): shape (draws,).

    A site outside the draws' plate (it does not depend on them) counts the same for every draw.
    """
    log_prob = log_prob.reshape((1,) * max(0, nesting + 1 - log_prob.dim()) + log_prob.shape)
    # the dims up to the draws' one kept, the plates' dims right of it summed
    log_prob = log_prob.reshape(log_prob.shape[: log_prob.dim() - nesting] + (-1,)).sum(-1).reshape(-1)
    return log_prob.expand(draws) if log_prob.numel() == 1 else log_prob.reshape(draws)


def log_prob_sum(trace, draws: int | None = None, nesting: int = 0, batch: bool = False,
                 sites: Callable[[str, dict], bool] | None = None) -> torch.Tensor:
    """The sum of :func:`site_log_prob` over the sample sites of ``trace`` (those ``sites`` accepts).

    ``draws``: per draw, shape (draws,), the draws in dim -(nesting + 1) (:func:`run_model`).
    ``batch``: the site log densities broadcast together, batch dims kept (a VAE's (K, N) weights).
    Otherwise: one number.
    """
    total = None
    for name, site in sample_sites(trace):
        if sites is not None and not sites(name, site):
            continue
        lp = site_log_prob(site)
        lp = per_draw(lp, draws, nesting) if draws is not None else lp if batch else lp.sum()
        total = lp if total is None else total + lp
    if total is None:
        return torch.zeros(draws) if draws is not None else torch.zeros(())
    return total


def run_model(model: Callable, args: tuple, kwargs: dict, *, draws: int, nesting: int, guide: Callable | None = None,
              values: dict[str, torch.Tensor] | None = None, batch: dict[str, torch.Tensor] | None = None):
    """``(model_trace, guide_trace)`` for ``draws`` draws at once, in a plate at dim -(nesting + 1).

    With ``guide``: the guide is traced and the model replays it (``guide_trace`` is returned); with
    ``values`` ({site: tensor broadcastable in the plate, see :meth:`ModelStructure.broadcastable`}) the
    model is conditioned on them (``guide_trace`` is None). Gradients flow as the caller's context says.
    Subsampled plates run over the full data, or over the rows ``batch`` ({plate: indices},
    :mod:`deepprob.subsample`) where given.
    """
    data = full_data() if not batch else contextlib.nullcontext()
    model, guide = on_batch(model, batch), guide if guide is None else on_batch(guide, batch)
    with data, poutine.block(), pyro.plate(DRAWS_PLATE, draws, dim=-nesting - 1):
        if guide is not None:
            guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
            program = poutine.replay(model, trace=guide_trace)
        else:
            guide_trace, program = None, poutine.condition(model, values or {})
        model_trace = poutine.trace(program).get_trace(*args, **kwargs)
    return model_trace, guide_trace


def log_weights(model_trace, guide_trace, draws: int | None = None, nesting: int = 0,
                batch: bool = False) -> torch.Tensor:
    """log p(x, z) - log q(z) of a guide's trace and the model's trace replaying it (see :func:`log_prob_sum`).

    For an ``AutoContinuous`` guide, log q(z) of the constrained z: its auxiliary vector's log q(u)
    plus its ``Delta`` sites' log |det dz/du|^{-1}.
    """
    return (log_prob_sum(model_trace, draws, nesting, batch) - log_prob_sum(guide_trace, draws, nesting, batch))


# --- the structure of a model --------------------------------------------------------------------


@dataclass(frozen=True)
class Site:
    """One site of a model as its prototype trace shows it (one draw).

    Attributes:
        batch_shape, event_shape: of the site's distribution (batch dims come from plates).
        support: its constraint (latent sites).
    """

    name: str
    batch_shape: torch.Size
    event_shape: torch.Size
    support: object = None

    @property
    def shape(self) -> torch.Size:
        return self.batch_shape + self.event_shape


@dataclass
class ModelStructure:
    """The plate nesting and the sites of ``model(*args, **kwargs)``, from one trace (see the module doc).

    The trace is of the full data: a plate that subsamples runs over all its rows (:mod:`deepprob.subsample`).

    Attributes:
        nesting: how many plate dims the model nests (draws go at dim -(nesting + 1)).
        latent, observed, deterministic: the sites by name, in the model's order.
        subsampled: the plates that subsample, {name: (size N, subsample size B)}.
        local: the latent sites inside a plate that subsamples (one variable a row).
    """

    nesting: int
    latent: dict[str, Site]
    observed: dict[str, Site]
    deterministic: dict[str, Site]
    subsampled: dict[str, tuple[int, int]] = dataclasses.field(default_factory=dict)
    local: tuple[str, ...] = ()

    @classmethod
    def of(cls, model: Callable, *args, **kwargs) -> ModelStructure:
        # off the record: the trace's draws (the prior medians) leave the random numbers as they were
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        subsampled = {}
        with full_data(record=subsampled), torch.random.fork_rng(devices), torch.no_grad(), poutine.block(), \
                InitMessenger(init_median):
            trace = poutine.trace(model).get_trace(*args, **kwargs)
        nesting, latent, observed, deterministic, local = 0, {}, {}, {}, []
        for name, site in sample_sites(trace):
            nesting = max([nesting] + [-f.dim for f in site["cond_indep_stack"] if f.vectorized])
            fn = site["fn"]
            entry = Site(name, fn.batch_shape, fn.event_shape, fn.support)
            if site["infer"].get("_deterministic"):
                # its value's shape (a deterministic site in a plate has the plate's dims twice in its fn)
                deterministic[name] = Site(name, torch.Size(), site["value"].shape)
            elif site["is_observed"]:
                observed[name] = entry
            else:
                latent[name] = entry
                if any(f.name in subsampled for f in site["cond_indep_stack"]):
                    local.append(name)
        return cls(nesting, latent, observed, deterministic, subsampled, tuple(local))

    def require_continuous(self) -> None:
        """Raise InputError for a latent site that is discrete (SVI with these guides, and NUTS, need
        continuous latent variables)."""
        for site in self.latent.values():
            if site.support.is_discrete:
                raise InputError(f"model: the latent site {site.name!r} is discrete ({site.support}); these tools "
                                 "need continuous latent variables (marginalise it out, or observe it)")

    # the unconstrained latent vector, packed as Pyro's AutoContinuous packs it
    @functools.cached_property
    def _packing(self) -> list[tuple[Site, object, torch.Size, int]]:
        out = []
        for site in self.latent.values():
            try:
                transform = biject_to(site.support)
            except NotImplementedError:
                raise InputError(f"model: site {site.name!r} has the support {site.support}, which has no map "
                                 "to an unconstrained space") from None
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
        def log_joint(u: torch.Tensor, batch: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
            S = u.shape[0]
            values, total = {}, u.new_zeros(S)
            for site, transform, unconstrained in self.unpack(u):
                values[site.name] = value = transform(unconstrained)
                ladj = transform.log_abs_det_jacobian(unconstrained, value)
                ladj = sum_rightmost(ladj, ladj.dim() - value.dim() + len(site.event_shape))
                total = total + ladj.reshape(S, -1).sum(-1)
            model_trace, _ = run_model(model, args, kwargs, draws=S, nesting=self.nesting, values=values,
                                       batch=batch)
            return total + log_prob_sum(model_trace, S, self.nesting)

        return log_joint

    def broadcastable(self, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Draws of sites, (S, *site shape) each, reshaped to lie in the draws' plate of :func:`run_model`."""
        out = {}
        for name, value in values.items():
            site = self.latent.get(name) or self.deterministic.get(name) or self.observed.get(name)
            pad = self.nesting - len(site.batch_shape) if site is not None else self.nesting
            out[name] = value.reshape(value.shape[:1] + (1,) * max(0, pad) + value.shape[1:])
        return out

    def draws_of(self, trace, names, draws: int) -> dict[str, torch.Tensor]:
        """The values of the sites ``names`` in a trace of :func:`run_model`: (draws, *site shape) each
        (a value that does not depend on the draws is repeated)."""
        sites = {**self.latent, **self.observed, **self.deterministic}
        out = {}
        for name in names:
            # detached: under no_grad a view of a parameter (a point mass's draw) still requires grad
            value, shape = trace.nodes[name]["value"].detach(), sites[name].shape
            if value.numel() == math.prod(shape):
                out[name] = value.reshape(shape).expand((draws,) + shape)
            else:
                out[name] = value.reshape((draws,) + shape)
        return out
