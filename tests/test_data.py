"""MNIST loading and checking, batching, binarization."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest

import npgen
from npgen import backend
from npgen.data import BUNDLED_DIR, DataLoader, MNISTError, binarize, load_mnist


def test_bundled_mnist_has_the_canonical_shapes_and_labels():
    train_x, train_y = load_mnist("train")
    test_x, test_y = load_mnist("test")
    assert train_x.shape == (60000, 784) and test_x.shape == (10000, 784)
    assert train_x.dtype == np.uint8 and train_y.dtype == np.uint8
    assert test_y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(train_y).tolist()[:3] == [5923, 6742, 5958]
    assert train_x.max() == 255 and not train_x.flags.writeable


@pytest.fixture
def own_copy(tmp_path):
    for path in BUNDLED_DIR.glob("t10k-*.gz"):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


def test_a_directory_override_is_used_and_uncompressed_files_work(own_copy, monkeypatch):
    name = "t10k-labels-idx1-ubyte"
    (own_copy / name).write_bytes(gzip.decompress((own_copy / f"{name}.gz").read_bytes()))
    (own_copy / f"{name}.gz").unlink()
    _, labels = load_mnist("test", directory=own_copy)
    assert labels[:3].tolist() == [7, 2, 1]
    monkeypatch.setenv("NPGEN_DATA", str(own_copy))
    assert load_mnist("test")[1] is labels  # the same cached arrays: the variable chose the same folder


def test_a_missing_file_is_named(own_copy):
    (own_copy / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(MNISTError, match="t10k-images-idx3-ubyte.gz"):
        load_mnist("test", directory=own_copy)


def test_a_truncated_file_is_named_with_its_expected_checksum(own_copy):
    path = own_copy / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100_000])
    with pytest.raises(MNISTError, match=r"t10k-images-idx3-ubyte.gz: cannot read.*2646ac647ad5339dbf082846283269ea"):
        load_mnist("test", directory=own_copy)


def test_a_corrupted_file_is_named_with_both_checksums(own_copy):
    path = own_copy / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(gzip.decompress(path.read_bytes()))
    data[100] ^= 1
    path.write_bytes(gzip.compress(bytes(data)))
    with pytest.raises(MNISTError, match=r"t10k-labels-idx1-ubyte.gz: MD5 .* is [0-9a-f]{32}, expected 27ae3e4e"):
        load_mnist("test", directory=own_copy)


def test_an_unknown_split_is_refused():
    with pytest.raises(ValueError, match="'validation'"):
        load_mnist("validation")


def test_the_loader_covers_every_sample_once_per_epoch_in_a_seeded_order(device):
    values = backend.move(np.arange(10), device)
    loader = DataLoader(values, values * 2, batch_size=4)
    assert len(loader) == 3
    batches = list(loader)
    seen = np.concatenate([b[0].numpy() for b in batches])
    assert sorted(seen.tolist()) == list(range(10))
    assert all(np.array_equal(b[1].numpy(), 2 * b[0].numpy()) for b in batches)
    npgen.manual_seed(5)
    first = [b.numpy().tolist() for b in DataLoader(values, batch_size=4)]
    npgen.manual_seed(5)
    again = [b.numpy().tolist() for b in DataLoader(values, batch_size=4)]
    assert first == again


def test_drop_last_and_no_shuffle():
    loader = DataLoader(np.arange(10), batch_size=4, shuffle=False, drop_last=True)
    assert [b.numpy().tolist() for b in loader] == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_the_loader_refuses_arrays_of_different_lengths():
    with pytest.raises(ValueError, match=r"differ in length: \[3, 4\]"):
        DataLoader(np.zeros(3), np.zeros(4), batch_size=2)


def test_threshold_static_and_dynamic_binarizations_give_their_expected_pixels(device):
    images = backend.move(np.array([[0, 100, 128, 255]] * 2000, np.uint8), device)
    threshold = backend.to_numpy(binarize(images, "threshold"))
    assert threshold[0].tolist() == [0.0, 0.0, 1.0, 1.0] and threshold.dtype == np.float32
    static = backend.to_numpy(binarize(images, "static"))
    assert np.array_equal(static, backend.to_numpy(binarize(images, "static")))  # fixed once and for all
    assert np.allclose(static.mean(axis=0), [0, 100 / 255, 128 / 255, 1], atol=0.04)
    dynamic = [backend.to_numpy(binarize(images, "dynamic")) for _ in range(2)]
    assert not np.array_equal(*dynamic)  # a fresh sample each epoch
    assert np.allclose(dynamic[0].mean(axis=0), [0, 100 / 255, 128 / 255, 1], atol=0.04)
    with pytest.raises(ValueError, match="'soft'"):
        binarize(images, "soft")
