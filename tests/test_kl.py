"""Forward and reverse KL fits of one Gaussian to 0.5 N(0,1) + 0.5 N(8,1), against closed forms."""

import json
import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from deepprob.cli import main as cli_main
from deepprob.inference.evaluation.divergences import (
    bimodal_mixture,
    default_grid,
    fit_gaussian,
    kl_quadrature,
    moment_matched_normal,
    normal_kl,
)

SQRT17 = math.sqrt(17.0)


def test_bimodal_mixture_is_a_normalised_torch_distribution():
    p = bimodal_mixture()
    grid = default_grid(p)
    assert abs(float(torch.trapezoid(p.log_prob(grid.float()).exp(), grid.float())) - 1) < 1e-4
    assert float(p.mean) == pytest.approx(4.0)
    assert float(p.variance) == pytest.approx(17.0, rel=1e-5)
    assert p.sample((5,)).shape == (5,)


def test_moment_matching_optimum_in_closed_form():
    mu, sigma = moment_matched_normal(bimodal_mixture())
    assert mu == pytest.approx(4.0, abs=1e-9)
    assert sigma == pytest.approx(SQRT17, abs=1e-9)
    mu, sigma = moment_matched_normal(bimodal_mixture((-1.0, 3.0), (0.5, 2.0), (0.25, 0.75)))
    assert mu == pytest.approx(2.0)
    assert sigma**2 == pytest.approx(0.25 * (0.25 + 1) + 0.75 * (4 + 9) - 4)


def test_quadrature_kl_matches_the_normal_closed_form():
    grid = torch.linspace(-30, 30, 6001, dtype=torch.float64)
    a = Normal(torch.tensor(1.0, dtype=torch.float64), torch.tensor(2.0, dtype=torch.float64))
    b = Normal(torch.tensor(-0.5, dtype=torch.float64), torch.tensor(1.5, dtype=torch.float64))
    assert float(kl_quadrature(a, b, grid)) == pytest.approx(normal_kl(1.0, 2.0, -0.5, 1.5), abs=1e-8)
    assert normal_kl(1.0, 2.0, -0.5, 1.5) == pytest.approx(float(kl_divergence(a, b)), abs=1e-12)


@pytest.mark.parametrize("init", [(-3.0, 0.5), (7.0, 1.0), (12.0, 6.0)])
def test_forward_kl_fit_reaches_the_moment_matching_optimum(init):
    fit = fit_gaussian(bimodal_mixture(), "forward", init=init, steps=1500)
    assert abs(fit.mu - 4.0) < 0.05 and abs(fit.sigma - SQRT17) < 0.05
    # and no Gaussian does better: the KL at the optimum, perturbed either way, is larger
    p = bimodal_mixture()
    grid = default_grid(p).double()
    log_p = p.log_prob(grid.float()).double()

    def forward_kl(mu, sigma):
        return float(kl_quadrature(log_p, Normal(torch.tensor(mu).double(), torch.tensor(sigma).double()), grid))

    assert forward_kl(4.0, SQRT17) == pytest.approx(fit.kl, abs=1e-4)
    assert forward_kl(4.3, SQRT17) > fit.kl and forward_kl(4.0, 3.8) > fit.kl


@pytest.mark.parametrize("init_mu, mode", [(1.5, 0.0), (6.0, 8.0)])
def test_reverse_kl_fit_sits_on_one_mode(init_mu, mode):
    fit = fit_gaussian(bimodal_mixture(), "reverse", init=(init_mu, 1.0), steps=1500)
    assert abs(fit.mu - mode) < 0.05 and abs(fit.sigma - 1.0) < 0.05
    # q = N(mode, 1) against 0.5 N(mode, 1) + a far mode: KL = log 2 minus a negligible overlap
    assert fit.kl == pytest.approx(math.log(2), abs=0.01)


def test_reverse_kl_from_a_wide_symmetric_start_straddles_both_modes():
    # the local optimum the example's random start avoids: q centred between the modes
    fit = fit_gaussian(bimodal_mixture(), "reverse", init=(4.0, 2.0), steps=1500)
    assert abs(fit.mu - 4.0) < 0.05 and 3.2 < fit.sigma < 3.8 and fit.kl > 1.5


def test_monte_carlo_estimator_agrees():
    torch.manual_seed(0)
    fit = fit_gaussian(bimodal_mixture(), "forward", init=(2.0, 2.0), steps=1500, estimator="mc", num_samples=512)
    assert abs(fit.mu - 4.0) < 0.2 and abs(fit.sigma - SQRT17) < 0.2
    fit = fit_gaussian(bimodal_mixture(), "reverse", init=(6.5, 1.0), steps=1500, estimator="mc", num_samples=256)
    assert abs(fit.mu - 8.0) < 0.15 and abs(fit.sigma - 1.0) < 0.15


def test_cli_json_acceptance(tmp_path, capsys):
    assert cli_main(["kl", "--json", "--quiet", "--out", str(tmp_path)]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    forward, reverse = metrics["forward"], metrics["reverse"]
    assert set(forward) == set(reverse) == {"mu", "sigma", "kl"}
    assert abs(forward["mu"] - 4.0) < 0.05 and abs(forward["sigma"] - SQRT17) < 0.05
    assert min(abs(reverse["mu"]), abs(reverse["mu"] - 8.0)) < 0.05 and abs(reverse["sigma"] - 1.0) < 0.05
    assert (tmp_path / "kl.png").stat().st_size > 0
