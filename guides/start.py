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

``H`` is the Hessian of -log p(x, T(u)) - log|J| at the mode; its curvature is kept however small (raw-scale
data), and where the mode is flat or a saddle the eigenvalue is raised to a floor (:func:`floored_precision`).
Where the search fails (a non-finite density, say), the guide keeps its default start.

Such a guide also sets its ``step_scales``: the locations' learning rates in units of the posterior sds
at the start (``fit_svi`` multiplies Adam's steps by them), so that a step of ``lr`` moves a location
``lr`` posterior sds whatever its units: 0.02 of a slope's sd of 0.007, not 0.02 absolute.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from pyro.ops.hessian import hessian

from deepprob.guides.protocol import gaussian_log_q
from deepprob.logdensity import ModelStructure
from deepprob.progress import report_once

PRECISION_FLOOR = 1e-4
DEFAULT_SCALE = 0.1  # a guide's default start: the prior's median, this sd in every unconstrained coordinate (Pyro's)
ELBO_CHECK_DRAWS = 64  # draws of the ELBOs that choose between the Laplace start and the default one
# how much lower the Laplace start's ELBO may be (nats per latent dimension) and still be the start: a mode that is
# degenerate is worse by far more (centred eight schools: 54 nats in 10 dimensions; stochastic volatility: 1e34),
# while a sound one can lose a nat or two to the default start's narrowness (non-centred eight schools: 1.7)
ELBO_MARGIN_PER_DIMENSION = 1.0


@dataclass
class LaplaceStart:
    """The mode ``loc`` (D,) in the unconstrained space, the precision there (D, D) and its inverse."""

    loc: torch.Tensor
    precision: torch.Tensor
    covariance: torch.Tensor
    evaluations: int
    modes: torch.Tensor | None = None  # (M, D): the distinct modes a search from several starts found

    @property
    def sds(self) -> torch.Tensor:
        return self.covariance.diagonal().sqrt()

    @property
    def conditional_sds(self) -> torch.Tensor:
        return self.precision.diagonal().rsqrt()


def find_mode(model, prototype_trace, *args, judged: bool = True, **kwargs) -> LaplaceStart | None:
    """The Laplace start from the prototype trace's point: :func:`laplace_start` (``judged``: None where it is a
    far worse start than the default one), else :func:`laplace_at_mode` whatever it is worth."""
    structure = ModelStructure.of(model, *args, **kwargs)
    with torch.no_grad():
        start = structure.pack({name: prototype_trace.nodes[name]["value"] for name in structure.latent})
    log_joint = structure.log_joint_unconstrained(model, *args, **kwargs)
    return laplace_start(log_joint, start) if judged else laplace_at_mode(log_joint, start)


def gaussian_elbo(log_joint, loc: torch.Tensor, scale_tril: torch.Tensor, draws: int = ELBO_CHECK_DRAWS,
                  generator: torch.Generator | None = None) -> float:
    """The ELBO of N(loc, L Lᵀ) (``scale_tril`` L, (D, D)) for ``log_joint`` by ``draws`` draws of ``generator``
    (a CPU generator; None: torch's global one), E[log p(z) - log q(z)]: exactly 0 where q is a normalised target.
    -inf where the log density is not finite at some draw or cannot be computed."""
    eps = torch.randn(draws, len(loc), generator=generator, dtype=loc.dtype).to(loc.device)
    try:
        with torch.no_grad():
            log_p = log_joint(loc + eps @ scale_tril.T)
    except (RuntimeError, ValueError):
        return -math.inf
    value = float((log_p - gaussian_log_q(eps, scale_tril.diagonal().abs().log().sum())).mean())
    return value if math.isfinite(value) else -math.inf


def laplace_start(log_joint, start: torch.Tensor) -> LaplaceStart | None:
    """The Laplace start (:func:`laplace_at_mode`) unless it is a far worse start than ``start`` with sds of 0.1 (a
    guide's default) by their ELBOs (by more than :data:`ELBO_MARGIN_PER_DIMENSION` nats a latent dimension); then
    None, and the guide keeps its default start.

    The joint mode of a hierarchical or latent-state model can be a degenerate point far from the posterior's
    mass: the stochastic volatility model's joint mode has a volatility scale σ of 24 where the posterior has
    0.8 ± 0.3 (an over-fit: every latent state on its observation), and the Gaussian of its curvature had an ELBO
    of -10^34 where the default start's was -2622. Every guide fitted from it was 50 to 190 reference sds off."""
    laplace = laplace_at_mode(log_joint, start)
    if laplace is None:
        return None
    seed = torch.Generator().manual_seed(0)  # the same draws every time: the choice is the same from every seed
    try:
        laplace_elbo = gaussian_elbo(log_joint, laplace.loc, torch.linalg.cholesky(laplace.covariance),
                                     generator=seed)
    except RuntimeError:  # not positive definite to working precision
        laplace_elbo = -math.inf
    default_elbo = gaussian_elbo(log_joint, start, DEFAULT_SCALE * torch.eye(len(start), dtype=start.dtype,
                                                                             device=start.device),
                                 generator=seed.manual_seed(0))
    if laplace_elbo >= default_elbo - ELBO_MARGIN_PER_DIMENSION * len(start):
        return laplace
    report_once(f"the Laplace start (the joint mode and its curvature) is a worse start than the prior's median by "
                f"their ELBOs ({laplace_elbo:.4g} against {default_elbo:.4g}): a degenerate joint mode, as a "
                "hierarchical scale's often is; the guides start at their default, and NUTS unwhitened")
    return None


def _negative_log_density(log_joint, u: torch.Tensor) -> torch.Tensor:
    """-log_joint at u (D,), with its gradient in ``u.grad``; +inf (and a zero gradient) where the density
    cannot be computed (a factorisation that fails far out) or is not finite: a point of density 0, as Stan
    rejects it."""
    try:
        loss = -log_joint(u.unsqueeze(0))[0]
    except (RuntimeError, ValueError):
        loss = None
    if loss is None or not torch.isfinite(loss):
        u.grad = torch.zeros_like(u)
        return torch.tensor(math.inf, dtype=u.dtype)
    loss.backward()
    return loss.detach()


def _lbfgs(u: torch.Tensor, max_iter: int, max_eval: int | None = None, history_size: int = 50) -> torch.optim.LBFGS:
    return torch.optim.LBFGS([u], lr=1.0, max_iter=max_iter, max_eval=max_eval, line_search_fn="strong_wolfe",
                             tolerance_grad=1e-9, tolerance_change=1e-12, history_size=history_size)


def climb(log_joint, start: torch.Tensor, max_evaluations: int = 1000) -> tuple[torch.Tensor, float, int] | None:
    """L-BFGS (strong Wolfe line search) up the log density ``log_joint`` (unconstrained, (S, D) -> (S,)) from
    ``start`` (D,): (the mode, the log density there, the evaluations), or None where it is not finite."""
    u = start.detach().clone().requires_grad_()
    optimizer = _lbfgs(u, max_evaluations)
    evaluations = 0

    def closure():
        nonlocal evaluations
        evaluations += 1
        optimizer.zero_grad()
        return _negative_log_density(log_joint, u)

    with torch.enable_grad():
        try:
            optimizer.step(closure)
            with torch.no_grad():
                height = float(log_joint(u.detach().unsqueeze(0))[0])
        except (RuntimeError, ValueError):
            return None
    return (u.detach(), height, evaluations) if math.isfinite(height) else None


@dataclass
class OptimisationPath:
    """The iterates of an L-BFGS run up a log density: ``points`` (L + 1, D), ``log_densities`` (L + 1,) and
    ``gradients`` (L + 1, D) of the log density there (the start first), and ``evaluations``, the log density
    and gradient evaluations it took (line searches included)."""

    points: torch.Tensor
    log_densities: torch.Tensor
    gradients: torch.Tensor
    evaluations: int


def lbfgs_path(log_joint, start: torch.Tensor, max_iterations: int = 1000,
               relative_tolerance: float = 1e-10) -> OptimisationPath | None:
    """L-BFGS as :func:`climb` runs it, one iteration at a time, recording every iterate (Pathfinder's path).
    It stops when an iteration no longer moves, or changes the log density by less than
    ``relative_tolerance`` of it; None where the start's density is not finite."""
    u = start.detach().clone().requires_grad_()
    optimizer = _lbfgs(u, 1, max_eval=25)  # one iteration a step(), its line search up to 25 evaluations
    evaluations, cache = 0, {}

    def closure():
        # each step() evaluates the current point first: the point the last line search ended at, kept here
        nonlocal evaluations
        optimizer.zero_grad()
        key = u.detach().clone()
        if "point" in cache and torch.equal(cache["point"], key):
            u.grad = cache["grad"].clone()
            return cache["loss"]
        evaluations += 1
        loss = _negative_log_density(log_joint, u)
        cache.update(point=key, grad=u.grad.detach().clone(), loss=loss)
        return loss

    points, values, grads = [], [], []
    with torch.enable_grad():
        for _ in range(max_iterations + 1):
            try:
                loss = closure()
            except (RuntimeError, ValueError):
                break
            if not torch.isfinite(loss):
                break
            points.append(u.detach().clone())
            values.append(-loss)
            grads.append(-u.grad.detach().clone())
            if len(values) > 1 and (torch.equal(points[-1], points[-2]) or abs(float(values[-1] - values[-2]))
                                    <= relative_tolerance * (1.0 + abs(float(values[-1])))):
                break
            try:
                optimizer.step(closure)
            except (RuntimeError, ValueError):
                break
    if not points:
        return None
    return OptimisationPath(torch.stack(points), torch.stack(values), torch.stack(grads), evaluations)


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
    """(precision, covariance, how many eigenvalues were raised) of a Hessian H (D, D), symmetrised.

    An eigenvalue above the noise of H's precision (D eps max|lambda|) is curvature, kept however small: a
    regression on raw dollars has posterior sds of thousands (precisions of 1e-7), a correlation of -0.9999 makes
    some 1e-12 of the largest. One at or below it (a flat direction, a saddle) is raised to
    min(:data:`PRECISION_FLOOR`, the smallest curvature kept), and never below the noise: a variance of at most
    1e4, or as wide as the widest direction the posterior has. (An absolute floor of 1e-4 on every eigenvalue held
    a raw-scale regression's Laplace start, and the step sizes scaled to it, at 1% of its sds: every Gaussian guide
    came out 0.92 off in an sd.) None where H is not finite."""
    H = 0.5 * (H + H.T)
    eigenvalues, vectors = torch.linalg.eigh(H.double())
    if not torch.isfinite(eigenvalues).all():
        return None
    noise = len(H) * torch.finfo(H.dtype).eps * float(eigenvalues.abs().max())
    curvature = eigenvalues[eigenvalues > noise]
    floor = PRECISION_FLOOR if len(curvature) == 0 else min(PRECISION_FLOOR, float(curvature.min()))
    floor = max(floor, noise)
    clipped = int((eigenvalues <= noise).sum())
    eigenvalues = torch.where(eigenvalues > noise, eigenvalues, torch.full_like(eigenvalues, floor))
    precision = ((vectors * eigenvalues) @ vectors.T).to(H.dtype)
    covariance = ((vectors / eigenvalues) @ vectors.T).to(H.dtype)
    return precision, covariance, clipped


def climb_starts(model, structure: ModelStructure, log_joint, first: tuple[torch.Tensor, float], num_starts: int,
                 *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor, int]:
    """A search for modes: :func:`climb` from ``num_starts - 1`` draws of the prior (uniform in (-2, 2) of the
    unconstrained space where a prior cannot be sampled), beside ``first``, a mode already found with its log
    density. Returns the optima (S, D), their log densities (S,) and the evaluations it took."""
    from deepprob.logdensity import init_sample

    starts = [structure.initial_point(model, *args, init_fn=init_sample, **kwargs) for _ in range(num_starts - 1)]
    climbed = [(first[0], first[1], 0)] + [climb(log_joint, s) for s in starts]
    climbed = [c for c in climbed if c is not None]
    points, heights = torch.stack([c[0] for c in climbed]), torch.tensor([c[1] for c in climbed])
    return points, heights.to(points.dtype), sum(c[2] for c in climbed)


def distinct_modes(points: torch.Tensor, heights: torch.Tensor, sds: torch.Tensor, drop: float = 20.0,
                   apart: float = 3.0) -> torch.Tensor:
    """The optima within ``drop`` nats of the best that lie more than ``apart`` sds (``sds``, (D,)) from every
    higher one: (M, D), the highest first."""
    chosen = []
    for i in torch.argsort(heights, descending=True).tolist():
        if heights[i] < heights.max() - drop:
            break
        if all(float(((points[i] - points[j]) / sds).norm()) > apart for j in chosen):
            chosen.append(i)
    return points[chosen]


def covering_frame(start: LaplaceStart) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, covariance) of the equal-weight mixture of N(mode_m, H^{-1}) over the distinct modes found (the
    Laplace approximation itself where there is one): a Gaussian wide enough to cover every mode."""
    if start.modes is None or len(start.modes) < 2:
        return start.loc, start.covariance
    mean = start.modes.mean(0)
    spread = start.modes - mean
    return mean, start.covariance + spread.T @ spread / len(start.modes)


class StartsAtLaplace:
    """Mixin of an ``AutoContinuous`` guide: its parameters, once made, are set from the Laplace start by its
    ``start_from(start)`` (each family its own). ``gradient_evaluations`` counts the search's. A family with
    ``find_modes`` also searches for modes from ``num_starts`` starts (``start.modes``)."""

    find_modes = False
    num_starts = 8
    seeks_the_mode = False  # a MAP point or the Laplace approximation: starts at the mode, degenerate or not

    def _setup_prototype(self, *args, **kwargs):
        super()._setup_prototype(*args, **kwargs)
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices):  # off the record: the fit's noise is as without the start
            start = find_mode(self.model, self.prototype_trace, *args, judged=not self.seeks_the_mode, **kwargs)
            if start is not None and self.find_modes:
                structure = ModelStructure.of(self.model, *args, **kwargs)
                log_joint = structure.log_joint_unconstrained(self.model, *args, **kwargs)
                height = float(log_joint(start.loc.unsqueeze(0))[0])
                points, heights, evaluations = climb_starts(self.model, structure, log_joint, (start.loc, height),
                                                            self.num_starts, *args, **kwargs)
                start.modes = distinct_modes(points, heights, start.sds)
                start.evaluations += evaluations
        if start is not None:
            if self.start_jitter:  # a restart's (Family.start_jitter): displaced at random, the global RNG
                # along the Laplace Gaussian's own shape (a draw of it, overdispersed), not coordinate by coordinate:
                # on a narrow ridge that would start many conditional sds off it
                eps = torch.randn_like(start.loc)
                start.loc = start.loc + self.start_jitter * torch.linalg.cholesky(start.covariance) @ eps
            with torch.no_grad():
                self.start_from(start)
            self.gradient_evaluations = self.gradient_evaluations + start.evaluations


def unit_cholesky(covariance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale (D,), unit lower factor (D, D)) with covariance = diag(scale) U U^T diag(scale), as Pyro's
    ``AutoMultivariateNormal`` holds it."""
    L = torch.linalg.cholesky(covariance)
    scale = L.diagonal()
    return scale, L / scale[:, None]
