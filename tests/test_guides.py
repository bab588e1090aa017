"""Every guide on every regression model; each guide against an exact answer."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO
from pyro.infer.autoguide import init_to_sample

from deepprob.datasets import cubic_regression, two_classes, two_moons
from deepprob.errors import InputError
from deepprob.examples.problems import affine
from deepprob.guides import GUIDES, GuideOptions, build_guide
from deepprob.guides.mixture import MixtureOfGaussians
from deepprob.inference import estimate_elbo, fit_svi
from deepprob.inference.evaluation.divergences import bimodal_mixture
from deepprob.inference.evaluation.exact import conjugate_posterior
from deepprob.inference.evaluation.kl import kl_to_reference
from deepprob.models.bnn import BayesianNeuralNetwork
from deepprob.models.linreg import LinearRegression, expand_basis
from deepprob.models.logreg import LogisticRegression, with_bias
from deepprob.models.standardise import Standardisation


def linreg_problem():
    data = cubic_regression()
    Phi, _ = expand_basis(data.X, "poly:3")
    standard = Standardisation.of(Phi)
    model = LinearRegression(standard, alpha=1.0, beta=2.5)
    exact = affine(conjugate_posterior(Phi, data.y, 1.0, 2.5), standard.T.double())
    return model, (standard.features(Phi), data.y), exact


def small_problems():
    lin_model, lin_args, _ = linreg_problem()
    data = two_classes(n=200)
    X1 = with_bias(data.X)
    standard = Standardisation.of(X1)
    moons = two_moons(n=60)
    return {
        "linreg": (lin_model, lin_args),
        "logreg": (LogisticRegression(standard), (standard.features(X1), data.y)),
        "bnn": (BayesianNeuralNetwork(2, hidden=3), (moons.X, moons.y)),
    }


@pytest.mark.parametrize("name", list(GUIDES))
def test_every_guide_fits_every_model(name):
    for model_name, (model, args) in small_problems().items():
        # Pyro's start (the prior's median, sd 0.1), so that 100 steps have something to improve on
        options = GuideOptions(init_loc_fn=init_to_sample if model_name == "bnn" else None, start="prior")
        guide = build_guide(name, model, options)
        has_density = guide.q_density == "density"
        if not guide.fits_itself:  # pathfinder has nothing to draw before its fit
            guide(*args)
            before = estimate_elbo(model, guide, *args, num_particles=200) if has_density else None
        fit = fit_svi(model, guide, *args, steps=100, lr=0.05, progress=False, elbo_particles=200)
        assert fit.guide.get_posterior().sample().shape == (fit.guide.latent_dim,)
        if not has_density:  # particles, a point mass: no ELBO to report
            assert math.isnan(fit.elbo), (name, model_name)
            continue
        assert math.isfinite(fit.elbo), (name, model_name)
        if name not in ("laplace", "pathfinder"):  # laplace starts as a point mass: its "ELBO" is not comparable
            assert fit.elbo > before, (name, model_name)  # training improved the bound


@pytest.mark.parametrize("name", list(GUIDES))
def test_every_guide_starts_at_laplace_on_every_model(name):
    for model_name, (model, args) in small_problems().items():
        options = GuideOptions(init_loc_fn=init_to_sample if model_name == "bnn" else None)
        guide = build_guide(name, model, options)
        fit = fit_svi(model, guide, *args, steps=20, lr=0.005, progress=False, elbo_particles=200)
        if fit.guide.q_density == "density":
            assert math.isfinite(fit.elbo), (name, model_name)
        if name != "pathfinder":  # pathfinder climbs from the initial point itself
            assert guide.gradient_evaluations > 0, (name, model_name)  # the search for the mode ran


def test_the_laplace_start_is_the_exact_gaussian_posterior_before_any_step():
    """linreg's posterior is Gaussian: its Laplace approximation is exact, so fullrank starts at KL = 0 and
    meanfield at its own optimum, the sds 1 / sqrt(Lambda_ii) of the exact precision Lambda."""
    model, args, exact = linreg_problem()
    full = build_guide("fullrank", model)
    full(*args)
    assert kl_to_reference(full.get_posterior(), exact) < 1e-6
    meanfield = build_guide("meanfield", model)
    meanfield(*args)
    q = meanfield.get_posterior()
    precision = torch.linalg.inv(exact.covariance_matrix)
    assert torch.allclose(q.mean.double(), exact.mean, atol=1e-5)
    assert torch.allclose(q.stddev.double(), precision.diagonal().rsqrt(), rtol=1e-4)
    assert not torch.allclose(q.stddev.double(), exact.stddev, rtol=0.1)  # the check tells the two apart
    prior_start = build_guide("fullrank", model, GuideOptions(start="prior"))
    prior_start(*args)
    assert kl_to_reference(prior_start.get_posterior(), exact) > 1.0  # and Pyro's own start is far from it


def test_unknown_guide_is_an_input_error():
    with pytest.raises(InputError, match="--guide 'fullrnak': unknown guide 'fullrnak'; expected one of laplace"):
        build_guide("fullrnak", lambda: None)


def test_laplace_and_fullrank_reach_the_exact_linreg_posterior():
    model, args, exact = linreg_problem()
    laplace = fit_svi(model, build_guide("laplace", model), *args, steps=3000, lr=0.05, progress=False)
    assert kl_to_reference(laplace.guide.get_posterior(), exact) < 1e-4
    full = fit_svi(model, build_guide("fullrank", model), *args, steps=3000, lr=0.05, num_particles=8,
                   progress=False)
    meanfield = fit_svi(model, build_guide("meanfield", model), *args, steps=1500, lr=0.05, num_particles=8,
                        progress=False)
    kl_full = kl_to_reference(full.guide.get_posterior(), exact)
    kl_meanfield = kl_to_reference(meanfield.guide.get_posterior(), exact)
    assert kl_full <= 0.01
    assert kl_meanfield > 10 * kl_full  # correlated weights: a diagonal Gaussian cannot match them


def test_laplace_covariance_is_the_inverse_hessian():
    data = two_classes(n=300)
    X1 = with_bias(data.X)
    standard = Standardisation.of(X1)
    model, X1_s = LogisticRegression(standard, alpha=2.0), standard.features(X1)
    fit = fit_svi(model, build_guide("laplace", model), X1_s, data.y, steps=300, lr=0.05, progress=False)
    # the Hessian is taken where the guide sits, so the check is exact whether or not the MAP fit converged
    post = fit.guide.get_posterior()
    prior = dist.MultivariateNormal(torch.zeros(3), scale_tril=standard.prior_scale_tril(2.0))

    def neg_log_joint(w):
        logits = X1_s @ w
        return -(prior.log_prob(w) + dist.Bernoulli(logits=logits).log_prob(data.y).sum())

    H = torch.autograd.functional.hessian(neg_log_joint, post.mean.detach())
    assert torch.allclose(post.covariance_matrix, torch.linalg.inv(H), rtol=1e-3, atol=1e-6)


def bimodal_model():
    """A Pyro model whose posterior is exactly 0.5 N(0, 1) + 0.5 N(8, 1), with log Z = 0."""
    target, prior = bimodal_mixture(), dist.Normal(4.0, 10.0)

    def model():
        z = pyro.sample("z", prior)
        pyro.factor("likelihood", target.log_prob(z) - prior.log_prob(z))

    return model


def test_mixture_finds_both_modes_where_one_gaussian_cannot():
    model = bimodal_model()
    mixture = fit_svi(model, build_guide("mixture", model, GuideOptions(components=2)), steps=1500, lr=0.05,
                      num_particles=8, progress=False, elbo_particles=4000)
    single = fit_svi(model, build_guide("fullrank", model), steps=1500, lr=0.05, num_particles=8,
                     progress=False, elbo_particles=4000)
    assert mixture.elbo > -0.05          # log Z = 0
    assert single.elbo < -0.5            # stuck on one mode: about -log 2
    locs = sorted(mixture.guide.locs.detach()[:, 0].tolist())
    assert abs(locs[0]) < 0.3 and abs(locs[1] - 8) < 0.3


def test_mixture_density_and_weight_gradient():
    logits = torch.tensor([0.3, -0.3], requires_grad=True)
    q = MixtureOfGaussians(logits, torch.tensor([[0.0], [8.0]]), torch.ones(2, 1, 1))
    z = torch.tensor([[0.5], [7.0]])
    expected = torch.logsumexp(torch.log_softmax(logits, 0) + dist.Normal(torch.tensor([0.0, 8.0]), 1.0).log_prob(z),
                               -1)
    assert torch.allclose(q.log_prob(z), expected)

    # Trace_ELBO's gradient in the weights is unbiased: KL(q || p) ~ KL(pi || (1/2, 1/2)) for separated modes,
    # whose derivative in logits[0] is pi_0 pi_1 (logit_0 - logit_1) (x 1 because both logits move).
    model = bimodal_model()
    guide = build_guide("mixture", model)
    guide()
    with torch.no_grad():
        guide.locs.copy_(torch.tensor([[0.0], [8.0]]))
        guide.logits.copy_(torch.tensor([0.3, -0.3]))
    guide.scales = torch.ones(2, 1)
    grads = []
    for _ in range(200):
        guide.zero_grad()
        Trace_ELBO(num_particles=8, vectorize_particles=True).differentiable_loss(model, guide).backward()
        grads.append(float(guide.logits.grad[0]))
    pi0 = torch.sigmoid(torch.tensor(0.6))
    analytic = float(pi0 * (1 - pi0) * 0.6)
    mean, se = torch.tensor(grads).mean(), torch.tensor(grads).std() / math.sqrt(len(grads))
    assert abs(mean - analytic) < 4 * se + 0.005


def test_bnn_shapes_under_vectorised_particles():
    moons = two_moons(n=30)
    for task, noise in [("classification", None), ("regression", None), ("regression", 0.2)]:
        model = BayesianNeuralNetwork(2, hidden=4, task=task, noise=noise)
        guide = build_guide("meanfield", model, GuideOptions(init_loc_fn=init_to_sample))
        vectorised = Trace_ELBO(num_particles=7, vectorize_particles=True).loss(model, guide, moons.X, moons.y)
        assert math.isfinite(vectorised)


def test_the_laplace_floor_keeps_small_curvature_and_raises_only_flat_directions():
    from deepprob.guides.start import PRECISION_FLOOR, floored_precision

    H = torch.diag(torch.tensor([1e4, 1e-7, -3.0], dtype=torch.float64))  # raw-scale curvature, and a saddle
    precision, covariance, clipped = floored_precision(H)
    assert clipped == 1 and precision.diagonal()[1].item() == pytest.approx(1e-7)  # kept: an sd of 3162
    assert precision.diagonal()[2].item() == pytest.approx(1e-7)  # the saddle: as wide as the widest direction
    _, _, clipped = floored_precision(torch.diag(torch.tensor([2.0, 0.0], dtype=torch.float64)))
    assert clipped == 1 and floored_precision(torch.diag(torch.tensor([2.0, 0.0])))[0][1, 1] == PRECISION_FLOOR


def test_a_regression_on_raw_dollars_needs_no_standardising():
    """Incomes in dollars, ages in years: posterior sds from 0.03 to 1,500, the coefficients 0.99 correlated. The
    Laplace start and the step sizes follow the posterior's own scales, so Laplace and full rank reach the exact
    posterior (before: every Gaussian guide's sds came out about 1% of the truth, 0.92 off)."""
    import pyro
    import pyro.distributions as dist

    import deepprob
    from deepprob.devices import default_dtype
    from deepprob.inference.evaluation.exact import conjugate_posterior

    g = torch.Generator().manual_seed(0)
    n = 50
    income = 30000 + 10000 * torch.randn(n, generator=g, dtype=torch.float64)
    age = 40 + 10 * torch.randn(n, generator=g, dtype=torch.float64)
    Phi = torch.stack([torch.ones(n, dtype=torch.float64), income, age], 1)
    y = Phi @ torch.tensor([5000.0, 0.3, 100.0], dtype=torch.float64) + 2000 * torch.randn(n, generator=g,
                                                                                              dtype=torch.float64)

    def model(Phi, y):
        w = pyro.sample("w", dist.Normal(0.0, 1e4).expand([3]).to_event(1))
        with pyro.plate("rows", len(y)):
            pyro.sample("y", dist.Normal((Phi * w.unsqueeze(-2)).sum(-1), 2000.0), obs=y)

    exact = conjugate_posterior(Phi, y, 1e-8, 2000.0 ** -2)
    with default_dtype(torch.float64):  # as the shell runs a user's model: in float32 a curvature 1e-11 of the
        # largest is below the Hessian's rounding, and the widest direction reads as flat (a floor, not its scale)
        result = deepprob.compare(model, Phi, y, guides=["laplace", "fullrank"], reference={"w": exact})
    for name in ("laplace", "fullrank"):
        row = result.rows[name]
        assert row["mean_err_sd"] < 0.1 and row["sd_err_sd"] < 0.1 and row["kl_to_exact"] < 0.01, (name, row)
        assert row["trust"] == "yes", row["trust_reason"]


def test_the_elbo_that_judges_a_start_is_zero_for_the_target_itself():
    """gaussian_elbo of q = p (a normalised Gaussian target): log p - log q is 0 at every draw, so the ELBO is 0;
    a q shifted by 2 sds is worse."""
    from deepprob.guides.start import gaussian_elbo

    mean = torch.tensor([1.0, -2.0], dtype=torch.float64)
    L = torch.tensor([[1.0, 0.0], [2.7, 0.9]], dtype=torch.float64)
    target = torch.distributions.MultivariateNormal(mean, scale_tril=L)
    assert gaussian_elbo(target.log_prob, mean, L) == pytest.approx(0.0, abs=1e-9)
    assert gaussian_elbo(target.log_prob, mean + 2 * L[:, 0], L) < -1.5


def centred_eight_schools(y, sigma):
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(5.0))
    with pyro.plate("schools", len(y)):
        theta = pyro.sample("theta", dist.Normal(mu, tau))
        pyro.sample("y", dist.Normal(theta, sigma), obs=y)


