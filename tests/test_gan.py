"""GAN pieces (unrolled look-ahead, packing, gradient penalty, trainer, DCGAN) and the `gan` command."""

import copy
import json

import pytest
import torch
from torch import nn
from torch.func import functional_call

from deepprob.adversarial import fast_gan
from deepprob.adversarial.dcgan import DCDiscriminator, DCGenerator
from deepprob.adversarial.fast_gan import ReluMLP, bce_targets, gan_iteration
from deepprob.adversarial.losses import discriminator_loss, generator_loss, gradient_penalty, pack
from deepprob.adversarial.nets import Affine, mlp
from deepprob.adversarial.point_gan import build_point_gan, discriminator_hidden, preset, train_point_gan
from deepprob.adversarial.trainer import GANConfig, GANTrainer
from deepprob.adversarial.unrolled import adam_lookahead
from deepprob.cli import main as cli_main
from deepprob.datasets.points import grid, ring
from deepprob.errors import InputError
from deepprob.optim import AdamStepper, make_adam


def _regression_problem(dtype=torch.float32):
    torch.manual_seed(0)
    net = mlp(2, [16, 16], 1).to(dtype)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2, betas=(0.5, 0.999))
    x, y = torch.randn(32, 2, dtype=dtype), torch.randn(32, 1, dtype=dtype)
    for _ in range(3):  # a few real steps, so that Adam's moments and step count are not trivial
        opt.zero_grad()
        ((net(x) - y) ** 2).mean().backward()
        opt.step()
    return net, opt, x, y


def test_lookahead_reproduces_the_real_adam_steps():
    net, opt, x, y = _regression_problem()
    ahead = adam_lookahead(net, opt, lambda p: ((functional_call(net, p, (x,)) - y) ** 2).mean(), 4)
    twin = copy.deepcopy(net)
    twin_opt = torch.optim.Adam(twin.parameters(), lr=1e-2, betas=(0.5, 0.999))
    twin_opt.load_state_dict(opt.state_dict())
    for _ in range(4):
        twin_opt.zero_grad()
        ((twin(x) - y) ** 2).mean().backward()
        twin_opt.step()
    for name, p in twin.named_parameters():
        assert torch.allclose(ahead[name], p, atol=1e-6), name
    # the real parameters are untouched
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), _regression_problem()[0].parameters()))


def test_lookahead_is_differentiable_through_the_steps():
    # theta_K depends on whatever the loss depends on (the generator's samples): a surrogate that
    # detached the steps would give no gradient here. Float64, for the finite-difference check.
    net, opt, x, y = _regression_problem(torch.float64)

    def outcome(shift):
        ahead = adam_lookahead(net, opt, lambda p: ((functional_call(net, p, (x,)) - y - shift) ** 2).mean(), 3)
        return functional_call(net, ahead, (x,)).sum()

    shift = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(outcome(shift), shift)
    assert torch.isfinite(grad).all() and grad.abs().item() > 1e-3
    eps = 1e-6
    plus, minus = (outcome(torch.tensor([s * eps], dtype=torch.float64)).item() for s in (1, -1))
    assert grad.item() == pytest.approx((plus - minus) / (2 * eps), rel=1e-4)


def test_adam_stepper_is_torch_adam():
    torch.manual_seed(0)
    a, b = mlp(3, [8], 2), mlp(3, [8], 2)
    b.load_state_dict(a.state_dict())
    reference = torch.optim.Adam(a.parameters(), lr=1e-2, betas=(0.5, 0.9))  # the plain for-loop Adam
    stepper = AdamStepper(make_adam(b.parameters(), 1e-2, (0.5, 0.9), fused=True))
    for i in range(5):
        x = torch.randn(16, 3)
        grads_a = torch.autograd.grad(a(x).pow(2).mean(), list(a.parameters()))
        grads_b = torch.autograd.grad(b(x).pow(2).mean(), stepper.params)
        for p, g in zip(a.parameters(), grads_a):
            p.grad = g
        reference.step()
        stepper.step(grads_b)
        if i == 2:  # a learning-rate change (a schedule) is honoured
            for opt in (reference, stepper.optimizer):
                opt.param_groups[0]["lr"] = 3e-3
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=1e-6)
    assert float(stepper.optimizer.state[stepper.params[0]]["step"]) == 5


