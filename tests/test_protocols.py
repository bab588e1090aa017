"""The published mode-coverage protocols: the papers' networks as built, the reverse KL of mode shares against
its closed form, and one trial's plumbing end to end."""

import json
import math

import pytest
import torch

from deepprob.adversarial.losses import pack
from deepprob.adversarial.metrics import mode_metrics, mode_reverse_kl
from deepprob.adversarial.nets import DrawwiseBatchNorm1d, Maxout, init_linear_, maxout_mlp, mlp
from deepprob.adversarial.protocols import PROTOCOLS, mean_se, protocol, train_protocol_run
from deepprob.datasets.points import grid, ring16
from deepprob.errors import InputError


def test_reverse_kl_of_mode_shares_is_zero_for_uniform_and_log_k_for_one_mode():
    assert mode_reverse_kl(torch.full((25,), 100)) == pytest.approx(0.0, abs=1e-12)
    assert mode_reverse_kl(torch.tensor([0, 0, 50, 0])) == pytest.approx(math.log(4))
    # half the modes, evenly: KL = log 2
    assert mode_reverse_kl(torch.tensor([10, 10, 0, 0])) == pytest.approx(math.log(2))
    assert mode_reverse_kl(torch.zeros(8)) is None  # no high-quality sample: no q
    # true samples of the grid: every mode its share, so a KL near 0 (multinomial noise ~ (K-1)/2N)
    torch.manual_seed(0)
    cloud = grid()
    kl = mode_metrics(cloud.sample(20000), cloud.centres, cloud.mode_sigma)["reverse_kl"]
    assert 0 <= kl < 0.003


def test_maxout_is_the_max_over_its_pieces():
    torch.manual_seed(0)
    layer = Maxout(3, 4, pieces=5)
    x = torch.randn(7, 3)
    pieces = (x @ layer.linear.weight.T + layer.linear.bias).view(7, 4, 5)
    torch.testing.assert_close(layer(x), pieces.max(-1).values)
    with pytest.raises(InputError, match="pieces 0"):
        Maxout(3, 4, pieces=0)


def blocks_adam(grads: list[torch.Tensor], lr: float, beta1: float, beta2: float, eps: float = 1e-8):
    """The parameter path of Blocks' Adam (the Theano library PacGAN's code trains with), from its documented
    update, in which ``beta1`` and ``beta2`` weigh the new gradient: m_t = beta1 g_t + (1 - beta1) m_{t-1},
    v_t = beta2 g_t² + (1 - beta2) v_{t-1}, step lr √(1 - (1 - beta2)^t) / (1 - (1 - beta1)^t) m_t / (√v_t + ε),
    added to the parameter (here, the step's gradient is that of the loss, so it is subtracted)."""
    p, m, v, path = torch.zeros_like(grads[0]), 0.0, 0.0, []
    for t, g in enumerate(grads, start=1):
        m = beta1 * g + (1 - beta1) * m
        v = beta2 * g**2 + (1 - beta2) * v
        p = p - lr * math.sqrt(1 - (1 - beta2) ** t) / (1 - (1 - beta1) ** t) * m / (v.sqrt() + eps)
        path.append(p)
    return path


def test_pacgan_adam_is_its_blocks_adam_in_torchs_convention():
    # PacGAN's config says Adam(1e-4, beta1=0.8) with Blocks' default beta2 0.001: torch's betas (0.2, 0.999)
    torch.manual_seed(0)
    grads = [torch.randn(5) for _ in range(30)]
    expected = blocks_adam(grads, 1e-4, beta1=0.8, beta2=0.001)

    def torch_path(betas):
        p = torch.zeros(5, requires_grad=True)
        opt = torch.optim.Adam([p], lr=1e-4, betas=betas, eps=1e-8)
        path = []
        for g in grads:
            p.grad = g.clone()
            opt.step()
            path.append(p.detach().clone())
        return path

    for ours, theirs in zip(torch_path(PROTOCOLS["pacgan"].config["betas"]), expected):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-9)
    # reading "0.8" as torch's β1 is another optimiser: the paths part
    assert max((a - b).abs().max() for a, b in zip(torch_path((0.8, 0.999)), expected)) > 1e-5


