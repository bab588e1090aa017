"""The NUTS kernel (inference/evaluation/nuts_kernel.py) against targets whose answers are known: Gaussians' moments,
a skewed density's quantiles, posteriordb's reference draws of eight schools; its warmup schedule against Stan's.
Each check is shown catching a kernel that samples the wrong distribution."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from deepprob.inference.evaluation import nuts_kernel
from deepprob.inference.evaluation.nuts_kernel import NUTS, Metric, warmup_windows

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "posteriordb" / "posterior_database"
SCALES = np.array([0.01, 1.0, 100.0])


def scaled_gaussian(q):
    """N(0, diag(SCALES²)): scales four orders of magnitude apart."""
    return 0.5 * float(((q / SCALES) ** 2).sum()), q / SCALES ** 2


def log_gamma(q):
    """x = exp(q) with x ~ Gamma(2, 1): the density of q is x² e^{-x} (Jacobian included), skewed."""
    x = math.exp(q[0])
    return -(2.0 * q[0] - x), np.array([-(2.0 - x)])


def chain(potential, dim, seed=0, warmup=500, draws=4000, **kwargs):
    kernel = NUTS(potential, np.full(dim, 0.1), seed=seed, warmup=warmup, **kwargs)
    kernel.warm_up()
    return kernel, kernel.draw(draws)


@pytest.mark.parametrize("dense", [True, False])
def test_it_recovers_a_badly_scaled_gaussians_moments(dense):
    kernel, x = chain(scaled_gaussian, 3, dense=dense)
    z = x / SCALES
    assert np.abs(z.mean(0)).max() < 0.1 and np.abs(z.std(0) - 1).max() < 0.06
    assert kernel.divergences == 0 and 0.1 < kernel.step_size  # the metric adapted: unit steps in z


def gamma_quantiles_within(x, tol):
    from scipy.stats import gamma

    probs = np.array([0.1, 0.25, 0.5, 0.75, 0.9])
    want = gamma(2.0).ppf(probs)
    got = np.quantile(np.exp(x[:, 0]), probs)
    return np.abs(gamma(2.0).cdf(got) - probs).max() < tol, got, want


def test_it_recovers_a_skewed_densitys_quantiles():
    _, x = chain(log_gamma, 1, draws=6000)
    ok, got, want = gamma_quantiles_within(x, 0.02)
    assert ok, (got, want)


def test_the_quantile_check_catches_a_kernel_that_drops_the_kinetic_energy(monkeypatch):
    """A kernel that weights the trajectory's points by exp(-U) alone samples another distribution."""
    monkeypatch.setattr(nuts_kernel._Point, "energy", lambda self: self.potential)
    _, x = chain(log_gamma, 1, draws=6000)
    assert not gamma_quantiles_within(x, 0.02)[0]


def test_the_same_seed_gives_the_same_draws_and_another_seed_others():
    one = chain(scaled_gaussian, 3, seed=3, warmup=100, draws=50)[1]
    assert np.array_equal(one, chain(scaled_gaussian, 3, seed=3, warmup=100, draws=50)[1])
    assert not np.array_equal(one, chain(scaled_gaussian, 3, seed=4, warmup=100, draws=50)[1])


def test_a_potential_that_is_infinite_ends_the_trajectory_as_a_divergence():
    """A wall at q = 1 (the log density is -inf beyond): the draws stay inside, and the wall counts as divergences."""
    def walled(q):
        if q[0] > 1.0:
            return math.inf, np.zeros(1)
        return 0.5 * float(q[0] ** 2), q.copy()

    kernel, x = chain(walled, 1, warmup=300, draws=2000)
    assert x.max() <= 1.0 and kernel.divergences > 0


def test_warmup_windows_are_stans():
    """Stan's defaults: a buffer of 75, windows of 25, 50, 100, 200 and the last stretched to 50 before the end;
    short warmups in Stan's proportions."""
    assert warmup_windows(1000) == (75, [100, 150, 250, 450, 950])
    assert warmup_windows(150) == (75, [100])
    assert warmup_windows(100) == (15, [90])
    assert warmup_windows(10) == (10, [])


def test_the_metric_draws_momenta_of_the_mass_matrix():
    cov = np.array([[2.0, 0.9], [0.9, 1.0]])
    metric = Metric(cov)  # inverse mass matrix: momenta ~ N(0, cov⁻¹)
    p = np.array([metric.momentum(z) for z in np.random.default_rng(0).standard_normal((40000, 2))])
    assert np.abs(np.cov(p.T) - np.linalg.inv(cov)).max() < 0.05
    assert np.allclose(metric.velocity(p[0]), cov @ p[0])


def test_it_agrees_with_posteriordbs_reference_draws_of_eight_schools():
    """run_nuts on the kernel against posteriordb's 10,000 reference draws: every mean within 4 Monte Carlo standard
    errors (both samples' own), every sd within 10%."""
    if not SHARED.is_dir():
        pytest.skip(f"posteriordb's copy is not at {SHARED}")
    import arviz as az

    from deepprob.devices import default_dtype
    from deepprob.inference.evaluation.draws import draws_from_latents
    from deepprob.inference.evaluation.nuts import NUTSBudget, run_nuts
    from deepprob.inference.evaluation.posteriors import database, load_posterior
    from deepprob.inference.evaluation.references import given_draws
    from deepprob.logdensity import ModelStructure
    from deepprob.names import flatten

    problem = load_posterior("eight_schools-eight_schools_noncentered", database(str(SHARED)))
    with default_dtype(torch.float64):
        run = run_nuts(problem.model, problem.data, budget=NUTSBudget(chains=4, warmup=500, samples=500,
                                                                      until_converged=False), progress=False)
        reference, _ = given_draws(problem.draws, ModelStructure.of(problem.model, problem.data))
    ref, labels = flatten(reference)
    sites = draws_from_latents(problem.model, run.latents, problem.data, chains=run.chains).sites()
    ours, own = flatten({k: sites[k] for k in reference})
    assert own == labels
    ours_by_chain = ours.numpy().reshape(4, -1, ours.shape[1])
    mcse = np.array([float(az.mcse(ours_by_chain[..., i])) for i in range(ours.shape[1])])
    ref_se = ref.std(0).numpy() / math.sqrt(len(ref))  # posteriordb's draws are thinned to be independent
    z = (ours.mean(0).numpy() - ref.mean(0).numpy()) / np.sqrt(mcse ** 2 + ref_se ** 2)
    assert np.abs(z).max() < 4, dict(zip(labels, z.round(2)))
    assert np.abs(ours.std(0).numpy() / ref.std(0).numpy() - 1).max() < 0.1
