"""Adversarial variational Bayes and the log-likelihoods that need no encoder density: each against exact
answers (linear-Gaussian marginals, one-pixel Bernoulli marginals, a Gaussian encoder written implicitly)."""

from __future__ import annotations

import json
import math

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from torch import nn

from deepprob.cli import main as cli_main
from deepprob.inference.generative.avb_fit import AVBTrainer, adversary_loss, fit_adversary
from deepprob.inference.generative.vae_eval import (
    grid_log_likelihood,
    heldout_log_likelihood,
    log_prob_table,
    proposal_log_likelihood,
)
from deepprob.models.avb import AVB, JointDiscriminator
from deepprob.models.vae import VAE, MLPEncoder

# --- the held-out log-likelihood by a grid over z: decoders whose p(x) is known ----------------------


class LinearGaussian:
    """z ~ N(0, I_2), x ~ N(W z + b, s^2 I_2): p(x) = N(b, W W^T + s^2 I) exactly."""

    z_dim, event_shape = 2, (2,)

    def __init__(self):
        self.W = torch.tensor([[1.0, 0.3], [-0.4, 0.8]], dtype=torch.float64)
        self.b, self.s = torch.tensor([0.5, -1.0], dtype=torch.float64), 0.5

    def prior(self, like):
        return pyro.distributions.Normal(like.new_zeros(2), 1.0).to_event(1)

    def observation(self, z):
        return pyro.distributions.Normal(z @ self.W.T + self.b, self.s).to_event(1)

    def marginal(self):
        cov = self.W @ self.W.T + self.s**2 * torch.eye(2, dtype=torch.float64)
        return torch.distributions.MultivariateNormal(self.b, cov)

    def posterior(self, x):
        """q(z | x) exactly: N(P W^T (x - b) / s^2, P), P = (I + W^T W / s^2)^-1."""
        precision = torch.eye(2, dtype=torch.float64) + self.W.T @ self.W / self.s**2
        cov = torch.linalg.inv(precision)
        return torch.distributions.MultivariateNormal((x - self.b) @ self.W / self.s**2 @ cov, cov)


def test_grid_log_likelihood_equals_the_linear_gaussian_marginal():
    model = LinearGaussian()
    x = torch.tensor([[0.0, 0.0], [2.0, -1.5], [-1.0, 1.0]], dtype=torch.float64)
    estimate = grid_log_likelihood(model, x)
    torch.testing.assert_close(estimate, model.marginal().log_prob(x), atol=1e-4, rtol=0)
    # and it sees a wrong decoder: another offset moves log p(x) far beyond that tolerance
    model.b = model.b + 0.5
    assert (grid_log_likelihood(model, x) - LinearGaussian().marginal().log_prob(x)).abs().max() > 0.1


class OnePixel:
    """z ~ N(0, I_d), x ~ Bernoulli(sigmoid(a z_1 + c)) (one pixel): p(x = 1) = E[sigmoid(a z + c)], z ~ N(0, 1)."""

    event_shape = (1,)

    def __init__(self, a: float, c: float, z_dim: int):
        self.a, self.c, self.z_dim = a, c, z_dim

    def prior(self, like):
        return pyro.distributions.Normal(like.new_zeros(self.z_dim), 1.0).to_event(1)

    def observation(self, z):
        return pyro.distributions.Bernoulli(logits=self.a * z[..., :1] + self.c).to_event(1)


@pytest.mark.parametrize("z_dim", [1, 2])
def test_grid_log_likelihood_of_a_bernoulli_pixel(z_dim):
    model = OnePixel(3.0, 1.0, z_dim)
    z = torch.linspace(-10, 10, 200001, dtype=torch.float64)
    p1 = torch.trapezoid(torch.sigmoid(3 * z + 1) * torch.exp(-z**2 / 2) / math.sqrt(2 * math.pi), z)
    x = torch.tensor([[1.0], [0.0]], dtype=torch.float64)
    torch.testing.assert_close(grid_log_likelihood(model, x), torch.stack([p1.log(), (1 - p1).log()]),
                               atol=1e-4, rtol=0)
    # a sharp decoder (logit 50 z): p(x = 1) = 1/2 however abrupt the jump
    sharp = grid_log_likelihood(OnePixel(50.0, 0.0, z_dim), x)
    torch.testing.assert_close(sharp, torch.full((2,), math.log(0.5), dtype=torch.float64), atol=2e-3, rtol=0)


