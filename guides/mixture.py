"""``mixture``: a mixture of K full-covariance Gaussians over the whole latent vector (ours: Pyro has none).

    q(z) = sum_k pi_k N(z; mu_k, L_k L_k^T),    pi = softmax(logits)

A draw picks a component k ~ Categorical(pi) and sets z = mu_k + L_k eps, eps ~ N(0, I). ``log q(z)``
is the *marginal* density of the mixture, so ``E_q[log p(x, z) - log q(z)]`` is the ELBO itself (not
the looser bound over (k, z)) and ``Trace_ELBO`` estimates it without bias. Its gradient has two parts:
pathwise through z for the locations and Cholesky factors, and a score-function term
``(log p - log q) * grad log pi_k`` for the discrete choice of k, which the distribution hands to
``Trace_ELBO`` through its ``score_parts`` (with a leave-one-out baseline across vectorised
particles). Pyro's ``MixtureOfDiagNormals`` has pathwise gradients for the weights too, but only
for diagonal components and not in one dimension.

Initialisation decides whether a mixture finds several modes, so the components start on distinct
modes of the posterior: an ascent of log p(x, z) from the ``init_loc_fn`` point and from draws of the
prior, then the K best-separated optima. With ``start="laplace"`` (default) each start climbs by L-BFGS to
its mode, the first from the Laplace mode, and every component takes the Laplace covariance there; with
``start="prior"``, by Adam from all starts at once (as vectorised particles), at sd ``init_scale``.
"""

from __future__ import annotations

import torch
from pyro import poutine
from pyro.distributions import TorchDistribution, constraints
from pyro.distributions.score_parts import ScoreParts
from pyro.distributions.util import eye_like
from pyro.infer.autoguide import AutoContinuous
from pyro.nn import PyroParam
from torch.distributions import transform_to

from deepprob.guides.protocol import Draw, Family, PureForm
from deepprob.guides.start import climb_starts, find_mode, unit_cholesky
from deepprob.logdensity import ModelStructure, init_median, init_sample


def leave_one_out(score: torch.Tensor) -> torch.Tensor:
    """s_p - mean_{q != p} s_q for the scores of P particles (unchanged for one particle)."""
    n = score.numel()
    return score - (score.sum() - score) / (n - 1) if n > 1 else score


class MixtureOfGaussians(TorchDistribution):
    """sum_k pi_k N(z; locs_k, scale_trils_k scale_trils_k^T) over vectors of size D.

    Args:
        logits: (K,) unnormalised log weights.  locs: (K, D).  scale_trils: (K, D, D) lower triangular.

    ``rsample`` is pathwise given the drawn component; ``score_parts`` adds the score function of
    that draw, so that Pyro's ELBOs give unbiased gradients for the weights too.
    """

    arg_constraints = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, logits, locs, scale_trils, batch_shape=(), validate_args=None):
        self.logits, self.locs, self.scale_trils = logits, locs, scale_trils
        self._drawn = None  # (value, component) of the last rsample
        super().__init__(torch.Size(batch_shape), locs.shape[-1:], validate_args=False)

    def expand(self, batch_shape, _instance=None):
        return MixtureOfGaussians(self.logits, self.locs, self.scale_trils, batch_shape)

    @property
    def log_weights(self) -> torch.Tensor:
        return torch.log_softmax(self.logits, -1)

    def rsample(self, sample_shape=()):
        shape = torch.Size(sample_shape) + self.batch_shape
        k = torch.distributions.Categorical(logits=self.logits).sample(shape)
        eps = torch.randn(shape + self.event_shape, dtype=self.locs.dtype, device=self.locs.device)
        z = self.locs[k] + (self.scale_trils[k] @ eps.unsqueeze(-1)).squeeze(-1)
        self._drawn = (z, k)
        return z

    def log_prob(self, value):
        return self._log_prob(value, self.log_weights)

    def _log_prob(self, value, log_weights):
        components = torch.distributions.MultivariateNormal(self.locs, scale_tril=self.scale_trils)
        return torch.logsumexp(components.log_prob(value.unsqueeze(-2)) + log_weights, -1)

    def score_parts(self, value):
        """Pathwise parts plus the score function of the drawn components, with a leave-one-out baseline.

        With P > 1 draws in the batch (vectorised particles), ``s_p - mean_{q != p} s_q`` replaces the score
        ``s_p = log pi_{k_p}``: multiplied by the ELBO's per-particle ``log p - log q`` this is the REINFORCE
        leave-one-out estimator (Kool et al. 2019), still unbiased, and far less noisy when ``log p`` is
        large (its constant part cancels). The explicit derivative of log q(z) in the weights has mean
        zero under q (the score identity) and is pure noise, so the entropy term sees detached weights.
        """
        log_prob = self.log_prob(value)
        if self._drawn is None or self._drawn[0] is not value:
            raise ValueError("MixtureOfGaussians.score_parts: value was not drawn by this distribution's rsample")
        score = leave_one_out(self.log_weights[self._drawn[1]])
        # Trace_ELBO's per-particle log p - log q counts the model's sites only, so it misses this
        # auxiliary site's log q(z); the entropy term adds its share of the score-function product.
        entropy_term = self._log_prob(value, self.log_weights.detach()) + log_prob.detach() * score
        return ScoreParts(log_prob=log_prob, score_function=score, entropy_term=entropy_term)

    @property
    def mean(self):
        return (self.log_weights.exp().unsqueeze(-1) * self.locs).sum(-2).expand(self.batch_shape + self.event_shape)


