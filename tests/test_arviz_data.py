"""Posterior draws as InferenceData: groups, dims and coords, and the densities behind them checked by hand."""

import numpy as np
import pytest
import torch

from deepprob.examples.problems import default_problem
from deepprob.guides import build_guide
from deepprob.inference import estimate_elbo
from deepprob.inference.evaluation.arviz_data import az, save_inference_data
from deepprob.inference.evaluation.draws import draws_from_guide, draws_from_latents, likelihood_at, predictive_mean


def fresh_guide(problem, name="fullrank"):
    guide = build_guide(name, problem.model)
    guide(*problem.fit_args)  # creates the parameters: a guide at its initial values is a fine q
    return guide


def test_linreg_layout_groups_dims_and_coords(tmp_path):
    problem = default_problem("linreg", num_points=12)
    draws = draws_from_guide(problem.model, fresh_guide(problem), *problem.fit_args, num_samples=50, chunk=20)
    idata = problem.inference_data(draws, {"guide": "fullrank"})

    assert set(idata.groups()) == {"posterior", "posterior_predictive", "log_likelihood", "observed_data",
                                   "constant_data", "sample_stats"}
    weight = idata.posterior["weight"]
    assert weight.dims == ("chain", "draw", "feature")
    assert weight.shape == (1, 50, 4)
    assert list(weight.coords["feature"].values) == ["intercept", "x", "x^2", "x^3"]
    for group in (idata.posterior_predictive, idata.log_likelihood):
        assert group["y"].dims == ("chain", "draw", "obs") and group["y"].shape == (1, 50, 12)
    np.testing.assert_array_equal(idata.observed_data["y"].values, problem.y.numpy())
    assert idata.constant_data["X"].dims == ("obs", "input")
    assert list(idata.constant_data["X"].coords["input"].values) == ["x"]
    assert set(idata.sample_stats.data_vars) == {"lp", "log_q"}
    assert idata.attrs["guide"] == "fullrank" and idata.attrs["model"] == "linreg"

    path = save_inference_data(idata, tmp_path / "fit.nc")
    back = az.from_netcdf(path)
    assert set(back.groups()) == set(idata.groups())
    np.testing.assert_allclose(back.posterior["weight"].values, weight.values)
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind


