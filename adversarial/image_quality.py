"""Generated digits, measured: a small CNN trained on real digits scores a model's samples.

- :class:`DigitClassifier`: two convolutions and a hidden layer of 128 features, for 8x8 (scikit-learn's
  digits) or 28x28 (MNIST) images in [0, 1], shape (N, 1, H, W).
- :func:`train_digit_classifier`: fitted on the training split; its accuracy on held-out real images is
  reported beside every score (a score means little from a classifier that cannot read real digits).
- :func:`image_quality`: of generated images, against real held-out ones,

  * ``classes_covered``: the digits (of 10) that the classifier reads, confidently, in at least
    ``min_share`` of the samples: a generator that drops modes covers fewer;
  * ``confident_fraction``: the share of samples whose most probable class has probability >= ``confidence``:
    recognisable digits rather than blurs or scribbles;
  * ``fid``: the Frechet distance between Gaussians fitted to the classifier's 128 features of the generated
    and of the real images, ||m_g - m_r||^2 + tr(S_g + S_r - 2 (S_g S_r)^(1/2)) (Heusel et al. 2017's FID,
    with this digit classifier in place of Inception): 0 for the same distribution (up to sampling noise),
    large for images unlike the real ones, or too alike each other.

Plain torch: no Pyro. The GAN and the VAE report these for their samples on one scale.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

CLASSES = 10


class DigitClassifier(nn.Module):
    """conv 3x3 (32) - ReLU - max-pool 2 - conv 3x3 (64) - ReLU - average-pool to 4x4 - linear 128 - ReLU - linear 10.

    ``features(x)``: the 128 hidden features (N, 128) of images ``x`` (N, 1, H, W) in [0, 1];
    ``forward(x)``: the class logits (N, 10).
    """

    def __init__(self, hidden: int = 128):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(64 * 16, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, CLASSES)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x * 2 - 1)  # centred inputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _batches(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


@torch.no_grad()
def predict(classifier: DigitClassifier, images: torch.Tensor, batch: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """(class probabilities (N, 10), features (N, 128)) of ``images`` (N, 1, H, W) in [0, 1]."""
    classifier.eval()
    probs, feats = [], []
    for part in _batches(len(images), batch):
        f = classifier.features(images[part])
        feats.append(f)
        probs.append(torch.softmax(classifier.head(f), -1))
    return torch.cat(probs), torch.cat(feats)


def accuracy(classifier: DigitClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    return float((predict(classifier, images)[0].argmax(-1) == labels.to(images.device)).double().mean())


def train_digit_classifier(images: torch.Tensor, labels: torch.Tensor, *, epochs: int | None = None,
                           batch_size: int = 64, lr: float = 2e-3, seed: int = 0) -> DigitClassifier:
    """A :class:`DigitClassifier` fitted to ``images`` (N, 1, H, W) in [0, 1] with integer ``labels`` (N,) by Adam
    on the cross-entropy; ``epochs`` default to about 600 steps' worth (at least 3), with a learning rate
    decaying tenfold. Small shifts of a pixel (random, each batch) make it read generated digits that are
    not centred exactly as the real ones. Its own generator: the caller's random numbers are untouched."""
    generator = torch.Generator().manual_seed(seed)
    device = images.device
    with torch.random.fork_rng([] if device.type != "cuda" else [device]):
        torch.manual_seed(seed)
        classifier = DigitClassifier().to(device)
    labels = labels.to(device).long()
    n = len(images)
    steps_per_epoch = -(-n // batch_size)
    epochs = epochs or max(3, round(600 / steps_per_epoch))
    optimizer = torch.optim.Adam(classifier.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, 0.1 ** (1 / max(1, epochs * steps_per_epoch)))
    classifier.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator).to(device)
        for part in _batches(n, batch_size):
            index = order[part]
            shift = torch.randint(-1, 2, (2,), generator=generator).tolist()
            x = torch.roll(images[index], shifts=shift, dims=(2, 3))
            loss = nn.functional.cross_entropy(classifier(x), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return classifier.eval()


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """The Frechet distance ||m_a - m_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)) of Gaussians fitted to rows of a, b.

    ``a`` (N, F), ``b`` (M, F). tr (S_a S_b)^(1/2) = sum of the square roots of the eigenvalues of
    S_a^(1/2) S_b S_a^(1/2) (symmetric, PSD).
    """
    a, b = a.double(), b.double()
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp_min(0).sqrt().sum()
    return float((mean_a - mean_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * cross)


@dataclass
class ImageQuality:
    """Scores of generated images (see the module doc); ``classifier_accuracy`` on real held-out images."""

    fid: float
    classes_covered: int
    confident_fraction: float
    classifier_accuracy: float
    samples: int

    def as_dict(self) -> dict:
        return asdict(self)


def image_quality(classifier: DigitClassifier, generated: torch.Tensor, real: torch.Tensor,
                  real_labels: torch.Tensor, *, confidence: float = 0.9, min_share: float = 0.02) -> ImageQuality:
    """Scores of ``generated`` images (N, 1, H, W) in [0, 1] against ``real`` held-out ones with their labels."""
    generated = generated.to(real.device).clamp(0, 1)
    probs, feats = predict(classifier, generated)
    real_probs, real_feats = predict(classifier, real)
    top, label = probs.max(-1)
    confident = top >= confidence
    counts = torch.bincount(label[confident], minlength=CLASSES)
    covered = int((counts >= max(1.0, min_share * len(generated))).sum())
    acc = float((real_probs.argmax(-1) == real_labels.to(real.device)).double().mean())
    return ImageQuality(fid=frechet_distance(feats, real_feats), classes_covered=covered,
                        confident_fraction=float(confident.double().mean()), classifier_accuracy=acc,
                        samples=len(generated))