class MixtureDraw(PureForm):
    """noise = (components k (S,), eps (S, D)); z = mu_k + L_k eps.

    The same estimator as ``MixtureOfGaussians.score_parts`` gives ``Trace_ELBO``: pathwise in the
    locations and Cholesky factors, the score function (leave-one-out baseline) for the weights.
    """

    def noise(self, params, num_particles):
        # as MixtureOfGaussians.rsample draws them (Categorical.sample's multinomial call on its
        # probabilities, without building a distribution each step), then the standard normals
        logits = params["logits"].detach()
        probs = torch.softmax(logits - logits.logsumexp(-1, keepdim=True), -1)
        k = torch.multinomial(probs.unsqueeze(0), num_particles, True).T.reshape(num_particles)
        like = params["locs"]
        return k, torch.randn(num_particles, self.latent_dim, dtype=like.dtype, device=like.device)

    def draw(self, params, noise):
        k, eps = noise
        scales = transform_to(constraints.softplus_positive)(params["scales_unconstrained"])
        unit_trils = transform_to(constraints.unit_lower_cholesky)(params["scale_trils_unconstrained"])
        trils = scales.unsqueeze(-1) * unit_trils
        q = MixtureOfGaussians(params["logits"], params["locs"], trils)
        z = params["locs"][k] + (trils[k] @ eps.unsqueeze(-1)).squeeze(-1)
        log_weights = q.log_weights
        score = leave_one_out(log_weights[k])
        return Draw(z, q._log_prob(z, log_weights), q._log_prob(z, log_weights.detach()), score)


