"""How a model runs at many draws at once (deepprob.batching): each way is chosen only where it reproduces the
model draw by draw, the broadcasting twin gives the model's own log densities, and the one private layout of
Pyro read here (``bare_model``) is checked."""

import functools

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer.autoguide import AutoMultivariateNormal, AutoNormal
from pyro.infer.autoguide.initialization import InitMessenger

from deepprob.batching import BroadcastingTwin, choose, one_draw, over_draws, probe_draws, probe_values
from deepprob.logdensity import ModelStructure, bare_model

N, K = 7, 3
X = torch.linspace(-1, 1, N * K).reshape(N, K)
Y = torch.linspace(-2, 2, N)


def broadcasting(x, y):
    beta = pyro.sample("beta", dist.Normal(0.0, 1.0).expand([K]).to_event(1))
    sigma = pyro.sample("sigma", dist.LogNormal(0.0, 1.0))
    with pyro.plate("data", N):
        pyro.sample("y", dist.Normal((x * beta).sum(-1), sigma), obs=y)


def matmul(x, y):
    """The same model as users write it: ``x @ beta`` does not broadcast over a leading dim of draws."""
    beta = pyro.sample("beta", dist.Normal(0.0, 1.0).expand([K]).to_event(1))
    sigma = pyro.sample("sigma", dist.LogNormal(0.0, 1.0))
    with pyro.plate("data", N):
        pyro.sample("y", dist.Normal(x @ beta, sigma), obs=y)


def branching(x, y):
    """Python control flow on a latent value: vmap cannot batch it, the loop can."""
    beta = pyro.sample("beta", dist.Normal(0.0, 1.0).expand([K]).to_event(1))
    sigma = pyro.sample("sigma", dist.LogNormal(0.0, 1.0))
    scale = sigma * 2 if float(sigma) > 1 else sigma
    with pyro.plate("data", N):
        pyro.sample("y", dist.Normal(x @ beta, scale), obs=y)


def reference_of(model, values):
    structure = ModelStructure.of(model, X, Y)
    return structure, over_draws(functools.partial(one_draw, model, (X, Y), {}, structure), values, "loop")


def draws_for(model, S=4):
    structure = ModelStructure.of(model, X, Y)
    return probe_values(structure, structure.initial_point(model, X, Y), S)


@pytest.mark.parametrize("model, expected", [(broadcasting, "plate"), (matmul, "vmap"), (branching, "loop")])
def test_choose_takes_the_fastest_way_that_reproduces_the_model(model, expected):
    values = draws_for(model)
    structure, reference = reference_of(model, values)
    how, why = choose(model, (X, Y), {}, structure, values, reference)
    assert how == expected
    assert (why is None) == (expected == "plate")
    assert structure.batching == expected


def test_choose_falls_back_when_a_way_gives_other_numbers():
    """A plate that runs without error but computes something else (the draws' dim summed away) is not taken."""
    def summing(x, y):
        beta = pyro.sample("beta", dist.Normal(0.0, 1.0).expand([K]).to_event(1))
        sigma = pyro.sample("sigma", dist.LogNormal(0.0, 1.0))
        with pyro.plate("data", N):
            pyro.sample("y", dist.Normal((x * beta.reshape(-1, K).mean(0)).sum(-1), sigma), obs=y)

    values = draws_for(summing)
    structure, reference = reference_of(summing, values)
    how, why = choose(summing, (X, Y), {}, structure, values, reference)
    assert how == "vmap" and "other values" in why


def test_probe_draws_avoid_every_size_of_the_data():
    structure = ModelStructure.of(matmul, X, Y)
    assert probe_draws(structure, (X, Y), {}) == 4  # 3 is K, the size of beta and of x's columns
    assert probe_draws(structure, (X, Y, torch.zeros(4, 5)), {}) == 6  # nor 4 or 5, sizes of another argument


@pytest.mark.parametrize("model", [matmul, branching])
def test_the_twin_gives_the_log_densities_of_the_broadcasting_form(model):
    values = draws_for(model, S=5)
    twin = BroadcastingTwin(model, ModelStructure.of(model, X, Y), "vmap" if model is matmul else "loop")
    plain = ModelStructure.of(broadcasting, X, Y)
    got = ModelStructure.of(model, X, Y).log_joint_unconstrained(twin, X, Y)
    want = plain.log_joint_unconstrained(broadcasting, X, Y)
    u = plain.pack_draws(values)
    if model is branching:  # the branch: sigma > 1 doubles the scale
        sigma = values["sigma"]
        assert not torch.allclose(got(u), want(u)) or bool((sigma <= 1).all())
        big = sigma.reshape(-1) > 1
        torch.testing.assert_close(got(u)[~big], want(u)[~big])
    else:
        torch.testing.assert_close(got(u), want(u))


def test_the_twin_has_the_models_sites_and_plates():
    values = {name: value[0] for name, value in draws_for(matmul).items()}
    twin = BroadcastingTwin(matmul, ModelStructure.of(matmul, X, Y), "vmap")
    traces = [poutine.trace(poutine.condition(model, values)).get_trace(X, Y) for model in (matmul, twin)]
    sites = [{name: ([frame.name for frame in node["cond_indep_stack"]], node["fn"].batch_shape,
                     node["fn"].event_shape) for name, node in trace.nodes.items()
              if name in ("beta", "sigma", "y")}
             for trace in traces]
    assert sites[0] == sites[1]
    torch.testing.assert_close(traces[1].log_prob_sum(), traces[0].log_prob_sum())


@pytest.mark.parametrize("guide_class", [AutoNormal, AutoMultivariateNormal])
def test_bare_model_strips_the_initialisation_handler_of_an_autoguide(guide_class):
    """Pyro's private layout that bare_model reads: a handler wraps ``fn`` as ``partial(_context_wrap, handler,
    fn)``, whose arguments are the handler and ``fn``. If Pyro changes it, this fails (and bare_model must
    be rewritten)."""
    guide = guide_class(matmul)
    guide(X, Y)
    wrapped = guide.model
    assert isinstance(wrapped, functools.partial) and isinstance(wrapped.args[0], InitMessenger)
    assert wrapped.args[1] is matmul
    assert bare_model(wrapped) is matmul
    assert bare_model(matmul) is matmul


def test_a_model_run_by_a_loop_is_not_traced():
    """A trace runs the model once, at the traced values: a branch on a latent value (``if sigma > 1``) would be
    fixed there. The compiled engine declines such a model loudly (auto: Pyro's engine, said), and NUTS's log
    density stays eager."""
    import deepprob
    from deepprob.errors import InputError
    from deepprob.inference.evaluation.nuts import NUTSBudget, run_nuts

    assert ModelStructure.of(branching, X, Y).batching == "loop"
    with pytest.raises(InputError, match="--engine compiled: not possible here.*Python loop.*fix its branches"):
        deepprob.fit(branching, X, Y, guide="meanfield", steps=10, engine="compiled", progress=False)
    fit = deepprob.fit(branching, X, Y, guide="meanfield", steps=2500, engine="auto", progress=False,
                       elbo_particles=10)
    assert fit.extras["engine"] == "pyro" and "Python loop" in fit.extras["fallback"]
    run = run_nuts(branching, X, Y, budget=NUTSBudget(chains=1, warmup=10, samples=10, until_converged=False),
                   progress=False)
    assert run.compiled_by is None
