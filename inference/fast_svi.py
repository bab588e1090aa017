"""The fast path of :func:`~deepprob.inference.svi.fit_svi`: a whole SVI step as one compiled kernel.

For a model of static structure with continuous latents, and a guide with a pure form
(:mod:`deepprob.inference.reparam`: every guide of the registry), Pyro's ``Trace_ELBO`` is a plain
torch function of the guide's parameters and of the noise:

    loss(params; noise) = -mean_s [ log p(x, T(z_s)) + log|det dT/dz (z_s)| - log q(z_s) ]

with z_s = draw(params, noise)_s and T the unconstrained -> constrained map of the latent sites. That
is what ``Trace_ELBO`` computes for these guides: their Delta sites carry log q = -log|det dT/dz|, so
``-log q_guide = -log q_aux + log|det J|``. For a guide that makes a discrete choice (the mixture's
component) the loss is Pyro's surrogate: the same value, plus the score-function term
``(log p - log q)_s.detach() * score_s`` for the gradient.

The model runs once, for all S particles at once (a particle plate left of its own plates). So does the
whole step: ``make_fx`` traces loss, gradient (``torch.func``) and Adam's update (the arithmetic of
``torch.optim.Adam``, exponential learning-rate decay and Polyak averaging as in
:func:`~deepprob.inference.svi.optimise`) into one graph of aten operations, with Pyro's Python gone;
constant subexpressions (the prior's Cholesky factor, say) are folded, and the rest becomes one C
function (:mod:`deepprob.c_step`, on the CPU, compiled in well under a second) or, where that does not
apply (a GPU, an operation it lacks, a big graph), Inductor's C++ or Triton kernels, which take seconds
to compile. Either updates the parameters in place; a step then costs tens of microseconds instead of a
millisecond or two, so ``fit_svi`` takes this path by itself for fits of 2,000 steps or more.

    loss = svi_loss_fn(model, guide, X, y)              # (params dict, noise tuple) -> loss
    steps = SVISteps(loss, guide_parameters(guide), lr=0.01, steps=5000)
    losses = steps.run(num_particles=4)                 # the guide's parameters end fitted
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask, sum_rightmost
from pyro.infer.autoguide.utils import helpful_support_errors
from pyro.poutine.util import site_is_subsample
from torch.distributions import biject_to
from tqdm.auto import tqdm

from deepprob.c_step import CStep
from deepprob.compiling import adam_update_, compile_step
from deepprob.errors import FitDivergedError, InputError
from deepprob.inference.reparam import Reparameterised, reparameterised
from deepprob.inference.svi import NAN_HINT, collect_parameters
from deepprob.runtime import rng_untouched


def _plate_nesting(model: Callable, *args, **kwargs) -> int:
    trace = poutine.trace(model).get_trace(*args, **kwargs)
    for site in trace.nodes.values():
        if site["type"] == "sample" and not site["is_observed"] and site["fn"].has_enumerate_support \
                and site["infer"].get("enumerate"):
            raise NotImplementedError(f"site {site['name']!r} is enumerated: fast SVI needs continuous latents")
    return max([-f.dim for site in trace.nodes.values() for f in site.get("cond_indep_stack", ()) if f.vectorized]
               + [0])


def guide_parameters(guide) -> dict[str, torch.nn.Parameter]:
    """The guide's trainable tensors by name: the raw leaves Adam trains in ``fit_svi``."""
    return dict(guide.named_parameters())


