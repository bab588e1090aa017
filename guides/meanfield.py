"""``meanfield``: q(z) = prod_i N(z_i; m_i, s_i^2), a diagonal Normal (Pyro's AutoDiagonalNormal)."""

from pyro.infer.autoguide import AutoDiagonalNormal


def build(model, options):
    return AutoDiagonalNormal(model, init_scale=options.init_scale, **options.loc_kwargs())
