"""``lowrank``: q(z) = N(z; m, W W^T + diag(d)), W of shape (D, rank) (AutoLowRankMultivariateNormal)."""

import torch
from pyro.infer.autoguide import AutoLowRankMultivariateNormal
from torch.distributions import LowRankMultivariateNormal

from deepprob.guides.protocol import Draw, Family, PureForm, constrained
from deepprob.guides.start import StartsAtLaplace


class LowRankDraw(PureForm):
    """z = loc + W eps_W + d^(1/2) eps_D, covariance W W^T + diag(d)."""

    def noise(self, params, num_particles):
        like = params["loc"]
        rank = params["cov_factor"].shape[-1]
        # torch's LowRankMultivariateNormal.rsample draws eps_W first, then eps_D
        return (torch.randn(num_particles, rank, dtype=like.dtype, device=like.device),
                torch.randn(num_particles, self.latent_dim, dtype=like.dtype, device=like.device))

    def draw(self, params, noise):
        eps_w, eps_d = noise
        scale = constrained(self.guide, "scale")(params["scale_unconstrained"])
        factor = params["cov_factor"] * scale.unsqueeze(-1)
        z = params["loc"] + eps_w @ factor.T + scale * eps_d
        q = LowRankMultivariateNormal(params["loc"], factor, scale * scale, validate_args=False)
        return Draw(z, q.log_prob(z))


class LowRank(AutoLowRankMultivariateNormal, Family):
    """Pyro's ``AutoLowRankMultivariateNormal`` (its start: the initial point, sd ``init_scale``)."""

    def pure_form(self):
        return LowRankDraw(self)


class LowRankFromLaplace(StartsAtLaplace, LowRank):
    """Starts at the mode, its covariance H^{-1} in Pyro's form diag(s) (F F^T + I) diag(s): s the conditional
    sds 1 / sqrt(H_ii) (the narrowest a coordinate is: the diagonal part may not be wider), and with
    M = diag(1/s) H^{-1} diag(1/s) = Q diag(lambda) Q^T, F = Q_r diag(sqrt(lambda_r - 1)) along its ``rank``
    widest directions (a thin ridge is one such direction)."""

    def start_from(self, start):
        s = start.conditional_sds
        scaled = start.covariance / s[:, None] / s[None, :]
        eigenvalues, vectors = torch.linalg.eigh(scaled)
        top = eigenvalues.argsort(descending=True)[: self.cov_factor.shape[-1]]
        self.loc.copy_(start.loc)
        self.scale = s
        self.cov_factor.copy_(vectors[:, top] * (eigenvalues[top] - 1).clamp_min(0).sqrt())
        self.step_scales = {"loc": start.sds}


def build(model, options):
    family = LowRankFromLaplace if options.start == "laplace" else LowRank
    return family(model, init_scale=options.init_scale, rank=options.rank, **options.loc_kwargs())
