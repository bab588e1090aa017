"""``laplace``: the MAP point found by SVI, then a Gaussian with the inverse Hessian at the mode.

    q(z) = N(z; z*, H^{-1}),  z* = argmax log p(x, z),  H = -grad^2 log p(x, z*)  (unconstrained space)
"""

from __future__ import annotations

import warnings

import torch
from pyro.distributions import MultivariateNormal
from pyro.infer.autoguide import AutoLaplaceApproximation
from pyro.ops.hessian import hessian

from deepprob.errors import FitDivergedError
from deepprob.guides.delta import PointMassDraw
from deepprob.guides.fixed import FixedPosterior
from deepprob.guides.protocol import Family
from deepprob.guides.start import StartsAtLaplace, floored_precision
from deepprob.logdensity import ModelStructure


class LaplaceGuide(AutoLaplaceApproximation, Family):
    """Pyro's AutoLaplaceApproximation: a point mass while SVI fits the mode; then :meth:`finalize`.

    Unlike Pyro's ``laplace_approximation`` it does not fail when the Hessian is not positive definite
    (a saddle or an unfinished MAP fit, common in neural networks): eigenvalues that are not positive, or
    zero to the precision of the Hessian, are raised to a floor
    (:func:`~deepprob.guides.start.floored_precision`), with a warning saying how many.
    """

    def pure_form(self):
        return PointMassDraw(self)

    def finalize(self, *args, **kwargs) -> FixedPosterior:
        """The Gaussian approximation N(mode, H^{-1}) at the fitted mode, as a guide."""
        # -log p(x, T(u)) - log |det dT/du| at the mode u = loc: the objective that the MAP fit minimised
        log_joint = ModelStructure.of(self.model, *args, **kwargs).log_joint_unconstrained(self.model, *args, **kwargs)
        H = hessian(-log_joint(self.loc.unsqueeze(0))[0], self.loc)
        with torch.no_grad():
            floored = floored_precision(H.detach())
            if floored is None:
                raise FitDivergedError("laplace: the Hessian at the mode is not finite; "
                                       "fit longer or with another guide")
            _, cov, clipped = floored
            cov = cov.double()
            if clipped:
                warnings.warn(f"laplace: the Hessian at the mode has {clipped} eigenvalue(s) at or below 0 or "
                              "too small to tell from 0 (not a strict maximum: fit longer, or use another guide); "
                              "they were raised to a floor", stacklevel=2)
            scale = cov.diagonal().sqrt()
            # the factor as diag(scale) chol(correlation): stable where the scales differ by orders of magnitude
            correlation_tril = torch.linalg.cholesky(cov / scale[:, None] / scale[None, :])
            loc = self.loc.detach()
            scale_tril = (scale[:, None] * correlation_tril).to(loc.dtype)
        # self.model carries this guide's initialisation; FixedPosterior's packing is every guide's
        gaussian = FixedPosterior(self.model, MultivariateNormal(loc, scale_tril=scale_tril), *args, **kwargs)
        gaussian.gradient_evaluations = len(loc)  # the Hessian: one backward pass a row
        return gaussian


class LaplaceFromMode(StartsAtLaplace, LaplaceGuide):
    """Its MAP fit starts at the mode L-BFGS found (SVI then polishes it, and the Hessian is taken there)."""

    seeks_the_mode = True

    def start_from(self, start):
        self.loc.copy_(start.loc)
        self.step_scales = {"loc": start.sds}


def build(model, options):
    family = LaplaceFromMode if options.start == "laplace" else LaplaceGuide
    return family(model, **options.loc_kwargs())
