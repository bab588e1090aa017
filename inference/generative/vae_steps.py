"""The compiled engine of the VAE trainer: Pyro's step traced through the model and guide once, compiled.

For guides whose every sample site is reparameterised (the VAE's amortised Normal), Pyro's estimators
reduce to

    loss = -[ log p(x, z) - log q(z) ],              z ~ q  (Trace_ELBO)
    loss = -[ log p(x | z) - KL(q(z) || p(z)) ],     z ~ q  (TraceMeanField_ELBO)

with each site's log density scaled and masked as Pyro does (:mod:`deepprob.logdensity`). Unlike
Pyro's ``differentiable_loss`` this reads no value back to the host, so ``make_fx`` traces it (model,
guide and networks included), with the gradient (``torch.func``) and Adam's update
(:func:`deepprob.optim.adam_update_` on the optimiser's own state tensors), into one graph that
Inductor compiles. The guide's random draws become random operations of that graph; with Inductor's
``fallback_random`` they are torch's own, so both engines draw the same z from the same seed.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable

import torch
from pyro.distributions.util import scale_and_mask
from torch import nn
from torch.distributions import kl_divergence

from deepprob.compiler import Compiled, compile_step
from deepprob.optim import adam_update_
from deepprob.seeds import rng_untouched
from deepprob.traces import log_prob_sum, log_weights, sample_sites


def traced_elbo_loss(model: Callable, guide: Callable, *args, analytic_kl: bool = False, **kwargs) -> torch.Tensor:
    """One-particle ``Trace_ELBO`` (or, with ``analytic_kl``, ``TraceMeanField_ELBO``) loss from two traces."""
    from pyro import poutine

    guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    for name, site in sample_sites(guide_trace):
        if not site["is_observed"] and not site["fn"].has_rsample:
            raise NotImplementedError(f"site {name!r} of the guide is not reparameterised")
    if not analytic_kl:
        return -log_weights(model_trace, guide_trace)
    elbo = log_prob_sum(model_trace, sites=lambda name, site: site["is_observed"])
    for name, site in sample_sites(guide_trace):
        if not site["is_observed"]:
            kl = kl_divergence(site["fn"], model_trace.nodes[name]["fn"])
            elbo = elbo - scale_and_mask(kl, site["scale"], site["mask"]).sum()
    return -elbo


class _NegativeELBO(nn.Module):
    """The VAE's one-particle loss as a module of its networks' parameters (for ``functional_call``)."""

    def __init__(self, vae, analytic_kl: bool, loss=None):
        super().__init__()
        self.vae, self.analytic_kl, self.other_loss = vae, analytic_kl, loss

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.other_loss is not None:  # another objective (IWAE), which reads nothing back to the host either
            return self.other_loss.differentiable_loss(self.vae.model, self.vae.guide, x)
        return traced_elbo_loss(self.vae.model, self.vae.guide, x, analytic_kl=self.analytic_kl)


class CompiledVAESteps:
    """The VAE's SVI step, compiled once per minibatch shape.

    Args:
        vae: the :class:`~deepprob.models.vae.VAE`.
        params: its trainable parameters, in the optimiser's order.
        analytic_kl: the ``TraceMeanField_ELBO`` estimator.
        loss: another loss with ``differentiable_loss(model, guide, x)`` (the IWAE bound's), or None.

    Call with a minibatch and the state ``params + exp_avgs + exp_avg_sqs + steps + [lr]`` (the
    optimiser's own tensors, updated in place); returns the loss (a 0-dim tensor on the device).
    """

    def __init__(self, vae, params: list[torch.Tensor], analytic_kl: bool, loss=None):
        names = {id(p): f"vae.{name}" for name, p in vae.named_parameters()}
        self.names = [names[id(p)] for p in params]
        self.loss = _NegativeELBO(vae, analytic_kl, loss)
        self.compiled: dict[tuple, Compiled] = {}  # minibatch shape -> compiled step
        self.compile_seconds = 0.0

    def _step(self, *flat):
        n = len(self.names)
        params, m, v, counters, lr, batch = (flat[:n], flat[n:2 * n], flat[2 * n:3 * n], flat[3 * n:4 * n],
                                             flat[4 * n], flat[4 * n + 1])

        def loss_of(values):
            return torch.func.functional_call(self.loss, dict(zip(self.names, values)), (batch,))

        grads, value = torch.func.grad_and_value(loss_of)(list(params))
        adam_update_(params, grads, m, v, counters, lr)
        return value

    def __call__(self, x: torch.Tensor, state: list[torch.Tensor]) -> torch.Tensor:
        compiled = self.compiled.get(tuple(x.shape))
        if compiled is None:
            start = time.perf_counter()
            with rng_untouched(x.device), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                compiled = compile_step(self._step, [t.clone() for t in state] + [x],
                                        inductor_options={"fallback_random": True})
            self.compile_seconds += time.perf_counter() - start
            self.compiled[tuple(x.shape)] = compiled
        return compiled.fn(*state, x)
