"""The VAE: its ELBO against hand-computed ones, the importance-weighted bound against exact log p(x),
checkpoint/resume, and the ``deepprob vae`` command (the issue's acceptance checks, small)."""

from __future__ import annotations

import json
import math

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from torch.nn import functional as F

from deepprob.cli import main as cli_main
from deepprob.datasets.images import binarize, load_digits
from deepprob.errors import FitDivergedError, InputError
from deepprob.inference.fitting.objectives import parse_objective
from deepprob.inference.generative.vae_eval import (
    ImportanceWeightedLoss,
    evaluate_vae,
    log_importance_weights,
    nearest_centroid_accuracy,
)
from deepprob.inference.generative.vae_fit import VAETrainer, fit_vae
from deepprob.models.vae import VAE

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)



def tiny_vae(z_dim: int = 2, seed: int = 1) -> tuple[VAE, torch.Tensor]:
    torch.manual_seed(seed)
    vae = VAE((1, 1, 3), z_dim=z_dim, hidden=[4]).double()
    x = torch.tensor([[1, 0, 1], [0, 0, 1], [1, 1, 1], [0, 0, 0], [1, 0, 0]], dtype=torch.float64)
    return vae, x.view(5, 1, 1, 3)


def hand_log_weights(vae: VAE, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """log p(x, z) - log q(z | x) at z = loc + scale * eps, written out: shape eps.shape[:-1]."""
    loc, scale = vae.encoder(x)
    z = loc + scale * eps
    logits = vae.decoder(z)
    log_px_z = (x * F.logsigmoid(logits) + (1 - x) * F.logsigmoid(-logits)).sum((-1, -2, -3))
    log_pz = (-0.5 * z**2 - LOG_SQRT_2PI).sum(-1)
    log_qz = (-0.5 * eps**2 - scale.log() - LOG_SQRT_2PI).sum(-1)
    return log_px_z + log_pz - log_qz


def test_trace_elbo_equals_hand_computed_monte_carlo_elbo():
    vae, x = tiny_vae()
    pyro.set_rng_seed(7)
    loss = Trace_ELBO().differentiable_loss(vae.model, vae.guide, x)
    grads = torch.autograd.grad(loss, list(vae.parameters()))
    pyro.set_rng_seed(7)  # the same noise: Normal.rsample draws as torch.randn does
    hand = -hand_log_weights(vae, x, torch.randn(5, 2, dtype=torch.float64)).sum()
    hand_grads = torch.autograd.grad(hand, list(vae.parameters()))
    assert loss.item() == pytest.approx(hand.item(), rel=1e-12)
    for g, h in zip(grads, hand_grads):
        torch.testing.assert_close(g, h, rtol=1e-10, atol=1e-12)


def test_trainer_step_loss_is_trace_elbo_and_meanfield_uses_analytic_kl():
    vae, x = tiny_vae()
    pyro.set_rng_seed(3)
    loss = TraceMeanField_ELBO().differentiable_loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(3)
    eps = torch.randn(5, 2, dtype=torch.float64)
    loc, scale = vae.encoder(x)
    logits = vae.decoder(loc + scale * eps)
    log_px_z = (x * F.logsigmoid(logits) + (1 - x) * F.logsigmoid(-logits)).sum()
    kl = (0.5 * (loc**2 + scale**2 - 1) - scale.log()).sum()
    assert loss.item() == pytest.approx((kl - log_px_z).item(), rel=1e-12)

    trainer = VAETrainer(vae, lr=1e-3, elbo="trace", batch_size=5)
    order = torch.arange(5)
    before = [p.detach().clone() for p in vae.parameters()]
    pyro.set_rng_seed(11)
    elbo = trainer.train_epoch(x, order)  # one step: its loss is the ELBO of the whole batch
    pyro.set_rng_seed(11)
    with torch.no_grad():
        for p, b in zip(vae.parameters(), before):
            p.copy_(b)
        expected = hand_log_weights(vae, x, torch.randn(5, 2, dtype=torch.float64)).mean()
    # validate() runs on a forked RNG, so the step sees the seed's noise
    assert elbo == pytest.approx(expected.item(), rel=1e-12)


def test_the_iwae_objective_is_each_images_own_bound():
    """iwae:1 is the ELBO, draw for draw; iwae:K bounds each image with its own K codes, above the ELBO of the
    same codes, and the trainer refuses what it cannot do."""
    vae, x = tiny_vae()
    pyro.set_rng_seed(3)
    elbo = Trace_ELBO().differentiable_loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(3)
    iw1 = ImportanceWeightedLoss(parse_objective("iwae:1")).differentiable_loss(vae.model, vae.guide, x)
    assert iw1.item() == pytest.approx(elbo.item(), rel=1e-12)
    pyro.set_rng_seed(4)
    log_w = log_importance_weights(vae.model, vae.guide, x, 7)  # (7, 5)
    pyro.set_rng_seed(4)
    iw7 = ImportanceWeightedLoss(parse_objective("iwae:7")).differentiable_loss(vae.model, vae.guide, x)
    expected = -(torch.logsumexp(log_w, 0) - math.log(7)).sum()  # per image, not one bound of the batch
    assert iw7.item() == pytest.approx(expected.item(), rel=1e-12)
    assert -iw7.item() > log_w.mean(0).sum().item()
    with pytest.raises(InputError, match="--objective renyi:0.5: the VAE takes elbo or iwae:K"):
        VAETrainer(vae, objective="renyi:0.5")
    with pytest.raises(InputError, match="--objective iwae:4: not with --elbo meanfield"):
        VAETrainer(vae, objective="iwae:4", elbo="meanfield")


@pytest.mark.parametrize("elbo, objective", [("trace", "elbo"), ("meanfield", "elbo"), ("trace", "iwae:5")])
def test_compiled_engine_takes_the_steps_of_the_pyro_engine(elbo, objective):
    """Same seed: the compiled step draws the same z, computes the same loss and makes the same Adam update."""
    torch.manual_seed(0)
    data = (torch.rand(40, 1, 1, 3, dtype=torch.float64) < 0.5).double()
    ends = {}
    for engine in ("pyro", "compiled"):
        vae, _ = tiny_vae()
        # batches of 16, 16 and 8
        trainer = VAETrainer(vae, lr=0.05, elbo=elbo, batch_size=16, engine=engine, objective=objective)
        pyro.set_rng_seed(2)
        elbos = [trainer.train_epoch(data, torch.randperm(40)) for _ in range(3)]
        ends[engine] = elbos, [p.detach().clone() for p in vae.parameters()], trainer.optimizer.state_dict()
    (e_pyro, p_pyro, s_pyro), (e_fast, p_fast, s_fast) = ends["pyro"], ends["compiled"]
    assert e_fast == pytest.approx(e_pyro, rel=1e-9)
    for a, b in zip(p_fast, p_pyro):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    assert s_fast["state"][0]["step"] == s_pyro["state"][0]["step"] == 9  # checkpoints carry the same state
    torch.testing.assert_close(s_fast["state"][0]["exp_avg_sq"], s_pyro["state"][0]["exp_avg_sq"])


def test_importance_weights_equal_hand_computed_ones_and_bounds_are_ordered():
    vae, x = tiny_vae()
    k = 7
    pyro.set_rng_seed(5)
    log_w = log_importance_weights(vae.model, vae.guide, x, k)
    pyro.set_rng_seed(5)
    hand = hand_log_weights(vae, x, torch.randn(k, 5, 2, dtype=torch.float64))
    assert log_w.shape == (k, 5)
    torch.testing.assert_close(log_w, hand, rtol=1e-12, atol=1e-12)

    pyro.set_rng_seed(5)
    result = evaluate_vae(vae, x, num_samples=k)
    assert result["elbo"] == pytest.approx(hand.mean().item(), rel=1e-12)
    iw = (torch.logsumexp(hand, 0) - math.log(k)).mean()
    assert result["iw_loglik"] == pytest.approx(iw.item(), rel=1e-12)
    assert result["iw_loglik"] >= result["elbo"]
    # in blocks of 2 images the noise differs, the estimates hardly
    blocks = evaluate_vae(vae, x, num_samples=4000, batch_size=2)
    assert blocks["iw_loglik"] > blocks["elbo"]
    assert blocks["elbo"] == pytest.approx(evaluate_vae(vae, x, num_samples=4000)["elbo"], abs=0.05)


def test_importance_weighted_estimate_converges_to_exact_log_likelihood():
    # with a 1-D latent, log p(x) = log int N(z; 0, 1) p(x | z) dz is a quadrature away
    vae, x = tiny_vae(z_dim=1, seed=4)
    with torch.no_grad():
        # a guide wider than the posterior (scale 1.5 > the prior's 1): bounded importance weights,
        # so that K = 20,000 pins log p(x) down to a few thousandths
        head = vae.encoder.net[-1]
        head.weight[1].zero_()
        head.bias[1] = math.log(math.expm1(1.5))
        z = torch.linspace(-12, 12, 24001, dtype=torch.float64)
        logits = vae.decoder(z[:, None])  # (G, 1, 1, 3)
        log_px_z = (x * F.logsigmoid(logits[:, None]) + (1 - x) * F.logsigmoid(-logits[:, None])).sum((-1, -2, -3))
        log_joint = log_px_z + (-0.5 * z**2 - LOG_SQRT_2PI)[:, None]
        exact = (torch.logsumexp(log_joint, 0) + math.log(z[1] - z[0])).mean().item()
    pyro.set_rng_seed(0)
    result = evaluate_vae(vae, x, num_samples=20000)
    assert result["elbo"] < exact - 0.05  # an untrained guide: a visible gap
    assert result["iw_loglik"] == pytest.approx(exact, abs=0.01)


def test_vae_shapes_for_both_architectures_and_particle_dimensions():
    for shape, arch in [((1, 28, 28), "mlp"), ((1, 28, 28), "conv"), ((1, 8, 8), "conv")]:
        vae = VAE(shape, z_dim=3, hidden=[16], arch=arch)
        x = torch.bernoulli(torch.full((4, *shape), 0.3))
        loc, scale = vae.encode(x)
        assert loc.shape == scale.shape == (4, 3) and bool((scale > 0).all())
        assert vae.decode(torch.zeros(2, 5, 3)).shape == (2, 5, *shape)
        assert vae.reconstruct(x).shape == x.shape
        assert log_importance_weights(vae.model, vae.guide, x, 6).shape == (6, 4)
    with pytest.raises(InputError, match="--arch conv"):
        VAE((1, 1, 4), arch="conv")
    with pytest.raises(InputError, match="--arch"):
        VAE((1, 8, 8), arch="resnet")


@pytest.mark.filterwarnings("ignore:Encountered NaN")
def test_validation_catches_grey_level_data_and_nan_losses_name_the_step():
    vae, x = tiny_vae()
    with pytest.raises(ValueError):  # Pyro's support check: the Bernoulli sees a 0.5
        VAETrainer(vae, batch_size=5).train_epoch(x * 0.5, torch.arange(5))
    vae, x = tiny_vae()
    trainer = VAETrainer(vae, batch_size=2)
    trainer.validate(x)
    with torch.no_grad():
        vae.decoder.net[0].weight.fill_(float("nan"))
    with pytest.raises(FitDivergedError, match="at step 0"):
        trainer.train_epoch(x, torch.arange(5))


def test_nearest_centroid_accuracy():
    codes = torch.tensor([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
    labels = torch.tensor([0, 0, 1, 1])
    assert nearest_centroid_accuracy(codes, labels, codes, labels) == 1.0
    assert nearest_centroid_accuracy(codes, labels, codes, 1 - labels) == 0.0


def _digits(n_train=200, n_test=50):
    data = load_digits()
    train = data.images[:n_train]
    test = binarize(data.images[n_train:n_train + n_test], generator=torch.Generator().manual_seed(0))
    return train, test


def _fit(tmp_path, epochs, resume=False, config=None, seed=0):
    pyro.set_rng_seed(seed)
    train, test = _digits()
    vae = VAE((1, 8, 8), z_dim=2, hidden=[32])
    fit = fit_vae(vae, train, test, epochs=epochs, batch_size=32, lr=3e-3, checkpoint=tmp_path / "ckpt.pt",
                  resume=resume, config=config or {"arch": "mlp"}, init={"elbo": -1.0}, progress=False)
    return vae, fit, evaluate_vae(vae, test, num_samples=5)


def test_checkpoint_resume_round_trip_is_exact(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    vae_a, fit_a, eval_a = _fit(tmp_path / "a", epochs=3)
    _fit(tmp_path / "b", epochs=1)
    # another seed and another initialisation: everything must come from the checkpoint
    vae_b, fit_b, eval_b = _fit(tmp_path / "b", epochs=3, resume=True, seed=123)
    assert fit_b["resumed_from"] == 1 and fit_b["init"] == {"elbo": -1.0}
    for (name, a), b in zip(vae_a.state_dict().items(), vae_b.state_dict().values()):
        assert torch.equal(a, b), name
    assert fit_a["history"]["train_elbo"] == fit_b["history"]["train_elbo"]
    assert fit_a["history"]["test_elbo"] == fit_b["history"]["test_elbo"]
    assert eval_a == eval_b  # the RNG state is restored too
    state = torch.load(tmp_path / "b" / "ckpt.pt", weights_only=True)
    assert state["epoch"] == 3 and set(state["trainer"]) == {"model", "optimizer", "step"}

    with pytest.raises(InputError, match="arch='mlp' \\(now 'conv'\\)"):
        _fit(tmp_path / "b", epochs=4, resume=True, config={"arch": "conv"})
    with pytest.raises(InputError, match="no checkpoint"):
        _fit(tmp_path, epochs=4, resume=True)


def run_cli(capsys, *argv) -> dict:
    code = cli_main(["vae", *argv, "--json", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_cli_onehot_separates_the_four_classes(tmp_path, capsys):
    metrics = run_cli(capsys, "--dataset", "onehot", "--out", str(tmp_path), "--threads", "1")
    assert metrics["latent_accuracy"] >= 0.99
    assert metrics["test_iw_loglik"] >= metrics["test_elbo"] > metrics["init_test_elbo"]
    # the data have four equally likely values: log p(x) <= -log 4 for any model
    assert metrics["test_iw_loglik"] < -math.log(4) + 0.05
    assert {p.name for p in tmp_path.glob("*.png")} >= {
        "reconstructions.png", "samples.png", "interpolation.png", "latent.png", "manifold.png"}


def test_cli_digits_learns_and_resume_equals_an_uninterrupted_run(tmp_path, capsys):
    common = ["--dataset", "digits", "--threads", "1", "--iw-samples", "20", "--hidden", "64"]
    full = run_cli(capsys, *common, "--epochs", "4", "--out", str(tmp_path / "full"))
    assert full["test_iw_loglik"] > full["test_elbo"]
    assert full["test_iw_loglik"] > full["init_test_iw_loglik"] + 10  # nats per image
    for key in ("train_elbo", "test_elbo", "test_iw_loglik", "init_test_elbo", "seconds_per_epoch", "device"):
        assert key in full
    run_cli(capsys, *common, "--epochs", "2", "--out", str(tmp_path / "part"))
    resumed = run_cli(capsys, *common, "--epochs", "4", "--out", str(tmp_path / "part"), "--resume")
    assert resumed["resumed_from_epoch"] == 2
    for key in ("train_elbo", "test_elbo", "test_iw_loglik", "init_test_elbo", "init_test_iw_loglik"):
        assert resumed[key] == full[key], key


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    assert cli_main(["vae", "--dataset", "digits", "--data-dir", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "--data-dir" in capsys.readouterr().err
    assert cli_main(["vae", "--dataset", "mnist", "--data-dir", str(tmp_path), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "t10k-images-idx3-ubyte" in err and "Traceback" not in err
    assert cli_main(["vae", "--dataset", "onehot", "--arch", "conv", "--out", str(tmp_path)]) == 2
    assert "--arch conv" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_digits_30_epochs_acceptance(tmp_path, capsys):
    metrics = run_cli(capsys, "--dataset", "digits", "--epochs", "30", "--out", str(tmp_path))
    assert metrics["seconds"] < 120
    assert metrics["test_iw_loglik"] > metrics["test_elbo"]
    assert metrics["test_iw_loglik"] > metrics["init_test_iw_loglik"] + 15


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cli_runs_on_cuda(tmp_path, capsys):
    metrics = run_cli(capsys, "--dataset", "onehot", "--device", "cuda", "--out", str(tmp_path))
    assert metrics["device"].startswith("cuda")
    assert metrics["latent_accuracy"] >= 0.99
    assert metrics["test_iw_loglik"] >= metrics["test_elbo"]