def test_pacgan_networks_are_the_papers():
    proto = PROTOCOLS["pacgan"]
    generator, discriminator = proto.networks.build(pack=4)
    linears = [m for m in generator if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(2, 400), (400, 400), (400, 400), (400, 400),
                                                                   (400, 2)]
    norms = [m for m in generator if isinstance(m, DrawwiseBatchNorm1d)]
    assert len(norms) == 4 and all((m.draws, m.momentum, m.eps) == (4, 0.05, 1e-4) for m in norms)
    maxouts = [m for m in discriminator if isinstance(m, Maxout)]
    assert [(m.linear.in_features, m.out_dim, m.pieces) for m in maxouts] == [(8, 200, 5), (200, 200, 5),
                                                                               (200, 200, 5)]
    assert discriminator(torch.randn(3, 8)).shape == (3, 1)
    assert proto.iterations == 400_000 and proto.config["betas"] == (0.2, 0.999) and proto.trials == 10
    assert proto.budget(0.01) == 4000
    with_bn = mlp(2, [4], 1, batch_norm=True)
    assert [type(m).__name__ for m in with_bn] == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert with_bn[0].bias is None and with_bn[3].bias is not None  # batch norm subtracts a bias before it
    assert isinstance(maxout_mlp(2, [3], 1)[0], Maxout)
    # PacGAN's code: weights N(0, 0.02²), zero biases, in both networks (maxout layers among them)
    weights = torch.cat([m.weight.flatten() for m in [*linears, *(m.linear for m in maxouts)]])
    assert abs(weights.std().item() - 0.02) < 0.0005 and abs(weights.mean().item()) < 0.0005
    assert all(not m.linear.bias.any() for m in maxouts) and proto.config["simultaneous"]
    # the three papers count a mode covered by one high-quality point (VEEGAN's text, PacGAN's and GDPP's code)
    assert all(p.min_count == 1 for p in PROTOCOLS.values())


def test_drawwise_batch_norm_normalises_each_packed_draw_on_its_own():
    """PacGAN's generator runs once per packed draw: each draw of N is normalised on its own mean and spread,
    its Blocks population statistics are the draws' average mean and σ = sqrt(Var + ε), moved by momentum."""
    from torch.nn import functional as F

    torch.manual_seed(0)
    draws, n, width, eps = 4, 50, 6, 1e-4
    norm = DrawwiseBatchNorm1d(width, draws=draws, momentum=0.05, eps=eps)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
        norm.bias.normal_()
    # draws of different location and scale, interleaved as pack() reads them: packed row i = rows i*M .. i*M+M-1
    x = (torch.randn(n, draws, width) * torch.arange(1.0, draws + 1)[:, None] + torch.arange(draws)[:, None])
    x = x.reshape(n * draws, width).requires_grad_(True)
    assert torch.equal(pack(x, draws)[3].view(draws, width), x[3 * draws : 4 * draws])
    y = norm(x)
    by_draw = torch.stack([F.batch_norm(x[d::draws], None, None, norm.weight, norm.bias, True, 0.0, eps)
                           for d in range(draws)], dim=1)  # (n, draws, width)
    expected = by_draw.reshape(n * draws, width)
    torch.testing.assert_close(y, expected)
    # one batch norm over all the rows is another layer: the draws' locations differ by up to 3
    assert (y - F.batch_norm(x, None, None, norm.weight, norm.bias, True, 0.0, eps)).abs().max() > 0.5
    # gradients: the draws share γ and β
    weights = torch.randn_like(y)
    grads = torch.autograd.grad((y * weights).sum(), [x, norm.weight, norm.bias])
    reference = torch.autograd.grad((expected * weights).sum(), [x, norm.weight, norm.bias])
    for ours, theirs in zip(grads, reference):
        torch.testing.assert_close(ours, theirs)
    groups = x.detach().view(n, draws, width)
    mean = groups.mean(0).mean(0)
    std = (groups.var(0, unbiased=False) + eps).sqrt().mean(0)
    torch.testing.assert_close(norm.running_mean, 0.05 * mean)
    torch.testing.assert_close(norm.running_std, 0.95 + 0.05 * std)
    # eval mode: the population statistics, row by row
    norm.eval()
    row = torch.randn(3, width)
    torch.testing.assert_close(norm(row), norm.weight * (row - norm.running_mean) / norm.running_std + norm.bias)
    norm.train()
    with pytest.raises(ValueError, match="10 rows are not 4 draws"):
        norm(torch.randn(10, width))


