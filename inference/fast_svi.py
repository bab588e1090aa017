"""A fast path for SVI with a Gaussian guide on a small model of static structure (issue 7).

For ``AutoDiagonalNormal`` (``meanfield``) and ``AutoMultivariateNormal`` (``fullrank``) the guide is a
reparameterised Gaussian on one unconstrained vector, z = loc + L eps, and the ELBO is a plain torch
function of the guide's parameters and the noise:

    ELBO(params; eps) = mean_s [ log p(x, T(z_s)) + log|det dT/dz (z_s)| - log N(z_s; loc, L L^T) ]

with T the unconstrained -> constrained map of every latent site. This is exactly what Pyro's
``Trace_ELBO`` computes for these guides: their Delta sites carry log q = -log|det dT/dz|, so
``-log q_guide = -log q_aux + log|det J|``. The log joint is evaluated for all particles at once in one
model trace (a particle plate left of the model's own plates, as ``guides/mixture.py`` does), and the
Gaussian term is written in closed form in eps (-|eps|^2/2 - sum log diag L - D/2 log 2 pi), which has
the same value and the same gradients as Pyro's ``log_prob(z)`` at z = loc + L eps.

What it saves over ``fit_svi``: the guide trace, the replay of the model against it, Pyro's
vectorised-particle machinery and validation, one Python dispatch per site of the guide; what is left
is one ``poutine.trace`` of the model a step.

    fast = fast_elbo_fn(model, guide, X, y)         # (params dict, eps (S, D)) -> ELBO estimate
    result = fit_svi_fast(model, guide, X, y, steps=2000, lr=0.01, num_particles=8)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import pyro
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask, sum_rightmost
from pyro.infer.autoguide import AutoDiagonalNormal, AutoMultivariateNormal
from pyro.infer.autoguide.utils import helpful_support_errors
from pyro.poutine.util import site_is_subsample
from torch.distributions import biject_to, transform_to

from deepprob.errors import InputError
from deepprob.inference.svi import FitResult, estimate_elbo, invalid_values_at, optimise

SUPPORTED = (AutoDiagonalNormal, AutoMultivariateNormal)


def supports(guide) -> bool:
    """Whether :func:`fit_svi_fast` can fit ``guide`` (exactly these two classes, not subclasses)."""
    return type(guide) in SUPPORTED


def _check_guide(guide) -> None:
    if not supports(guide):
        raise NotImplementedError(
            f"fast SVI supports AutoDiagonalNormal and AutoMultivariateNormal guides only, not "
            f"{type(guide).__name__}; use deepprob.inference.svi.fit_svi")


def _plate_nesting(model: Callable, *args, **kwargs) -> int:
    trace = poutine.trace(model).get_trace(*args, **kwargs)
    for site in trace.nodes.values():
        if site["type"] == "sample" and not site["is_observed"] and site["fn"].has_enumerate_support \
                and site["infer"].get("enumerate"):
            raise NotImplementedError(f"site {site['name']!r} is enumerated: fast SVI needs continuous latents")
    return max([-f.dim for site in trace.nodes.values() for f in site.get("cond_indep_stack", ()) if f.vectorized]
               + [0])


def guide_parameters(guide) -> dict[str, torch.nn.Parameter]:
    """The guide's trainable tensors by name (``loc``, ``scale_unconstrained``[, ``scale_tril_unconstrained``]):
    the raw leaves Adam trains in ``fit_svi``, the arguments of :func:`fast_elbo_fn`'s function."""
    return dict(guide.named_parameters())


