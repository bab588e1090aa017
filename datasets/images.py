"""Image data sets: scikit-learn's bundled 8x8 digits (the embedded default) and MNIST from IDX files."""

from __future__ import annotations

import gzip
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from deepprob.errors import InputError


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


# --- MNIST from IDX files ----------------------------------------------------------------------------

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# MD5 of the gzipped files, as published with the data set (and checked by torchvision).
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

# IDX type codes -> big-endian numpy dtypes (http://yann.lecun.com/exdb/mnist/, "the IDX file format").
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> torch.Tensor:
    """Read an IDX file (gzipped or not) into a tensor of its shape and type (uint8 for MNIST).

    Raises:
        InputError: the file is missing, not IDX, or its data do not match the shape in its header
            (the message names the file and what was wrong).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise InputError(f"{path}: a damaged or truncated gzip file ({err})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise InputError(
            f"{path}: not an IDX file (expected the magic bytes 00 00 <type> <ndim>, "
            f"found {raw[:4].hex(' ') or 'nothing'})"
        )
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise InputError(f"{path}: truncated IDX header ({ndim} dimensions, but only {len(raw)} bytes)")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) - header != expected:
        raise InputError(
            f"{path}: the header says shape {shape} ({expected} bytes of data), "
            f"but the file has {len(raw) - header} bytes after the header (truncated or not IDX)"
        )
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return torch.from_numpy(array.astype(dtype.newbyteorder("="), copy=True))


def default_data_root() -> Path:
    """Where downloaded data are cached: ``$DEEPPROB_DATA`` or ``~/.cache/deepprob``."""
    return Path(os.environ.get("DEEPPROB_DATA") or Path.home() / ".cache" / "deepprob")


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def download_mnist(folder: str | os.PathLike, names=None, *, timeout: float = 30.0) -> None:
    """Download the MNIST files (``names``, default all four) into ``folder``, checking their MD5.

    Raises:
        InputError: a file could not be downloaded (offline, say); the message says which files to
            place where by hand.
    """
    import hashlib
    import urllib.request

    from deepprob.files import atomic_write_bytes

    folder = Path(folder)
    names = list(names or [f"{n}.gz" for pair in MNIST_FILES.values() for n in pair])
    for name in names:
        if (folder / name).is_file():
            continue
        errors = []
        for mirror in MNIST_MIRRORS:
            try:
                with urllib.request.urlopen(mirror + name, timeout=timeout) as response:
                    data = response.read()
            except OSError as err:  # URLError, timeouts and refused connections are all OSErrors
                errors.append(f"{mirror}: {err}")
                continue
            if hashlib.md5(data).hexdigest() != MNIST_MD5[name]:
                errors.append(f"{mirror}: MD5 mismatch")
                continue
            atomic_write_bytes(folder / name, data)
            break
        else:
            raise InputError(
                f"--dataset mnist: could not download {name} ({'; '.join(errors)}). "
                f"Without internet, place {', '.join(names)} (gzipped or not) in {folder}, "
                "or pass --data-dir with a folder that has them"
            )


def load_mnist(data_dir: str | os.PathLike, split: str = "train") -> ImageSet:
    """The MNIST ``split`` ("train", 60,000 images, or "test", 10,000) from IDX files in ``data_dir``.

    Images are 28x28, scaled to [0, 1]; the files may be gzipped (``.gz``) or not.

    Raises:
        InputError: a file is missing (the message names the files and the folder) or malformed,
            or the images and labels disagree in number.
    """
    folder = Path(data_dir)
    if split not in MNIST_FILES:
        raise InputError(f"split {split!r}: expected one of {', '.join(MNIST_FILES)}")
    paths = [_find(folder, name) for name in MNIST_FILES[split]]
    missing = [name for name, path in zip(MNIST_FILES[split], paths) if path is None]
    if missing:
        raise InputError(f"--data-dir {folder}: missing {' and '.join(missing)} (gzipped or not)")
    images, labels = (read_idx(path) for path in paths)
    if images.ndim != 3 or images.dtype != torch.uint8:
        raise InputError(
            f"{paths[0]}: expected uint8 images of shape (N, H, W), got {images.dtype} {tuple(images.shape)}"
        )
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise InputError(
            f"{paths[1]}: expected {images.shape[0]} labels to match {paths[0]}, "
            f"got shape {tuple(labels.shape)}"
        )
    return ImageSet(images.unsqueeze(1).float() / 255.0, labels.long(), f"mnist-{split}")


def subset(data: ImageSet, index: torch.Tensor, name: str | None = None) -> ImageSet:
    """The images of ``data`` at ``index`` (a LongTensor)."""
    return ImageSet(data.images[index], data.labels[index], name or data.name)


def split_images(data: ImageSet, n_test: int, seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """A random train/test split with ``n_test`` test images, fixed by ``seed`` (not by the run's seed)."""
    if not 0 < n_test < len(data):
        raise InputError(f"n_test {n_test}: expected 1 to {len(data) - 1} for {len(data)} images")
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    train, test = order[n_test:], order[:n_test]
    return subset(data, train, f"{data.name}-train"), subset(data, test, f"{data.name}-test")


def load_mnist_splits(
    data_dir: str | os.PathLike | None = None, *, download: bool | None = None
) -> tuple[ImageSet, ImageSet, str]:
    """MNIST train and test images from ``data_dir``, and a note saying where they came from.

    With both pairs of files present, the standard 60,000/10,000 split. With one pair only (e.g.
    the test files alone), a fixed random 80/20 split of it: 8,000/2,000 for the test files. Without
    ``data_dir`` the files are looked for in (and, with ``download``, fetched into) the cache
    ``default_data_root() / "mnist"``.
    """
    if data_dir is None:
        folder = default_data_root() / "mnist"
        download = True if download is None else download
        if download and not all(_find(folder, n) for pair in MNIST_FILES.values() for n in pair):
            download_mnist(folder)
    else:
        folder = Path(data_dir)
        if not folder.is_dir():
            raise InputError(f"--data-dir {folder}: no such folder")
    present = [split for split, names in MNIST_FILES.items() if any(_find(folder, n) for n in names)]
    if not present:
        names = [n for pair in MNIST_FILES.values() for n in pair]
        raise InputError(
            f"--data-dir {folder}: no MNIST files found; place {', '.join(names)} (or the test pair alone, "
            "gzipped or not) there"
        )
    if present == ["train", "test"]:
        train, test = load_mnist(folder, "train"), load_mnist(folder, "test")
        return train, test, f"MNIST from {folder}: the standard {len(train)}/{len(test)} split"
    data = load_mnist(folder, present[0])
    n_test = len(data) // 5
    train, test = split_images(data, n_test)
    return train, test, (
        f"MNIST from {folder}: only the {present[0]} files are there, split at random (fixed seed) into "
        f"{len(train)} training and {len(test)} test images"
    )


def load_image_splits(
    name: str, *, data_dir: str | os.PathLike | None = None, download: bool | None = None
) -> tuple[ImageSet, ImageSet, str]:
    """Train and test images of the data set ``name`` and a note on where they came from.

    - ``onehot``: 2,000 one-hot vectors of length 4 as 1x4 images, 1,600/400 (see
      :func:`~deepprob.datasets.synthetic.onehot`).
    - ``digits``: scikit-learn's 1,797 8x8 digits, 1,497/300 (a fixed random split).
    - ``mnist``: see :func:`load_mnist_splits`.
    """
    if name == "onehot":
        from deepprob.datasets.synthetic import onehot

        table = onehot()
        data = ImageSet(table.X.view(len(table), 1, 1, -1).contiguous(), table.y.long(), "onehot")
        train, test = split_images(data, len(data) // 5)
        return train, test, f"onehot: {len(train)}/{len(test)} one-hot vectors of length {data.shape[-1]}"
    if name == "digits":
        data = load_digits()
        train, test = split_images(data, 300)
        return train, test, f"scikit-learn digits: {len(train)}/{len(test)} images of 8x8"
    if name == "mnist":
        return load_mnist_splits(data_dir, download=download)
    raise InputError(f"--dataset {name!r}: expected onehot, digits or mnist")


def binarize(
    images: torch.Tensor, mode: str = "dynamic", threshold: float = 0.5, generator=None
) -> torch.Tensor:
    """Binary images from grey levels in [0, 1], same shape and dtype.

    ``dynamic``: each pixel is 1 with probability its grey level (a fresh draw at each call, so each
    epoch sees new binary images); ``fixed``: pixel > ``threshold``; ``none``: the values themselves (real
    data, for a VAE with a Normal likelihood).
    """
    if mode == "none":
        return images
    if mode == "dynamic":
        return torch.bernoulli(images, generator=generator)
    if mode == "fixed":
        return (images > threshold).to(images.dtype)
    raise InputError(f"--binarize {mode!r}: expected dynamic or fixed")