def test_pack_concatenates_consecutive_samples():
    x = torch.arange(12.0).reshape(6, 2)
    assert pack(x, 1) is x
    assert pack(x, 3).tolist() == [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]]


def test_gradient_penalty_of_linear_critics():
    real, fake = torch.randn(64, 2), torch.randn(64, 2)
    for norm, expected in [(1.0, 0.0), (2.0, 1.0), (0.5, 0.25)]:
        w = torch.tensor([0.6, 0.8]) * norm
        assert gradient_penalty(lambda x, w=w: x @ w[:, None], real, fake).item() == pytest.approx(expected, abs=1e-5)


def test_fused_discriminator_loss_equals_the_textbook_one():
    torch.manual_seed(0)
    trainer = GANTrainer(mlp(2, [8], 2), mlp(2, [8], 1), lambda n: torch.randn(n, 2), 2, GANConfig(batch_size=16))
    real, fake = torch.randn(16, 2), torch.randn(16, 2)
    out = trainer.discriminator(torch.cat([real, fake]))
    expected = discriminator_loss(out[:16], out[16:], "gan")
    assert trainer._discriminator_loss(real, fake).item() == pytest.approx(expected.item(), rel=1e-6)


def _point_gan(pack_size: int, width: int = 16) -> tuple[nn.Module, nn.Module]:
    """ReLU MLPs between fixed affine maps, as the `gan` command builds them (latent dimension 4)."""
    centre = torch.tensor([0.5, -1.0])
    generator = nn.Sequential(mlp(4, [width, width], 2), Affine.unstandardize(centre, 4.0))
    discriminator = nn.Sequential(Affine.standardize(centre.repeat(pack_size), 4.0), mlp(2 * pack_size, [width, 12], 1))
    return generator, discriminator


def test_hand_written_gradients_are_autograds():
    torch.manual_seed(0)
    m, b, k = 3, 8, 2
    generator, discriminator = _point_gan(m)
    gen, disc = ReluMLP.of(generator), ReluMLP.of(discriminator)
    assert (len(gen.prefix), gen.layers, len(gen.suffix)) == (0, 3, 1)
    assert (len(disc.prefix), disc.layers, len(disc.suffix)) == (1, 3, 0)
    assert ReluMLP.of(mlp(2, [8], 1, "tanh")) is None
    params_g, params_d = list(generator.parameters()), list(discriminator.parameters())
    real, noise = torch.randn(k * m * b, 2), torch.randn((k + 1) * m * b, 4)
    grads_d, grads_g = [], []  # recorded, not applied: every step sees the same weights
    d_loss, g_loss = gan_iteration(
        gen, disc, params_g, params_d, real, noise, d_steps=k, pack_size=m, targets=bce_targets(b, real),
        update_d=grads_d.append, update_g=grads_g.append,
    )  # fmt: skip

    n = m * b
    fake = generator(noise[: k * n]).detach()
    for i in range(k):
        out = discriminator(torch.cat([pack(real[i * n : (i + 1) * n], m), pack(fake[i * n : (i + 1) * n], m)]))
        expected_loss = discriminator_loss(out[:b], out[b:])
        for g, expected in zip(grads_d[i], torch.autograd.grad(expected_loss, params_d)):
            assert g.shape == expected.shape and torch.allclose(g, expected, atol=1e-6)
    assert d_loss.item() == pytest.approx(expected_loss.item(), rel=1e-5)
    expected_loss = generator_loss(discriminator(pack(generator(noise[k * n :]), m)))
    for g, expected in zip(grads_g[0], torch.autograd.grad(expected_loss, params_g)):
        assert g.shape == expected.shape and torch.allclose(g, expected, atol=1e-6)
    assert g_loss.item() == pytest.approx(expected_loss.item(), rel=1e-5)


def _trained(compile: bool, iterations: int = 6) -> tuple[GANTrainer, dict]:
    torch.manual_seed(0)
    generator, discriminator = _point_gan(2)
    config = GANConfig(d_steps=3, pack=2, batch_size=8, betas=(0.5, 0.999), final_lr_fraction=0.5, compile=compile)
    torch.manual_seed(1)  # the same data and noise for both
    trainer = GANTrainer(generator, discriminator, ring().sample, 4, config)
    return trainer, trainer.train(iterations, progress=False, check_every=1)


