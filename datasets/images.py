"""Image data sets: scikit-learn's bundled 8x8 digits (the embedded default) and MNIST from IDX files."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ImageSet:
    """Images with values in [0, 1], shape (N, 1, H, W) float32, and integer labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor
    name: str

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image."""
        return tuple(self.images.shape[1:])


def load_digits() -> ImageSet:
    """scikit-learn's 1,797 handwritten digits, 8x8 pixels, rescaled from 0..16 to [0, 1]."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return ImageSet(images, torch.as_tensor(bunch.target, dtype=torch.long), "digits")
