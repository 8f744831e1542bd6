"""MNIST, bundled with npgen and checked against its MD5 sums; batching and binarization.

The four IDX files ship gzip-compressed inside the package (npgen/mnist/), so the
examples run offline. A user with their own copy points ``directory=`` or the
``NPGEN_DATA`` variable at a folder holding the same files (compressed or not).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from . import backend
from .core import Tensor

BUNDLED_DIR = Path(__file__).parent / "mnist"

# MD5 of the *uncompressed* IDX files, as published with MNIST.
MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
_PREFIX = {"train": "train", "test": "t10k"}


class MNISTError(RuntimeError):
    """An MNIST file is missing, truncated, corrupted or not an IDX file."""


def _find(directory: Path, name: str) -> Path:
    for candidate in (directory / f"{name}.gz", directory / name):
        if candidate.is_file():
            return candidate
    raise MNISTError(f"MNIST file not found: looked for {directory / name}.gz and {directory / name}")


def _read_verified(path: Path, name: str) -> bytes:
    """The uncompressed bytes of ``path``, after checking their MD5 sum."""
    try:
        raw = path.read_bytes()
        data = gzip.decompress(raw) if path.suffix == ".gz" else raw
    except (OSError, EOFError, zlib.error) as error:
        raise MNISTError(
            f"{path}: cannot read it ({error}); the file is truncated or corrupted "
            f"(expected uncompressed MD5 {MD5[name]})"
        ) from error
    actual = hashlib.md5(data).hexdigest()
    if actual != MD5[name]:
        raise MNISTError(
            f"{path}: MD5 of the uncompressed data is {actual}, expected {MD5[name]}: corrupted or not MNIST"
        )
    return data


def _parse_idx(data: bytes, path: Path) -> np.ndarray:
    """An IDX array: magic 0x00 0x00 0x08 (unsigned byte) ndim, then ndim big-endian sizes, then the bytes."""
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise MNISTError(f"{path}: not an IDX file of unsigned bytes")
    ndim = data[3]
    shape = tuple(int(n) for n in np.frombuffer(data, ">i4", ndim, offset=4))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


@functools.lru_cache(maxsize=4)
def _load(split: str, directory: Path) -> tuple[np.ndarray, np.ndarray]:
    arrays = []
    for kind in ("images", "labels"):
        name = f"{_PREFIX[split]}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"
        path = _find(directory, name)
        arrays.append(_parse_idx(_read_verified(path, name), path))
    images, labels = arrays
    images = images.reshape(len(images), -1)
    images.flags.writeable = labels.flags.writeable = False  # shared by the cache: nobody may edit it
    return images, labels


def load_mnist(split: str = "train", directory: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """MNIST ``split`` ('train': 60,000, 'test': 10,000) as uint8 images (N, 784) and uint8 labels (N,).

    Files come from ``directory``, else ``$NPGEN_DATA``, else the copy bundled with npgen.
    The arrays are read-only numpy arrays; ``npgen.backend.move`` puts them on a device.
    """
    if split not in _PREFIX:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    directory = Path(directory or os.environ.get("NPGEN_DATA") or BUNDLED_DIR).expanduser().resolve()
    return _load(split, directory)


def binarize(images: Any, method: str = "static", seed: int = 0) -> Any:
    """uint8 images → float32 {0, 1} pixels, on the images' backend.

    'threshold': pixel > 127.  'static': Bernoulli(pixel/255) drawn once with ``seed``
    (the same dataset on every backend and every run, as in the literature's static
    binarized MNIST).  'dynamic': Bernoulli(pixel/255) from npgen's generator, so each
    call (each epoch) gives a fresh sample.
    """
    source = backend.backend_of(images)
    if images.dtype != np.uint8:  # float images in [0, 1] would all fall below the threshold of 127
        raise TypeError(f"binarize expects uint8 pixels 0..255, got {images.dtype} (for [0, 1] floats: × 255 first)")
    if method == "threshold":
        return (images > 127).astype(np.float32)
    probabilities = images.astype(np.float32) * np.float32(1 / 255)
    if method == "static":
        u = source.from_host(np.random.default_rng(seed).random(images.shape, dtype=np.float32))
    elif method == "dynamic":
        u = source.rng.uniform(images.shape)
    else:
        raise ValueError(f"binarization must be 'threshold', 'static' or 'dynamic', got {method!r}")
    return (u < probabilities).astype(np.float32)


class DataLoader:
    """Mini-batches of one or more arrays with the same first dimension, on their own backend.

    Each pass draws a fresh order from npgen's generator (``shuffle=True``) and indexes
    whole batches at once, so there is no per-sample Python loop. Yields a Tensor for one
    array, a tuple of Tensors for several.
    """

    def __init__(self, *arrays: Any, batch_size: int, shuffle: bool = True, drop_last: bool = False):
        if not arrays:
            raise ValueError("DataLoader needs at least one array")
        lengths = {len(a) for a in arrays}
        if len(lengths) != 1:
            raise ValueError(f"DataLoader arrays differ in length: {[len(a) for a in arrays]}")
        if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r} ({type(batch_size).__name__})")
        self.arrays, self.batch_size, self.shuffle, self.drop_last = arrays, batch_size, shuffle, drop_last
        self.n = lengths.pop()

    def __len__(self) -> int:
        full, rest = divmod(self.n, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def __iter__(self) -> Iterator[Any]:
        order = backend.backend_of(self.arrays[0]).rng.permutation(self.n) if self.shuffle else None
        for b in range(len(self)):
            start = b * self.batch_size
            index = slice(start, start + self.batch_size) if order is None else order[start : start + self.batch_size]
            batch = tuple(Tensor(a[index]) for a in self.arrays)
            yield batch[0] if len(batch) == 1 else batch
