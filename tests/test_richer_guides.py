"""The richer approximations: flows, Pathfinder, SVGD, a point mass; the Renyi and IWAE objectives.

Each against an exact answer: a bimodal target with log Z = 0, conjugate Gaussian posteriors, Pyro's own
Stein kernel and RenyiELBO, and the ordering ELBO <= IW bound <= log p(x).
"""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import RenyiELBO
from pyro.infer.svgd import RBFSteinKernel

from deepprob.errors import InputError
from deepprob.examples.problems import default_problem
from deepprob.guides import GuideOptions, build_guide
from deepprob.guides.svgd import rbf_kernel
from deepprob.inference import fit_svi
from deepprob.inference.evaluation.compare import compare
from deepprob.inference.evaluation.divergences import bimodal_mixture
from deepprob.inference.evaluation.kl import kl_to_reference
from deepprob.inference.fitting.objectives import Objective, parse_objective
from deepprob.inference.fitting.svi_steps import guide_parameters, svi_loss_fn

CORRELATED_MEAN = torch.tensor([1.0, -2.0])
CORRELATED_COV = torch.tensor([[1.0, 0.8], [0.8, 2.0]])


def correlated_gaussian():
    pyro.sample("z", dist.MultivariateNormal(CORRELATED_MEAN, CORRELATED_COV))


def bimodal():
    """A posterior 0.5 N(0, 1) + 0.5 N(8, 1) with log Z = 0: a broad prior N(4, 10^2), and a factor that turns
    it into the mixture."""
    prior = dist.Normal(4.0, 10.0)
    z = pyro.sample("z", prior)
    pyro.factor("to_the_mixture", bimodal_mixture().log_prob(z) - prior.log_prob(z))


def linreg():
    """(model, args, exact posterior over the latent vector): a conjugate, Gaussian posterior."""
    problem = default_problem("linreg", num_points=30)
    return problem.model, problem.fit_args, problem.exact.over_latent_vector(None)


def logreg():
    problem = default_problem("logreg", num_points=100)
    return problem.model, problem.fit_args


def test_a_flow_reaches_log_z_on_a_bimodal_target_where_a_gaussian_stays_at_minus_log_2():
    """0.5 N(0, 1) + 0.5 N(8, 1), log Z = 0: the spline flow starts covering both modes its search finds and
    carves them out; a full-rank Gaussian can only sit on one, at ELBO = -log 2."""
    model = bimodal
    elbos = {}
    for name in ("flow", "fullrank"):
        pyro.set_rng_seed(0)
        fit = fit_svi(model, build_guide(name, model), steps=2000, lr=0.02, num_particles=8, progress=False,
                      elbo_particles=4000)
        elbos[name] = fit.elbo
    assert elbos["flow"] > -0.05, elbos
    assert abs(elbos["fullrank"] + math.log(2)) < 0.05, elbos


def test_pathfinder_finds_a_gaussian_posterior_and_counts_its_evaluations():
    """linreg's posterior is Gaussian. L-BFGS's inverse-Hessian estimate (six pairs, inexact line searches,
    a diagonal started at 1) is not exact even on a quadratic: measured KL 0.10 to the exact posterior, against
    more than 100 from the prior start."""
    model, args, exact = linreg()
    pyro.set_rng_seed(0)
    fit = fit_svi(model, build_guide("pathfinder", model), *args, progress=False)
    kl = kl_to_reference(fit.guide.get_posterior(), exact)
    assert kl < 0.3, kl
    extras = fit.extras
    assert 0 < extras["gradient_evaluations"] < 100  # a handful of L-BFGS iterations in 4 dimensions
    # each iterate's ELBO estimate costs its draws' log densities, on top of the path's
    assert extras["density_evaluations"] == extras["gradient_evaluations"] + 25 * extras["iterations"][0]
    # the prior start (far from the posterior) is not the answer: the check tells them apart
    start = build_guide("fullrank", model, GuideOptions(start="prior"))
    start(*args)
    assert kl_to_reference(start.get_posterior(), exact) > 100 * kl


def test_multipath_pathfinder_is_a_mixture_of_its_paths_and_resampling_gives_particles():
    model, args, exact = linreg()
    pyro.set_rng_seed(0)
    mixture = fit_svi(model, build_guide("pathfinder", model, GuideOptions(paths=3)), *args, progress=False)
    assert mixture.extras["paths"] == 3 and len(mixture.extras["path_elbos"]) == 3
    draws = mixture.guide.get_posterior().sample((4000,))
    torch.testing.assert_close(draws.mean(0).double(), exact.mean, atol=0.05 * float(exact.stddev.min()) + 0.02,
                               rtol=0.0)
    resampled = fit_svi(model, build_guide("pathfinder", model, GuideOptions(paths=3, resample=True)), *args,
                        progress=False)
    assert resampled.guide.q_density == "particles" and math.isnan(resampled.elbo)