def test_compiled_iteration_equals_the_eager_one():
    """The same inputs give the same weights, Adam state and losses, to float tolerance, under a
    learning-rate schedule; and an eager step carries on from the compiled ones' state."""
    (eager, eager_losses), (compiled, compiled_losses) = _trained(False), _trained(True)
    assert compiled.compiled and compiled.compile_seconds > 0 and not eager.compiled
    for key in ("d_loss", "g_loss"):
        assert eager_losses[key] == pytest.approx(compiled_losses[key], rel=1e-5, abs=1e-6)
    for a, b in zip(eager.params_g + eager.params_d, compiled.params_g + compiled.params_d):
        assert torch.allclose(a, b, atol=1e-6)
    for opt_a, opt_b in ((eager.opt_g, compiled.opt_g), (eager.opt_d, compiled.opt_d)):
        assert opt_a.param_groups[0]["lr"] == opt_b.param_groups[0]["lr"]
        for p, q in zip(opt_a.param_groups[0]["params"], opt_b.param_groups[0]["params"]):
            state_a, state_b = opt_a.state[p], opt_b.state[q]
            assert float(state_a["step"]) == float(state_b["step"])
            for key in ("exp_avg", "exp_avg_sq"):
                assert torch.allclose(state_a[key], state_b[key], rtol=1e-5, atol=1e-9)
    assert float(compiled.opt_d.state[compiled.params_d[0]]["step"]) == 6 * 3


def test_a_failed_compile_runs_eagerly(monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("no compiler")

    monkeypatch.setattr(fast_gan, "compile_step", fail)
    with pytest.warns(UserWarning, match="compiling the iteration failed.*no compiler"):
        trainer, losses = _trained(True, iterations=3)
    assert not trainer.compiled and len(losses["g_loss"]) == 3
    eager, eager_losses = _trained(False, iterations=3)
    assert losses == eager_losses
    with pytest.warns(UserWarning, match="running eagerly"):
        GANTrainer(*_point_gan(1), ring().sample, 4, GANConfig(loss="wgan-gp", compile=True))


@pytest.mark.parametrize(
    "config",
    [GANConfig(), GANConfig(pack=3), GANConfig(unrolled=2, d_steps=1), GANConfig(loss="wgan-gp", d_steps=2),
     GANConfig(simultaneous=True, pack=2), GANConfig(simultaneous=True, loss="wgan-gp")],
    ids=["standard", "pack", "unrolled", "wgan-gp", "simultaneous", "simultaneous-wgan-gp"],
)
def test_trainer_runs_every_variant(config):
    torch.manual_seed(0)
    cloud = ring()
    config.batch_size = 32
    trainer = GANTrainer(mlp(4, [32], 2), mlp(2 * config.pack, [32], 1), cloud.sample, 4, config)
    before = [p.clone() for p in trainer.generator.parameters()]
    history = trainer.train(15, progress=False, check_every=5)
    assert len(history["d_loss"]) == 3 and all(map(lambda v: v == v, history["g_loss"]))
    assert trainer.generate(7).shape == (7, 2)
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.generator.parameters()))


def test_config_rejects_bad_values():
    with pytest.raises(InputError, match="--unrolled -1"):
        GANConfig(unrolled=-1).validate()
    with pytest.raises(InputError, match="--pack 0"):
        GANConfig(pack=0).validate()
    with pytest.raises(InputError, match="--loss 'hinge'"):
        GANConfig(loss="hinge").validate()
    with pytest.raises(InputError, match="--simultaneous with --d-steps 2 --unrolled 0: expected one discriminator"):
        GANConfig(simultaneous=True, d_steps=2).validate()


