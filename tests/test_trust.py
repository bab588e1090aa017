"""Errors estimated without a reference, and the verdict (inference/evaluation/trust.py), against exact answers: the
conjugate posterior of a linear regression, and deliberately wrong Gaussians q whose errors are known by design."""

import math

import pytest
import torch
from torch.distributions import Gamma, MultivariateNormal, Normal

from deepprob.inference.evaluation.exact import conjugate_posterior
from deepprob.inference.evaluation.trust import (
    CORRECTED_KHAT,
    KHAT_LIMIT,
    corrected_indices,
    estimate_errors,
    smoothed_weights,
    verdict,
)

ALPHA, BETA = 1.0, 4.0


def regression():
    g = torch.Generator().manual_seed(0)
    Phi = torch.randn(40, 3, generator=g, dtype=torch.float64)
    y = Phi @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + torch.randn(40, generator=g,
                                                                                dtype=torch.float64) / BETA ** 0.5
    return Phi, y


def log_joint(w, Phi, y):
    """log p(y, w) of the regression (prior N(0, 1/alpha), noise N(0, 1/beta)): the posterior up to a constant."""
    prior = Normal(0.0, ALPHA ** -0.5).log_prob(w).sum(-1)
    return prior + Normal(w @ Phi.T, BETA ** -0.5).log_prob(y).sum(-1)


def draws_of(q, Phi, y, n=4000, seed=1):
    torch.manual_seed(seed)
    w = q.sample((n,))
    return w, log_joint(w, Phi, y) - q.log_prob(w)


def wrong_gaussian(shift=0.0, scale=1.0):
    """The exact posterior moved by ``shift`` of its sd along the first coefficient, its covariance times scale^2:
    its true errors are (shift, |scale - 1|) in posterior sds, by construction."""
    Phi, y = regression()
    p = conjugate_posterior(Phi, y, ALPHA, BETA)
    sd = p.covariance_matrix.diagonal().sqrt()
    mean = p.mean + shift * sd[0] * torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    return MultivariateNormal(mean, scale**2 * p.covariance_matrix), Phi, y, p


def test_the_exact_posterior_is_estimated_exact_and_trusted():
    q, Phi, y, _ = wrong_gaussian()
    w, lw = draws_of(q, Phi, y)
    est = estimate_errors(w, ["a", "b", "c"], lw)
    assert est.khat < 0.2 and est.mean_err_est < 0.01 and est.sd_err_est < 0.01  # weights constant: p = q exactly
    assert verdict("density", est)[0] == "yes"


@pytest.mark.parametrize("shift, scale", [(0.3, 1.0), (0.0, 1.3), (0.0, 0.85), (0.25, 1.15)])
def test_a_wrong_gaussian_is_estimated_off_by_the_known_amount(shift, scale):
    q, Phi, y, p = wrong_gaussian(shift, scale)
    w, lw = draws_of(q, Phi, y)
    est = estimate_errors(w, ["a", "b", "c"], lw)
    assert est.khat < CORRECTED_KHAT
    # the errors of these draws' own moments, measured against the exact posterior: what the estimate should find
    sd = p.covariance_matrix.diagonal().sqrt()
    true_mean = ((w.mean(0) - p.mean).abs() / sd).max().item()
    true_sd = ((w.std(0) - sd).abs() / sd).max().item()
    assert true_mean == pytest.approx(shift, abs=0.05) and true_sd == pytest.approx(abs(scale - 1), abs=0.05)
    assert est.mean_err_est == pytest.approx(true_mean, abs=max(0.05, 4 * est.mean_err_est_mcse))
    assert est.sd_err_est == pytest.approx(true_sd, abs=max(0.05, 4 * est.sd_err_est_mcse))
    trust, reason = verdict("density", est)
    assert trust == "corrected" and "off" in reason  # off by more than 0.1, and its weights can correct it
    # the corrected draws: resampled by the weights, their moments are the posterior's
    fixed = w[corrected_indices(lw, 4000, torch.Generator().manual_seed(2))]
    assert ((fixed.mean(0) - p.mean).abs() / sd).max() < 0.1
    assert ((fixed.std(0) - sd).abs() / sd).max() < 0.1


def test_k_hat_misses_a_wide_q_that_the_estimate_catches():
    """A q 30% too wide has bounded weights (small k-hat: 'good') while its sds are 30% off."""
    q, Phi, y, _ = wrong_gaussian(scale=1.3)
    w, lw = draws_of(q, Phi, y)
    est = estimate_errors(w, ["a", "b", "c"], lw)
    assert est.khat < 0.5 and est.sd_err_est > 0.2


def test_the_verdict_is_no_for_a_point_mass_and_a_too_narrow_q_on_a_skewed_target():
    assert verdict("point mass", None) == ("no", "a point mass: no density to weigh its draws by")
    p, q = Gamma(2.0, 1.0), Normal(1.0, 0.25)  # p's sd is 1.41 and its right tail long; q a sixth as wide
    torch.manual_seed(0)
    x = q.sample((4000,))
    lw = torch.where(x > 0, p.log_prob(x.clamp_min(1e-12)), torch.tensor(-math.inf)) - q.log_prob(x)
    est = estimate_errors(x[:, None], ["x"], lw)
    trust, reason = verdict("density", est)
    assert est.khat >= KHAT_LIMIT and trust == "no" and "k-hat" in reason