@pytest.mark.parametrize("kind", ["bernoulli", "normal", "normal-per-point-scale", "beta"])
def test_log_prob_table_equals_broadcasting(kind):
    """The matrix-product table of log p(x_n | z_g) is the broadcast log_prob, element by element."""
    torch.manual_seed(0)
    G, N, shape = 7, 5, (3, 4)
    out = torch.randn(G, 1, *shape, dtype=torch.float64)
    if kind == "bernoulli":
        observation, x = pyro.distributions.Bernoulli(logits=3 * out), torch.rand(N, *shape).round().double()
    elif kind == "beta":  # no fast path: broadcast
        observation, x = pyro.distributions.Beta(out.exp(), 2.0), torch.rand(N, *shape, dtype=torch.float64)
    else:
        scale = torch.rand(shape, dtype=torch.float64) + 0.1
        if kind == "normal-per-point-scale":
            scale = scale * torch.rand(G, 1, *shape, dtype=torch.float64)
        observation, x = pyro.distributions.Normal(out, scale), torch.randn(N, *shape, dtype=torch.float64)
    observation = observation.to_event(2)
    table = log_prob_table(observation, x)
    assert table.shape == (G, N)
    torch.testing.assert_close(table, observation.log_prob(x), rtol=1e-10, atol=1e-9)
    # and it is not the table with one pixel's sign flipped (a wrong formula would pass a shape check)
    wrong = x.clone()
    wrong[:, 0, 0] = 1 - wrong[:, 0, 0] if kind in ("bernoulli", "beta") else -wrong[:, 0, 0] + 1
    assert (log_prob_table(observation, wrong) - table).abs().max() > 1e-3


def test_grid_refuses_latents_beyond_two():
    with pytest.raises(Exception, match="at most 2"):
        grid_log_likelihood(OnePixel(1.0, 0.0, 3), torch.ones(1, 1))


def test_proposal_estimate_is_exact_with_the_exact_posterior_and_usable_with_a_poor_one():
    torch.manual_seed(0)
    model = LinearGaussian()
    x = torch.tensor([[0.0, 0.0], [2.0, -1.5]], dtype=torch.float64)
    exact = model.marginal().log_prob(x)

    def posterior_codes(x, draws):
        return model.posterior(x).sample((draws,))

    estimate = proposal_log_likelihood(model, x, posterior_codes, num_samples=4000, fit_draws=4000)
    torch.testing.assert_close(estimate, exact, atol=0.03, rtol=0)  # about 5 standard errors at K = 4000

    def poor_codes(x, draws):  # far too narrow and off-centre: the defensive prior share keeps it finite
        return model.posterior(x).sample((draws,)) * 0.05 + 1.0

    poor = proposal_log_likelihood(model, x, poor_codes, num_samples=4000)
    assert torch.isfinite(poor).all() and (poor - exact).abs().max() < 0.25


# --- the discriminator as a density-ratio estimator ---------------------------------------------------


class GaussianEncoder(nn.Module):
    """A Gaussian q(z | x) = N(loc(x), scale(x)) written implicitly: z = loc(x) + scale(x) * eps."""

    def __init__(self, event_shape, z_dim):
        super().__init__()
        self.gaussian = MLPEncoder(event_shape, z_dim, [8])

    def forward(self, x, eps):
        loc, scale = self.gaussian(x)
        return loc + scale * eps

    def log_ratio(self, x, z):
        """log q(z | x) - log p(z), exactly."""
        loc, scale = self.gaussian(x)
        return (torch.distributions.Normal(loc, scale).log_prob(z) - torch.distributions.Normal(0.0, 1.0).log_prob(z)
                ).sum(-1)


class ExactRatio(nn.Module):
    def __init__(self, encoder: GaussianEncoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, x, z):
        return self.encoder.log_ratio(x, z)


def onehot_images(n: int = 512) -> torch.Tensor:
    return torch.eye(4)[torch.arange(n) % 4].view(n, 1, 1, 4)


def test_discriminator_learns_a_known_log_ratio():
    torch.manual_seed(0)
    encoder = GaussianEncoder((1, 1, 4), 2)

    def codes(x, draws):
        with torch.no_grad():
            return encoder(x, torch.randn(draws, x.shape[0], 2))

    x = onehot_images()
    adversary = JointDiscriminator((1, 1, 4), 2, [64, 64])
    z = codes(x, 1)[0]
    untrained = (adversary(x, z) - encoder.log_ratio(x, z)).pow(2).mean().sqrt()
    losses = fit_adversary(adversary, codes, x, steps=1500, batch_size=256, lr=3e-3)
    with torch.no_grad():
        rmse = (adversary(x, z) - encoder.log_ratio(x, z)).pow(2).mean().sqrt()
    # the Bayes-optimal logistic loss is 2 log 2 minus the Jensen-Shannon term; it fell, and T is the log ratio
    assert losses[-1] < losses[0]
    assert rmse < 0.2 < untrained