def log_joint_fn(model: Callable, guide, *args, **kwargs) -> Callable[[torch.Tensor], torch.Tensor]:
    """log p(x, T(z)) + log|det J_T(z)| at S unconstrained vectors z (S, D) -> (S,), for ``guide``'s packing.

    ``guide`` is an ``AutoContinuous`` that has run once (its ``prototype_trace`` fixes the sites).
    """
    nesting = _plate_nesting(model, *args, **kwargs)
    D = guide.latent_dim
    sites = []  # (name, support transform, event_dim) in the guide's packing order
    for name, site in guide.prototype_trace.iter_stochastic_nodes():
        with helpful_support_errors(site):
            sites.append((name, biject_to(site["fn"].support), site["fn"].event_dim))

    def log_joint(z: torch.Tensor) -> torch.Tensor:
        S = z.shape[0]
        batched = z.reshape((S,) + (1,) * nesting + (D,))
        values, total = {}, z.new_zeros(S)
        for (name, transform, event_dim), (_site, unconstrained) in zip(sites, guide._unpack_latent(batched)):
            values[name] = value = transform(unconstrained)
            ladj = transform.log_abs_det_jacobian(unconstrained, value)
            ladj = sum_rightmost(ladj, ladj.dim() - value.dim() + event_dim)
            total = total + ladj.reshape(S, -1).sum(-1)
        with pyro.plate("_fast_svi_particles", S, dim=-nesting - 1):
            trace = poutine.trace(poutine.condition(model, values)).get_trace(*args, **kwargs)
        for site in trace.nodes.values():
            if site["type"] == "sample" and not site_is_subsample(site):
                lp = scale_and_mask(site["fn"].log_prob(site["value"]), site["scale"], site["mask"])
                if lp.dim() and lp.shape[0] == S:
                    total = total + lp.reshape(S, -1).sum(-1)
                else:  # a site outside the particle plate's reach: the same for every particle
                    total = total + lp.sum()
        return total

    return log_joint


def svi_loss_fn(model: Callable, guide, *args, **kwargs) -> Callable[[dict, tuple], torch.Tensor]:
    """Pyro's ``Trace_ELBO().differentiable_loss`` of ``guide`` as a pure function ``(params, noise) -> loss``.

    ``params`` maps the names of :func:`guide_parameters` to tensors; ``noise`` is what
    ``loss.form.noise(params, S)`` draws for S particles. Value: minus the mean over particles of
    log p(x, z_s) - log q(z_s); gradient: that of Pyro's surrogate loss. With the noise Pyro's guide
    would draw, both equal Pyro's (the tests check it). The function carries ``form`` (the guide's
    :class:`~deepprob.inference.reparam.Reparameterised`) and ``log_joint``.

    The guide's parameters are created here if the guide has not run yet. The model must have a static
    structure (the same sites and shapes at every call) and continuous latents only; its own
    parameters, if any, are held fixed.

    Raises:
        NotImplementedError: the guide has no pure form, or the model has an enumerated site.
    """
    form = reparameterised(guide)
    if form is None:
        raise NotImplementedError(f"fast SVI has no pure form of the guide {type(guide).__name__}")
    if getattr(guide, "prototype_trace", None) is None:
        with torch.no_grad():
            guide(*args, **kwargs)
    log_joint = log_joint_fn(model, guide, *args, **kwargs)

    def loss(params: dict, noise: tuple) -> torch.Tensor:
        draw = form.draw(params, noise)
        log_p = log_joint(draw.z)
        log_q_path = draw.log_q if draw.log_q_path is None else draw.log_q_path
        value = (log_p - draw.log_q).mean()
        surrogate = (log_p - log_q_path).mean()
        if draw.score is not None:
            surrogate = surrogate + ((log_p - draw.log_q).detach() * draw.score).mean()
        return -(value.detach() + surrogate - surrogate.detach())

    loss.form, loss.log_joint = form, log_joint
    return loss


def traced_elbo_loss(model: Callable, guide: Callable, *args, analytic_kl: bool = False, **kwargs) -> torch.Tensor:
    """One-particle ``Trace_ELBO`` (or, with ``analytic_kl``, ``TraceMeanField_ELBO``) loss from two traces.

    For guides whose every sample site is reparameterised (the VAE's amortised Normal, say), Pyro's
    estimators reduce to

        loss = -[ log p(x, z) - log q(z) ],              z ~ q  (Trace_ELBO)
        loss = -[ log p(x | z) - KL(q(z) || p(z)) ],     z ~ q  (TraceMeanField_ELBO)

    with each site's log-probability scaled and masked as Pyro does. Unlike Pyro's ``differentiable_loss``
    it reads no value back to the host, so ``make_fx`` can trace it (model, guide and networks included)
    into one graph; the random draws of the guide become random operations of that graph.
    """
    from torch.distributions import kl_divergence

    guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)

    def log_prob_sum(site):
        return scale_and_mask(site["fn"].log_prob(site["value"]), site["scale"], site["mask"]).sum()

    elbo = 0.0
    for site in model_trace.nodes.values():
        if site["type"] == "sample" and not site_is_subsample(site) and (site["is_observed"] or not analytic_kl):
            elbo = elbo + log_prob_sum(site)
    for name, site in guide_trace.nodes.items():
        if site["type"] != "sample" or site["is_observed"] or site_is_subsample(site):
            continue
        if not site["fn"].has_rsample:
            raise NotImplementedError(f"site {name!r} of the guide is not reparameterised")
        if analytic_kl:
            kl = kl_divergence(site["fn"], model_trace.nodes[name]["fn"])
            elbo = elbo - scale_and_mask(kl, site["scale"], site["mask"]).sum()
        else:
            elbo = elbo - log_prob_sum(site)
    return -elbo