def fast_elbo_fn(model: Callable, guide, *args, **kwargs) -> Callable[[dict, torch.Tensor], torch.Tensor]:
    """The ELBO of ``guide`` for ``model(*args, **kwargs)`` as a pure function ``(params, eps) -> scalar``.

    ``params`` maps the names of :func:`guide_parameters` to tensors (the unconstrained leaves, e.g. the
    guide's own ``nn.Parameter``\\ s); ``eps`` (S, D) are standard normal draws, D = ``guide.latent_dim``.
    The value is the mean over the S particles of log p(x, z_s) - log q(z_s), z_s = loc + L eps_s; with
    the same eps it equals Pyro's ``-Trace_ELBO().differentiable_loss`` (and so do its gradients).

    The guide's parameters are created here if the guide has not run yet. The model must have a static
    structure (the same sites and shapes at every call) and continuous latents only; the model's own
    ``pyro.param``\\ s / ``nn.Module`` parameters are held fixed (not supported as trainable).

    Raises:
        NotImplementedError: another guide class, or an enumerated site.
    """
    _check_guide(guide)
    if not hasattr(guide, "loc"):
        with torch.no_grad():
            guide(*args, **kwargs)  # sets up the prototype trace and the parameters
    nesting = _plate_nesting(model, *args, **kwargs)
    D = guide.latent_dim
    full_rank = isinstance(guide, AutoMultivariateNormal)
    to_scale = transform_to(guide.scale_constraint)  # as PyroParam maps its unconstrained tensor
    to_tril = transform_to(guide.scale_tril_constraint) if full_rank else None
    half_log_2pi = 0.5 * math.log(2 * math.pi)
    sites = []  # (name, support transform, event_dim) in the guide's packing order
    for name, site in guide.prototype_trace.iter_stochastic_nodes():
        with helpful_support_errors(site):
            sites.append((name, biject_to(site["fn"].support), site["fn"].event_dim))

    def log_joint(z: torch.Tensor) -> torch.Tensor:
        """log p(x, T(z)) + log|det J_T(z)| at S unconstrained vectors: (S, D) -> (S,)."""
        S = z.shape[0]
        batched = z.reshape((S,) + (1,) * nesting + (D,))
        values, log_det = {}, z.new_zeros(S)
        for (name, transform, event_dim), (_site, unconstrained) in zip(sites, guide._unpack_latent(batched)):
            values[name] = value = transform(unconstrained)
            ladj = transform.log_abs_det_jacobian(unconstrained, value)
            ladj = sum_rightmost(ladj, ladj.dim() - value.dim() + event_dim)
            log_det = log_det + ladj.reshape(S, -1).sum(-1)
        with pyro.plate("_fast_svi_particles", S, dim=-nesting - 1):
            trace = poutine.trace(poutine.condition(model, values)).get_trace(*args, **kwargs)
        total = log_det
        for site in trace.nodes.values():
            if site["type"] == "sample" and not site_is_subsample(site):
                lp = scale_and_mask(site["fn"].log_prob(site["value"]), site["scale"], site["mask"])
                if lp.dim() and lp.shape[0] == S:
                    total = total + lp.reshape(S, -1).sum(-1)
                else:  # a site outside the particle plate's reach (its log prob is the same for every particle)
                    total = total + lp.sum()
        return total

    def elbo(params: dict, eps: torch.Tensor) -> torch.Tensor:
        loc = params["loc"]
        scale = to_scale(params["scale_unconstrained"])
        if full_rank:
            L = scale[..., None] * to_tril(params["scale_tril_unconstrained"])
            z = loc + eps @ L.T
            log_det_L = L.diagonal().log().sum()
        else:
            z = loc + eps * scale
            log_det_L = scale.log().sum()
        log_q = -0.5 * eps.pow(2).sum(-1) - log_det_L - D * half_log_2pi
        return (log_joint(z) - log_q).mean()

    elbo.log_joint = log_joint
    elbo.latent_dim = D
    return elbo


def fit_svi_fast(
    model: Callable,
    guide,
    *args,
    steps: int = 2000,
    lr: float = 0.01,
    num_particles: int = 1,
    final_lr_fraction: float = 0.1,
    average_fraction: float = 0.25,
    elbo_particles: int = 1000,
    compile: bool = False,
    **kwargs,
) -> FitResult:
    """:func:`deepprob.inference.svi.fit_svi` for a ``meanfield``/``fullrank`` guide, through :func:`fast_elbo_fn`.

    The same optimiser (Adam, learning rate decaying exponentially from ``lr`` to
    ``lr * final_lr_fraction``), the same Polyak averaging over the last ``average_fraction`` of the
    steps, ``num_particles`` reparameterised draws a step. The guide's own parameters are trained in
    place, so the guide ends fitted. ``compile``: ``torch.compile`` the ELBO (the compile time is in
    ``extras["compile_seconds"]``, the first step's time; falls back to eager if compiling fails).
    ``extras["steps_per_second"]`` is the throughput of the optimisation loop alone.

    Raises:
        NotImplementedError: a guide other than AutoDiagonalNormal / AutoMultivariateNormal.
        InputError: ``steps`` < 1 or a bad learning rate.
        FitDivergedError: the loss became NaN or infinite.
    """
    _check_guide(guide)
    if steps < 1:
        raise InputError(f"--steps {steps}: expected at least 1 step")
    start = time.perf_counter()
    with torch.no_grad(), invalid_values_at(0):
        guide(*args, **kwargs)  # create the parameters; validates the model once with the user's setting
    fn = fast_elbo_fn(model, guide, *args, **kwargs)
    params = guide_parameters(guide)
    leaves = list(params.values())
    loss_fn = lambda p, e: -fn(p, e)  # noqa: E731
    compile_seconds = None
    if compile:
        compiled = torch.compile(loss_fn, dynamic=False)
        t0 = time.perf_counter()
        try:
            eps = torch.randn(num_particles, fn.latent_dim, dtype=leaves[0].dtype, device=leaves[0].device)
            compiled(params, eps).backward()  # warm-up: compiles forward and backward
            loss_fn = compiled
        except Exception:  # noqa: BLE001 - an unsupported construct in the model: stay eager
            pass
        for p in leaves:
            p.grad = None
        compile_seconds = time.perf_counter() - t0
    D, dtype, device = fn.latent_dim, leaves[0].dtype, leaves[0].device

    def loss_at(step: int) -> torch.Tensor:
        return loss_fn(params, torch.randn(num_particles, D, dtype=dtype, device=device))

    loop_start = time.perf_counter()
    with pyro.validation_enabled(False):
        losses = optimise(leaves, loss_at, steps=steps, lr=lr, final_lr_fraction=final_lr_fraction,
                          average_fraction=average_fraction, progress=False)
    loop_seconds = time.perf_counter() - loop_start
    seconds = time.perf_counter() - start
    elbo = estimate_elbo(model, guide, *args, num_particles=elbo_particles, **kwargs) if elbo_particles else math.nan
    return FitResult(guide=guide, losses=losses, seconds=seconds, elbo=elbo,
                     extras={"steps_per_second": steps / loop_seconds, "compile_seconds": compile_seconds})