@pytest.mark.parametrize("pack_size", [1, 3])
def test_simultaneous_update_takes_both_gradients_before_either_step(pack_size):
    """PacGAN's (ALI's) update, against the textbook written out: both losses' gradients at the present
    parameters from one batch, then one torch.optim.Adam step each. Taking the generator's gradient after
    the discriminator's step (the alternating update) moves the generator elsewhere, and the test says so."""
    torch.manual_seed(0)
    generator = nn.Sequential(mlp(3, [16], 2, batch_norm=True))
    discriminator = mlp(2 * pack_size, [16], 1, "tanh")
    real = torch.randn(8 * pack_size, 2)
    config = GANConfig(simultaneous=True, pack=pack_size, batch_size=8, lr_g=1e-2, lr_d=1e-2, betas=(0.8, 0.999))
    G, D = copy.deepcopy(generator), copy.deepcopy(discriminator)
    trainer = GANTrainer(generator, discriminator, lambda n: real[:n], 3, config)
    torch.manual_seed(1)
    trainer.step()

    torch.manual_seed(1)
    noise = torch.randn(8 * pack_size, 3)
    out_real, out_fake = D(pack(real, pack_size)), D(pack(G(noise), pack_size))
    d_loss = nn.functional.softplus(-out_real).mean() + nn.functional.softplus(out_fake).mean()
    g_loss = nn.functional.softplus(-out_fake).mean()
    grads_d = torch.autograd.grad(d_loss, list(D.parameters()), retain_graph=True)
    grads_g = torch.autograd.grad(g_loss, list(G.parameters()))
    for net, grads, lr in ((D, grads_d, config.lr_d), (G, grads_g, config.lr_g)):
        opt = torch.optim.Adam(net.parameters(), lr=lr, betas=config.betas)
        for p, g in zip(net.parameters(), grads):
            p.grad = g
        opt.step()
    for ours, textbook in ((generator, G), (discriminator, D)):
        for a, b in zip(ours.parameters(), textbook.parameters()):
            torch.testing.assert_close(a, b)

    # the alternating update from the same start differs: the check can fail
    torch.manual_seed(0)
    alternating = GANTrainer(nn.Sequential(mlp(3, [16], 2, batch_norm=True)), mlp(2 * pack_size, [16], 1, "tanh"),
                             lambda n: real[:n], 3, GANConfig(**{**config.to_dict(), "simultaneous": False}))
    torch.manual_seed(1)
    alternating.step()
    assert not all(torch.allclose(a, b) for a, b in zip(alternating.generator.parameters(), G.parameters()))


def test_generated_points_do_not_depend_on_the_batch_drawn_with_them():
    """A generator with batch norm samples in eval mode (running statistics), then trains on."""
    torch.manual_seed(0)
    trainer = GANTrainer(mlp(3, [16], 2, batch_norm=True), mlp(2, [16], 1), ring().sample, 3, GANConfig())
    trainer.train(5, progress=False)
    noise = torch.randn(50, 3)
    torch.testing.assert_close(trainer.generate(50, noise)[:4], trainer.generate(4, noise[:4]))
    assert trainer.generator.training


def test_dcgan_shapes():
    for shape in [(1, 8, 8), (1, 28, 28)]:
        g, d = DCGenerator(16, shape, 8), DCDiscriminator(shape, 8)
        images = g(torch.randn(5, 16))
        assert images.shape == (5, *shape) and images.abs().max() <= 1
        assert d(images).shape == (5, 1)
    with pytest.raises(InputError, match="divisible by 4"):
        DCGenerator(16, (1, 10, 10))


def _run(capsys, *argv):
    code = cli_main(list(argv))
    out, err = capsys.readouterr()
    return code, (json.loads(out.strip().splitlines()[-1]) if code == 0 and "--json" in argv else None), err


def test_cli_ring_with_a_remedy_and_its_baseline(tmp_path, capsys):
    code, m, _ = _run(
        capsys,
        "gan",
        "--dataset",
        "ring",
        "--pack",
        "2",
        "--iterations",
        "40",
        "--json",
        "--quiet",
        "--out",
        str(tmp_path),
    )
    assert code == 0
    for key in ("modes_covered", "num_modes", "high_quality_fraction", "mean_error", "cov_error"):
        assert key in m and key in m["baseline"]
    assert m["num_modes"] == 8 and 0 <= m["modes_covered"] <= 8 and 0 <= m["high_quality_fraction"] <= 1
    assert m["variant"] == "pack 2" and m["baseline"]["variant"] == "standard"
    assert (tmp_path / "snapshots.png").stat().st_size > 0


def test_cli_gaussian_reports_moment_errors(tmp_path, capsys):
    code, m, _ = _run(
        capsys, "gan", "--dataset", "gaussian", "--iterations", "30", "--json", "--quiet", "--out", str(tmp_path)
    )
    assert code == 0 and m["num_modes"] == 1 and m["mean_error"] >= 0 and m["cov_error"] >= 0
    assert "baseline" not in m