def test_avb_loss_with_the_exact_ratio_is_the_gaussian_vae_elbo():
    """A Gaussian encoder written implicitly, T the exact log ratio: AVB's loss equals Trace_ELBO of the
    Gaussian VAE on the same draws, and agrees with the analytic-KL ELBO within Monte Carlo error."""
    torch.manual_seed(1)
    shape = (1, 1, 4)
    vae = VAE(shape, z_dim=2, hidden=[8]).double()
    avb = AVB(shape, z_dim=2, hidden=[8], noise_dim=2).double()
    avb.decoder = vae.decoder
    avb.encoder = GaussianEncoder(shape, 2).double()
    avb.encoder.gaussian = vae.encoder
    avb.adversary = ExactRatio(avb.encoder)
    x = onehot_images(8).double()

    pyro.set_rng_seed(3)
    avb_loss = Trace_ELBO().differentiable_loss(avb.model, avb.guide, x)
    pyro.set_rng_seed(3)  # the same eps: the noise site and Normal.rsample draw alike
    vae_loss = Trace_ELBO().differentiable_loss(vae.model, vae.guide, x)
    assert avb_loss.item() == pytest.approx(vae_loss.item(), rel=1e-10)

    # many particles: mean and standard error of AVB's estimate against the analytic-KL ELBO's
    k = 4000
    elbo = Trace_ELBO(num_particles=k, vectorize_particles=True, max_plate_nesting=1)
    analytic = TraceMeanField_ELBO(num_particles=k, vectorize_particles=True, max_plate_nesting=1)
    with torch.no_grad():
        estimate = elbo.loss(avb.model, avb.guide, x)
        exact_kl = analytic.loss(vae.model, vae.guide, x)
        singles = torch.tensor([Trace_ELBO().loss(avb.model, avb.guide, x) for _ in range(200)])
    standard_error = float(singles.std()) / math.sqrt(k)
    assert abs(estimate - exact_kl) < 4 * standard_error + 1e-3


def test_avb_trainer_trains_the_adversary_apart_from_the_elbo():
    torch.manual_seed(0)
    avb = AVB((1, 1, 4), z_dim=2, hidden=[16], noise_dim=4)
    trainer = AVBTrainer(avb, lr=1e-2, batch_size=64)
    assert {id(p) for p in trainer.params}.isdisjoint(id(p) for p in avb.adversary.parameters())
    x = onehot_images(256)
    before = [p.detach().clone() for p in avb.adversary.parameters()]
    with torch.no_grad():
        loss_before = float(adversary_loss(avb.adversary, avb.sample_codes, x))
    trainer.train_epoch(x, torch.randperm(256))
    assert any(not torch.equal(a, b) for a, b in zip(before, avb.adversary.parameters()))
    assert all(p.requires_grad for p in avb.adversary.parameters())  # unfrozen after the ELBO step
    with torch.no_grad():
        assert float(adversary_loss(avb.adversary, avb.sample_codes, x)) < loss_before
    with pytest.raises(Exception, match="Pyro engine"):
        AVBTrainer(avb, engine="compiled")


def test_test_log_likelihood_picks_the_grid_for_two_dimensional_latents():
    vae = VAE((1, 1, 4), z_dim=2, hidden=[8])
    out = heldout_log_likelihood(vae, onehot_images(8))
    assert out["test_loglik_method"].startswith("grid") and out["test_loglik"] < 0
    vae3 = VAE((1, 1, 4), z_dim=3, hidden=[8])
    assert heldout_log_likelihood(vae3, onehot_images(8), num_samples=50)["test_loglik_method"].startswith("importance")


# --- the command -------------------------------------------------------------------------------------


def test_avb_command_reports_both_encoders_on_one_scale(tmp_path, capsys):
    code = cli_main(["avb", "--dataset", "onehot", "--epochs", "2", "--hidden", "16", "--json", "--quiet",
                     "--out", str(tmp_path)])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["test_loglik_method"] == out["baseline"]["test_loglik_method"]
    assert out["test_loglik_method"].startswith("grid")
    assert -10 < out["test_loglik"] < 0 and -10 < out["baseline"]["test_loglik"] < 0
    assert set(out["adversary_checks"]) == {"vae", "avb"}
    for name in ("latent_codes.png", "ratio.png", "samples.png", "avb.pt", "vae.pt"):
        assert (tmp_path / name).is_file()
    # resume: two more epochs from the checkpoints
    assert cli_main(["avb", "--dataset", "onehot", "--epochs", "3", "--hidden", "16", "--json", "--quiet",
                     "--resume", "--out", str(tmp_path)]) == 0
    resumed = json.loads(capsys.readouterr().out)
    assert resumed["resumed_from_epoch"] == 2 and resumed["epochs"] == 3


def test_avb_command_refuses_bad_input(tmp_path, capsys):
    assert cli_main(["avb", "--noise-dim", "0", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--noise-dim" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
