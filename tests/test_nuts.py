"""The NUTS reference (inference/evaluation/nuts.py): against a Gaussian whose moments are known, and the rules that
decide how long it runs."""

from pathlib import Path

import pyro
import pyro.distributions as dist
import pytest
import torch

from deepprob.inference.evaluation.nuts import NUTSBudget, advice_for, failed_checks, run_nuts

ROOT = Path(__file__).resolve().parents[1]
MEAN = torch.tensor([1.0, -2.0])
COV = torch.tensor([[1.0, 0.95 * 3.0], [0.95 * 3.0, 9.0]])  # correlation 0.95, scales 1 and 3


def correlated():
    pyro.sample("x", dist.MultivariateNormal(MEAN, COV))


@pytest.fixture(scope="module")
def gaussian_run():
    budget = NUTSBudget(chains=2, warmup=200, samples=400, min_ess=200)
    return run_nuts(correlated, budget=budget, seed=1, progress=False)


def test_it_recovers_a_correlated_gaussians_moments(gaussian_run):
    x = gaussian_run.latents["x"]
    assert x.shape[1:] == (2,) and gaussian_run.converged, gaussian_run.problems
    sd = COV.diagonal().sqrt()
    ess = gaussian_run.checks["ess_bulk_min"]
    assert ((x.mean(0) - MEAN).abs() / sd).max() < 4 / ess ** 0.5
    assert ((x.std(0) - sd).abs() / sd).max() < 0.1
    assert abs(torch.corrcoef(x.T)[0, 1] - 0.95) < 0.02


def test_without_a_divergence_the_chains_do_not_warm_up_again(gaussian_run):
    """A warmup at a higher target acceptance is for divergences alone: none here, so the asked 0.9 stays."""
    assert sum(gaussian_run.divergences) == 0
    assert gaussian_run.target_accept == 0.9 and gaussian_run.rounds == 1


def test_what_fails_is_said_with_what_to_try():
    checks = {"rhat_max": 1.02, "ess_bulk_min": 150.0, "ess_tail_min": 500.0}
    problems = failed_checks(checks, divergences=3)
    assert "R-hat" in problems and "150" in problems and "3 divergent" in problems and "500" not in problems
    assert failed_checks({"rhat_max": 1.005, "ess_bulk_min": 450.0, "ess_tail_min": 420.0}) == ""
    assert "--target-accept" in advice_for(problems, NUTSBudget())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_log_density_is_compiled_in_either_precision(dtype):
    """The compiled log density is checked against torch's to the rounding of its precision: the README's eight
    schools with float32 data (as ``torch.tensor`` makes it) is not left to the eager one, five times slower."""
    from deepprob.examples.compare import load_model

    model = load_model(f"{ROOT / 'examples' / 'eight_schools.py'}:model")
    data = {"y": torch.tensor([28.0, 8, -3, 7, -1, 1, 18, 12], dtype=dtype),
            "sigma": torch.tensor([15.0, 10, 16, 11, 9, 11, 10, 18], dtype=dtype)}
    budget = NUTSBudget(chains=1, warmup=20, samples=20, until_converged=False)
    run = run_nuts(model, data, budget=budget, progress=False)
    assert run.compiled_by in ("c", "inductor") and run.latents["mu"].dtype == dtype
