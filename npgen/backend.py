"""The array-module switch: numpy on the host, cupy on a CUDA device.

This is the only file in npgen that imports cupy. Everything else asks this file for
the array module of its inputs (``get_array_module``), so one op serves every backend.
A global setting (``use_backend`` or the ``NPGEN_BACKEND`` variable) only decides where
*new* arrays are made: parameters, data and noise.

Each backend also owns one random generator; ``manual_seed`` seeds all of them, and
every random draw in npgen (initialisation, shuffling, noise) goes through them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np


class RandomStream:
    """The random draws npgen needs, made on one backend from one seeded stream."""

    def __init__(self, from_host: Callable[[np.ndarray], Any], seed: int | None = None):
        self._from_host = from_host
        self.seed(seed)

    def seed(self, seed: int | None) -> None:
        """Restart the stream from ``seed``."""
        self._rng = np.random.default_rng(seed)

    def normal(self, shape: tuple, dtype: Any = np.float32) -> Any:
        """Standard normal samples of ``shape``."""
        return self._from_host(self._rng.standard_normal(shape, dtype=dtype))

    def uniform(self, shape: tuple, low: float = 0.0, high: float = 1.0, dtype: Any = np.float32) -> Any:
        """Samples from U[low, high)."""
        u = self._rng.random(shape, dtype=dtype)
        if (low, high) != (0.0, 1.0):
            u = low + (high - low) * u  # python floats keep the array's dtype
        return self._from_host(u)

    def permutation(self, n: int) -> Any:
        """A random ordering of range(n)."""
        return self._from_host(self._rng.permutation(n))

    def get_state(self) -> str:
        """The stream's position, as a JSON string (it goes into checkpoints)."""
        return json.dumps(self._rng.bit_generator.state)

    def set_state(self, state: str) -> None:
        """Continue the stream from a position returned by ``get_state``."""
        self._rng.bit_generator.state = json.loads(state)


class CupyRandomStream(RandomStream):
    """Draws made on the GPU from seeds that a host stream hands out, so its state saves and resumes.

    cupy's generator (cuRAND) cannot report or restore its position. Here the host stream (the
    same PCG64 as the numpy backend's) gives every draw a fresh 63-bit seed for the device
    generator, which makes the numbers on the GPU; ``get_state`` and ``set_state`` are the host
    stream's, so a checkpoint resumes a cupy run exactly as it resumes a numpy one.
    """

    def __init__(self, cupy: Any, seed: int | None = None):
        self._device_rng = cupy.random.RandomState()  # loads cuRAND: a missing library shows up here
        self.seed(seed)

    def _reseeded(self) -> Any:
        self._device_rng.seed(int(self._rng.integers(2**63)))
        return self._device_rng

    def normal(self, shape: tuple, dtype: Any = np.float32) -> Any:
        return self._reseeded().standard_normal(shape, dtype=dtype)

    def uniform(self, shape: tuple, low: float = 0.0, high: float = 1.0, dtype: Any = np.float32) -> Any:
        return self._reseeded().uniform(low, high, shape, dtype=dtype)

    def permutation(self, n: int) -> Any:
        return self._reseeded().permutation(n)


@dataclass
class Backend:
    """One array module with its array type, its device name and its random generator."""

    name: str
    xp: Any  # the module: numpy, cupy, or a stand-in with the same interface
    array_type: type
    device: str
    to_host: Callable[[Any], np.ndarray]
    from_host: Callable[[np.ndarray], Any]
    rng: RandomStream


_backends: dict[str, Backend] = {}
_by_type: dict[type, Backend] = {}
_default_name = "numpy"
_seed: int | None = None


def register_backend(backend: Backend) -> Backend:
    """Make a backend known, so that its arrays are recognised and ``use_backend`` can pick it."""
    _backends[backend.name] = backend
    _by_type[backend.array_type] = backend
    backend.rng.seed(_seed)
    return backend


register_backend(Backend("numpy", np, np.ndarray, "cpu", np.asarray, np.asarray, RandomStream(np.asarray)))