def test_the_stein_kernel_is_pyros_in_one_dimension_and_keeps_repelling_in_ten():
    particles = torch.randn(7, 1)
    log_kernel, grad_term = RBFSteinKernel().log_kernel_and_grad(particles)
    kernel, repulsion = rbf_kernel(particles)
    pyro_kernel = log_kernel.sum(-1).exp()
    torch.testing.assert_close(kernel, pyro_kernel)
    # Pyro's SVGD adds einsum(kernel, grad_term) to the loss's gradient: minus our repulsion
    torch.testing.assert_close(repulsion, -torch.einsum("nm,nmd->nd", pyro_kernel, grad_term))
    # in ten dimensions one bandwidth keeps the kernel at the median distance at 1 / (N + 1); Pyro's
    # multivariate mode (a bandwidth per dimension, summed) makes it about (N + 1)^-10: no repulsion left
    wide = torch.randn(50, 10)
    ours, _ = rbf_kernel(wide)
    theirs = RBFSteinKernel().log_kernel_and_grad(wide)[0].sum(-1).exp()
    off_diagonal = ~torch.eye(50, dtype=torch.bool)
    assert float(ours[off_diagonal].median()) == pytest.approx(1 / 51, rel=0.05)
    assert float(theirs[off_diagonal].median()) < 1e-8


def test_svgd_particles_have_the_posterior_moments_and_the_engines_agree():
    """SVGD on N(m, S): the particles' mean is m, their covariance S up to SVGD's known shrinkage with 100
    particles (measured: 6% on the variances here); the compiled steps are the Pyro engine's."""
    ends = {}
    for engine in ("pyro", "compiled"):
        pyro.set_rng_seed(0)
        guide = build_guide("svgd", correlated_gaussian, GuideOptions(particles=100))
        fit = fit_svi(correlated_gaussian, guide, steps=1500, lr=0.05, progress=False, engine=engine)
        ends[engine] = fit.guide.get_posterior().particles
        assert fit.extras["gradient_evaluations"] >= 1500 * 100
    particles = ends["pyro"]
    torch.testing.assert_close(particles.mean(0), CORRELATED_MEAN, atol=0.02, rtol=0)
    cov = torch.cov(particles.T)
    assert torch.all((cov.diagonal() / CORRELATED_COV.diagonal() - 1).abs() < 0.25), cov
    assert abs(float(cov[0, 1] / cov.diagonal().prod().sqrt()) - 0.8 / math.sqrt(2.0)) < 0.05, cov
    torch.testing.assert_close(ends["compiled"], ends["pyro"], atol=1e-4, rtol=1e-4)


def test_a_point_mass_has_no_density_so_infinite_khat_and_no_elbo():
    model, args, exact = linreg()
    result = compare(model, *args, guides=["delta", "fullrank"], reference=exact, steps=300, draws=200)
    delta, full = result.rows["delta"], result.rows["fullrank"]
    assert math.isinf(delta["khat"]) and math.isnan(delta["elbo"])
    assert delta["sd_err_sd"] == pytest.approx(1.0)  # the draws do not vary
    # the MAP point of a Gaussian posterior is its mean (up to the noise of 200 reference draws, 0.07 a parameter)
    assert delta["mean_err_sd"] < 0.3
    assert full["khat"] < 0.5


@pytest.mark.parametrize("text, expected", [
    ("elbo", Objective()), ("renyi:0.5", Objective("renyi", 0.5)), ("iwae:50", Objective("iwae", 0.0, 50)),
])
def test_objectives_parse(text, expected):
    assert parse_objective(text) == expected
    assert str(parse_objective(text)) == text


@pytest.mark.parametrize("text", ["iwae", "iwae:0", "renyi:1", "renyi:-1", "renyi:x", "kl", "elbo:2"])
def test_a_bad_objective_is_one_input_error(text):
    with pytest.raises(InputError, match=r"--objective .*: expected elbo \| renyi:ALPHA"):
        parse_objective(text)


def test_the_iw_bound_lies_between_the_elbo_and_log_evidence():
    """On the same draws: mean log w <= log mean w (Jensen, draw set by draw set), and the K-draw bound tends
    to log p(x) (here a Gaussian q far from the posterior, so K matters)."""
    torch.manual_seed(0)
    log_w = torch.randn(1000, 64) * 2.0 - 3.0  # 64 sets of K = 1000 draws' log weights
    elbo, iw = Objective().bound(log_w, 0), Objective("iwae", 0.0, 1000).bound(log_w, 0)
    assert torch.all(iw >= elbo)
    # log weights N(-3, 2^2): log E w = -3 + 2^2 / 2 = -1 exactly; the ELBO is -3
    assert float(iw.mean()) == pytest.approx(-1.0, abs=0.25) and float(elbo.mean()) == pytest.approx(-3.0, abs=0.02)
    half = Objective("renyi", 0.5).bound(log_w, 0)
    assert torch.all((half >= elbo) & (half <= iw))


