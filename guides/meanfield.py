"""``meanfield``: q(z) = prod_i N(z_i; m_i, s_i^2), a diagonal Normal (Pyro's AutoDiagonalNormal)."""

from pyro.infer.autoguide import AutoDiagonalNormal

from deepprob.guides.protocol import Draw, Family, PureForm, constrained, gaussian_log_q
from deepprob.guides.start import StartsAtLaplace


class DiagonalNormalDraw(PureForm):
    """z = loc + scale * eps."""

    def draw(self, params, noise):
        (eps,) = noise
        scale = constrained(self.guide, "scale")(params["scale_unconstrained"])
        return Draw(params["loc"] + eps * scale, gaussian_log_q(eps, scale.log().sum()))


class MeanField(AutoDiagonalNormal, Family):
    """Pyro's ``AutoDiagonalNormal`` (its start: the initial point, sd ``init_scale``)."""

    def pure_form(self):
        return DiagonalNormalDraw(self)


class MeanFieldFromLaplace(StartsAtLaplace, MeanField):
    """Starts at the mode with the sds 1 / sqrt(H_ii), the best a diagonal Gaussian does for a Gaussian p."""

    def start_from(self, start):
        self.loc.copy_(start.loc)
        self.scale = start.conditional_sds
        self.step_scales = {"loc": start.sds}


def build(model, options):
    family = MeanFieldFromLaplace if options.start == "laplace" else MeanField
    return family(model, init_scale=options.init_scale, **options.loc_kwargs())