def _load_cupy() -> Backend:
    """Import cupy and check for a CUDA device, or explain which of the two is missing."""
    try:
        import cupy
    except ImportError as error:
        raise RuntimeError(
            "the cupy backend needs CuPy, which is not installed: "
            "pip install 'npgen[gpu]' (or the cupy-cudaXXx wheel matching your CUDA)"
        ) from error
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:  # cupy raises its own CUDARuntimeError when there is no driver
        raise RuntimeError(f"the cupy backend needs a CUDA device, and none is usable: {error}") from error
    if count == 0:
        raise RuntimeError("the cupy backend needs a CUDA device, and this machine has none")
    try:
        for library in ("curand", "cublas", "nvrtc"):  # cupy loads each only when first used: load them now
            getattr(cupy.cuda, library)
        rng = CupyRandomStream(cupy)
    except (ImportError, OSError) as error:
        raise RuntimeError(
            f"the cupy backend could not load a CUDA library ({error}); "
            "pip install 'npgen[gpu]' brings them (cupy-cuda12x[ctk]), or install the CUDA toolkit"
        ) from error
    return register_backend(Backend("cupy", cupy, cupy.ndarray, "cuda", cupy.asnumpy, cupy.asarray, rng))


_DEVICE_ALIASES = {"cpu": "numpy", "cuda": "cupy", "gpu": "cupy"}


def get_backend(name: str | None = None) -> Backend:
    """The backend called ``name`` (or a device name: 'cpu', 'cuda'); the default one if None."""
    name = _default_name if name is None else _DEVICE_ALIASES.get(name, name)
    if name not in _backends:
        if name != "cupy":
            known = ", ".join(sorted(_backends))
            raise ValueError(f"unknown backend or device {name!r}; known: {known}, cuda")
        _load_cupy()
    return _backends[name]


def use_backend(name: str) -> Backend:
    """Create new arrays (parameters, data, noise) on backend ``name`` from now on."""
    global _default_name
    backend = get_backend(name)
    _default_name = backend.name
    return backend


def registered_backends() -> list[Backend]:
    """Every backend known so far (numpy, and those loaded or registered since)."""
    return list(_backends.values())


def is_array(x: Any) -> bool:
    """Whether ``x`` is an array of a known backend (numpy scalars count, lists do not)."""
    return isinstance(x, np.generic) or any(isinstance(x, kind) for kind in _by_type)


def backend_of(array: Any) -> Backend:
    """The backend an array lives on; a TypeError for anything that is no array."""
    backend = _by_type.get(type(array))
    if backend is None:
        if isinstance(array, np.generic):  # numpy turns 0-d results into scalars
            return _backends["numpy"]
        for kind, candidate in _by_type.items():
            if isinstance(array, kind):
                return candidate
        raise TypeError(f"expected an array of one of the backends {sorted(_backends)}, got {type(array).__name__}")
    return backend


def get_array_module(*arrays: Any) -> Any:
    """The array module shared by ``arrays``; a TypeError naming both if they differ."""
    first = backend_of(arrays[0])
    for array in arrays[1:]:
        other = backend_of(array)
        if other is not first:
            raise TypeError(
                f"cannot mix arrays of different backends in one op: {first.name} "
                f"({first.array_type.__name__}) and {other.name} ({other.array_type.__name__}); "
                "move them with .to(device) first"
            )
    return first.xp


def move(array: Any, device: str) -> Any:
    """``array`` on ``device`` (the same object if it is already there)."""
    source, target = backend_of(array), get_backend(device)
    if source is target:
        return array
    return target.from_host(source.to_host(array))


def on_device(array: np.ndarray) -> Any:
    """A host (numpy) array on the current backend: the array itself on numpy, a copy on a GPU."""
    return get_backend().from_host(array)


def to_numpy(array: Any) -> np.ndarray:
    """A host (numpy) copy of ``array``, whatever its backend."""
    return np.asarray(backend_of(array).to_host(array))


def device_memory_mib() -> float | None:
    """MiB held by cupy's memory pool: its high-water mark, since the pool keeps freed blocks. None without cupy."""
    cupy_backend = _backends.get("cupy")
    return None if cupy_backend is None else cupy_backend.xp.get_default_memory_pool().total_bytes() / 2**20


def manual_seed(seed: int) -> None:
    """Seed the random generator of every backend (and of those registered later)."""
    global _seed
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"manual_seed takes an integer ≥ 0, got {seed!r}")
    _seed = int(seed)
    for backend in _backends.values():
        backend.rng.seed(_seed)


def default_generator() -> RandomStream:
    """The generator of the default backend."""
    return get_backend().rng


if os.environ.get("NPGEN_BACKEND"):
    use_backend(os.environ["NPGEN_BACKEND"])
