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
        result = deepprob.compare(model, y, guides=["fullrank", "delta"], reference=reference, steps=300, draws=2000)
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


# --- the checks k-hat cannot make: restarts, families, VSBC ---------------------------------------------------------


def normal_mean_model(y):
    import pyro
    import pyro.distributions as dist

    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    with pyro.plate("rows", len(y)):
        pyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def test_restart_spread_is_small_for_agreeing_fits_and_the_shift_for_one_that_is_off():
    from deepprob.inference.evaluation.trust import restart_spread

    torch.manual_seed(0)
    same = [torch.randn(2000, 3) for _ in range(3)]
    assert restart_spread(same) < 0.05  # Monte Carlo noise only: about 1/sqrt(2000)
    off = same[:2] + [same[2] + torch.tensor([0.0, 0.6, 0.0])]
    assert restart_spread(off) == pytest.approx(0.6 / math.sqrt(3), abs=0.05)  # sd of (0, 0, 0.6)


def test_the_restart_check_catches_a_fit_stopped_after_a_few_steps():
    """From the Laplace start a 30-step fit of a correlated regression looks fine to k-hat; restarts drawn from the
    Laplace Gaussian do not get back in 30 steps, and disagree. At 4,000 steps they agree."""
    import pyro
    import pyro.distributions as dist

    import deepprob

    Phi, y = regression()
    Phi, y = Phi.float(), y.float()

    def model(Phi, y):
        w = pyro.sample("w", dist.Normal(0.0, ALPHA ** -0.5).expand([3]).to_event(1))
        with pyro.plate("rows", len(y)):
            pyro.sample("y", dist.Normal((Phi * w.unsqueeze(-2)).sum(-1), BETA ** -0.5), obs=y)

    short = deepprob.compare(model, Phi, y, guides=["fullrank"], reference=None, steps=30, draws=1000, restarts=3)
    row = short.rows["fullrank"]
    assert row["restart_spread"] > 0.3 and row["trust"] == "no" and "restarts disagree" in row["trust_reason"]
    long = deepprob.compare(model, Phi, y, guides=["fullrank"], reference=None, steps=4000, draws=2000, restarts=3)
    row = long.rows["fullrank"]
    assert row["restart_spread"] < 0.1 and row["trust"] == "yes", row["trust_reason"]
    with pytest.raises(deepprob.errors.InputError, match="--restarts -1"):
        deepprob.compare(model, Phi, y, guides=["fullrank"], reference=None, restarts=-1)


def test_a_trusted_guide_far_from_most_other_trusted_guides_is_not_trusted():
    """Four trusted guides, one of them (the richest, as on posteriordb's earnings) 0.5 sds off: it is outvoted and
    the others stand; a corrected guide votes by its corrected draws; auto follows the row of the family it chose;
    two trusted guides that disagree are both untrusted (no way to tell which is off)."""
    from types import SimpleNamespace

    from deepprob.inference.evaluation.compare import _check_families
    from deepprob.inference.evaluation.trust import downgraded, family_gap

    torch.manual_seed(0)
    x = torch.randn(4000, 2)
    assert family_gap(x + torch.tensor([0.3, 0.0]), x) == pytest.approx(0.3, abs=0.01)
    assert family_gap(x * 1.5, x) == pytest.approx(0.5, abs=0.03)  # in the narrower one's sds: the larger way

    def check(rows, values):
        runs = {label: SimpleNamespace(compared=(v, ["a", "b"]), corrected=True) for label, v in values.items()}
        _check_families(runs, rows)
        return rows

    def trusted(trust="yes", **more):
        return {"trust": trust, "trust_reason": "r", **more}

    rows = check({"meanfield": trusted(), "laplace": trusted("corrected"),
                  "laplace+psis": trusted("corrected", corrects="laplace"), "fullrank": trusted(),
                  "flow": trusted(), "auto": trusted(family="flow"), "delta": trusted("no")},
                 {"meanfield": x + 0.02, "laplace": x + 2.0, "laplace+psis": x + 0.05, "fullrank": x, "flow": x + 0.5,
                  "auto": x + 0.5, "delta": x + 3.0})
    assert rows["flow"]["trust"] == "no" and "most of the other trusted" in rows["flow"]["trust_reason"]
    assert set(rows["flow"]["family_gaps"]) == {"meanfield", "laplace", "fullrank"}
    assert rows["auto"]["trust"] == "no"  # as the flow it chose
    assert rows["meanfield"]["trust"] == rows["fullrank"]["trust"] == "yes"
    assert rows["laplace"]["trust"] == "corrected" and "laplace+psis" in rows  # by its corrected draws: it agrees
    assert rows["delta"] == {"trust": "no", "trust_reason": "r"}  # not trusted: nothing to take back
    rows = check({"meanfield": trusted(), "fullrank": trusted("corrected"),
                  "fullrank+psis": trusted("corrected", corrects="fullrank")},
                 {"meanfield": x, "fullrank": x, "fullrank+psis": x * 1.5})
    assert rows["meanfield"]["trust"] == rows["fullrank"]["trust"] == "no" and "fullrank+psis" not in rows
    assert downgraded({"trust": "yes", "trust_reason": "r"}, restart=math.inf)["trust_reason"].endswith("failed")