def test_cli_csv_points_and_modes(tmp_path, capsys):
    cloud = ring(n=500)
    data, modes = tmp_path / "p.csv", tmp_path / "m.csv"
    data.write_text("\n".join(f"{a},{b}" for a, b in cloud.points.tolist()))
    modes.write_text("x,y\n" + "\n".join(f"{a},{b}" for a, b in cloud.centres.tolist()))
    code, m, _ = _run(
        capsys,
        "gan",
        "--data",
        str(data),
        "--modes",
        str(modes),
        "--mode-sigma",
        "0.5",
        "--iterations",
        "20",
        "--json",
        "--quiet",
        "--out",
        str(tmp_path),
    )
    assert code == 0 and m["num_modes"] == 8
    assert m["config"]["d_steps"] == 5 and "8 known modes" in m["settings_basis"]  # the ring's settings
    assert m["config"]["d_hidden"] == m["config"]["hidden"] == [128, 128]


def test_cli_settings_follow_the_modes_of_the_users_csv(tmp_path, capsys):
    """The grid given as a CSV with its 25 modes trains with the settings for many narrow modes, as the built-in
    grid does; an option given overrides them."""
    cloud = grid(n=500)
    data, modes = tmp_path / "p.csv", tmp_path / "m.csv"
    data.write_text("\n".join(f"{a},{b}" for a, b in cloud.points.tolist()))
    modes.write_text("\n".join(f"{a},{b}" for a, b in cloud.centres.tolist()))
    argv = ["gan", "--data", str(data), "--modes", str(modes), "--pack", "4", "--no-baseline", "--iterations", "5",
            "--json", "--quiet", "--out", str(tmp_path)]
    code, m, _ = _run(capsys, *argv)
    assert code == 0 and m["num_modes"] == 25 and "25 known modes" in m["settings_basis"]
    expected = {k: v for k, v in preset("gan", cloud).items() if k not in ("iterations", "latent_dim")}
    assert {k: m["config"][k] for k in expected} == {**expected, "betas": list(expected["betas"])}
    assert m["config"]["final_lr_fraction"] == 0.1 and m["config"]["batch_size"] == 200
    assert m["config"]["d_hidden"] == [384, 384]  # a discriminator three times the generator's width
    code, m, _ = _run(capsys, *argv, "--batch-size", "50", "--hidden", "32", "--d-hidden", "48,16")
    assert code == 0 and m["config"]["batch_size"] == 50 and m["config"]["d_hidden"] == [48, 16]
    code, m, _ = _run(capsys, *argv, "--hidden", "32")
    assert code == 0 and m["config"]["d_hidden"] == [96]  # the width follows --hidden


