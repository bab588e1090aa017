"""The image data layer: the IDX parser on the shared MNIST files and on malformed ones, the MNIST
splits, the offline download message, binarisation and the one-hot toy."""

from __future__ import annotations

import gzip
import struct
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

from deepprob.datasets.images import (
    MNIST_FILES,
    binarize,
    load_digits,
    load_image_splits,
    load_mnist,
    load_mnist_splits,
    read_idx,
)
from deepprob.datasets.synthetic import onehot
from deepprob.errors import InputError

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
needs_mnist = pytest.mark.skipif(
    not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").is_file(),
    reason=f"the shared MNIST test split is not at {SHARED_MNIST}",
)
# The published class counts of the 10,000 MNIST test images.
T10K_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def idx_bytes(array: torch.Tensor, code: int = 0x08, fmt: str = ">u1") -> bytes:
    import numpy as np

    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.numpy().astype(np.dtype(fmt)).tobytes()


@needs_mnist
def test_read_idx_on_the_shared_mnist_files():
    images = read_idx(SHARED_MNIST / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(SHARED_MNIST / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (10000,) and labels.dtype == torch.uint8
    assert torch.bincount(labels.long()).tolist() == T10K_LABEL_COUNTS
    assert int(images.max()) == 255 and int(images.min()) == 0
    # the first test image is a 7 (as everyone who has looked at MNIST knows)
    assert int(labels[0]) == 7


@needs_mnist
def test_mnist_with_only_the_test_files_is_split_8000_2000():
    train, test, note = load_mnist_splits(SHARED_MNIST)
    assert (len(train), len(test)) == (8000, 2000)
    assert "8000" in note and "2000" in note and "test files" in note
    assert train.images.shape[1:] == (1, 28, 28) and train.images.dtype == torch.float32
    assert 0.0 <= float(train.images.min()) and float(train.images.max()) == 1.0
    counts = torch.bincount(train.labels, minlength=10) + torch.bincount(test.labels, minlength=10)
    assert counts.tolist() == T10K_LABEL_COUNTS  # a partition of the 10,000
    again, _, _ = load_mnist_splits(SHARED_MNIST)
    assert torch.equal(again.labels, train.labels)  # the split does not depend on the run's seed
    with pytest.raises(InputError, match="train-images-idx3-ubyte"):
        load_mnist(SHARED_MNIST, "train")


def test_read_idx_reads_gzipped_and_plain_files_of_any_type(tmp_path):
    values = torch.arange(24, dtype=torch.int32).view(2, 3, 4) * 1000 - 5000
    data = idx_bytes(values, code=0x0C, fmt=">i4")
    (tmp_path / "a-idx3").write_bytes(data)
    (tmp_path / "a-idx3.gz").write_bytes(gzip.compress(data))
    for name in ("a-idx3", "a-idx3.gz"):
        read = read_idx(tmp_path / name)
        assert read.dtype == torch.int32 and torch.equal(read, values)  # big-endian decoded
    floats = torch.tensor([0.5, -2.25])
    (tmp_path / "f").write_bytes(idx_bytes(floats, code=0x0D, fmt=">f4"))
    assert torch.equal(read_idx(tmp_path / "f"), floats)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "not an IDX file"),
        (b"\x1f\x8b\x08\x00garbage", "damaged or truncated gzip"),
        (b"P5\n28 28\n255\n" + bytes(100), "not an IDX file"),  # a PGM image
        (bytes([0, 0, 0x07, 1, 0, 0, 0, 2, 1, 2]), "not an IDX file"),  # unknown type code
        (bytes([0, 0, 0x08, 3, 0, 0, 0, 2]), "truncated IDX header"),
        (bytes([0, 0, 0x08, 1, 0, 0, 0, 5, 1, 2, 3]), "says shape \\(5,\\)"),  # 3 bytes of 5
        (bytes([0, 0, 0x08, 1, 0, 0, 0, 2, 1, 2, 3]), "says shape \\(2,\\)"),  # trailing byte
    ],
)
def test_read_idx_rejects_malformed_files_with_a_clear_message(tmp_path, content, message):
    path = tmp_path / "bad-idx"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_read_idx_on_a_truncated_gzipped_mnist_file(tmp_path):
    data = gzip.compress(idx_bytes(torch.zeros(10, 28, 28, dtype=torch.uint8)))
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated gzip"):
        read_idx(path)


def test_load_mnist_checks_the_pair_of_files(tmp_path):
    images, labels = MNIST_FILES["test"]
    (tmp_path / images).write_bytes(idx_bytes(torch.zeros(3, 28, 28, dtype=torch.uint8)))
    with pytest.raises(InputError, match=f"missing {labels}"):
        load_mnist(tmp_path, "test")
    (tmp_path / f"{labels}.gz").write_bytes(gzip.compress(idx_bytes(torch.arange(4, dtype=torch.uint8))))
    with pytest.raises(InputError, match="expected 3 labels"):
        load_mnist(tmp_path, "test")
    (tmp_path / f"{labels}.gz").write_bytes(gzip.compress(idx_bytes(torch.arange(3, dtype=torch.uint8))))
    data = load_mnist(tmp_path, "test")
    assert data.images.shape == (3, 1, 28, 28) and data.labels.tolist() == [0, 1, 2]


def test_offline_download_fails_saying_which_files_to_place_where(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setenv("DEEPPROB_DATA", str(tmp_path))
    with pytest.raises(InputError) as info:
        load_image_splits("mnist")
    message = str(info.value)
    assert "could not download" in message and str(tmp_path / "mnist") in message
    assert all(f"{name}.gz" in message for pair in MNIST_FILES.values() for name in pair)
    with pytest.raises(InputError, match="no such folder"):
        load_mnist_splits(tmp_path / "nowhere")
    with pytest.raises(InputError, match="no MNIST files found"):
        load_mnist_splits(tmp_path)


def test_binarize():
    grey = torch.tensor([[0.0, 0.2, 0.5, 0.51, 1.0]])
    assert binarize(grey, "fixed").tolist() == [[0.0, 0.0, 0.0, 1.0, 1.0]]
    assert binarize(grey, "fixed", threshold=0.1).tolist() == [[0.0, 1.0, 1.0, 1.0, 1.0]]
    p = torch.full((200_000,), 0.3)
    draw = binarize(p, "dynamic", generator=torch.Generator().manual_seed(0))
    assert set(draw.unique().tolist()) == {0.0, 1.0}
    assert float(draw.mean()) == pytest.approx(0.3, abs=0.005)  # 5 standard errors
    again = binarize(p, "dynamic", generator=torch.Generator().manual_seed(1))
    assert not torch.equal(draw, again)  # resampled: a new binary image each epoch
    with pytest.raises(InputError, match="--binarize"):
        binarize(p, "otsu")


def test_onehot_toy_and_the_image_splits():
    table = onehot()
    assert table.X.shape == (2000, 4) and table.X.sum(1).eq(1).all()
    assert torch.equal(table.X.argmax(1).float(), table.y)
    assert torch.bincount(table.y.long()).tolist() == [500] * 4
    assert torch.equal(onehot().X, table.X) and not torch.equal(onehot(seed=1).X, table.X)
    train, test, _ = load_image_splits("onehot")
    assert (len(train), len(test)) == (1600, 400) and train.shape == (1, 1, 4)
    train, test, _ = load_image_splits("digits")
    assert (len(train), len(test)) == (1497, 300) and train.shape == (1, 8, 8)
    assert len(load_digits()) == 1797
    with pytest.raises(InputError, match="--dataset"):
        load_image_splits("cifar")
