"""The 2-D point clouds, their CSV loaders and the mode metrics (closed-form answers where there are any)."""

import math

import pytest
import torch

from deepprob.adversarial.metrics import mode_metrics, moment_errors
from deepprob.datasets.points import (
    RING_CENTRES,
    correlated_gaussian,
    load_modes_csv,
    load_points_csv,
    read_numeric_csv,
    ring,
    ring_metz,
)
from deepprob.errors import InputError

# P(|x - c| <= 3 sigma) for an isotropic 2-D Gaussian: the radius is Rayleigh, 1 - exp(-9/2)
WITHIN_3_SIGMA_2D = 1 - math.exp(-4.5)


def test_ring_is_the_seeds_eight_gaussians():
    cloud = ring()
    assert cloud.centres.tolist() == [list(c) for c in RING_CENTRES]
    assert cloud.mode_sigma == 0.5
    torch.manual_seed(0)
    x = cloud.sample(40000)
    assert x.shape == (40000, 2)
    # equal weights: each mode gets 1/8 of the points (binomial sd ~ 0.0017)
    nearest = torch.cdist(x, cloud.centres).argmin(1)
    assert torch.allclose(torch.bincount(nearest, minlength=8) / 40000.0, torch.full((8,), 0.125), atol=0.01)
    # the sample covariance matches the law of total covariance
    assert torch.allclose(torch.cov(x.T), cloud.covariance, atol=0.6)


def test_true_samples_score_as_the_3_sigma_rule_predicts():
    torch.manual_seed(1)
    for cloud in (ring(), ring_metz(), correlated_gaussian()):
        m = mode_metrics(cloud.sample(20000), cloud.centres, cloud.mode_sigma, cloud.mode_cov)
        assert m["modes_covered"] == m["num_modes"] == len(cloud.centres)
        assert abs(m["high_quality_fraction"] - WITHIN_3_SIGMA_2D) < 0.005, cloud.name


def test_a_collapsed_generator_covers_one_mode():
    cloud = ring()
    collapsed = cloud.centres[0] + 0.1 * torch.randn(2500, 2)
    m = mode_metrics(collapsed, cloud.centres, cloud.mode_sigma)
    assert (m["modes_covered"], m["num_modes"], m["high_quality_fraction"]) == (1, 8, 1.0)
    # a few stray samples do not make a mode count (fewer than min_count)
    strays = torch.cat([collapsed, cloud.centres[1] + 0.1 * torch.randn(5, 2)])
    assert mode_metrics(strays, cloud.centres, cloud.mode_sigma)["modes_covered"] == 1


def test_moment_errors_are_zero_for_the_truth_and_see_a_shift():
    cloud = correlated_gaussian()
    torch.manual_seed(2)
    x = cloud.sample(200000)
    good = moment_errors(x, cloud.mean, cloud.covariance)
    assert good["mean_error"] < 0.02 and good["cov_error"] < 0.03
    assert abs(moment_errors(x + torch.tensor([3.0, 4.0]), cloud.mean, cloud.covariance)["mean_error"] - 5.0) < 0.02


def test_ring_metz_is_eight_modes_on_a_circle_of_radius_2():
    cloud = ring_metz()
    assert torch.allclose(cloud.centres.norm(dim=1), torch.full((8,), 2.0))
    assert cloud.mode_sigma == 0.02


def test_points_and_modes_csv(tmp_path):
    cloud = ring()
    data = tmp_path / "points.csv"
    data.write_text("x,y\n" + "\n".join(f"{a},{b}" for a, b in cloud.points.tolist()) + "\n")
    modes = tmp_path / "modes.csv"
    modes.write_text("\n".join(f"{a},{b}" for a, b in RING_CENTRES))  # no header
    loaded = load_points_csv(data, modes)
    assert torch.allclose(loaded.points, cloud.points)
    assert loaded.centres.shape == (8, 2)
    assert abs(loaded.mode_sigma - 0.5) < 0.03  # estimated from the data
    assert load_points_csv(data, modes, mode_sigma=0.7).mode_sigma == 0.7
    torch.manual_seed(0)
    resampled = loaded.sample(100)
    assert resampled.shape == (100, 2)
    assert all(row in cloud.points.tolist() for row in resampled.tolist()[:10])


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("x,y,z\n1,2,3\n4,5,6\n", "expected 2 numeric columns"),
        ("x,y\n1,2\n3,abc\n", "line 3 has 'abc'"),
        ("x,y\n1,2\n3,nan\n", "line 3 has 'nan'"),
        ("x,y\n", "no data rows"),
        ("x\n1\n2\n", "expected 2 numeric columns"),
    ],
)
def test_bad_csv_is_a_one_line_input_error(tmp_path, text, fragment):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        read_numeric_csv(path, "--data")
    message = str(err.value)
    assert fragment in message and "--data" in message and str(path) in message and "\n" not in message


def test_modes_file_with_the_wrong_shape(tmp_path):
    path = tmp_path / "modes.csv"
    path.write_text("0,8,1\n0,-8,1\n")
    with pytest.raises(InputError, match="--modes .*expected 2 numeric columns"):
        load_modes_csv(path)
    with pytest.raises(InputError, match="no such file"):
        load_modes_csv(tmp_path / "missing.csv")