def test_snapshots_do_not_change_the_run():
    cloud = ring(n=200)
    config = GANConfig(batch_size=16, d_steps=1)
    plain = train_point_gan(cloud, config, 12, hidden=(8,), seed=3, progress=False)
    watched = train_point_gan(cloud, config, 12, hidden=(8,), seed=3, progress=False, snapshots=4)
    assert len(watched["snapshots"]) == 4
    for a, b in zip(plain["trainer"].generator.parameters(), watched["trainer"].generator.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def _widths(net: nn.Module) -> list[int]:
    return [m.out_features for m in net.modules() if isinstance(m, nn.Linear)]


def test_point_gan_discriminator_has_its_own_hidden_layers():
    cloud = grid(n=100)
    generator, discriminator = build_point_gan(cloud, 3, (16, 8), pack=2, d_hidden=(40,))
    assert _widths(generator) == [16, 8, 2] and _widths(discriminator) == [40, 1]
    assert _widths(build_point_gan(cloud, 3, (16, 8), pack=2)[1]) == [16, 8, 1]
    assert discriminator_hidden(grid(n=100), (16, 8)) == (48, 24) and discriminator_hidden(ring(), (16, 8)) == (16, 8)
    assert discriminator_hidden(None, (16,)) == (16,)


def test_cli_simultaneous_update_takes_one_discriminator_step(tmp_path, capsys):
    code, m, _ = _run(capsys, "gan", "--dataset", "ring", "--simultaneous", "--pack", "2", "--iterations", "20",
                      "--snapshots", "1", "--no-baseline", "--json", "--quiet", "--out", str(tmp_path))
    assert code == 0 and m["config"]["simultaneous"] and m["config"]["d_steps"] == 1  # the ring's preset has 5
    code, _, err = _run(capsys, "gan", "--dataset", "ring", "--simultaneous", "--unrolled", "2", "--out", str(tmp_path))
    assert code == 2 and "--simultaneous with --d-steps 1 --unrolled 2: expected one discriminator step" in err
    code, _, err = _run(capsys, "gan", "--dataset", "digits", "--simultaneous", "--out", str(tmp_path))
    assert code == 2 and "--simultaneous" in err and "for 2-D data" in err
    code, _, err = _run(capsys, "gan", "--dataset", "digits", "--d-hidden", "64", "--out", str(tmp_path))
    assert code == 2 and "--d-hidden" in err and "for 2-D data" in err


@pytest.mark.parametrize("option", [["--unrolled", "-1"], ["--pack", "0"]])
def test_cli_rejects_bad_remedy_values(tmp_path, capsys, option):
    assert cli_main(["gan", "--dataset", "ring", *option, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"argument {option[0]}" in err and option[1] in err


def test_cli_bad_csv_files_are_one_line_errors(tmp_path, capsys):
    cloud = ring(n=100)
    good = tmp_path / "p.csv"
    good.write_text("\n".join(f"{a},{b}" for a, b in cloud.points.tolist()))
    text = tmp_path / "text.csv"
    text.write_text("x,y\n1,2\nfoo,3\n")
    three = tmp_path / "three.csv"
    three.write_text("1,2,3\n4,5,6\n")
    for argv, fragment in [
        (["--data", str(text)], "line 3 has 'foo'"),
        (["--data", str(three)], "expected 2 numeric columns"),
        (["--data", str(good), "--modes", str(three)], "--modes"),
        (["--data", str(tmp_path / "missing.csv")], "no such file"),
    ]:
        code, _, err = _run(capsys, "gan", *argv, "--iterations", "5", "--quiet", "--out", str(tmp_path))
        assert code == 2 and len(err.strip().splitlines()) == 1 and fragment in err, (argv, err)


def test_cli_digits_then_sample_regenerates_the_grid(tmp_path, capsys):
    train_dir, sample_dir = tmp_path / "train", tmp_path / "sample"
    code, m, _ = _run(
        capsys,
        "gan",
        "--dataset",
        "digits",
        "--epochs",
        "1",
        "--width",
        "8",
        "--json",
        "--quiet",
        "--out",
        str(train_dir),
        "--seed",
        "3",
    )
    assert code == 0
    for name in ("samples.png", "interpolation.png", "arithmetic.png", "checkpoint.pt"):
        assert (train_dir / name).stat().st_size > 0
    code, s, _ = _run(
        capsys,
        "gan",
        "sample",
        "--checkpoint",
        str(train_dir / "checkpoint.pt"),
        "--json",
        "--quiet",
        "--out",
        str(sample_dir),
        "--seed",
        "3",
    )
    assert code == 0 and s["epoch"] == 1
    assert (train_dir / "samples.png").read_bytes() == (sample_dir / "samples.png").read_bytes()
    # another seed, another grid
    code, _, _ = _run(
        capsys,
        "gan",
        "sample",
        "--checkpoint",
        str(train_dir / "checkpoint.pt"),
        "--quiet",
        "--out",
        str(tmp_path / "other"),
        "--seed",
        "4",
    )
    assert (train_dir / "samples.png").read_bytes() != (tmp_path / "other" / "samples.png").read_bytes()


def test_cli_sample_needs_a_checkpoint(tmp_path, capsys):
    code, _, err = _run(capsys, "gan", "sample", "--quiet", "--out", str(tmp_path))
    assert code == 2 and "--checkpoint" in err
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    code, _, err = _run(capsys, "gan", "sample", "--checkpoint", str(junk), "--quiet", "--out", str(tmp_path))
    assert code == 2 and "--checkpoint" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_acceptance_ring_standard_pack_unrolled(tmp_path, capsys):
    """The issue's acceptance runs with the default settings (minutes)."""
    code, pack4, _ = _run(
        capsys, "gan", "--dataset", "ring", "--pack", "4", "--json", "--quiet", "--out", str(tmp_path)
    )
    assert code == 0
    assert pack4["modes_covered"] == 8 and pack4["high_quality_fraction"] >= 0.9
    assert pack4["baseline"]["modes_covered"] < 8  # the standard GAN drops modes
    code, unrolled, _ = _run(
        capsys,
        "gan",
        "--dataset",
        "ring",
        "--unrolled",
        "5",
        "--no-baseline",
        "--json",
        "--quiet",
        "--out",
        str(tmp_path),
    )
    assert code == 0 and unrolled["modes_covered"] >= 7