def test_too_few_effective_draws_is_no():
    q, Phi, y, _ = wrong_gaussian(shift=0.3)
    w, lw = draws_of(q, Phi, y, n=60)
    assert verdict("density", estimate_errors(w, ["a", "b", "c"], lw))[0] == "no"


def test_smoothed_weights_are_normalised_and_zero_where_p_is_zero():
    lw = torch.tensor([0.0, -1.0, -math.inf, 0.5, -0.2] * 20)
    w, k = smoothed_weights(lw)
    assert w.sum() == pytest.approx(1.0) and (w[2::5] == 0).all() and math.isfinite(k)


def test_every_guide_row_carries_the_verdict_with_or_without_a_reference():
    import json

    import pyro
    import pyro.distributions as dist

    import deepprob

    def model(y):
        mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
        with pyro.plate("rows", len(y)):
            pyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    y = torch.tensor([0.5, 1.5, 1.0, 2.0])
    exact = {"mu": Normal(y.sum() / (len(y) + 1 / 25), (len(y) + 1 / 25) ** -0.5)}
    for reference in (None, exact):
        result = deepprob.compare(model, y, guides=["fullrank", "delta"], reference=reference, steps=300, draws=500)
        rows = json.loads(result.to_json())["guides"]
        for name in ("fullrank", "delta"):
            assert {"trust", "trust_reason", "mean_err_est", "sd_err_est"} <= set(rows[name]), name
        assert rows["fullrank"]["trust"] == "yes" and rows["fullrank"]["sd_err_est"] < 0.1
        assert rows["delta"]["trust"] == "no" and rows["delta"]["mean_err_est"] is None
        if reference is not None:  # the estimate beside the measured error
            assert abs(rows["fullrank"]["mean_err_est"] - rows["fullrank"]["mean_err_sd"]) < 0.15


def test_a_corrected_guide_brings_its_resampled_draws_as_a_row_of_their_own():
    """A mean-field guide of a correlated posterior: off (its sds), correctable; its +psis row is measured too."""
    import pyro
    import pyro.distributions as dist

    import deepprob

    Phi, y = regression()
    Phi, y = Phi.float(), y.float()
    Phi[:, 1] = Phi[:, 0] + 1.5 * Phi[:, 1]  # correlated coefficients: a diagonal Gaussian is too narrow

    def model(Phi, y):
        w = pyro.sample("w", dist.Normal(0.0, ALPHA ** -0.5).expand([3]).to_event(1))
        with pyro.plate("rows", len(y)):
            pyro.sample("y", dist.Normal((Phi * w.unsqueeze(-2)).sum(-1), BETA ** -0.5), obs=y)

    p = conjugate_posterior(Phi, y, ALPHA, BETA)
    result = deepprob.compare(model, Phi, y, guides=["meanfield"], reference={"w": p}, steps=2000, draws=2000)
    row, fixed = result.rows["meanfield"], result.rows.get("meanfield+psis")
    assert row["trust"] == "corrected" and fixed is not None and fixed["corrects"] == "meanfield"
    assert row["sd_err_sd"] > 0.2 and fixed["sd_err_sd"] < 0.15 and fixed["mean_err_sd"] < 0.15
    assert "meanfield+psis" in result.inference_data
    # more correlated: the weights grow heavy-tailed (k-hat 0.67), the estimate falls short of the truth, and their
    # resampled draws would be far off too: no correction is offered
    Phi[:, 1] = Phi[:, 0] + 0.5 * (Phi[:, 1] - Phi[:, 0]) / 1.5
    p = conjugate_posterior(Phi, y, ALPHA, BETA)
    result = deepprob.compare(model, Phi, y, guides=["meanfield"], reference={"w": p}, steps=2000, draws=2000)
    row = result.rows["meanfield"]
    assert row["trust"] == "no" and "meanfield+psis" not in result.rows and row["sd_err_sd"] > 0.4, row["trust_reason"]


def test_the_scoreboard_counts_the_verdict_against_the_measured_errors():
    from types import SimpleNamespace

    from deepprob.inference.evaluation.scoreboard import Scoreboard

    def row(mean, sd, trust, est=(0.05, 0.05)):
        return {"mean_err_sd": mean, "sd_err_sd": sd, "khat": 0.3, "trust": trust, "mean_err_est": est[0],
                "sd_err_est": est[1]}

    rows = {"a": row(0.05, 0.05, "yes"), "b": row(0.5, 0.1, "corrected"), "b+psis": row(0.1, 0.1, "corrected"),
            "c": row(0.3, 0.1, "yes", (0.05, 0.08)), "d": row(0.05, 0.1, "no")}
    board = Scoreboard({"p": SimpleNamespace(rows=rows, reference_stats={})}, {}, 1.0)
    t = board.trust_table()
    assert t["yes"] == {"accurate": 1, "not_accurate": 1} and t["not_yes"] == {"accurate": 1, "not_accurate": 1}
    assert t["corrected"] == {"accurate": 1, "not_accurate": 0} and t["yes_but_wrong"] == ["p/c"]
    assert t["yes_estimate_gaps"] == pytest.approx([0.0, 0.25])
    assert "b+psis" not in [board.best()["p"]["guide"]]
