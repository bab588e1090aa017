"""``meanfield``: q(z) = prod_i N(z_i; m_i, s_i^2), a diagonal Normal (Pyro's AutoDiagonalNormal)."""

from pyro.infer.autoguide import AutoDiagonalNormal

from deepprob.guides.start import StartsAtLaplace


class MeanFieldFromLaplace(StartsAtLaplace, AutoDiagonalNormal):
    """Starts at the mode with the sds 1 / sqrt(H_ii), the best a diagonal Gaussian does for a Gaussian p."""

    def start_from(self, start):
        self.loc.copy_(start.loc)
        self.scale = start.conditional_sds
        self.step_scales = {"loc": start.sds}


def build(model, options):
    family = MeanFieldFromLaplace if options.start == "laplace" else AutoDiagonalNormal
    return family(model, init_scale=options.init_scale, **options.loc_kwargs())
