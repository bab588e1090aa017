"""``fullrank``: q(z) = N(z; m, L L^T) with a full Cholesky factor L (Pyro's AutoMultivariateNormal)."""

from pyro.infer.autoguide import AutoMultivariateNormal

from deepprob.guides.protocol import Draw, Family, PureForm, constrained, gaussian_log_q
from deepprob.guides.start import StartsAtLaplace, unit_cholesky


class MultivariateNormalDraw(PureForm):
    """z = loc + L eps, L = diag(scale) scale_tril."""

    def draw(self, params, noise):
        (eps,) = noise
        scale = constrained(self.guide, "scale")(params["scale_unconstrained"])
        L = scale[..., None] * constrained(self.guide, "scale_tril")(params["scale_tril_unconstrained"])
        return Draw(params["loc"] + eps @ L.T, gaussian_log_q(eps, L.diagonal().log().sum()))


class FullRank(AutoMultivariateNormal, Family):
    """Pyro's ``AutoMultivariateNormal`` (its start: the initial point, sd ``init_scale``)."""

    def pure_form(self):
        return MultivariateNormalDraw(self)


class FullRankFromLaplace(StartsAtLaplace, FullRank):
    """Starts at the Laplace approximation N(mode, H^{-1}) itself."""

    def start_from(self, start):
        self.loc.copy_(start.loc)
        self.scale, self.scale_tril = unit_cholesky(start.covariance)
        self.step_scales = {"loc": start.sds}


def build(model, options):
    family = FullRankFromLaplace if options.start == "laplace" else FullRank
    return family(model, init_scale=options.init_scale, **options.loc_kwargs())
