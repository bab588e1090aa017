"""Where a guide starts: at the Laplace approximation of the posterior (``GuideOptions(start="laplace")``).

SVI from a guide's default start (the prior's median, a sd of 0.1 in every unconstrained coordinate)
can take longer than any fit's budget where the posterior lies far from there or is very unevenly
scaled: flat priors with a mean 26 units away, a slope whose sd is a hundredth of the intercept's, a
correlation of -0.9999 between them. Starting at the Laplace approximation (the mode, found by L-BFGS on
the log density in the unconstrained space, and the curvature there) puts every Gaussian family at or
near its optimum for such posteriors, and SVI refines it from there:

    meanfield: loc = mode, sd_i = 1 / sqrt(H_ii)        (the KL(q||p)-optimal sds of a Gaussian p)
    fullrank:  loc = mode, covariance = H^{-1}
    lowrank:   loc = mode, sds of H^{-1}, its largest correlations in the factor
    mixture:   the mode among the starts of the search for modes, the components' sds from H^{-1}
    laplace:   the MAP fit starts at the mode

``H`` is the Hessian of -log p(x, T(u)) - log|J| at the mode, its eigenvalues floored at
:data:`PRECISION_FLOOR` (no variance above 1e4 in an unconstrained coordinate, where the mode is flat or
a saddle). Where the search fails (a non-finite density, say), the guide keeps its default start.

Such a guide also sets its ``step_scales``: the locations' learning rates in units of the posterior sds
at the start (``fit_svi`` multiplies Adam's steps by them), so that a step of ``lr`` moves a location
``lr`` posterior sds whatever its units: 0.02 of a slope's sd of 0.007, not 0.02 absolute.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from pyro.ops.hessian import hessian

from deepprob.logdensity import ModelStructure

PRECISION_FLOOR = 1e-4


@dataclass
class LaplaceStart:
    """The mode ``loc`` (D,) in the unconstrained space, the precision there (D, D) and its inverse."""

    loc: torch.Tensor
    precision: torch.Tensor
    covariance: torch.Tensor
    evaluations: int

    @property
    def sds(self) -> torch.Tensor:
        return self.covariance.diagonal().sqrt()

    @property
    def conditional_sds(self) -> torch.Tensor:
        return self.precision.diagonal().rsqrt()


def find_mode(model, prototype_trace, *args, **kwargs) -> LaplaceStart | None:
    """The Laplace start from the prototype trace's point (:func:`laplace_at_mode`)."""
    structure = ModelStructure.of(model, *args, **kwargs)
    with torch.no_grad():
        start = structure.pack({name: prototype_trace.nodes[name]["value"] for name in structure.latent})
    return laplace_at_mode(structure.log_joint_unconstrained(model, *args, **kwargs), start)


def climb(log_joint, start: torch.Tensor, max_evaluations: int = 1000) -> tuple[torch.Tensor, float, int] | None:
    """L-BFGS (strong Wolfe line search) up the log density ``log_joint`` (unconstrained, (S, D) -> (S,)) from
    ``start`` (D,): (the mode, the log density there, the evaluations), or None where it is not finite.
    A point where the density cannot be computed (a factorisation that fails far out) counts as one of
    density 0, as Stan rejects it."""
    u = start.detach().clone().requires_grad_()
    optimizer = torch.optim.LBFGS([u], lr=1.0, max_iter=max_evaluations, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-9, tolerance_change=1e-12, history_size=50)
    evaluations = 0

    def closure():
        nonlocal evaluations
        evaluations += 1
        optimizer.zero_grad()
        try:
            loss = -log_joint(u.unsqueeze(0))[0]
        except (RuntimeError, ValueError):
            loss = None
        if loss is None or not torch.isfinite(loss):
            u.grad = torch.zeros_like(u)
            return torch.tensor(math.inf, dtype=u.dtype)
        loss.backward()
        return loss.detach()

    with torch.enable_grad():
        try:
            optimizer.step(closure)
            with torch.no_grad():
                height = float(log_joint(u.detach().unsqueeze(0))[0])
        except (RuntimeError, ValueError):
            return None
    return (u.detach(), height, evaluations) if math.isfinite(height) else None


def laplace_at_mode(log_joint, start: torch.Tensor) -> LaplaceStart | None:
    """:func:`climb` from ``start``, then the Hessian at the mode (floored, :func:`floored_precision`)."""
    climbed = climb(log_joint, start)
    if climbed is None:
        return None
    mode, _, evaluations = climbed
    with torch.enable_grad():
        point = mode.clone().requires_grad_()
        try:
            H = hessian(-log_joint(point.unsqueeze(0))[0], point).detach()
        except (RuntimeError, ValueError):
            return None
    floored = floored_precision(H)
    if floored is None:
        return None
    precision, covariance, _ = floored
    return LaplaceStart(mode, precision, covariance, evaluations + len(mode))


def floored_precision(H: torch.Tensor):
    """(precision, covariance, how many eigenvalues were raised) of a Hessian H (D, D), symmetrised, its
    eigenvalues raised to at least max(:data:`PRECISION_FLOOR`, D eps max|lambda|): a flat direction or a
    saddle (an eigenvalue <= 0, or one that is zero to the precision of H) gets a variance of at most 1e4,
    a genuinely small one (a correlation of -0.9999 makes some 1e-12 of the largest) is kept. None where H
    is not finite."""
    H = 0.5 * (H + H.T)
    eigenvalues, vectors = torch.linalg.eigh(H.double())
    if not torch.isfinite(eigenvalues).all():
        return None
    floor = max(PRECISION_FLOOR, len(H) * torch.finfo(H.dtype).eps * float(eigenvalues.abs().max()))
    clipped = int((eigenvalues < floor).sum())
    eigenvalues = eigenvalues.clamp_min(floor)
    precision = ((vectors * eigenvalues) @ vectors.T).to(H.dtype)
    covariance = ((vectors / eigenvalues) @ vectors.T).to(H.dtype)
    return precision, covariance, clipped


class StartsAtLaplace:
    """Mixin of an ``AutoContinuous`` guide: its parameters, once made, are set from the Laplace start by its
    ``start_from(start)`` (each family its own). ``gradient_evaluations`` counts the search's."""

    keeps_family = True  # the compiled engine's pure form of the base class still applies
    gradient_evaluations = 0
    step_scales = None

    def _setup_prototype(self, *args, **kwargs):
        super()._setup_prototype(*args, **kwargs)
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices):  # off the record: the fit's noise is as without the start
            start = find_mode(self.model, self.prototype_trace, *args, **kwargs)
        if start is not None:
            with torch.no_grad():
                self.start_from(start)
            self.gradient_evaluations = self.gradient_evaluations + start.evaluations


def unit_cholesky(covariance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale (D,), unit lower factor (D, D)) with covariance = diag(scale) U U^T diag(scale), as Pyro's
    ``AutoMultivariateNormal`` holds it."""
    L = torch.linalg.cholesky(covariance)
    scale = L.diagonal()
    return scale, L / scale[:, None]