def test_linreg_densities_match_a_hand_computation():
    problem = default_problem("linreg", num_points=12)
    guide = fresh_guide(problem)
    draws = draws_from_guide(problem.model, guide, *problem.fit_args, num_samples=30)
    w_s = draws.latents["weight_std"].double()  # (S, D), standardised coordinates
    x, y = problem.x.double(), problem.y.double()
    model = problem.model
    log_lik = torch.distributions.Normal(w_s @ x.T, model.beta**-0.5).log_prob(y)
    prior_tril = model.standardisation.prior_scale_tril(model.alpha).double()
    log_prior = torch.distributions.MultivariateNormal(torch.zeros(4, dtype=torch.float64),
                                                       scale_tril=prior_tril).log_prob(w_s)
    log_q = guide.get_posterior().log_prob(w_s.float()).double()  # the latent is unconstrained: no Jacobian

    torch.testing.assert_close(draws.log_lik["y"].double(), log_lik, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(draws.log_joint.double(), log_prior + log_lik.sum(-1), rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(draws.log_q.double(), log_q, rtol=1e-4, atol=1e-3)
    # the deterministic site is the weight in original coordinates
    original = model.standardisation.to_original(draws.latents["weight_std"])
    torch.testing.assert_close(draws.deterministic["weight"], original)
    # the mean log-weight is the ELBO
    many = draws_from_guide(problem.model, guide, *problem.fit_args, num_samples=4000)
    elbo = estimate_elbo(problem.model, guide, *problem.fit_args, num_particles=4000)
    assert float(many.log_weights.mean()) == pytest.approx(elbo, abs=0.15 * float(many.log_weights.std()))


def test_constrained_site_log_q_carries_the_jacobian():
    # bnn regression with a learned noise sd: sigma > 0 is exp(u) in the guide's unconstrained vector u
    problem = default_problem("bnn", task="regression", num_points=24, hidden=2)
    assert "sigma" in problem.var_names
    guide = fresh_guide(problem)
    draws = draws_from_guide(problem.model, guide, *problem.fit_args, num_samples=40)
    assert (draws.latents["sigma"] > 0).all()
    # u in the guide's site order (W1, b1, W2, b2, sigma): the latent vector whose density is get_posterior()
    u = torch.cat([draws.latents[name].reshape(40, -1) for name in ("W1", "b1", "W2", "b2")]
                  + [draws.latents["sigma"].log().reshape(40, 1)], 1)
    log_q_u = guide.get_posterior().log_prob(u)
    # log q(sigma, w) = log q(u) - log |d sigma / d u| = log q(u) - u_sigma
    torch.testing.assert_close(draws.log_q, log_q_u - u[:, -1], rtol=1e-4, atol=1e-3)
    idata = problem.inference_data(draws)
    assert idata.posterior["W1"].dims == ("chain", "draw", "input", "hidden")
    assert idata.posterior["sigma"].dims == ("chain", "draw")


def test_reference_draws_keep_their_chains_and_the_mixture_guide_works():
    problem = default_problem("logreg", num_points=40)
    latents = {"weight_std": torch.randn(2 * 25, 3, dtype=torch.float64)}  # float64, as an exact posterior gives
    draws = draws_from_latents(problem.model, latents, *problem.fit_args, chains=2, chunk=16)
    assert draws.log_q is None and draws.latents["weight_std"].dtype == problem.x.dtype
    idata = problem.inference_data(draws)
    assert idata.posterior["weight"].shape == (2, 25, 3)
    assert list(idata.posterior["weight"].coords["feature"].values) == ["bias", "x1", "x2"]
    assert idata.posterior_predictive["y"].dtype == np.int8  # 0/1 draws stored small
    assert set(idata.sample_stats.data_vars) == {"lp"}

    mixture = fresh_guide(problem, "mixture")
    assert torch.isfinite(draws_from_guide(problem.model, mixture, *problem.fit_args, num_samples=20).log_weights).all()


def test_likelihood_at_new_inputs():
    problem = default_problem("logreg", num_points=40)
    latents = {"weight_std": torch.randn(7, 3)}
    grid = problem.to_inputs(torch.tensor([[0.0, 0.0], [1.0, -1.0], [3.0, 2.0]]))
    prob = likelihood_at(problem.model, latents, grid, None)
    logits = likelihood_at(problem.model, latents, grid, None, statistic="location")
    assert prob.shape == logits.shape == (7, 3)
    torch.testing.assert_close(prob, torch.sigmoid(latents["weight_std"] @ grid.T))
    torch.testing.assert_close(torch.sigmoid(logits), prob)
    torch.testing.assert_close(predictive_mean(problem.model, latents, grid, None, chunk=3), prob.mean(0))
    assert torch.isfinite(logits).all()


def test_saved_log_likelihood_is_quantised_to_a_micro_nat_and_smaller(tmp_path):
    """The pointwise log-likelihood comes back within about LOG_LIK_QUANTUM of what was saved, in fewer bytes than
    float32; PSIS-LOO of the file agrees with that of the draws to 1e-3 nats."""
    from deepprob.inference.evaluation.arviz_data import LOG_LIK_QUANTUM

    rng = np.random.default_rng(0)
    values = np.log(1 / (1 + np.exp(-rng.normal(3, 3, size=(1, 500, 2000))))).astype(np.float32)
    idata = az.from_dict(posterior={"w": rng.normal(size=(1, 500))}, log_likelihood={"y": values})
    path = save_inference_data(idata, tmp_path / "q.nc")
    back = az.from_netcdf(path).log_likelihood["y"].values
    error = np.abs(back - values).max()
    # rounded to the quantum (in float32 arithmetic, so up to about one quantum), not stored exactly
    assert LOG_LIK_QUANTUM / 10 < error <= 1.5 * LOG_LIK_QUANTUM
    assert path.stat().st_size < 0.8 * values.nbytes
    assert abs(float(az.loo(az.from_netcdf(path)).elpd_loo) - float(az.loo(idata).elpd_loo)) < 1e-3