class AutoGaussianMixture(AutoContinuous, Family):
    """Mixture of ``components`` full-covariance Gaussians over the unconstrained latent vector (size D).

    Args:
        model: the Pyro model.
        components: K >= 1 (K = 1 is a full-rank Gaussian).
        init_loc_fn: Pyro per-site initialisation of the first start of the mode search.
        init_scale: initial sd of each component along each axis.
        num_starts: gradient-ascent starts for the mode search (default ``max(8, 4 K)``).
        start_steps: Adam steps of the mode search (``start_at_laplace=False``).
        start_at_laplace: climb from each start by L-BFGS and give every component the Laplace covariance
            of the best mode (:mod:`deepprob.guides.start`).

    Parameters after the first call: ``locs`` (K, D), ``scales`` (K, D), ``scale_trils`` (K, D, D) with
    unit diagonal, ``logits`` (K,); component k has Cholesky factor ``scales[k, :, None] * scale_trils[k]``.
    """

    discrete_choice = True  # a draw picks a component: the ELBO only (fit_svi's objectives)

    def __init__(self, model, components=2, init_loc_fn=init_median, init_scale=0.1,
                 num_starts=None, start_steps=200, start_at_laplace=False):
        if components < 1:
            raise ValueError(f"components: expected >= 1, got {components}")
        self.components = components
        self._init_scale = init_scale
        self.num_starts = num_starts or max(8, 4 * components)
        self.start_steps = start_steps
        self.start_at_laplace = start_at_laplace
        super().__init__(model, init_loc_fn=init_loc_fn)

    def _setup_prototype(self, *args, **kwargs):
        super()._setup_prototype(*args, **kwargs)
        laplace = None
        if self.start_at_laplace:  # the search by L-BFGS from every start; the best mode's curvature, the sds
            devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
            with torch.random.fork_rng(devices):
                laplace = find_mode(self.model, self.prototype_trace, *args, **kwargs)
        centres = self._find_modes(*args, first=None if laplace is None else laplace.loc, climb_with_lbfgs=laplace
                                   is not None, **kwargs)
        K, D = centres.shape
        self.locs = torch.nn.Parameter(centres)
        scales, trils = torch.full_like(centres, self._init_scale), eye_like(centres, D).expand(K, D, D).clone()
        if laplace is not None:
            scale, unit = unit_cholesky(laplace.covariance)
            scales, trils = scale.expand(K, D).clone(), unit.expand(K, D, D).clone()
            self.gradient_evaluations += laplace.evaluations
            self.step_scales = {"locs": laplace.sds.expand(K, D)}
        self.scales = PyroParam(scales, constraints.softplus_positive)
        self.scale_trils = PyroParam(trils, constraints.unit_lower_cholesky)
        self.logits = torch.nn.Parameter(centres.new_zeros(K))

    def get_posterior(self, *args, **kwargs):
        return MixtureOfGaussians(self.logits, self.locs, self.scales.unsqueeze(-1) * self.scale_trils)

    def pure_form(self):
        return MixtureDraw(self)

    # --- initialisation -------------------------------------------------------------------------

    def _find_modes(self, *args, first: torch.Tensor | None = None, climb_with_lbfgs: bool = False,
                    **kwargs) -> torch.Tensor:
        # the latent vector as every AutoContinuous packs it (the model's sites in order, unconstrained)
        structure = ModelStructure.of(self.model, *args, **kwargs)
        if climb_with_lbfgs:  # every start climbed to its mode (the first, the Laplace mode, is one already)
            log_joint = structure.log_joint_unconstrained(self.model, *args, **kwargs)
            points, heights, self.gradient_evaluations = climb_starts(
                self.model, structure, log_joint, (first, float(log_joint(first.unsqueeze(0))[0])),
                self.num_starts, *args, **kwargs)
            return select_separated(points, heights, self.components)
        with torch.no_grad():  # the init_loc_fn point of the prototype trace
            starts = [structure.pack({name: self.prototype_trace.nodes[name]["value"] for name in structure.latent})]
        # draws of the prior; uniform in (-2, 2) of the unconstrained space where a prior cannot be sampled
        starts += [structure.initial_point(self.model, *args, init_fn=init_sample, **kwargs)
                   for _ in range(self.num_starts - 1)]
        points = torch.nn.Parameter(torch.stack(starts))
        optimizer = torch.optim.Adam([points], lr=0.05)
        # the guide's first call may come under no_grad (fit_svi creates parameters that way)
        with poutine.block(), torch.enable_grad():
            # log p(x, z) + log |det dz/du| at all starts at once (vectorised, as the compiled engine does)
            log_joint = structure.log_joint_unconstrained(self.model, *args, **kwargs)
            for _ in range(self.start_steps):
                optimizer.zero_grad()
                (-log_joint(points).sum()).backward()
                optimizer.step()
            with torch.no_grad():
                heights = log_joint(points)
        points = points.detach()
        self.gradient_evaluations = self.num_starts * self.start_steps  # of the search, at every start
        heights = torch.where(torch.isfinite(heights), heights, torch.full_like(heights, -torch.inf))
        return select_separated(points, heights, self.components)


def select_separated(points: torch.Tensor, heights: torch.Tensor, k: int, drop: float = 20.0) -> torch.Tensor:
    """K rows of ``points`` (S, D): the highest, then repeatedly the one farthest from those chosen.

    Only points whose ``heights`` (log densities) are within ``drop`` nats of the best compete (modes far
    below carry no posterior mass); distances are in units of the points' spread along each axis.
    """
    spread = points.std(0).clamp_min(1e-3) if len(points) > 1 else torch.ones_like(points[0])
    # starts that climbed to one mode differ in the last digits: ties at the search's precision go by order,
    # not by rounding (the same choice however the log density's sums were ordered)
    heights = torch.round(heights.double() * 1e6) / 1e6
    order = torch.argsort(-heights, stable=True)
    candidates = [int(i) for i in order if heights[i] >= heights[order[0]] - drop]
    chosen = [candidates[0]]
    while len(chosen) < k:
        pool = [i for i in candidates if i not in chosen] or [int(i) for i in order if int(i) not in chosen]
        if not pool:  # fewer starts than components: repeat the best, nudged apart
            chosen.append(chosen[len(chosen) % len(chosen)])
            continue
        gaps = [round(min(float(((points[i] - points[j]) / spread).norm()) for j in chosen), 6) for i in pool]
        chosen.append(pool[max(range(len(pool)), key=gaps.__getitem__)])
    centres = points[chosen].clone()
    # identical starts would give identical components with identical gradients: break the tie
    centres[1:] += 1e-2 * spread * torch.randn_like(centres[1:])
    return centres


def build(model, options):
    return AutoGaussianMixture(
        model, components=options.components, init_scale=options.init_scale,
        start_at_laplace=options.start == "laplace", **options.loc_kwargs()
    )
