"""A stand-in for CuPy, imported *as* ``cupy`` by the tests on machines without a GPU.

It implements the part of cupy's API that npgen uses, behaving as cupy does: its own ``ndarray``
that refuses implicit conversion to numpy and mixing with numpy arrays; ``asarray``, ``asnumpy``
and ``ndarray.get`` as the only ways across; ``random.RandomState`` with cupy's signatures and,
like cupy's, no way to save or restore its state; the ``cuda`` namespace (device count,
synchronisation, memory pool statistics); and ``ElementwiseKernel``, which runs a host reference
of the kernel's C body. So npgen's own cupy code (``_load_cupy``, ``CupyRandomStream``,
``optim.fused_adam``) runs in CI. ``transfers`` counts host↔device copies and synchronisations, so
tests can bound them per training step.
"""

from __future__ import annotations

import re
import types
from typing import Any

import numpy as np
from cupy_api import USED
from fake_device import FakeArray, FakeModule, _unwrap

__version__ = "14.2.0 (test double)"
transfers = {"to_host": 0, "to_device": 0, "synchronize": 0}


class ndarray(FakeArray):  # noqa: N801 (cupy's name)
    """A device array: numpy data inside, reachable only through explicit, counted copies."""

    def get(self) -> np.ndarray:
        """A host copy (one device→host transfer)."""
        transfers["to_host"] += 1
        return self._a.copy()

    def item(self) -> Any:
        """The one element as a Python number (a device→host transfer, as in cupy)."""
        transfers["to_host"] += 1
        return self._a.item()

    def __float__(self) -> float:
        transfers["to_host"] += 1
        return float(self._a)

    def __int__(self) -> int:
        transfers["to_host"] += 1
        return int(self._a)

    def __bool__(self) -> bool:
        transfers["to_host"] += 1
        return bool(self._a)


_numpy_like = FakeModule("cupy", ndarray)
_DECLARED = {name.split(".")[0] for name in USED}


def __getattr__(name: str) -> Any:
    """The array functions npgen declares in tests/cupy_api.py (zeros, exp, …) as numpy's, on device arrays.

    Anything else that is callable is refused, so a new call in npgen fails here until it is declared
    there, where the check against the real cupy covers it. Dtypes and constants pass through.
    """
    value = getattr(_numpy_like, name)
    if callable(value) and not isinstance(value, type) and name not in _DECLARED:
        raise AttributeError(f"the cupy test double offers only what tests/cupy_api.py declares; not {name!r}")
    return value


def asarray(a: Any, dtype: Any = None) -> ndarray:
    """``a`` as a device array: the same array if it already is one, else a host→device copy."""
    if isinstance(a, ndarray):
        return a if dtype is None else a.astype(dtype, copy=False)
    if isinstance(a, FakeArray):
        raise TypeError(f"cupy.asarray: cannot convert a {type(a).__name__} from another device")
    transfers["to_device"] += 1
    return ndarray(np.array(a, dtype=dtype))


def asnumpy(a: Any) -> np.ndarray:
    """A host copy of a device array (numpy input is returned as an array)."""
    return a.get() if isinstance(a, ndarray) else np.asarray(a)


class RandomState:
    """cupy.random.RandomState's draws (from a numpy stream here); like cupy's, it has no get_state.

    As strict as cupy's: seeds are integers ≥ 0, draws are float32 or float64, permutation takes an int.
    """

    def __init__(self, seed: int | None = None):
        self.seed(seed)

    def seed(self, seed: int | None = None) -> None:
        """Restart from ``seed``, which cupy reads as an unsigned 64-bit integer."""
        if seed is not None and not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed must be an integer, got {type(seed).__name__}")
        if seed is not None and seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        self._rng = np.random.default_rng(None if seed is None else np.uint64(seed))

    def standard_normal(self, size: Any = None, dtype: Any = float) -> ndarray:
        return ndarray(self._rng.standard_normal(size).astype(_float_dtype(dtype)))

    def uniform(self, low: float = 0.0, high: float = 1.0, size: Any = None, dtype: Any = float) -> ndarray:
        return ndarray(self._rng.uniform(low, high, size).astype(_float_dtype(dtype)))

    def permutation(self, num: int) -> ndarray:
        if not isinstance(num, int):  # cupy takes anything else for an array to shuffle
            raise TypeError(f"the double's permutation takes a Python int, got {type(num).__name__}")
        return ndarray(self._rng.permutation(num))


def _float_dtype(dtype: Any) -> np.dtype:
    """cupy's generator draws float32 or float64 only."""
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"cupy.random draws float32 or float64, not {dtype}")
    return dtype


random = types.SimpleNamespace(RandomState=RandomState)


class _Device:
    def __init__(self, device: int = 0):
        self.id = device

    def synchronize(self) -> None:
        transfers["synchronize"] += 1


class _MemoryPool:
    def total_bytes(self) -> int:
        return 0

    def free_all_blocks(self) -> None:
        pass


_pool = _MemoryPool()
_runtime = types.SimpleNamespace(getDeviceCount=lambda: 1, getDeviceProperties=lambda i: {"name": b"cupy test double"})
_library = types.SimpleNamespace()  # cuRAND, cuBLAS, NVRTC: present (the double needs none of them)
cuda = types.SimpleNamespace(runtime=_runtime, Device=_Device, curand=_library, cublas=_library, nvrtc=_library)


def get_default_memory_pool() -> _MemoryPool:
    """The device memory pool (the double allocates nothing on a device: its statistics are zero)."""
    return _pool


class ElementwiseKernel:
    """A kernel whose C body runs as numpy statements: ``a = b * c;`` lines, ``sqrt``, in-place outputs."""

    def __init__(self, in_params: str, out_params: str, operation: str, name: str = "kernel"):
        self.inputs = [p.split()[-1] for p in in_params.split(",")]
        self.outputs = [p.split()[-1] for p in out_params.split(",")]
        statements = [s.strip() for s in operation.split(";") if s.strip()]
        self.code = compile("\n".join(statements), f"<kernel {name}>", "exec")
        self.name = name
        assert not re.search(r"\b(for|if|while)\b", operation), "the double runs straight-line kernels only"

    def __call__(self, *args: Any) -> None:
        if len(args) != len(self.inputs) + len(self.outputs):
            raise TypeError(f"{self.name}: {len(args)} arguments for {len(self.inputs) + len(self.outputs)} parameters")
        types_ = {np.dtype(a.dtype) for a in args if isinstance(a, FakeArray) or isinstance(a, np.generic)}
        if len(types_) > 1:  # every parameter is of type T: cupy refuses arguments that disagree
            raise TypeError(f"{self.name}: the arguments of type T have different dtypes {sorted(map(str, types_))}")
        names = self.inputs + self.outputs
        namespace = {"sqrt": np.sqrt}  # the C functions the Adam kernel's body calls
        for name, value in zip(names, args):
            if isinstance(value, np.ndarray):
                raise TypeError(f"{self.name}: argument {name} is a numpy array, not a device array")
            namespace[name] = _unwrap(value).copy() if isinstance(value, FakeArray) else value
        exec(self.code, namespace)
        for name, value in zip(self.outputs, args[len(self.inputs) :]):
            value._a[...] = namespace[name]
