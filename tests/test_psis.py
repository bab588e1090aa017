"""PSIS k-hat against known answers, and the sample distances and moment errors of the comparison."""

import math
import warnings

import arviz as az
import numpy as np
import pytest
import torch
from pyro.infer.autoguide import AutoMultivariateNormal

from deepprob.examples.problems import default_problem
from deepprob.inference.evaluation.diagnostics import (
    classification_metrics,
    khat_verdict,
    loo,
    mmd2,
    moment_errors,
    psis_khat,
    psis_log_weights,
    wasserstein2,
)
from deepprob.inference.evaluation.draws import draws_from_guide


def gaussian_log_weights(s: float, n: int = 4000, seed: int = 0) -> torch.Tensor:
    """log p(z) - log q(z) for z ~ q = N(0, s^2), p = N(0, 1)."""
    g = torch.Generator().manual_seed(seed)
    z = s * torch.randn(n, generator=g, dtype=torch.float64)
    return torch.distributions.Normal(0.0, 1.0).log_prob(z) - torch.distributions.Normal(0.0, s).log_prob(z)


def mean_khat(s: float, repeats: int = 10) -> float:
    # one estimate from 4000 draws has an sd of about 0.08 (and a slight downward bias): average ten
    return sum(psis_khat(gaussian_log_weights(s, seed=seed)) for seed in range(repeats)) / repeats


def test_khat_of_a_too_narrow_gaussian_matches_theory():
    # w = p/q grows like exp(c z^2) with c = (1/s^2 - 1)/2: its tail is Pareto with shape k = 1 - s^2
    for s in (0.6, 0.8):
        assert mean_khat(s) == pytest.approx(1 - s**2, abs=0.08), s


def test_khat_readings():
    assert mean_khat(0.3) > 0.7                                # far too narrow: k = 0.91
    assert psis_khat(gaussian_log_weights(2.0)) < 0.0          # wider than p: bounded weights
    assert psis_khat(torch.zeros(1000)) == 0.0                 # q = p exactly: constant weights
    assert math.isnan(psis_khat(torch.tensor([0.0, float("nan"), 1.0])))
    assert [khat_verdict(k) for k in (0.2, 0.6, 0.8, math.inf)] == ["good", "ok", "bad", "bad"]


def linreg_problem():
    return default_problem("linreg", num_points=30)


def gaussian_guide(problem, loc: torch.Tensor, cov: torch.Tensor) -> AutoMultivariateNormal:
    """Pyro's full-rank guide set to N(loc, cov); its covariance is diag(scale) U U^T diag(scale), U unit lower."""
    guide = AutoMultivariateNormal(problem.model)
    guide(*problem.fit_args)
    tril = torch.linalg.cholesky(cov)
    with torch.no_grad():
        guide.loc.copy_(loc)
    guide.scale = tril.diagonal()
    guide.scale_tril = tril / tril.diagonal()[:, None]
    return guide


def test_khat_of_the_exact_posterior_and_of_a_too_narrow_guide():
    problem = linreg_problem()
    exact = problem.exact.over_latent_vector(None)
    loc, cov = exact.mean.float(), exact.covariance_matrix.float()

    guide = gaussian_guide(problem, loc, cov)
    torch.testing.assert_close(guide.get_posterior().covariance_matrix, cov, rtol=1e-4, atol=1e-6)
    draws = draws_from_guide(problem.model, guide, *problem.fit_args, num_samples=2000)
    # q = p(z | y): log w = log p(y) for every draw, up to float32 round-off
    assert float(draws.log_weights.std()) < 1e-3
    assert float(draws.log_weights.mean()) == pytest.approx(problem.extras["log_evidence"], abs=1e-2)
    assert psis_khat(draws.log_weights) < 0.3

    narrow = gaussian_guide(problem, loc, 0.3**2 * cov)  # every sd a third of the truth: k = 1 - 0.09
    assert psis_khat(draws_from_guide(problem.model, narrow, *problem.fit_args, num_samples=2000).log_weights) > 0.7


def test_moment_errors_are_in_reference_sds():
    g = torch.Generator().manual_seed(1)
    reference = torch.randn(100000, 2, generator=g, dtype=torch.float64) * torch.tensor([1.0, 10.0])
    draws = reference[:50000] * torch.tensor([0.5, 1.0]) + torch.tensor([0.0, 3.0])
    mean_err, sd_err = moment_errors(draws, reference)
    torch.testing.assert_close(mean_err, torch.tensor([0.0, 0.3], dtype=torch.float64), atol=0.02, rtol=0)
    torch.testing.assert_close(sd_err, torch.tensor([0.5, 0.0], dtype=torch.float64), atol=0.02, rtol=0)


def test_sample_distances():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(400, 3, generator=g, dtype=torch.float64)
    reference = torch.randn(20000, 3, generator=g, dtype=torch.float64) * 2  # sd 2: distances are halved
    shift = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    # a shifted copy: the identity matching is optimal, so W2 is the shift in reference sds
    assert wasserstein2(x + shift, x, reference) == pytest.approx(0.5, rel=0.02)
    same = mmd2(x, torch.randn(400, 3, generator=g, dtype=torch.float64))
    assert abs(same) < 0.01
    assert mmd2(x + 2 * shift, x) > 10 * abs(same)
    with pytest.raises(ValueError, match="equal shape"):
        wasserstein2(x, x[:10])


def test_classification_metrics():
    metrics = classification_metrics(torch.tensor([0.9, 0.2, 0.6, 0.4]), torch.tensor([1.0, 0.0, 0.0, 0.0]))
    assert metrics["accuracy"] == 0.75
    expected = -(math.log(0.9) + math.log(0.8) + math.log(0.4) + math.log(0.6)) / 4
    assert metrics["log_loss"] == pytest.approx(expected, rel=1e-5)


def test_psis_loo_equals_arviz_loo_for_every_point_at_once():
    """Our vectorised PSIS-LOO against ArviZ's per-point loop: heavy tails, ties at a cutoff, no tail."""
    rng = np.random.default_rng(0)
    log_lik = rng.standard_t(3, size=(1000, 60)) - 2.0
    log_lik[:, 0] = -1.0            # every draw equal: no tail to fit (k = inf in ArviZ)
    log_lik[:500, 1] = -0.5         # ties at the tail's cutoff: that column goes through ArviZ itself
    log_lik[:, 2] *= 30             # a very heavy tail (k > 0.7)
    idata = az.from_dict(posterior={"a": rng.normal(size=(1, 1000))}, log_likelihood={"y": log_lik[None]})
    ours = loo(log_lik)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = az.loo(idata, pointwise=True)
        smoothed, k = az.psislw(-log_lik.T, reff=1.0)
    assert ours["elpd_loo"] == pytest.approx(float(theirs.elpd_loo), rel=1e-9)
    assert ours["elpd_loo_se"] == pytest.approx(float(theirs.se), rel=1e-9)
    assert ours["p_loo"] == pytest.approx(float(theirs.p_loo), rel=1e-9)
    ours_lw, ours_k = psis_log_weights(-log_lik)
    np.testing.assert_allclose(ours_lw, smoothed.T, atol=1e-10)
    np.testing.assert_array_equal(np.isinf(ours_k), np.isinf(k))
    np.testing.assert_allclose(ours_k[np.isfinite(k)], k[np.isfinite(k)], atol=1e-10)
    assert ours_k[2] > 0.7 and ours["loo_khat_max"] == np.inf
