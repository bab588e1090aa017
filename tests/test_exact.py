"""The exact conjugate answers, and the standardised coordinates the regression models use."""

import math

import torch

from deepprob.datasets import cubic_regression
from deepprob.inference.evaluation.exact import conjugate_log_evidence, conjugate_posterior, conjugate_predictive
from deepprob.models.linreg import expand_basis
from deepprob.models.standardise import Standardisation


def test_posterior_matches_one_dimensional_formula():
    phi = torch.tensor([[0.5], [1.0], [-2.0]], dtype=torch.float64)
    y = torch.tensor([1.0, 0.3, -1.0], dtype=torch.float64)
    alpha, beta = 2.0, 3.0
    post = conjugate_posterior(phi, y, alpha, beta)
    precision = alpha + beta * (phi**2).sum()
    assert torch.allclose(post.covariance_matrix, (1 / precision).reshape(1, 1))
    assert torch.allclose(post.mean, (beta * (phi[:, 0] * y).sum() / precision).reshape(1))


def test_log_evidence_matches_quadrature():
    phi = torch.tensor([[1.0], [2.0]], dtype=torch.float64)
    y = torch.tensor([0.7, 1.1], dtype=torch.float64)
    alpha, beta = 1.5, 4.0
    w = torch.linspace(-10, 10, 200001, dtype=torch.float64)
    log_joint = (torch.distributions.Normal(0, alpha**-0.5).log_prob(w)
                 + torch.distributions.Normal(w[:, None] * phi[:, 0], beta**-0.5).log_prob(y).sum(-1))
    quadrature = torch.logsumexp(log_joint, 0) + math.log(w[1] - w[0])
    assert abs(conjugate_log_evidence(phi, y, alpha, beta) - float(quadrature)) < 1e-6


def test_predictive_variance_grows_away_from_data():
    data = cubic_regression()
    Phi, _ = expand_basis(data.X.double(), "poly:3")
    post = conjugate_posterior(Phi, data.y, 1.0, 2.5)
    grid, _ = expand_basis(torch.tensor([[1.0], [8.0]], dtype=torch.float64), "poly:3")
    pred = conjugate_predictive(grid, post, 2.5)
    assert pred.stddev[0] < 0.8 < 2 < pred.stddev[1]  # inside the data (x in [-3, 5]) vs far outside
    assert pred.stddev[0] > 2.5**-0.5  # never below the noise


def test_standardisation_is_an_exact_reparameterisation():
    Phi, _ = expand_basis(cubic_regression().X.double(), "poly:3")
    s = Standardisation.of(Phi)
    Phi_s = s.features(Phi)
    assert torch.allclose(Phi_s[:, 1:].mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(Phi_s[:, 1:].std(0), torch.ones(3, dtype=torch.float64))
    w_s = torch.randn(5, 4, dtype=torch.float64)
    assert torch.allclose(Phi_s @ w_s.T, Phi @ s.to_original(w_s).T)
    # the prior N(0, I / alpha) on w maps to N(0, T T^T / alpha) on w_s
    L = s.prior_scale_tril(2.0)
    assert torch.allclose(s.T_inv @ (L @ L.T) @ s.T_inv.T, torch.eye(4, dtype=torch.float64) / 2.0)
