"""Every registered guide honours the guide protocol (deepprob.guides.protocol): what it declares is what it does.

Its pure form (the compiled engine's draw) gives the log density of its own distribution at its own draws, and the
noise Pyro's guide would draw; a guide that declares what it does not do is caught."""

import ast
from pathlib import Path

import pyro
import pyro.distributions as dist
import pytest
import torch

from deepprob.guides.protocol import Q_DENSITIES, Draw, Family, Foreign, PureForm, declared
from deepprob.guides.registry import GUIDES, GuideOptions, build_guide

ROOT = Path(__file__).resolve().parents[1]


def model(y):
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    sigma = pyro.sample("sigma", dist.HalfNormal(2.0))
    with pyro.plate("rows", len(y)):
        pyro.sample("y", dist.Normal(mu, sigma), obs=y)


Y = torch.tensor([1.0, 2.5, 0.3, 1.7, 2.2])


def made(name, start):
    pyro.set_rng_seed(0)
    guide = build_guide(name, model, GuideOptions(start=start, components=2, particles=10))
    if not guide.fits_itself:
        with torch.no_grad():
            guide(Y)  # its parameters (and, from the Laplace start, the start itself)
    return guide


@pytest.mark.parametrize("start", ["laplace", "prior"])
@pytest.mark.parametrize("name", sorted(GUIDES))
def test_every_registered_guide_declares_itself(name, start):
    guide = made(name, start)
    assert isinstance(guide, Family) and declared(guide) is guide
    assert guide.q_density in Q_DENSITIES
    assert isinstance(guide.discrete_choice, bool) and isinstance(guide.fits_itself, bool)
    assert guide.gradients_per_step(3) >= 1
    if guide.fits_itself:  # fitted by an optimisation of its own: no SVI steps, no pure form to check
        assert type(guide).fit_without_svi is not Family.fit_without_svi
        return
    if start == "laplace":
        assert guide.gradient_evaluations > 0  # the search for the mode ran, and was counted
    assert guide.step_scales is None or set(guide.step_scales) <= {n for n, _ in guide.named_parameters()}
    form = guide.pure_form()
    if guide.untraceable:
        return
    assert isinstance(form, PureForm), f"{name}: every registered guide has a pure form"
    params = dict(guide.named_parameters())
    if guide.own_loss is not None:  # svgd: its loss is its own and draws no noise; the draw is not asked for
        assert form.noise(params, 7) == () and guide.own_loss(lambda u: -(u ** 2).sum(-1))(params).shape == ()
        return
    torch.manual_seed(3)
    noise = form.noise(params, 7)
    with torch.no_grad():
        drawn = form.draw(params, noise)
    particles = 7 if form.stochastic else 1
    assert isinstance(drawn, Draw) and drawn.z.shape == (particles, 2) and drawn.log_q.shape == (particles,)
    if guide.q_density == "density":  # the pure form's log q is the guide's own distribution's
        with torch.no_grad():
            own = guide.get_posterior(Y).log_prob(drawn.z)
        torch.testing.assert_close(drawn.log_q, own, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["meanfield", "fullrank", "lowrank", "mixture", "iaf"])
def test_the_pure_form_draws_what_pyro_draws(name):
    """From the same RNG state the pure form's noise gives the z Pyro's guide draws."""
    guide = made(name, "prior")
    form = guide.pure_form()
    torch.manual_seed(11)
    with torch.no_grad():
        z = form.draw(dict(guide.named_parameters()), form.noise(dict(guide.named_parameters()), 1)).z[0]
    torch.manual_seed(11)
    with torch.no_grad():
        pyros = guide.get_posterior(Y).rsample()
    torch.testing.assert_close(z, pyros)


def test_a_wrong_declaration_is_caught():
    """The check itself: a family whose pure form misstates log q fails the comparison above."""

    class Wrong(PureForm):
        def draw(self, params, noise):
            (eps,) = noise
            return Draw(params["loc"] + eps, -0.5 * eps.pow(2).sum(-1))  # forgets the scale and the constant

    guide = made("meanfield", "prior")
    params = dict(guide.named_parameters())
    drawn = Wrong(guide).draw(params, Wrong(guide).noise(params, 5))
    with torch.no_grad(), pytest.raises(AssertionError):
        torch.testing.assert_close(drawn.log_q, guide.get_posterior(Y).log_prob(drawn.z))


def test_a_guide_of_the_users_is_read_with_the_defaults():
    from pyro.infer.autoguide import AutoNormal

    family = declared(AutoNormal(model))
    assert isinstance(family, Foreign) and family.pure_form() is None and family.finalize(Y) is None
    assert (family.q_density, family.discrete_choice, family.fits_itself, family.own_loss) == ("density", False,
                                                                                                False, None)


def test_no_class_keyed_table_nor_probing_of_guides():
    """Inference asks guides through the protocol only: no getattr/hasattr on a guide, no table keyed by class."""
    found = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in ("tests", "bench", "docs", ".venv", "runs") or rel.parts[0].startswith("."):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("getattr", "hasattr")
                    and node.args and "guide" in ast.unparse(node.args[0])):
                found.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
            keys = [k for k in getattr(node, "keys", []) if k is not None]
            if isinstance(node, ast.Dict) and keys and all(isinstance(k, ast.Name) and k.id.startswith("Auto")
                                                           for k in keys):
                found.append(f"{rel}:{node.lineno}: a table keyed by guide class")
    assert not found, found
