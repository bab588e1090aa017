"""The digit classifier's scores of images: real held-out digits score near-perfectly, noise badly."""

from __future__ import annotations

import pytest
import torch

from deepprob.adversarial.image_quality import frechet_distance, image_quality, train_digit_classifier
from deepprob.datasets.images import load_digits, split_images


def test_frechet_distance_of_gaussians_matches_the_closed_form():
    """Diagonal covariances: d = ||m_a - m_b||^2 + sum (s_a - s_b)^2; a wrong root (no square root) fails."""
    g = torch.Generator().manual_seed(0)
    m_a, m_b = torch.tensor([0.0, 1.0, -1.0]), torch.tensor([0.5, 1.0, 0.0])
    s_a, s_b = torch.tensor([1.0, 2.0, 0.5]), torch.tensor([1.5, 1.0, 0.5])
    a = m_a + s_a * torch.randn(200_000, 3, generator=g, dtype=torch.float64)
    b = m_b + s_b * torch.randn(200_000, 3, generator=g, dtype=torch.float64)
    exact = float((m_a - m_b).pow(2).sum() + (s_a - s_b).pow(2).sum())
    assert frechet_distance(a, b) == pytest.approx(exact, abs=0.03)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    wrong = float((m_a - m_b).pow(2).sum() + (s_a**2 + s_b**2 - 2 * s_a**2 * s_b**2).sum())
    assert abs(wrong - exact) > 1.0


@pytest.fixture(scope="module")
def digits():
    train, test = split_images(load_digits(), 360)
    return train_digit_classifier(train.images, train.labels), test


def test_real_digits_score_near_perfectly_and_noise_badly(digits):
    classifier, test = digits
    half = len(test.images) // 2
    same = image_quality(classifier, test.images, test.images, test.labels)
    real = image_quality(classifier, test.images[:half], test.images[half:], test.labels[half:])
    noise = image_quality(classifier, torch.rand(half, 1, 8, 8, generator=torch.Generator().manual_seed(1)),
                          test.images[half:], test.labels[half:])
    assert same.classifier_accuracy >= 0.95
    assert same.fid == pytest.approx(0.0, abs=1e-6) and same.classes_covered == 10
    assert real.classes_covered == 10 and real.confident_fraction > 0.75
    assert noise.fid > 10 * real.fid and noise.classes_covered <= 5 and noise.confident_fraction < 0.6
    blank = image_quality(classifier, torch.zeros(half, 1, 8, 8), test.images[half:], test.labels[half:])
    assert blank.classes_covered <= 1 and blank.fid > 10 * real.fid
