"""``lowrank``: q(z) = N(z; m, W W^T + diag(d)), W of shape (D, rank) (AutoLowRankMultivariateNormal)."""

from pyro.infer.autoguide import AutoLowRankMultivariateNormal


def build(model, options):
    return AutoLowRankMultivariateNormal(
        model, init_scale=options.init_scale, rank=options.rank, **options.loc_kwargs()
    )
