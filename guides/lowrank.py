"""``lowrank``: q(z) = N(z; m, W W^T + diag(d)), W of shape (D, rank) (AutoLowRankMultivariateNormal)."""

import torch
from pyro.infer.autoguide import AutoLowRankMultivariateNormal

from deepprob.guides.start import StartsAtLaplace


class LowRankFromLaplace(StartsAtLaplace, AutoLowRankMultivariateNormal):
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
    family = LowRankFromLaplace if options.start == "laplace" else AutoLowRankMultivariateNormal
    return family(model, init_scale=options.init_scale, rank=options.rank, **options.loc_kwargs())