def test_initialisers_give_the_stated_weights():
    torch.manual_seed(0)
    layer = init_linear_(torch.nn.Sequential(torch.nn.Linear(256, 128)), "orthogonal", 1.4)[0]
    # an orthogonal (128, 256) matrix has orthonormal rows: W Wᵀ = gain² I
    torch.testing.assert_close(layer.weight @ layer.weight.T, 1.4**2 * torch.eye(128), atol=1e-4, rtol=0)
    assert not layer.bias.any()
    with pytest.raises(InputError, match="initialiser 'xavier': expected one of normal, orthogonal"):
        init_linear_(layer, "xavier", 1.0)
    generator, critic = PROTOCOLS["gdpp"].networks.build()
    assert generator[0].in_features == 256 and isinstance(critic[1], torch.nn.Tanh)


def test_mean_se_is_the_standard_error():
    mean, se = mean_se([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and se == pytest.approx(math.sqrt(5 / 3) / 2)
    assert mean_se([3.0]) == (3.0, 0.0)


def test_unknown_protocol_is_one_line():
    with pytest.raises(InputError, match="--protocol nope: expected one of pacgan, veegan, gdpp"):
        protocol("nope")


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_one_trial_of_each_protocol_runs_and_measures(name):
    proto = PROTOCOLS[name]
    method = next(iter(proto.methods))
    result = train_protocol_run(proto, proto.datasets[0], method, seed=0, iterations=3)
    assert result["iterations"] == 3 and result["num_modes"] == 25
    assert 0 <= result["high_quality"] <= 1 and result["seconds_per_iteration"] > 0


def test_ring16_is_sixteen_modes_on_a_circle_of_radius_4():
    cloud = ring16()
    torch.testing.assert_close(cloud.centres.norm(dim=1), torch.full((16,), 4.0))
    assert cloud.mode_sigma == 0.05 and cloud.name == "ring16"


def test_the_bench_prints_each_protocol_row_beside_the_published_one():
    import subprocess
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parents[1] / "bench" / "mode_coverage.py"
    out = subprocess.run(
        [sys.executable, str(bench), "--protocol", "pacgan", "--budget", "0.00001", "--trials", "2",
         "--methods", "pack4", "--datasets", "grid", "--throughput-blocks", "1", "--jobs", "1", "--curve", "2"],
        capture_output=True, text=True, timeout=300, check=True).stdout
    assert "plain PyTorch loop" in out and "budget: 4 of the published 400,000 iterations" in out
    row = next(line for line in out.splitlines() if line.startswith("grid") and "pack4" in line)
    assert "24.8 ± 0.2 / 93.6% / 0.04" in row and "/25" in row
    runs = json.loads(out.splitlines()[-1])["runs"]
    assert [(r["method"], r["seed"], r["iterations"]) for r in runs] == [("pack4", 0, 4), ("pack4", 1, 4)]
    # the learning curve: each trial scored at 2 and 4 iterations, one line a point, the last the end
    assert [c["iterations"] for c in runs[0]["curve"]] == [2, 4]
    curve = out[out.index("learning curve"):].splitlines()[1:-1]
    assert [line.split()[:3] for line in curve] == [["grid", "pack4", "2"], ["grid", "pack4", "4"]]
