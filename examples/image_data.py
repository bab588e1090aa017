"""The image data of ``deepprob vae`` and ``deepprob avb``: the splits, binarised as both train on them."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch

from deepprob.datasets.images import ImageSet, binarize, load_image_splits, subset
from deepprob.errors import InputError


@dataclass
class BinaryImages:
    """The splits of ``--dataset``: ``train`` and ``test`` (ImageSets), ``x_train`` (grey levels on the device,
    binarised anew each epoch or once by the trainer) and ``x_test`` (binary, drawn once by a fixed generator:
    every run and epoch scores the same images)."""

    train: ImageSet
    test: ImageSet
    x_train: torch.Tensor
    x_test: torch.Tensor
    note: str


def apply_defaults(args: argparse.Namespace, defaults: dict) -> None:
    """Fill the options left None with the ``defaults`` of ``args.dataset``."""
    for key, value in defaults[args.dataset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)


def _head(data: ImageSet, n: int | None) -> ImageSet:
    return data if n is None or n >= len(data) else subset(data, torch.arange(n))


def binary(data: ImageSet, args: argparse.Namespace) -> torch.Tensor:
    """Binary images on the device, drawn by a fixed generator: the same in every run."""
    return binarize(data.images, args.binarize, args.threshold, torch.Generator().manual_seed(0)).to(args.device)


def load_binary_images(args: argparse.Namespace) -> BinaryImages:
    """The splits of ``args.dataset`` (``--data-dir``, ``--train-size``, ``--test-size``, ``--binarize``)."""
    if args.data_dir is not None and args.dataset != "mnist":
        raise InputError(f"--data-dir {args.data_dir}: only used with --dataset mnist, not {args.dataset}")
    if not 0 < args.threshold < 1:
        raise InputError(f"--threshold {args.threshold}: expected a number strictly between 0 and 1")
    train, test, note = load_image_splits(args.dataset, data_dir=args.data_dir)
    train, test = _head(train, args.train_size), _head(test, args.test_size)
    return BinaryImages(train, test, train.images.to(args.device), binary(test, args), note)


QUALITY_SAMPLES = 1000  # generated images scored by the digit classifier


def sample_quality(samples: torch.Tensor, train: ImageSet, test: ImageSet, seed: int, device) -> dict:
    """``fid``, ``classes_covered``, ``confident_fraction``, ``classifier_accuracy`` (and ``quality_samples``) of
    generated digits (N, 1, H, W) in [0, 1], by a :class:`~deepprob.adversarial.image_quality.DigitClassifier`
    trained on the real ``train`` split and scored against the held-out ``test`` one: the GAN's and the VAE's
    samples on one scale."""
    from deepprob.adversarial.image_quality import image_quality, train_digit_classifier

    classifier = train_digit_classifier(train.images.to(device), train.labels, seed=seed)
    quality = image_quality(classifier, samples, test.images.to(device), test.labels).as_dict()
    quality["quality_samples"] = quality.pop("samples")
    return quality


def quality_text(quality: dict) -> str:
    return (f"digit classifier (held-out accuracy {quality['classifier_accuracy']:.3f}) on "
            f"{quality['quality_samples']} samples: {quality['classes_covered']}/10 digits covered, "
            f"{100 * quality['confident_fraction']:.0f}% confident, FID {quality['fid']:.1f}")
