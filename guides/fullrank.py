"""``fullrank``: q(z) = N(z; m, L L^T) with a full Cholesky factor L (Pyro's AutoMultivariateNormal)."""

from pyro.infer.autoguide import AutoMultivariateNormal

from deepprob.guides.start import StartsAtLaplace, unit_cholesky


class FullRankFromLaplace(StartsAtLaplace, AutoMultivariateNormal):
    """Starts at the Laplace approximation N(mode, H^{-1}) itself."""

    def start_from(self, start):
        self.loc.copy_(start.loc)
        self.scale, self.scale_tril = unit_cholesky(start.covariance)
        self.step_scales = {"loc": start.sds}


def build(model, options):
    family = FullRankFromLaplace if options.start == "laplace" else AutoMultivariateNormal
    return family(model, init_scale=options.init_scale, **options.loc_kwargs())
