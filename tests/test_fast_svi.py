"""The fast SVI path (issue 7): the same loss and gradients as Pyro's Trace_ELBO, the same steps, the same fit."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from pyro.infer.autoguide import AutoNormal

from deepprob.compiler.c_step import c_compiler
from deepprob.datasets.synthetic import two_classes, two_moons
from deepprob.errors import FitDivergedError, InputError, ModelError
from deepprob.examples.problems import default_problem
from deepprob.guides.registry import GUIDES, build_guide
from deepprob.inference.evaluation.kl import kl_to_reference
from deepprob.inference.fitting.engines import AUTO_COMPILE_STEPS
from deepprob.inference.fitting.settings import EXAMPLES, FitSettings
from deepprob.inference.fitting.svi import fit_svi
from deepprob.inference.fitting.svi_steps import SVISteps, guide_parameters, svi_loss_fn
from deepprob.models.bnn import BayesianNeuralNetwork
from deepprob.models.logreg import LogisticRegression, with_bias
from deepprob.models.standardise import Standardisation


def logreg(n=300):
    t = two_classes(n=n)
    X1 = with_bias(t.X)
    st = Standardisation.of(X1)
    return LogisticRegression(st), (st.features(X1), t.y)


def bnn():
    t = two_moons(n=100)
    return BayesianNeuralNetwork(2, hidden=3), (t.X, t.y)


def bnn_regression():
    """A learned noise sd: a latent with a constrained support (positive), so the Jacobian terms count."""
    torch.manual_seed(0)
    X = torch.linspace(-2, 2, 60).unsqueeze(-1)
    return BayesianNeuralNetwork(1, hidden=3, task="regression"), (X, torch.sin(X[:, 0]) + 0.1 * torch.randn(60))


def eight_schools():
    """Latent sites in a plate and a constrained one (HalfCauchy), a deterministic site: the guides' packing
    of the latent vector (Pyro's AutoContinuous) must be the engine's (deepprob.logdensity)."""
    def model(y, sigma):
        mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
        tau = pyro.sample("tau", dist.HalfCauchy(5.0))
        with pyro.plate("schools", len(y)):
            theta_trans = pyro.sample("theta_trans", dist.Normal(0.0, 1.0))
            pyro.deterministic("theta", mu + tau * theta_trans)
            pyro.sample("y", dist.Normal(mu + tau * theta_trans, sigma), obs=y)

    return model, (torch.tensor([28.0, 8, -3, 7, -1, 1, 18, 12]), torch.tensor([15.0, 10, 16, 11, 9, 11, 10, 18]))


def perturbed_guide(name, model, args):
    pyro.set_rng_seed(0)
    guide = build_guide(name, model)
    guide(*args)
    with torch.no_grad():  # move off the initial point, so that every parameter matters
        for p in guide.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return guide


# every guide that SVI fits with Pyro's Trace_ELBO (svgd has a loss of its own, pathfinder no SVI steps)
TRACE_ELBO_GUIDES = [name for name in GUIDES if name not in ("svgd", "pathfinder")]
# and those whose whole step the C backend takes (the flows' networks need Inductor)
C_GUIDES = ["laplace", "meanfield", "fullrank", "lowrank", "mixture", "delta"]


@pytest.mark.parametrize("problem", [logreg, bnn, bnn_regression, eight_schools])
@pytest.mark.parametrize("guide_name", TRACE_ELBO_GUIDES)
def test_loss_and_gradients_equal_trace_elbo(problem, guide_name):
    """With the same RNG state, the pure loss draws Pyro's noise and gives Pyro's value and gradients."""
    model, args = problem()
    guide = perturbed_guide(guide_name, model, args)
    params = guide_parameters(guide)
    leaves = list(params.values())
    particles = 4
    elbo = Trace_ELBO(num_particles=particles, vectorize_particles=True)
    elbo.differentiable_loss(model, guide, *args)  # its first call guesses the plate nesting, drawing noise
    pyro.set_rng_seed(1)
    theirs = elbo.differentiable_loss(model, guide, *args)
    theirs_grads = torch.autograd.grad(theirs, leaves)
    loss = svi_loss_fn(model, guide, *args)
    pyro.set_rng_seed(1)
    ours = loss(params, loss.form.noise(params, particles))
    ours_grads = torch.autograd.grad(ours, leaves)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-4)
    for name, a, b in zip(params, ours_grads, theirs_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4, msg=f"gradient of {name}")
    assert any(g.abs().max() > 1e-3 for g in ours_grads)  # the comparison is not between zeros


def test_the_compiled_steps_are_the_steps_of_the_pyro_engine():
    """Same seed, same noise, same Adam, decay and averaging: the two engines end at the same parameters."""
    model, args = logreg()
    ends = {}
    for engine in ("pyro", "compiled"):
        pyro.set_rng_seed(3)
        guide = build_guide("fullrank", model)
        fit = fit_svi(model, guide, *args, steps=80, lr=0.05, num_particles=3, average_fraction=0.25,
                      elbo_particles=0, progress=False, engine=engine)
        assert fit.extras["engine"] == engine
        assert fit.extras["compiled_by"] == ("c" if c_compiler() and engine == "compiled" else
                                             None if engine == "pyro" else "inductor")
        ends[engine] = ({k: v.detach().clone() for k, v in guide_parameters(guide).items()}, fit.losses)
    (p_pyro, l_pyro), (p_fast, l_fast) = ends["pyro"], ends["compiled"]
    assert l_fast.shape == (80,)
    torch.testing.assert_close(torch.as_tensor(l_fast), torch.as_tensor(l_pyro), rtol=1e-4, atol=1e-3)
    for name in p_pyro:
        torch.testing.assert_close(p_fast[name], p_pyro[name], rtol=1e-4, atol=1e-4, msg=name)


@pytest.mark.skipif(c_compiler() is None, reason="the C backend needs Linux x86-64 and cc")
@pytest.mark.parametrize("problem", [logreg, bnn_regression, eight_schools])
@pytest.mark.parametrize("guide_name", C_GUIDES)
def test_the_c_step_takes_the_eager_steps(problem, guide_name):
    """Every guide's whole step (loss, gradients, Adam, averaging) compiled to C: with the same noise,
    30 steps end where the eager steps end."""
    model, args = problem()
    ends = {}
    for compiled in (False, True):
        guide = perturbed_guide(guide_name, model, args)
        params = guide_parameters(guide)
        with pyro.validation_enabled(False):  # as fit_svi runs it: Pyro's checks would read values while tracing
            steps = SVISteps(svi_loss_fn(model, guide, *args), params, FitSettings(steps=30, lr=0.02), compile=compiled,
                             backend="c")
            pyro.set_rng_seed(5)
            losses = steps.run(num_particles=2)
        assert steps.compiled_by == ("c" if compiled else None)
        ends[compiled] = losses, {k: v.detach().clone() for k, v in params.items()}
    torch.testing.assert_close(torch.as_tensor(ends[True][0]), torch.as_tensor(ends[False][0]), rtol=1e-4, atol=1e-3)
    for name, value in ends[False][1].items():
        torch.testing.assert_close(ends[True][1][name], value, rtol=1e-4, atol=1e-4, msg=name)


def test_eager_steps_match_torch_adam_for_a_quadratic():
    """The hand-written Adam, decay and averaging against torch.optim on a loss with a known gradient."""
    target = torch.tensor([1.0, -2.0, 3.0])

    def loss(params, noise):
        return ((params["x"] - target) ** 2).sum() + 0.0 * noise[0].sum()

    loss.form = type("Form", (), {"stochastic": True, "noise": lambda self, p, s: (torch.zeros(s, 1),)})()
    x = torch.zeros(3)
    SVISteps(loss, {"x": x}, FitSettings(steps=50, lr=0.1, final_lr_fraction=0.1, average_fraction=0.2),
             compile=False).run()
    y = torch.zeros(3, requires_grad=True)
    opt = torch.optim.Adam([y], lr=0.1)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, 0.1 ** (1 / 50))
    average = torch.zeros(3)
    for step in range(50):
        opt.zero_grad()
        ((y - target) ** 2).sum().backward()
        opt.step()
        sched.step()
        if step >= 40:
            average += y.detach() / 10
    torch.testing.assert_close(x, average, rtol=1e-5, atol=1e-6)


def test_compiled_linreg_posterior_is_exact():
    """The compiled engine's full-rank fit of the conjugate model: KL(q || exact) <= 0.01, as with Pyro's."""
    problem = default_problem("linreg")
    pyro.set_rng_seed(0)
    fit = fit_svi(problem.model, build_guide("fullrank", problem.model), *problem.fit_args, progress=False,
                  engine="compiled", **EXAMPLES["linreg"])
    assert fit.extras["engine"] == "compiled" and fit.extras["steps_per_second"] > 0
    assert fit.extras["compiled_by"] == ("c" if c_compiler() else "inductor")
    assert kl_to_reference(fit.guide.get_posterior(), problem.exact.over_latent_vector(None)) <= 0.01
    # the fast path's fresh ELBO estimate is the ELBO: below the log evidence, and close to it
    log_evidence = problem.extras["log_evidence"]
    assert log_evidence - 0.1 < fit.elbo < log_evidence + 0.05


def test_a_nan_loss_stops_the_fast_path_naming_the_step():
    def exploding(y):
        """A likelihood that pulls mu up and is NaN beyond mu = 3: the fit walks into it after some steps."""
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        pyro.factor("pull", torch.where(mu < 3, 100 * mu, torch.full_like(mu, float("nan"))))

    guide = build_guide("meanfield", exploding)
    with pytest.raises(FitDivergedError, match="the loss became nan at step [1-9][0-9]*"):
        fit_svi(exploding, guide, torch.zeros(1), steps=500, lr=0.5, progress=False, engine="compiled")


def test_data_that_make_the_density_nan_fail_before_the_fit():
    def model(y):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        pyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    guide = build_guide("meanfield", model)
    with pyro.validation_enabled(False), pytest.raises(ModelError, match="site 'y' has log density nan at the "
                                                                          "initial point"):
        fit_svi(model, guide, torch.tensor(float("nan")), steps=10, progress=False, engine="compiled")


def test_engine_choice():
    model, args = logreg(n=50)
    short = fit_svi(model, build_guide("meanfield", model), *args, steps=20, elbo_particles=10, progress=False)
    assert short.extras["engine"] == "pyro" and 20 < AUTO_COMPILE_STEPS
    with pytest.raises(InputError, match="--engine compiled: not possible here.*AutoNormal"):
        fit_svi(model, AutoNormal(model), *args, steps=5, progress=False, engine="compiled")
    with pytest.raises(InputError, match="--engine compiled: not possible here, a custom loss"):
        fit_svi(model, build_guide("meanfield", model), *args, steps=5, progress=False, engine="compiled",
                loss=TraceMeanField_ELBO())
    with pytest.raises(InputError, match="--engine 'jax'"):
        fit_svi(model, build_guide("meanfield", model), *args, steps=5, progress=False, engine="jax")
    # a guide without a pure form runs through Pyro under auto, whatever the length, and says so once
    fit = fit_svi(model, AutoNormal(model), *args, steps=AUTO_COMPILE_STEPS, elbo_particles=1, progress=False)
    assert fit.extras["engine"] == "pyro" and math.isfinite(fit.losses[-1])
    assert "the guide AutoNormal has no pure form" in fit.extras["fallback"]
