"""fit_svi: the one fitting function."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from deepprob.errors import FitDivergedError, InputError, ModelError
from deepprob.guides import build_guide
from deepprob.inference import estimate_elbo, fit_svi


def normal_model(y):
    """mu ~ N(0, 1), y_i ~ N(mu, 1): posterior N(sum y / (n + 1), 1 / (n + 1)), log Z known."""
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def test_fullrank_recovers_a_conjugate_posterior_and_its_evidence():
    y = torch.tensor([0.5, 1.5, 1.0, 2.0])
    fit = fit_svi(normal_model, build_guide("fullrank", normal_model), y, steps=1500, lr=0.05, num_particles=4,
                  progress=False, elbo_particles=20000)
    post = fit.guide.get_posterior()
    n = len(y)
    assert abs(float(post.mean) - float(y.sum() / (n + 1))) < 0.02
    assert abs(float(post.covariance_matrix) - 1 / (n + 1)) < 0.01
    log_z = torch.distributions.MultivariateNormal(torch.zeros(n), torch.eye(n) + torch.ones(n, n)).log_prob(y)
    assert float(log_z) - 0.01 < fit.elbo < float(log_z) + 0.01  # the ELBO of an exact guide is log Z
    assert fit.losses.shape == (1500,) and fit.seconds > 0


def test_nan_loss_stops_with_the_step_number():
    def exploding(y):
        """A likelihood that pulls mu up and is NaN beyond mu = 3: the fit walks into it after some steps."""
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        pyro.factor("pull", torch.where(mu < 3, 100 * mu, torch.tensor(float("nan"))))

    with pytest.raises(FitDivergedError, match="the loss became nan at step [1-9][0-9]*; lower --lr"):
        fit_svi(exploding, build_guide("meanfield", exploding), torch.zeros(1), steps=500, lr=0.5, progress=False)

    def nan_from_the_start(y):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        pyro.sample("obs", dist.Normal(mu * float("nan"), 1.0), obs=torch.zeros(1))

    guide = build_guide("meanfield", nan_from_the_start)
    # a model that is NaN from the start fails before the fit, naming its line (the site, in its source)
    with pytest.raises(ModelError, match=r"test_svi.py:.*nan_from_the_start, line \d+ \(pyro.sample\(\"obs\".*"
                                         "Expected parameter loc"):
        with pyro.validation_enabled(True):
            fit_svi(nan_from_the_start, guide, torch.zeros(1), steps=5, progress=False)


def test_bad_settings_are_input_errors():
    y = torch.zeros(2)
    with pytest.raises(InputError, match="--steps 0: expected at least 1 step"):
        fit_svi(normal_model, build_guide("meanfield", normal_model), y, steps=0, progress=False)
    with pytest.raises(InputError, match="--lr -1"):
        fit_svi(normal_model, build_guide("meanfield", normal_model), y, steps=5, lr=-1, progress=False)


def test_guides_own_their_parameters():
    """Two guides of one family fitted in one process do not share parameters (no global param store)."""
    a, b = build_guide("meanfield", normal_model), build_guide("meanfield", normal_model)
    fit_svi(normal_model, a, torch.tensor([3.0, 3.0]), steps=300, lr=0.05, progress=False, elbo_particles=10)
    fit_svi(normal_model, b, torch.tensor([-3.0, -3.0]), steps=300, lr=0.05, progress=False, elbo_particles=10)
    assert a.loc.item() > 1 and b.loc.item() < -1


def test_estimate_elbo_is_log_z_for_the_exact_posterior():
    y = torch.tensor([1.0])

    def exact_guide(y):
        pyro.sample("mu", dist.Normal(0.5, math.sqrt(0.5)))

    log_z = torch.distributions.Normal(0.0, math.sqrt(2.0)).log_prob(y).item()
    assert abs(estimate_elbo(normal_model, exact_guide, y, num_particles=300) - log_z) < 1e-5


def test_a_guide_written_as_a_function_with_pyro_param():
    """Pyro's tutorials write guides as functions whose parameters live in the param store (pyro.param): fitted as
    any guide, to the conjugate posterior of a normal mean."""
    import pyro
    import pyro.distributions as dist
    from torch.distributions import constraints

    import deepprob

    def model(y):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("rows", len(y)):
            pyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    def guide(y):
        loc = pyro.param("loc", torch.tensor(0.0))
        scale = pyro.param("scale", torch.tensor(1.0), constraint=constraints.positive)
        pyro.sample("mu", dist.Normal(loc, scale))

    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    y = torch.tensor([0.5, 1.5, 1.0, 2.0])
    fit = deepprob.fit(model, y, guide=guide, steps=3000, lr=0.02, num_particles=4, progress=False)
    assert pyro.param("loc").item() == pytest.approx(y.sum().item() / 5, abs=0.03)  # the exact posterior: N(1, 1/5)
    assert pyro.param("scale").item() == pytest.approx(5 ** -0.5, abs=0.03)
    assert fit.extras["engine"] == "pyro"
