"""The compiled engine of :func:`~deepprob.inference.fitting.svi.fit_svi`: a whole SVI step as one compiled function.

For a model of static structure with continuous latents, and a guide with a pure form
(its ``pure_form()``, :mod:`deepprob.guides.protocol`: every guide of the registry), Pyro's ``Trace_ELBO`` is a
plain torch function of the guide's parameters and of the noise:

    loss(params; noise) = -mean_s [ log p(x, T(u_s)) + log|det dT/du (u_s)| - log q(u_s) ]

with u_s = draw(params, noise)_s and T the unconstrained -> constrained map of the latent sites
(:meth:`deepprob.logdensity.ModelStructure.log_joint_unconstrained`). That is what ``Trace_ELBO``
computes for these guides: their Delta sites carry log q = -log|det dT/du|, so
``-log q_guide = -log q_aux + log|det J|``. For a guide that makes a discrete choice (the mixture's
component) the loss is Pyro's surrogate: the same value, plus the score-function term
``(log p - log q)_s.detach() * score_s`` for the gradient.

The model runs once, for all S particles at once (a plate left of its own plates). So does the whole
step: ``make_fx`` traces loss, gradient (``torch.func``) and Adam's update (:mod:`deepprob.optim`: the
arithmetic of ``torch.optim.Adam``, its exponential decay, and Polyak averaging as in
:func:`~deepprob.inference.fitting.pyro_engine.optimise`) into one graph of aten operations, with Pyro's Python gone;
constant subexpressions (the prior's Cholesky factor, say) are folded, and the rest becomes one C
function (:mod:`~deepprob.compiler.c_step`, on the CPU, compiled in well under a second) or,
where that does not apply (a GPU, an operation it lacks, a big graph), Inductor's C++ or Triton kernels,
which take seconds to compile. Either updates the parameters in place; a step then costs tens of
microseconds instead of a millisecond or two, so ``fit_svi`` takes this path by itself for fits of
2,000 steps or more.

    loss = svi_loss_fn(model, guide, X, y)              # (params dict, noise tuple) -> loss
    steps = SVISteps(loss, guide_parameters(guide), FitSettings(steps=5000, lr=0.01))
    losses = steps.run(num_particles=4)                 # the guide's parameters end fitted
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable

import numpy as np
import torch

from deepprob.compiler import compile_step
from deepprob.guides.protocol import PureForm, declared
from deepprob.inference.fitting.objectives import ELBO, Objective
from deepprob.inference.fitting.settings import FitSettings
from deepprob.logdensity import ModelStructure
from deepprob.optim import ExponentialDecay, adam_update_, collect_parameters
from deepprob.progress import report_once
from deepprob.seeds import rng_untouched
from deepprob.subsample import MinibatchIndices
from deepprob.training import TrainingLoop, check_steps


def guide_parameters(guide) -> dict[str, torch.nn.Parameter]:
    """The guide's trainable tensors by name: the raw leaves Adam trains in ``fit_svi``."""
    return dict(guide.named_parameters())


def svi_loss_fn(model: Callable, guide, *args, objective: Objective = ELBO, batches: MinibatchIndices | None = None,
                **kwargs) -> Callable[[dict, tuple], torch.Tensor]:
    """Pyro's ``Trace_ELBO().differentiable_loss`` of ``guide`` as a pure function ``(params, noise) -> loss``.

    With another ``objective`` (:mod:`deepprob.inference.fitting.objectives`: Renyi, IWAE) the loss is minus that
    bound of the particles' log weights, as Pyro's ``RenyiELBO`` has it (reparameterised guides only).

    ``params`` maps the names of :func:`guide_parameters` to tensors; ``noise`` is what
    ``loss.inputs(params, S)`` draws for S particles: the guide's noise (``loss.form.noise(params, S)``),
    then, for a model whose plates subsample, the rows of the step's minibatch from ``batches``
    (:class:`~deepprob.subsample.MinibatchIndices`; without it, the loss is of the full data). Value: minus
    the mean over particles of log p(x, z_s) - log q(z_s); gradient: that of Pyro's surrogate loss. With
    the noise Pyro's guide would draw, both equal Pyro's (the tests check it). The function carries ``form``
    (the guide's :class:`~deepprob.guides.protocol.PureForm`) and ``structure`` (the model's
    :class:`~deepprob.logdensity.ModelStructure`).

    The guide's parameters are created here if the guide has not run yet. The model must have a static
    structure (the same sites and shapes at every call) and continuous latents only; its own
    parameters, if any, are held fixed.

    Raises:
        NotImplementedError: the guide has no pure form.
    """
    if not guide_parameters(guide):
        with torch.no_grad():
            guide(*args, **kwargs)
    family = declared(guide)
    if family.own_loss is not None:  # a guide with a loss of its own on the log density (svgd): it draws no noise
        return _own_loss(model, family, args, kwargs)
    form = family.pure_form()
    if form is None:
        raise NotImplementedError(f"the compiled engine has no pure form of the guide {type(guide).__name__}")
    structure = ModelStructure.of(model, *args, **kwargs)
    structure.require_continuous()
    log_joint = structure.log_joint_unconstrained(model, *args, **kwargs)
    plates = list(batches.plates) if batches is not None else []

    def loss(params: dict, noise: tuple) -> torch.Tensor:
        if plates:
            noise, rows = noise[:-len(plates)], noise[-len(plates):]
        draw = form.draw(params, noise)
        log_p = log_joint(draw.z, dict(zip(plates, rows)) if plates else None)
        if not objective.is_elbo:
            return -objective.bound(log_p - draw.log_q)
        log_q_path = draw.log_q if draw.log_q_path is None else draw.log_q_path
        value = (log_p - draw.log_q).mean()
        surrogate = (log_p - log_q_path).mean()
        if draw.score is not None:
            surrogate = surrogate + ((log_p - draw.log_q).detach() * draw.score).mean()
        return -(value.detach() + surrogate - surrogate.detach())

    def inputs(params: dict, particles: int, example: bool = False) -> tuple:
        # the rows before the noise, as the Pyro engine draws them; an example for the trace takes no rows
        rows = () if not plates else tuple(batches.example().values()) if example else tuple(batches.next().values())
        return form.noise(params, particles) + rows

    loss.form, loss.structure, loss.inputs = form, structure, inputs
    return loss


