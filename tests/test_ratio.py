"""Density ratios from a classifier: the recovered density against a known one."""

import json
import math

import pytest
import torch

from deepprob.adversarial.ratio import RatioDensity, UniformBox, evaluate_on_grid, fit_ratio
from deepprob.cli import main as cli_main
from deepprob.datasets.points import correlated_gaussian


def test_uniform_box():
    box = UniformBox(torch.tensor([-1.0, 0.0]), torch.tensor([3.0, 2.0]))
    x = box.sample(1000)
    assert bool(((x >= box.low) & (x <= box.high)).all())
    assert torch.allclose(box.log_prob(x), torch.full((1000,), -math.log(8.0)))
    assert box.log_prob(torch.tensor([[4.0, 1.0]])).item() == -math.inf


class ExactRatio(RatioDensity):
    """The Bayes-optimal classifier's logit, log p(x) - log u(x): what training should approach."""

    def __init__(self, reference, dist):
        super().__init__(reference)
        self.dist = dist

    def logit(self, x):
        return self.dist.log_prob(x) + self.reference.log_volume


def test_the_optimal_discriminator_recovers_the_density_exactly():
    cloud = correlated_gaussian()
    box = UniformBox.around(cloud.points, 0.1)
    grid = evaluate_on_grid(ExactRatio(box, cloud.dist), 200, cloud.dist.log_prob)
    assert grid["mae"] < 1e-6 and grid["tv"] < 1e-5
    assert grid["integral"] == pytest.approx(1.0, abs=0.005)  # the Normal's mass inside the box
    # and the metrics do see an error: a density 10% too high everywhere
    wrong = evaluate_on_grid(ExactRatio(box, cloud.dist), 200, lambda x: cloud.dist.log_prob(x) - math.log(1.1))
    assert wrong["tv"] == pytest.approx(0.05, abs=0.005)


def test_a_trained_classifier_recovers_the_normal():
    torch.manual_seed(0)
    cloud = correlated_gaussian(n=5000)
    model = RatioDensity(UniformBox.around(cloud.points, 0.1))
    fit_ratio(model, cloud.points, steps=1000, progress=False)
    grid = evaluate_on_grid(model, 120, cloud.dist.log_prob)
    assert abs(grid["integral"] - 1.0) < 0.1
    assert grid["tv"] < 0.1
    assert grid["mae"] < 0.2 * float(grid["truth"].mean())  # well below the mean density on the box


def test_cli_default_data_acceptance(tmp_path, capsys):
    assert cli_main(["ratio", "--json", "--quiet", "--out", str(tmp_path)]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert abs(metrics["integral"] - 1.0) < 0.1
    # the peak density is 0.21 and the mean over the grid ~0.007: an MAE of 0.001 is ~0.5% of the peak
    assert metrics["mae"] is not None and metrics["mae"] < 0.001
    assert metrics["tv"] < 0.05
    assert (tmp_path / "ratio.png").stat().st_size > 0


def test_cli_csv_data_and_bad_csv(tmp_path, capsys):
    torch.manual_seed(0)
    points = correlated_gaussian(n=2000).points
    good = tmp_path / "points.csv"
    good.write_text("a,b\n" + "\n".join(f"{x},{y}" for x, y in points.tolist()))
    assert cli_main(["ratio", "--data", str(good), "--steps", "200", "--json", "--quiet", "--out", str(tmp_path)]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["mae"] is None and abs(metrics["integral"] - 1.0) < 0.3
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,c\n1,2,3\n")
    assert cli_main(["ratio", "--data", str(bad), "--quiet", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--data" in err and "2 numeric columns" in err