def test_vsbc_flags_a_biased_q_and_not_the_exact_posterior():
    """A q that is the conjugate posterior shifted by one sd (out of the fit's reach: only its width is fitted),
    against the exact posterior: Pr_q(mu < mu*) piles below 1/2 for the first, is uniform for the second."""
    import pyro
    import pyro.distributions as dist
    from torch.distributions import constraints

    from deepprob.inference.evaluation.vsbc import vsbc

    def exact_family(shift):
        def build(model):  # model: the model conditioned on a simulated data set, which the guide reads from it
            def guide(y):
                with torch.no_grad(), pyro.poutine.block():
                    y = pyro.poutine.trace(model).get_trace(y).nodes["y"]["value"]
                precision = 1.0 + len(y)
                mean, sd = y.sum() / precision, precision ** -0.5
                scale = pyro.param("scale", torch.tensor(1.0), constraint=constraints.positive)
                pyro.sample("mu", dist.Normal(mean + shift * sd, sd * scale))
            return guide
        return build

    y = torch.zeros(5)
    pyro.clear_param_store()
    biased = vsbc(normal_mean_model, y, guide=exact_family(1.0), datasets=60, draws=400, steps=20, engine="pyro",
                  name="shifted")
    assert not biased.calibrated and biased.flagged == ["mu"] and biased.p.mean() < 0.4, biased.summary()
    pyro.clear_param_store()  # the guide's scale, a pyro.param of the global store, starts afresh
    exact = vsbc(normal_mean_model, y, guide=exact_family(0.0), datasets=60, draws=400, steps=20, engine="pyro")
    assert exact.calibrated and abs(exact.p.mean() - 0.5) < 0.1, exact.summary()
    with pytest.raises(ValueError, match="--vsbc 3"):
        vsbc(normal_mean_model, y, datasets=3)

    def flat_likelihood(y):  # its observations cannot be drawn: one line saying so, before any fit
        pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("rows", len(y)):
            pyro.sample("y", dist.ImproperUniform(constraints.real, (), ()), obs=y)

    with pytest.raises(ValueError, match="cannot simulate its own data for VSBC.*ImproperUniform"):
        vsbc(flat_likelihood, y, datasets=10)


# --- guide="auto" ------------------------------------------------------------------------------------------------


