r"""Which way round a KL divergence is taken decides what a fit looks like.

Fitting one Gaussian q = N(μ, σ²) to a bimodal p:

- the *forward* KL, :math:`KL(p \| q) = E_p[\log p - \log q]`, punishes q for missing mass that p has:
  it is *mass covering*, and for a Gaussian family its minimiser matches p's mean and variance
  (moment matching, :func:`moment_matched_normal`);
- the *reverse* KL, :math:`KL(q \| p) = E_q[\log q - \log p]`, punishes q for putting mass where p has
  little: it is *mode seeking*, and settles on one mode (variational inference minimises this one).

The divergences are computed by numerical integration on a fixed grid (trapezoid rule) or by Monte
Carlo, and minimised by gradient descent (Adam) on (μ, log σ).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.distributions import Categorical, Distribution, MixtureSameFamily, Normal

from deepprob.errors import InputError
from deepprob.optim import ExponentialDecay, make_adam
from deepprob.training import TrainingLoop


def bimodal_mixture(
    locs: tuple[float, ...] = (0.0, 8.0),
    scales: tuple[float, ...] = (1.0, 1.0),
    weights: tuple[float, ...] | None = None,
) -> MixtureSameFamily:
    """p(x) = Σ_k w_k N(x; locs[k], scales[k]²) over the real line; by default
    p = 0.5·N(0, 1) + 0.5·N(8, 1), the 1-D target of the KL example (also a handy Pyro test target:
    ``pyro.sample("x", bimodal_mixture())``). Batch shape (), event shape ().
    """
    locs_t = torch.tensor(locs, dtype=torch.float32)
    scales_t = torch.tensor(scales, dtype=torch.float32)
    if locs_t.shape != scales_t.shape or locs_t.ndim != 1:
        raise InputError(f"locs {locs} and scales {scales}: expected two sequences of the same length")
    w = torch.full_like(locs_t, 1.0 / len(locs)) if weights is None else torch.tensor(weights, dtype=torch.float32)
    return MixtureSameFamily(Categorical(probs=w), Normal(locs_t, scales_t))


def moment_matched_normal(mixture: MixtureSameFamily) -> tuple[float, float]:
    r"""The minimiser of :math:`KL(p \| N(μ, σ^2))` for a 1-D Gaussian mixture p, in closed form:
    μ = Σ w_k μ_k and σ² = Σ w_k (σ_k² + μ_k²) − μ². For 0.5·N(0,1) + 0.5·N(8,1): μ = 4, σ = √17."""
    w = mixture.mixture_distribution.probs.double()
    mu_k = mixture.component_distribution.loc.double()
    var_k = mixture.component_distribution.scale.double() ** 2
    mu = (w * mu_k).sum()
    var = (w * (var_k + mu_k**2)).sum() - mu**2
    return float(mu), float(var.sqrt())


def normal_kl(mu1: float, sigma1: float, mu2: float, sigma2: float) -> float:
    r""":math:`KL(N(μ_1, σ_1^2) \| N(μ_2, σ_2^2)) = \log(σ_2/σ_1) + (σ_1^2 + (μ_1-μ_2)^2)/(2σ_2^2) - 1/2`."""
    return math.log(sigma2 / sigma1) + (sigma1**2 + (mu1 - mu2) ** 2) / (2 * sigma2**2) - 0.5


def kl_quadrature(a: Distribution | torch.Tensor, b: Distribution | torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    r""":math:`KL(a \| b) = ∫ a(x) (\log a(x) - \log b(x)) dx` by the trapezoid rule on ``grid`` (G,);
    differentiable in the parameters of ``a`` and ``b``. Either may be given as its log density on the
    grid (a (G,) tensor) instead, e.g. a fixed target evaluated once. The grid must cover the mass of ``a``."""
    log_a = a if isinstance(a, torch.Tensor) else a.log_prob(grid)
    log_b = b if isinstance(b, torch.Tensor) else b.log_prob(grid)
    return torch.trapezoid(log_a.exp() * (log_a - log_b), grid)


def kl_monte_carlo(a: Distribution, b: Distribution, num_samples: int) -> torch.Tensor:
    r""":math:`KL(a \| b) ≈ \frac1S Σ_s \log a(x_s) - \log b(x_s)`, x_s ~ a, reparameterised when ``a`` allows
    (so the gradient reaches a's parameters through the samples as well as through log a)."""
    x = a.rsample((num_samples,)) if a.has_rsample else a.sample((num_samples,))
    return (a.log_prob(x) - b.log_prob(x)).mean()


@dataclass
class GaussianFit:
    """A fitted q = N(mu, sigma²), the divergence it minimised and its value at the end.

    Attributes:
        direction: "forward" (KL(p‖q)) or "reverse" (KL(q‖p)).
        mu, sigma: the fitted parameters.
        kl: the divergence at (mu, sigma), by quadrature on a fine grid whatever the estimator.
        history: (steps, 3) tensor of (mu, sigma, estimated kl) after each step.
    """

    direction: str
    mu: float
    sigma: float
    kl: float
    history: torch.Tensor

    def as_dict(self) -> dict:
        return {"mu": self.mu, "sigma": self.sigma, "kl": self.kl}

    def distribution(self) -> Normal:
        return Normal(torch.tensor(self.mu), torch.tensor(self.sigma))


def default_grid(p: MixtureSameFamily, points: int = 2001, width: float = 20.0) -> torch.Tensor:
    """A grid over p's support: from the lowest component mean − ``width`` σ to the highest + ``width`` σ."""
    locs, scales = p.component_distribution.loc, p.component_distribution.scale
    lo = float((locs - width * scales).min())
    hi = float((locs + width * scales).max())
    return torch.linspace(lo, hi, points, dtype=torch.float64)


def fit_gaussian(
    p: Distribution,
    direction: str,
    *,
    init: tuple[float, float] = (2.0, 2.0),
    steps: int = 2000,
    lr: float = 0.05,
    estimator: str = "quadrature",
    num_samples: int = 256,
    grid: torch.Tensor | None = None,
    progress: bool = False,
) -> GaussianFit:
    r"""Fit q = N(μ, σ²) to the 1-D ``p`` by Adam on (μ, log σ), minimising
    :math:`KL(p \| q)` (``direction="forward"``) or :math:`KL(q \| p)` (``"reverse"``).

    Args:
        p: the target, a 1-D distribution with ``log_prob`` (``sample`` too for Monte Carlo forward KL).
        init: (μ₀, σ₀).
        estimator: "quadrature" (trapezoid rule on ``grid``, float64, deterministic) or "mc"
            (``num_samples`` fresh samples a step: from p for the forward KL, reparameterised from q
            for the reverse KL).
        grid: the quadrature grid (default :func:`default_grid`, which needs p to be a mixture).
        progress: show a progress bar (:class:`~deepprob.training.TrainingLoop`).

    Raises:
        InputError: an unknown direction or estimator, σ₀ <= 0, steps < 1.
        FitDivergedError: the divergence became NaN or infinite.
    """
    if direction not in ("forward", "reverse"):
        raise InputError(f"direction {direction!r}: expected 'forward' or 'reverse'")
    if estimator not in ("quadrature", "mc"):
        raise InputError(f"--estimator {estimator!r}: expected 'quadrature' or 'mc'")
    if not init[1] > 0:
        raise InputError(f"--init-sigma {init[1]}: expected a number > 0")
    if steps < 1:
        raise InputError(f"--steps {steps}: expected at least 1")
    grid = default_grid(p) if grid is None else grid
    dtype = torch.float64 if estimator == "quadrature" else torch.float32
    p_fit = _cast(p, dtype)
    mu = torch.tensor(float(init[0]), dtype=dtype, requires_grad=True)
    log_sigma = torch.tensor(math.log(init[1]), dtype=dtype, requires_grad=True)
    # β2 = 0.99, not 0.999: started far off (KL ~ 100), the first gradients are huge, and a long memory
    # of them in Adam's second moment would shrink the steps for a thousand iterations
    optimizer = make_adam([mu, log_sigma], lr, betas=(0.9, 0.99))
    # decay the step 10x over the run: Adam's steps are ~lr in size whatever the gradient, so without
    # a decay they would keep jittering the estimate by about lr at the optimum
    decay = ExponentialDecay(lr, steps)
    history = torch.empty(steps, 3, dtype=torch.float64)
    grid = grid.to(dtype)
    log_p = p_fit.log_prob(grid) if estimator == "quadrature" else None  # p is fixed: evaluate it once
    loop = TrainingLoop(f"KL {direction}", steps, progress=progress, every=max(1, steps // 200),
                        postfix=lambda window: f"kl={float(history[window.stop - 1, 2]):.4g}")
    for step in loop:
        q = Normal(mu, log_sigma.exp())
        if estimator == "quadrature":
            loss = kl_quadrature(log_p, q, grid) if direction == "forward" else kl_quadrature(q, log_p, grid)
        elif direction == "forward":
            # E_p[log p - log q]: samples from p carry no gradient; only log q depends on (μ, σ)
            x = p_fit.sample((num_samples,))
            loss = (p_fit.log_prob(x) - q.log_prob(x)).mean()
        else:
            loss = kl_monte_carlo(q, p_fit, num_samples)
        decay.apply(optimizer, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        loop.record(step, loss=float(loss.detach()))
        optimizer.step()
        history[step] = torch.tensor([float(mu.detach()), float(log_sigma.detach().exp()), float(loss.detach())])
    loop.close(f"kl {float(history[-1, 2]):.4g}")
    mu_f, sigma_f = float(mu.detach()), float(log_sigma.detach().exp())
    with torch.no_grad():
        q64 = Normal(torch.tensor(mu_f, dtype=torch.float64), torch.tensor(sigma_f, dtype=torch.float64))
        p64 = _cast(p, torch.float64)
        a, b = (p64, q64) if direction == "forward" else (q64, p64)
        kl = float(kl_quadrature(a, b, grid.double()))
    return GaussianFit(direction, mu_f, sigma_f, kl, history)


def _cast(p: Distribution, dtype: torch.dtype) -> Distribution:
    """A copy of a Normal or a mixture of Normals in ``dtype`` (quadrature runs in float64)."""
    if isinstance(p, MixtureSameFamily) and isinstance(p.component_distribution, Normal):
        comp = p.component_distribution
        return MixtureSameFamily(
            Categorical(probs=p.mixture_distribution.probs.to(dtype)), Normal(comp.loc.to(dtype), comp.scale.to(dtype))
        )
    if isinstance(p, Normal):
        return Normal(p.loc.to(dtype), p.scale.to(dtype))
    return p
