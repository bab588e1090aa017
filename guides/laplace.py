"""``laplace``: the MAP point found by SVI, then a Gaussian with the inverse Hessian at the mode.

    q(z) = N(z; z*, H^{-1}),  z* = argmax log p(x, z),  H = -grad^2 log p(x, z*)  (unconstrained space)
"""

from __future__ import annotations

import warnings

import torch
from pyro import poutine
from pyro.infer.autoguide import AutoLaplaceApproximation, AutoMultivariateNormal
from pyro.ops.hessian import hessian


class LaplaceGuide(AutoLaplaceApproximation):
    """Pyro's AutoLaplaceApproximation; :func:`~deepprob.inference.fit_svi` calls :meth:`finalize`.

    Unlike Pyro's ``laplace_approximation`` it does not fail when the Hessian is not positive definite
    (a saddle or an unfinished MAP fit, common in neural networks): eigenvalues below
    ``1e-6 * max eigenvalue`` are raised to that floor, with a warning saying how many.
    """

    def finalize(self, *args, **kwargs) -> AutoMultivariateNormal:
        """The Gaussian approximation at the fitted mode, as an ``AutoMultivariateNormal``."""
        guide_trace = poutine.trace(self).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(self.model, trace=guide_trace)).get_trace(*args, **kwargs)
        loss = guide_trace.log_prob_sum() - model_trace.log_prob_sum()
        H = hessian(loss, self.loc)
        with torch.no_grad():
            H = 0.5 * (H + H.T).double()
            eigenvalues, vectors = torch.linalg.eigh(H)
            floor = 1e-6 * eigenvalues.abs().max().clamp_min(1e-12)
            clipped = int((eigenvalues < floor).sum())
            if clipped:
                warnings.warn(f"laplace: the Hessian at the mode has {clipped} eigenvalue(s) below {floor:.3g} "
                              "(not a strict maximum: fit longer, or use another guide); they were raised to it",
                              stacklevel=2)
            cov = (vectors * (1.0 / eigenvalues.clamp_min(floor))) @ vectors.T
            scale = cov.diagonal().sqrt()
            correlation = cov / scale[:, None] / scale[None, :]
            correlation_tril = torch.linalg.cholesky(correlation)
            loc = self.loc.detach()
            dtype = loc.dtype
        gaussian = AutoMultivariateNormal(self.model)
        gaussian._setup_prototype(*args, **kwargs)
        del gaussian.loc, gaussian.scale, gaussian.scale_tril
        gaussian.register_buffer("loc", loc)
        gaussian.register_buffer("scale", scale.to(dtype))
        # as in Pyro: the guide's covariance is diag(scale) L L^T diag(scale) with L the correlation's factor
        gaussian.register_buffer("scale_tril", correlation_tril.to(dtype))
        return gaussian


def build(model, options):
    return LaplaceGuide(model, **options.loc_kwargs())