def test_the_climb_stops_at_the_first_trusted_rung_and_never_claims_trust_it_has_not_shown():
    from deepprob.errors import FitDivergedError
    from deepprob.guides.registry import Rung
    from deepprob.inference.evaluation.auto import climb

    verdicts = {"a": "no", "b": "corrected", "c": "yes"}
    estimates = {}
    tried = []
    ladder = (Rung("a"), Rung("b"), Rung("c", "long", steps=5.0))

    def attempt(rung):
        tried.append(rung.label)
        return {"trust": verdicts[rung.family], "trust_reason": rung.family, **estimates.get(rung.family, {})}

    got = climb(attempt, lambda row: row, ladder)  # a rung trusted as it is beats an earlier corrected one
    assert (got.family, got.trust, tried) == ("c:long", "yes", ["a", "b", "c:long"]) and "(a, b not)" in got.reason
    verdicts.update(c="no")
    assert climb(attempt, lambda row: row, ladder).family == "b"  # else the corrected
    tried.clear()
    got = climb(attempt, lambda row: row, (Rung("a"), Rung("b"), Rung("c", last_resort=True)))
    assert (got.family, got.trust, tried) == ("b", "corrected", ["a", "b"])  # a last resort is not climbed to
    verdicts.update(b="no", c="no")
    got = climb(attempt, lambda row: row, ladder)
    assert (got.family, got.trust) == ("c:long", "no") and "the richest" in got.reason and len(got.tried) == 3
    # none trusted: the rung whose own draws say it is nearest is kept, not the richest; an estimate from too few
    # effective draws does not count
    estimates.update(a={"mean_err_est": 0.4, "sd_err_est": 0.2, "ess": 500.0},
                     b={"mean_err_est": 0.1, "sd_err_est": 0.15, "ess": 300.0},
                     c={"mean_err_est": 0.01, "sd_err_est": 0.01, "ess": 50.0})
    got = climb(attempt, lambda row: row, ladder)
    assert (got.family, got.trust) == ("b", "no") and "estimated 0.15 sds off" in got.reason
    assert [t["estimated_error"] for t in got.tried] == [0.4, 0.15, None]
    # none can be checked: the most effective draws of those with k-hat < 0.7 (a rung with none: k-hat >= 0.7)
    estimates.update(a={"mean_err_est": 0.4, "sd_err_est": 0.2, "ess": 30.0}, b={}, c={"mean_err_est": 2.0,
                                                                                    "sd_err_est": 0.1, "ess": 60.0})
    got = climb(attempt, lambda row: row, ladder)
    assert (got.family, got.trust) == ("c:long", "no") and "60 effective draws" in got.reason
    estimates.update(c={})
    assert climb(attempt, lambda row: row, ladder).family == "a"
    estimates.clear()
    failing = climb(lambda rung: FitDivergedError("nan") if rung.family == "c" else attempt(rung), lambda row: row,
                    ladder)
    assert (failing.family, failing.trust) == ("b", "no") and failing.tried[-1]["trust_reason"] == "failed: nan"


def test_a_rung_changes_the_fit_and_the_options_it_names():
    from deepprob.guides.registry import AUTO_LADDER, GuideOptions, Rung
    from deepprob.inference.fitting.settings import FitSettings

    rung = Rung("iaf", "deep", {"depth": 4}, steps=5.0, lr=0.4, particles=2.0, objective="iwae:8")
    settings = rung.settings(FitSettings(steps=1000, lr=0.01, num_particles=3))
    assert (settings.steps, settings.lr, settings.num_particles, settings.objective) == (5000, 0.004, 6, "iwae:8")
    assert rung.guide_options(GuideOptions(components=3)) == GuideOptions(components=3, depth=4)
    assert Rung("fullrank").settings(FitSettings()) == FitSettings() and rung.label == "iaf:deep"
    assert len({r.label for r in AUTO_LADDER}) == len(AUTO_LADDER)  # rows and reports name rungs by label


def test_fit_and_compare_with_guide_auto():
    """The conjugate normal mean: Laplace is exact, so the ladder's first rung is trusted; a skewed scale is not
    Gaussian, and the ladder climbs."""
    import json

    import pyro
    import pyro.distributions as dist

    import deepprob
    from deepprob.guides.registry import AUTO_LADDER

    y = torch.tensor([0.5, 1.5, 1.0, 2.0])
    pyro.set_rng_seed(0)
    fit = deepprob.fit(normal_mean_model, y, guide="auto", steps=500, progress=False)
    assert fit.extras["auto"]["family"] == "laplace" and fit.extras["auto"]["trust"] == "yes"
    assert fit.guide.median(y)["mu"].item() == pytest.approx(y.sum().item() / 5, abs=0.02)

    def scale_model(y):
        s = pyro.sample("s", dist.HalfNormal(1.0))
        with pyro.plate("rows", len(y)):
            pyro.sample("y", dist.Normal(0.0, s), obs=y)

    result = deepprob.compare(scale_model, torch.tensor([0.3, -0.2, 0.5]), guides=["auto", "laplace"], reference=None,
                              steps=1000, draws=1000)
    rows = json.loads(result.to_json())["guides"]
    auto = rows["auto"]
    assert auto["family"] == auto["auto_tried"][-1]["guide"] and {"trust", "trust_reason", "mean_err_est",
                                                                   "sd_err_est"} <= set(auto)
    assert auto["seconds"] >= sum(t["seconds"] for t in auto["auto_tried"]) * 0.99
    assert auto["trust"] != "no" or "no rung" in auto["trust_reason"]
    assert [t["guide"] for t in auto["auto_tried"]] == [r.label for r in AUTO_LADDER][:len(auto["auto_tried"])]
    with pytest.raises(deepprob.errors.InputError, match="auto is a ladder"):
        deepprob.build_guide("auto", scale_model)