def fast_elbo_estimate(loss: Callable, params: dict, num_particles: int = 1000, chunk: int = 250) -> float:
    """A fresh Monte Carlo ELBO of the guide at ``params``: the fast twin of ``svi.estimate_elbo``."""
    form: Reparameterised = loss.form
    if not form.stochastic:
        num_particles = chunk = 1
    total, done = 0.0, 0
    with torch.no_grad():
        while done < num_particles:
            n = min(chunk, num_particles - done)
            total += -float(loss(params, form.noise(params, n))) * n
            done += n
    return total / num_particles


class SVISteps:
    """Adam steps on a pure loss ``loss(params, noise)``, compiled into one kernel per step.

    Args:
        loss: from :func:`svi_loss_fn` (it carries ``form``, which draws the noise).
        params: the tensors to train, by name; they are updated in place (pass the guide's own
            parameters and the guide ends fitted).
        steps, lr, final_lr_fraction, average_fraction: as :func:`~deepprob.inference.svi.optimise`:
            Adam (``torch.optim.Adam``'s defaults) with the learning rate decaying from ``lr`` to
            ``lr * final_lr_fraction`` over ``steps``, and the iterates of the last ``average_fraction``
            of the steps averaged (the parameters end at their mean).
        compile: ``True``: trace and compile; ``False``: run the same step eagerly.
        backend: the compiler (:func:`~deepprob.compiling.compile_step`): ``"auto"`` (default) compiles
            to one C function where the step's operations allow (:mod:`deepprob.c_step`, CPU), else
            with Inductor; ``"c"`` or ``"inductor"`` force one.

    Attributes:
        compile_seconds: time spent tracing and compiling (0 when eager).
        compiled_by: the compiler that built the step (``"c"``, ``"inductor"``), or None when eager.
    """

    def __init__(self, loss: Callable, params: dict[str, torch.Tensor], *, steps: int, lr: float,
                 final_lr_fraction: float = 0.1, average_fraction: float = 0.25, compile: bool = True,
                 backend: str = "auto"):
        self.loss, self.names, self.steps = loss, list(params), steps
        self.params = [p.detach() for p in params.values()]  # shares storage: updated in place
        zeros = lambda: [torch.zeros_like(p) for p in self.params]  # noqa: E731
        self.m, self.v, self.average = zeros(), zeros(), zeros()
        like = self.params[0]
        average_from = steps - int(average_fraction * steps)
        scalar = lambda x: torch.tensor(float(x), dtype=like.dtype, device=like.device)  # noqa: E731
        self.t = scalar(0)
        # hyper-parameters are inputs rather than constants, so one compiled graph serves any of them
        self.hyper = (scalar(lr), scalar(math.log(final_lr_fraction) / max(1, steps)), scalar(average_from),
                      scalar(1.0 / max(1, steps - average_from)))
        self.averaging = average_from < steps
        self.compile, self.backend = compile, backend
        self.compiled = False  # whether the step runs compiled (set when it is built)
        self.compiled_by = None  # "c" or "inductor" once compiled
        self.compile_seconds = 0.0
        self._steps = {}  # the built step by number of particles (its noise's shape)

    def _eager_step(self, *flat):
        n = len(self.names)
        params, m, v, average = (list(flat[i * n:(i + 1) * n]) for i in range(4))
        t, (lr0, log_gamma, average_from, inv_count), noise = flat[4 * n], flat[4 * n + 1:4 * n + 5], flat[4 * n + 5:]

        def loss_of(values):
            return self.loss(dict(zip(self.names, values)), tuple(noise))

        grads, value = torch.func.grad_and_value(loss_of)(params)
        adam_update_(params, grads, m, v, t, lr0 * torch.exp(log_gamma * t))
        weight = torch.where(t > average_from, inv_count, torch.zeros_like(inv_count))  # t: steps taken
        for p, a in zip(params, average):
            a.copy_(a + weight * p)
        return value

    def _build(self, noise: tuple) -> Callable:
        if not self.compile:
            return self._eager_step
        start = time.perf_counter()
        try:
            # trace on copies: tracing runs the step once, and its in-place updates must not count
            copies = [x.clone() for x in self._state()] + list(noise)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # the same state tensors every step, and noise drawn as the example's: no checks of them needed
                compiled = compile_step(self._eager_step, copies, check_inputs=False, backend=self.backend)
            self.compiled = True
            self.compiled_by = "c" if isinstance(compiled, CStep) else "inductor"
        except Exception as err:  # noqa: BLE001 - a construct no compiler takes: run eagerly
            warnings.warn(f"fast SVI: compiling the step failed ({type(err).__name__}: {str(err)[:200]}); "
                          "running it eagerly", stacklevel=3)
            compiled = self._eager_step
        self.compile_seconds = time.perf_counter() - start
        return compiled

    def _state(self) -> list[torch.Tensor]:
        return [*self.params, *self.m, *self.v, *self.average, self.t, *self.hyper]

    def run(self, num_particles: int = 1, progress: bool = False, desc: str = "SVI",
            check_every: int = 100) -> np.ndarray:
        """Take all the steps; returns the loss at every step (steps,).

        Raises:
            FitDivergedError: a loss was NaN or infinite (checked every ``check_every`` steps; the
                message names the first bad step).
        """
        form: Reparameterised = self.loss.form
        if not form.stochastic:
            num_particles = 1
        named = dict(zip(self.names, self.params))
        step_fn = self._steps.get(num_particles)
        if step_fn is None:
            with rng_untouched(self.params[0].device):  # example noise for the trace: not the steps' noise
                step_fn = self._steps[num_particles] = self._build(form.noise(named, num_particles))
        state, losses = self._state(), []
        bar = tqdm(total=self.steps, desc=desc, disable=not progress, leave=False, dynamic_ncols=True)
        for step in range(self.steps):
            losses.append(step_fn(*state, *form.noise(named, num_particles)))
            if (step + 1) % check_every == 0 or step + 1 == self.steps:
                recent = torch.stack(losses[-((step % check_every) + 1):])
                self._check(recent, step + 1 - len(recent))
                bar.update(len(recent))
                bar.set_postfix(elbo=f"{-float(recent.mean()):.4g}", refresh=False)
        bar.close()
        if self.averaging:
            for p, a in zip(self.params, self.average):
                p.copy_(a)
        return torch.stack(losses).cpu().numpy().astype(np.float64)

    @staticmethod
    def _check(losses: torch.Tensor, first_step: int) -> None:
        bad = (~torch.isfinite(losses)).nonzero()
        if len(bad):
            i = int(bad[0, 0])
            raise FitDivergedError(f"the loss became {float(losses[i])} at step {first_step + i}; {NAN_HINT}")


def fast_path_problem(model: Callable, guide, args: tuple, kwargs: dict) -> str | None:
    """Why ``fit_svi`` cannot take the fast path for this model and guide, or None when it can."""
    if reparameterised(guide) is None:
        return f"the guide {type(guide).__name__} has no pure form (deepprob.inference.reparam)"
    if collect_parameters(model):
        return "the model has trainable parameters of its own"
    if any(isinstance(v, torch.Tensor) and v.requires_grad for v in (*args, *kwargs.values())):
        return "an argument requires grad"
    return None


ENGINES = ("auto", "pyro", "compiled")  # fit_svi's choices, and the command line's


def check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise InputError(f"--engine {engine!r}: expected one of {', '.join(ENGINES)}")