def _own_loss(model, family, args, kwargs):
    structure = ModelStructure.of(model, *args, **kwargs)
    structure.require_continuous()
    fn = family.own_loss(structure.log_joint_unconstrained(model, *args, **kwargs))

    def loss(params: dict, noise: tuple) -> torch.Tensor:
        return fn(params)

    loss.form, loss.structure = family.pure_form(), structure
    loss.inputs = lambda params, particles, example=False: loss.form.noise(params, particles)
    return loss


def fast_elbo_estimate(loss: Callable, params: dict, num_particles: int = 1000, chunk: int = 250) -> float:
    """A fresh Monte Carlo ELBO of the guide at ``params``: the fast twin of ``svi.estimate_elbo``."""
    form: PureForm = loss.form
    if not form.stochastic:
        num_particles = chunk = 1
    total, done = 0.0, 0
    with torch.no_grad():
        while done < num_particles:
            n = min(chunk, num_particles - done)
            total += -float(loss(params, loss.inputs(params, n))) * n
            done += n
    return total / num_particles


class SVISteps:
    """Adam steps on a pure loss ``loss(params, noise)``, compiled into one function per step.

    Args:
        loss: from :func:`svi_loss_fn` (it carries ``form``, which draws the noise).
        params: the tensors to train, by name; they are updated in place (pass the guide's own
            parameters and the guide ends fitted).
        settings, step_scales: as :func:`~deepprob.inference.fitting.pyro_engine.optimise`: Adam (``torch.optim.Adam``'s
            defaults) with the learning rate decaying from ``lr`` to ``lr * final_lr_fraction`` over ``steps``
            (times the parameter's ``step_scales``, elementwise), and the iterates of the last
            ``average_fraction`` of the steps averaged (the parameters end at their mean).
        compile: ``True``: trace and compile; ``False``: run the same step eagerly.
        backend: the compiler (:func:`~deepprob.compiler.compiling.compile_step`): ``"auto"``
            (default) compiles to one C function where the step's operations allow (CPU), else with
            Inductor; ``"c"`` or ``"inductor"`` force one.

    Attributes:
        compile_seconds: time spent tracing and compiling (0 when eager).
        compiled_by: the compiler that built the step (``"c"``, ``"inductor"``), or None when eager.
        fallback: why the step is not what was asked (C declined, or compiling failed), or None.
    """

    def __init__(self, loss: Callable, params: dict[str, torch.Tensor], settings: FitSettings, *,
                 compile: bool = True, backend: str = "auto", step_scales: list[torch.Tensor | None] | None = None):
        steps, lr = settings.steps, settings.lr
        self.loss, self.names, self.steps = loss, list(params), steps
        # a step's inputs besides the state: the guide's noise, and a minibatch's rows (svi_loss_fn)
        self.inputs = getattr(loss, "inputs", None) or (lambda p, s, example=False: loss.form.noise(p, s))
        self.params = [p.detach() for p in params.values()]  # shares storage: updated in place
        # per-coordinate learning rates (inputs of the graph, as the hyper-parameters): 1 where none is given
        scales = step_scales or [None] * len(self.params)
        self.step_scales = [torch.ones((), dtype=p.dtype, device=p.device) if s is None
                            else s.detach().to(p).contiguous() for p, s in zip(self.params, scales)]
        zeros = lambda: [torch.zeros_like(p) for p in self.params]  # noqa: E731
        self.m, self.v, self.average = zeros(), zeros(), zeros()
        like = self.params[0]
        self.decay = ExponentialDecay(lr, steps, settings.final_lr_fraction)
        average_from = steps - int(settings.average_fraction * steps)
        scalar = lambda x: torch.tensor(float(x), dtype=like.dtype, device=like.device)  # noqa: E731
        self.t = scalar(0)
        # hyper-parameters are inputs rather than constants, so one compiled graph serves any of them
        self.hyper = (scalar(lr), scalar(self.decay.log_gamma), scalar(average_from),
                      scalar(1.0 / max(1, steps - average_from)))
        self.averaging = average_from < steps
        self.compile, self.backend = compile, backend
        self.compiled = False  # whether the step runs compiled (set when it is built)
        self.compiled_by = None  # "c" or "inductor" once compiled
        self.fallback = None
        self.compile_seconds = 0.0
        self._steps = {}  # the built step by number of particles (its noise's shape)

    def _eager_step(self, *flat):
        n = len(self.names)
        params, m, v, average, scales = (list(flat[i * n:(i + 1) * n]) for i in range(5))
        t, (lr0, log_gamma, average_from, inv_count), noise = flat[5 * n], flat[5 * n + 1:5 * n + 5], flat[5 * n + 5:]

        def loss_of(values):
            return self.loss(dict(zip(self.names, values)), tuple(noise))

        grads, value = torch.func.grad_and_value(loss_of)(params)
        lr = self.decay.at(t, lr0, log_gamma)
        adam_update_(params, grads, m, v, t, [lr * scale for scale in scales])
        weight = torch.where(t > average_from, inv_count, torch.zeros_like(inv_count))  # t: steps taken
        for p, a in zip(params, average):
            a.copy_(a + weight * p)
        return value

    def _build(self, noise: tuple) -> Callable:
        """The step for noise of this shape: a function of the noise tensors alone (the state is bound)."""
        state = self._state()
        if not self.compile:
            return lambda *noise: self._eager_step(*state, *noise)
        start = time.perf_counter()
        try:
            # trace on copies: tracing runs the step once, and its in-place updates must not count
            copies = [x.clone() for x in state] + list(noise)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # the same state tensors every step, and noise drawn as the example's: no checks of them needed
                compiled = compile_step(self._eager_step, copies, check_inputs=False, backend=self.backend)
            self.compiled, self.compiled_by, self.fallback = True, compiled.by, compiled.fallback
            step = compiled.bind(state)
        except Exception as err:  # noqa: BLE001 - a construct no compiler takes: run eagerly
            self.fallback = report_once(f"compiling the SVI step failed ({type(err).__name__}: {str(err)[:200]}); "
                                        "its steps run eagerly")
            step = lambda *noise: self._eager_step(*state, *noise)  # noqa: E731
        self.compile_seconds = time.perf_counter() - start
        return step

    def _state(self) -> list[torch.Tensor]:
        return [*self.params, *self.m, *self.v, *self.average, *self.step_scales, self.t, *self.hyper]

    def run(self, num_particles: int = 1, progress: bool = False, desc: str = "SVI",
            check_every: int = 100) -> np.ndarray:
        """Take all the steps; returns the loss at every step (steps,).

        Raises:
            FitDivergedError: a loss was NaN or infinite (checked every ``check_every`` steps; the
                message names the first bad step).
        """
        form: PureForm = self.loss.form
        if not form.stochastic:
            num_particles = 1
        named = dict(zip(self.names, self.params))
        step_fn = self._steps.get(num_particles)
        if step_fn is None:
            with rng_untouched(self.params[0].device):  # example noise for the trace: not the steps' noise
                step_fn = self._steps[num_particles] = self._build(self.inputs(named, num_particles,
                                                                                      example=True))
        losses = []
        # the losses are read back from the device every check_every steps (one host synchronisation), checked
        loop = TrainingLoop(desc, self.steps, progress=progress, every=check_every)
        for step in loop:
            losses.append(step_fn(*self.inputs(named, num_particles)))
            if loop.due(step, check_every):
                recent = torch.stack(losses[-((step % check_every) + 1):])
                check_steps(recent, step + 1 - len(recent))
                loop.record(step, postfix=f"elbo {-float(recent.mean()):.4g}")
        loop.close(f"elbo {-float(recent.mean()):.4g}")
        if self.averaging:
            for p, a in zip(self.params, self.average):
                p.copy_(a)
        return torch.stack(losses).cpu().numpy().astype(np.float64)


def compiled_path_problem(model: Callable, guide, args: tuple, kwargs: dict) -> str | None:
    """Why ``fit_svi`` cannot take the compiled engine for this model and guide, or None when it can."""
    family = declared(guide)
    if family.untraceable:
        return f"the {type(guide).__name__} guide: {family.untraceable}"
    if family.pure_form() is None:
        return (f"the guide {type(guide).__name__} has no pure form (a guide of deepprob.guides' registry has; "
                "see deepprob.guides.protocol)")
    if collect_parameters(model):
        return "the model has trainable parameters of its own"
    if any(isinstance(v, torch.Tensor) and v.requires_grad for v in _tensors((args, kwargs))):
        return "an argument requires grad"
    structure = ModelStructure.of(model, *args, **kwargs)
    if structure.batching == "loop":
        return (f"model {structure.name} runs draw by draw in a Python loop (vmap could not batch it: Python control "
                "flow on a latent value, or in-place writes), and a trace would fix its branches at the traced values")
    local = structure.local
    if local:
        return f"the latent site(s) {', '.join(local)} lie in a plate that subsamples (local latent variables)"
    return None


def _tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _tensors(v)

