"""The GAN-VAE comparison: the grid data set, the kernel density estimate and the two KL divergences against
closed forms, the 2-D VAE's log-likelihood against its own decoder's, and the ``deepprob unify`` command."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.distributions import MultivariateNormal

from deepprob.adversarial.kde import GaussianKDE
from deepprob.adversarial.metrics import kl_both_ways
from deepprob.adversarial.point_gan import preset, preset_basis
from deepprob.cli import main as cli_main
from deepprob.datasets.points import POINT_SETS, grid, load_points_csv, ring, ring16, ring_pacgan
from deepprob.inference.generative.point_vae import fit_point_vae
from deepprob.inference.generative.vae_eval import grid_log_likelihood


def test_grid_is_pacgans_five_by_five_mixture():
    cloud = grid(n=20000)
    assert cloud.centres.shape == (25, 2) and cloud.mode_sigma == 0.05
    assert sorted(set(cloud.centres[:, 0].tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]
    # each point lies within a few sigma of a centre, and every centre has its share
    nearest = torch.cdist(cloud.points, cloud.centres).min(1)
    assert float(nearest.values.max()) < 6 * 0.05
    assert torch.bincount(nearest.indices, minlength=25).min() > 20000 / 25 * 0.8
    ring = ring_pacgan()
    torch.testing.assert_close(ring.centres.norm(dim=1), torch.ones(8))
    assert ring.mode_sigma == 0.01 and "grid" in POINT_SETS and "ring-pacgan" in POINT_SETS


def test_many_known_modes_get_their_own_settings_from_the_data_not_its_name(tmp_path):
    assert preset("gan", grid())["iterations"] > preset("gan", ring())["iterations"]
    assert preset("gan", ring()) == preset("gan") and preset("gan", ring16()) == preset("gan", grid())
    assert preset("unrolled", ring())["d_steps"] == 1
    # the same grid as a user's CSV with its modes: the same settings; without --modes, the ring's
    cloud = grid()
    (tmp_path / "points.csv").write_text("x,y\n" + "\n".join(f"{x},{y}" for x, y in cloud.points.tolist()))
    (tmp_path / "modes.csv").write_text("\n".join(f"{x},{y}" for x, y in cloud.centres.tolist()))
    user = load_points_csv(tmp_path / "points.csv", tmp_path / "modes.csv")
    assert preset("gan", user) == preset("gan", grid()) and "25 known modes" in preset_basis(user)
    assert preset("gan", load_points_csv(tmp_path / "points.csv")) == preset("gan")


def test_kde_of_many_normal_draws_is_the_normal_density():
    torch.manual_seed(0)
    normal = MultivariateNormal(torch.zeros(2), torch.eye(2))
    kde = GaussianKDE.fitted(normal.sample((20000,)))
    x = torch.tensor([[0.0, 0.0], [1.0, -0.5], [-1.5, 1.0]])
    # its expectation is the density smoothed by the kernel, N(0, (1 + h^2) I); around it, sampling noise of
    # relative sd about (n h^2 4 pi p)^(-1/2) (the kernel's square integrates to 1 / (4 pi h^2))
    h = kde.bandwidth
    smoothed = MultivariateNormal(torch.zeros(2), (1 + h**2) * torch.eye(2)).log_prob(x)
    sd = (20000 * h**2 * 4 * math.pi * smoothed.exp()) ** -0.5
    assert ((kde.log_prob(x) - smoothed).abs() < 4 * sd).all()
    assert float(sd.max()) < 0.1
    assert 0.1 < kde.bandwidth < 0.6  # Silverman's rule gives 0.19 for 20,000 draws of N(0, I_2)


def test_both_kl_directions_against_their_closed_forms_and_the_kde_estimate():
    torch.manual_seed(0)
    p = MultivariateNormal(torch.zeros(2), torch.eye(2))
    q = MultivariateNormal(torch.tensor([1.0, 0.0]), 4 * torch.eye(2))
    exact = kl_both_ways(p.log_prob, p.sample((200000,)), q.sample((200000,)), q.log_prob)
    # KL(N0 || N1) = 1/2 [tr(S1^-1 S0) + (m1 - m0)^T S1^-1 (m1 - m0) - d + log det S1 / det S0]
    forward = 0.5 * (2 / 4 + 1 / 4 - 2 + math.log(16))
    reverse = 0.5 * (2 * 4 + 1 - 2 + math.log(1 / 16))
    assert exact["kl_data_model"] == pytest.approx(forward, abs=0.02)
    assert exact["kl_model_data"] == pytest.approx(reverse, abs=0.03)
    # with q's density estimated from its samples by a KDE: the same numbers within the KDE's bias
    kde = GaussianKDE.fitted(q.sample((20000,)))
    estimated = kl_both_ways(p.log_prob, p.sample((5000,)), q.sample((5000,)), kde.log_prob)
    assert estimated["kl_data_model"] == pytest.approx(forward, abs=0.1)
    assert estimated["kl_model_data"] == pytest.approx(reverse, abs=0.1)


def test_point_vae_log_likelihood_matches_its_decoders_marginal():
    """The importance-weighted log p(x) of the 2-D VAE (in data coordinates) against numerical integration of
    the same decoder over its 2-D latent: two estimates of one number, with the data's affine map between."""
    cloud = POINT_SETS["ring"](n=2000)
    vae = fit_point_vae(cloud, latent_dim=2, hidden=[32], epochs=3, n_train=2000, progress=False, engine="pyro")
    x = cloud.points[:50]
    iw = vae.log_prob(x, num_samples=2000)
    standard = (x - vae.mean) / vae.scale
    exact = grid_log_likelihood(vae.vae, standard) - 2 * math.log(vae.scale)
    assert (iw <= exact + 0.05).float().mean() > 0.9  # a lower bound, up to its Monte Carlo noise
    torch.testing.assert_close(iw, exact, atol=0.3, rtol=0)
    assert vae.sample(10).shape == (10, 2)


def test_unify_command_scores_both_models_on_both_kl_directions(tmp_path, capsys):
    code = cli_main(["unify", "--datasets", "ring", "--iterations", "30", "--vae-epochs", "1", "--eval-samples", "300",
                     "--kl-samples", "300", "--kde-samples", "500", "--json", "--quiet", "--out", str(tmp_path)])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    ring = out["datasets"]["ring"]
    assert set(ring) == {"gan", "vae"}
    for model in ("gan", "vae"):
        for key in ("modes_covered", "high_quality_fraction", "kl_data_model", "kl_model_data"):
            assert math.isfinite(ring[model][key])
    assert set(ring["vae"]["iw"]) == {"kl_data_model", "kl_model_data"}
    assert (tmp_path / "unify.png").is_file()


def test_unify_refuses_an_unknown_dataset(tmp_path, capsys):
    assert cli_main(["unify", "--datasets", "ring,moons", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--datasets" in err and "moons" in err and len(err.strip().splitlines()) == 1
