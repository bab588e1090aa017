"""The fast SVI path (issue 7): the same ELBO and gradients as Pyro's Trace_ELBO, and the same fit."""

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from pyro.infer.autoguide import AutoLaplaceApproximation

from deepprob.datasets.synthetic import two_classes, two_moons
from deepprob.guides.registry import build_guide
from deepprob.inference.fast_svi import fast_elbo_fn, fit_svi_fast, guide_parameters
from deepprob.inference.svi import fit_svi
from deepprob.models.bnn import BayesianNeuralNetwork
from deepprob.models.logreg import LogisticRegression, with_bias
from deepprob.models.standardise import Standardisation


def logreg(n=500):
    t = two_classes(n=n)
    X1 = with_bias(t.X)
    st = Standardisation.of(X1)
    return LogisticRegression(st), (st.features(X1), t.y)


def bnn():
    t = two_moons(n=100)
    return BayesianNeuralNetwork(2, hidden=3), (t.X, t.y)


def pyro_elbo(model, guide, args, eps):
    """Pyro's -Trace_ELBO().differentiable_loss with the guide's draw forced to z = loc + L eps."""
    trace = poutine.trace(guide).get_trace(*args)
    aux = next(name for name, site in trace.nodes.items()
               if site["type"] == "sample" and site["infer"].get("is_auxiliary"))
    L = guide.scale[..., None] * guide.scale_tril if hasattr(guide, "scale_tril") else torch.diag(guide.scale)
    z = guide.loc + L @ eps
    return -Trace_ELBO().differentiable_loss(model, poutine.condition(guide, {aux: z}), *args)


@pytest.mark.parametrize("problem", [logreg, bnn])
@pytest.mark.parametrize("guide_name", ["meanfield", "fullrank"])
def test_elbo_and_gradients_match_trace_elbo(problem, guide_name):
    model, args = problem()
    guide = build_guide(guide_name, model)
    guide(*args)
    with torch.no_grad():  # move off the initial point, so that every parameter matters
        for p in guide.parameters():
            p.add_(0.1 * torch.randn_like(p))
    fn = fast_elbo_fn(model, guide, *args)
    params = guide_parameters(guide)
    assert set(params) >= {"loc", "scale_unconstrained"}
    eps = torch.randn(3, fn.latent_dim)
    ours = fn(params, eps)
    ours_grads = torch.autograd.grad(ours, list(params.values()))
    # Pyro one particle at a time; the fast ELBO of 3 particles is their mean
    theirs = [pyro_elbo(model, guide, args, e) for e in eps]
    theirs_grads = [torch.autograd.grad(t, list(params.values())) for t in theirs]
    value = torch.stack(theirs).mean()
    torch.testing.assert_close(ours, value, rtol=1e-5, atol=1e-3)
    for name, a, *bs in zip(params, ours_grads, *theirs_grads):
        b = torch.stack(bs).mean(0)
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * max(1.0, b.abs().max().item()), msg=name)


def test_other_guides_are_refused():
    model, args = logreg(100)
    with pytest.raises(NotImplementedError, match="AutoDiagonalNormal"):
        fast_elbo_fn(model, AutoLaplaceApproximation(model), *args)
    with pytest.raises(NotImplementedError):
        fit_svi_fast(model, build_guide("lowrank", model), *args, steps=2)


@pytest.mark.parametrize("guide_name", ["meanfield", "fullrank"])
def test_fit_matches_fit_svi_on_logreg(guide_name):
    model, args = logreg(2000)
    kwargs = dict(steps=600, lr=0.05, num_particles=4, elbo_particles=50)
    pyro.set_rng_seed(1)
    slow = fit_svi(model, build_guide(guide_name, model), *args, progress=False, **kwargs)
    pyro.set_rng_seed(2)
    fast = fit_svi_fast(model, build_guide(guide_name, model), *args, **kwargs)
    assert fast.losses.shape == (600,)
    loc_slow, scale_slow = slow.guide._loc_scale()
    loc_fast, scale_fast = fast.guide._loc_scale()  # the trained values were written into the guide
    assert ((loc_fast - loc_slow).abs() / scale_slow).max() < 0.1
    assert ((scale_fast / scale_slow).log().abs()).max() < 0.25  # scales: SGD noise of both fits
    assert abs(fast.elbo - slow.elbo) < 1.0