def test_a_degenerate_joint_mode_is_not_where_the_guides_start():
    """Centred eight schools: the joint density grows without bound as tau -> 0 with every theta at mu, so the
    joint mode is a funnel's neck and the Gaussian of its curvature a far worse start than the prior's median by
    their ELBOs: laplace_start declines it. The conjugate regression's Laplace start is kept."""
    from deepprob.devices import default_dtype
    from deepprob.guides.start import gaussian_elbo, laplace_at_mode, laplace_start
    from deepprob.logdensity import ModelStructure

    y = torch.tensor([28.0, 8, -3, 7, -1, 1, 18, 12], dtype=torch.float64)
    sigma = torch.tensor([15.0, 10, 16, 11, 9, 11, 10, 18], dtype=torch.float64)
    with default_dtype(torch.float64):
        structure = ModelStructure.of(centred_eight_schools, y, sigma)
        log_joint = structure.log_joint_unconstrained(centred_eight_schools, y, sigma)
        start = structure.initial_point(centred_eight_schools, y, sigma)
        mode = laplace_at_mode(log_joint, start)
        assert mode is not None and float(mode.loc[1]) < -3  # log tau, run down the funnel
        assert gaussian_elbo(log_joint, mode.loc, torch.linalg.cholesky(mode.covariance)) < gaussian_elbo(
            log_joint, start, 0.1 * torch.eye(len(start), dtype=torch.float64))
        assert laplace_start(log_joint, start) is None

        model, args, _ = linreg_problem()
        structure = ModelStructure.of(model, *args)
        kept = laplace_start(structure.log_joint_unconstrained(model, *args), structure.initial_point(model, *args))
        assert kept is not None