@pytest.mark.parametrize("objective", ["renyi:0.5", "iwae:6"])
def test_the_compiled_objective_is_pyros_renyi_elbo(objective):
    """Same noise, same value and gradients as Pyro's RenyiELBO (vectorised particles)."""
    model, args = logreg()
    pyro.set_rng_seed(0)
    guide = build_guide("fullrank", model)
    guide(*args)
    with torch.no_grad():
        for p in guide.parameters():
            p.add_(0.1 * torch.randn_like(p))
    parsed = parse_objective(objective)
    particles = parsed.draws(6)
    params = guide_parameters(guide)
    leaves = list(params.values())
    theirs_loss = RenyiELBO(alpha=parsed.alpha, num_particles=particles, vectorize_particles=True, max_plate_nesting=1)
    pyro.set_rng_seed(1)
    for p in leaves:
        p.grad = None
    theirs = torch.tensor(theirs_loss.loss_and_grads(model, guide, *args))
    theirs_grads = [p.grad.clone() for p in leaves]
    loss = svi_loss_fn(model, guide, *args, objective=parsed)
    pyro.set_rng_seed(1)
    ours = loss(params, loss.form.noise(params, particles))
    ours_grads = torch.autograd.grad(ours, leaves)
    torch.testing.assert_close(ours.detach(), theirs.to(ours.dtype), rtol=1e-5, atol=1e-4)
    for a, b in zip(ours_grads, theirs_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    # and the Pyro engine's estimator is the compiled one's
    pyro.set_rng_seed(1)
    engine_loss = parsed.pyro_loss(6, 1).differentiable_loss(model, guide, *args)
    torch.testing.assert_close(engine_loss, ours, rtol=1e-5, atol=1e-4)


def test_iwae_training_tightens_the_bound_it_trains():
    """A mean-field guide on a posterior with correlation 0.95: trained for the IW bound (K = 20) it ends with a
    higher IW bound, and a lower ELBO, than trained for the ELBO (it widens to cover the ridge)."""
    cov = torch.tensor([[1.0, 0.95], [0.95, 1.0]])
    target = dist.MultivariateNormal(torch.zeros(2), cov)

    def ridge():
        pyro.sample("z", target)

    fits = {}
    for objective in ("elbo", "iwae:20"):
        pyro.set_rng_seed(0)
        fits[objective] = fit_svi(ridge, build_guide("meanfield", ridge), steps=1500, lr=0.02, num_particles=20,
                                  objective=objective, progress=False, engine="pyro")
    iw = {}
    for objective, fit in fits.items():
        pyro.set_rng_seed(5)
        q = fit.guide.get_posterior()
        z = q.sample((20, 2000))
        iw[objective] = float(Objective("iwae", 0.0, 20).bound(target.log_prob(z) - q.log_prob(z), 0).mean())
    assert iw["iwae:20"] > iw["elbo"] + 0.05, iw
    # the ELBO-trained guide's ELBO is -KL = 1/2 log(1 - 0.95^2) = -1.16 at best
    assert fits["elbo"].elbo == pytest.approx(0.5 * math.log(1 - 0.95**2), abs=0.05)
    assert fits["iwae:20"].elbo < fits["elbo"].elbo, {k: f.elbo for k, f in fits.items()}
    assert fits["iwae:20"].extras["gradient_evaluations"] >= 1500 * 20  # and the Laplace start's few


def test_the_mixture_takes_the_elbo_only():
    model, args = logreg()
    with pytest.raises(InputError, match="--objective iwae:4: the AutoGaussianMixture guide draws a discrete"):
        fit_svi(model, build_guide("mixture", model), *args, steps=10, objective="iwae:4", progress=False)


def test_the_compiled_engine_takes_iaf_and_declines_spline_flows_loudly():
    model, args = logreg()
    ends = {}
    for engine in ("pyro", "compiled"):
        pyro.set_rng_seed(3)
        guide = build_guide("iaf", model)
        fit = fit_svi(model, guide, *args, steps=60, lr=0.02, num_particles=2, elbo_particles=0, progress=False,
                      engine=engine)
        assert fit.extras["engine"] == engine
        ends[engine] = {k: v.detach().clone() for k, v in guide_parameters(guide).items()}
    for name, value in ends["pyro"].items():
        torch.testing.assert_close(ends["compiled"][name], value, rtol=1e-4, atol=1e-4, msg=name)
    with pytest.raises(InputError, match="--engine compiled: not possible here, the FlowFromLaplace guide: Pyro's "
                                         "spline transforms index by masks"):
        fit_svi(model, build_guide("flow", model), *args, steps=10, engine="compiled", progress=False)
