"""``pathfinder``: Pathfinder (Zhang, Carpenter, Gelman and Vehtari, JMLR 2022), on the model's unconstrained
log density log p(x, T(u)) + log|det dT/du|.

L-BFGS climbs the log density from an initial point (:func:`~deepprob.guides.start.lbfgs_path`). At each
iterate u_l, with gradient g_l of the log density, the L-BFGS history gives an inverse-Hessian estimate

    Sigma_l = BFGS updates, over the last J pairs (s, y) that satisfy s^T y > eps |y|^2, of diag(alpha_l)

(s = u_l - u_{l-1}, y = g_{l-1} - g_l; alpha, from 1, by the self-scaled diagonal BFGS update of the
paper's Algorithm, pair by pair, as this module reads it), and a Gaussian

    q_l = N(u_l + Sigma_l g_l, Sigma_l)      (a Newton step from u_l)

whose ELBO is estimated from K draws. The q_l with the best estimate is returned. Where the mode itself
is a poor summary (a funnel, a ridge), an iterate on the way up can beat it.

With ``paths`` = P > 1, P paths start from dispersed points (draws of the prior), and the result is the
equal-weight mixture of their Gaussians (multi-path Pathfinder); with ``resample`` its draws are importance
resampled with Pareto-smoothed weights p / q (then the result is a set of particles, with no density).

The guide is fitted by :meth:`PathfinderGuide.fit_without_svi` (``fit_svi`` calls it instead of SVI steps);
it counts its log-density evaluations (the ELBO draws included) and its gradient evaluations.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from pyro.distributions import MultivariateNormal
from pyro.infer.autoguide import AutoContinuous
from tqdm.auto import tqdm

from deepprob.errors import FitDivergedError
from deepprob.guides.fixed import FixedPosterior, Particles
from deepprob.guides.mixture import MixtureOfGaussians
from deepprob.guides.protocol import Family
from deepprob.guides.start import OptimisationPath, gaussian_elbo, lbfgs_path
from deepprob.logdensity import ModelStructure, init_median, init_sample

CURVATURE_EPS = 2.2e-16


def inverse_hessians(path: OptimisationPath, history: int) -> list[torch.Tensor | None]:
    """Sigma_l (D, D) at every iterate l of ``path`` (None at the start: no pair yet), in float64."""
    points, grads = path.points.double(), path.gradients.double()
    D = points.shape[1]
    diagonal = torch.ones(D, dtype=torch.float64)  # the Hessian's diagonal estimate (alpha = 1 / diagonal)
    pairs, out = [], [None]
    for l in range(1, len(points)):
        s, y = points[l] - points[l - 1], grads[l - 1] - grads[l]
        sy = float(s @ y)
        if sy > CURVATURE_EPS * float(y @ y) and sy > 0:
            pairs = (pairs + [(s, y)])[-history:]
            # the self-scaled diagonal update: with a = y^T diag(alpha) y, b = y^T s, c = s^T diag(alpha)^-1 s,
            # 1 / alpha_new = a / (b alpha) + y^2 / b - a s^2 / (b c alpha^2)   (here diagonal = 1 / alpha)
            a, c = float(y @ (y / diagonal)), float(s @ (diagonal * s))
            diagonal = (a / sy * (diagonal - (diagonal * s) ** 2 / c) + y * y / sy).clamp_min(1e-12)
        if not pairs:
            out.append(None)
            continue
        H = torch.diag(1.0 / diagonal)
        eye = torch.eye(D, dtype=torch.float64)
        for s_j, y_j in pairs:
            rho = 1.0 / float(s_j @ y_j)
            left = eye - rho * torch.outer(s_j, y_j)
            H = left @ H @ left.T + rho * torch.outer(s_j, s_j)
        out.append(0.5 * (H + H.T))
    return out


def best_gaussian(log_joint, path: OptimisationPath, *, history: int, elbo_draws: int, dtype) -> dict | None:
    """The Gaussian of ``path`` with the best ELBO estimate: ``{"loc", "scale_tril", "elbo", "iteration",
    "elbos", "density_evaluations"}``, or None where no iterate gave a finite estimate."""
    best, elbos, evaluations = None, [], 0
    for l, sigma in enumerate(inverse_hessians(path, history)):
        if sigma is None:
            elbos.append(-math.inf)
            continue
        try:
            tril = torch.linalg.cholesky(sigma)
        except RuntimeError:
            elbos.append(-math.inf)
            continue
        loc = (path.points[l].double() + sigma @ path.gradients[l].double()).to(dtype)
        tril = tril.to(dtype)
        elbo = gaussian_elbo(log_joint, loc, tril, elbo_draws)
        evaluations += elbo_draws
        elbos.append(elbo)
        if math.isfinite(elbo) and (best is None or elbo > best["elbo"]):
            best = {"loc": loc, "scale_tril": tril, "elbo": elbo, "iteration": l}
    if best is None:
        return None
    return {**best, "elbos": elbos, "density_evaluations": evaluations}


class PathfinderGuide(AutoContinuous, Family):
    """Pathfinder over the unconstrained latent vector (D,); fitted by :meth:`fit_without_svi`.

    Args:
        model: the Pyro model.
        init_loc_fn: the first path's initial point (Pyro's per-site initialisation).
        paths: P, the number of paths (the others start at draws of the prior).
        history: J, the L-BFGS pairs in each inverse-Hessian estimate (the paper's 6).
        elbo_draws: K, the draws of each iterate's ELBO estimate.
        max_iterations: L-BFGS iterations per path at most.
        resample: with P > 1, importance resampling of ``resample_draws`` draws of the mixture.
    """

    fits_itself = True

    def __init__(self, model, init_loc_fn=init_median, paths: int = 1, history: int = 6, elbo_draws: int = 25,
                 max_iterations: int = 1000, resample: bool = False, resample_draws: int = 1000):
        if paths < 1:
            raise ValueError(f"paths: expected >= 1, got {paths}")
        self.paths, self.history, self.elbo_draws = paths, history, elbo_draws
        self.max_iterations, self.resample, self.resample_draws = max_iterations, resample, resample_draws
        super().__init__(model, init_loc_fn=init_loc_fn)

    def get_posterior(self, *args, **kwargs):
        raise RuntimeError("pathfinder: fit it first (deepprob.fit or fit_svi call fit_without_svi)")

    def fit_without_svi(self, *args, progress: bool = False, desc: str = "pathfinder", **kwargs):
        """Run the paths; returns (the fitted guide, minus the best ELBO estimate along each path's
        iterations (L,), and {"gradient_evaluations", "density_evaluations", "iterations", ...})."""
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        structure = ModelStructure.of(self.model, *args, **kwargs)
        log_joint = structure.log_joint_unconstrained(self.model, *args, **kwargs)
        with torch.no_grad():
            first = structure.pack({name: self.prototype_trace.nodes[name]["value"] for name in structure.latent})
        starts = [first] + [structure.initial_point(self.model, *args, init_fn=init_sample, **kwargs)
                            for _ in range(self.paths - 1)]
        found, gradient_evaluations, density_evaluations, trace = [], 0, 0, []
        for start in tqdm(starts, desc=desc, disable=not progress or self.paths == 1, leave=False):
            path = lbfgs_path(log_joint, start, self.max_iterations)
            if path is None:
                continue
            gradient_evaluations += path.evaluations
            best = best_gaussian(log_joint, path, history=self.history, elbo_draws=self.elbo_draws,
                                 dtype=first.dtype)
            density_evaluations += path.evaluations
            if best is None:
                continue
            density_evaluations += best["density_evaluations"]
            found.append(best)
            trace += [-e for e in best["elbos"]]
        if not found:
            raise FitDivergedError("pathfinder: no point of any path gave a finite ELBO estimate; check the model, "
                                   "or start elsewhere")
        extras = {"gradient_evaluations": gradient_evaluations, "density_evaluations": density_evaluations,
                  "paths": len(found), "iterations": [len(b["elbos"]) - 1 for b in found],
                  "best_iteration": [b["iteration"] for b in found], "path_elbos": [b["elbo"] for b in found]}
        if len(found) == 1:
            posterior = MultivariateNormal(found[0]["loc"], scale_tril=found[0]["scale_tril"])
            return FixedPosterior(self.model, posterior, *args, **kwargs), np.array(trace), extras
        locs = torch.stack([b["loc"] for b in found])
        trils = torch.stack([b["scale_tril"] for b in found])
        mixture = MixtureOfGaussians(locs.new_zeros(len(found)), locs, trils)
        if not self.resample:
            return FixedPosterior(self.model, mixture, *args, **kwargs), np.array(trace), extras
        particles, evaluations = importance_resample(log_joint, mixture, self.resample_draws)
        extras["density_evaluations"] += evaluations
        guide = FixedPosterior(self.model, Particles(particles), *args, q_density="particles", **kwargs)
        return guide, np.array(trace), extras


def importance_resample(log_joint, q, draws: int) -> tuple[torch.Tensor, int]:
    """``draws`` draws of q resampled (with replacement) by their Pareto-smoothed weights p / q."""
    import arviz as az

    with torch.no_grad():
        u = q.sample((draws,))
        log_w = (log_joint(u) - q.log_prob(u)).double().cpu().numpy()
    log_w = np.where(np.isfinite(log_w), log_w, -np.inf)
    smoothed, _ = az.psislw(log_w, reff=1.0)
    weights = torch.as_tensor(np.exp(smoothed - smoothed.max()))
    index = torch.multinomial(weights / weights.sum(), draws, replacement=True)
    return u[index.to(u.device)], draws


def build(model, options):
    return PathfinderGuide(model, paths=options.paths, resample=options.resample, **options.loc_kwargs())
