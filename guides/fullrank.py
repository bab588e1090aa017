"""``fullrank``: q(z) = N(z; m, L L^T) with a full Cholesky factor L (Pyro's AutoMultivariateNormal)."""

from pyro.infer.autoguide import AutoMultivariateNormal


def build(model, options):
    return AutoMultivariateNormal(model, init_scale=options.init_scale, **options.loc_kwargs())
