"""A stand-in for a GPU backend, so CI (which has no GPU) can prove the array-module switch.

``fakexp`` behaves like the numpy module but its arrays are ``FakeArray``s that, like
cupy arrays, refuse implicit conversion to numpy and refuse to mix with numpy arrays.
Any ``np.something(device_array)`` left in npgen then fails a test instead of silently
copying data to the host.
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np

from npgen import backend


class FakeArray:
    """A numpy array in disguise: same data, different type, no implicit way back to numpy."""

    __array_priority__ = 2000

    def __init__(self, array: np.ndarray):
        self._a = array

    # numpy must not accept us silently (cupy raises the same way).
    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise TypeError("Implicit conversion to a NumPy array is not allowed (fake device)")

    def __array_ufunc__(self, *args: Any, **kwargs: Any) -> Any:
        return NotImplemented

    def __array_function__(self, *args: Any, **kwargs: Any) -> Any:
        return NotImplemented

    def get(self) -> np.ndarray:
        """An explicit host copy, as cupy's ``ndarray.get()``."""
        return self._a.copy()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # no __array_interface__ and friends: numpy must not see through us
            raise AttributeError(name)
        return _wrap(getattr(self._a, name), type(self))

    def __getitem__(self, index: Any) -> Any:
        return _wrap(self._a[_unwrap(index)], type(self))

    def __setitem__(self, index: Any, value: Any) -> None:
        self._a[_unwrap(index)] = _unwrap(value)

    def __len__(self) -> int:
        return len(self._a)

    def __iter__(self):
        return (_wrap(x, type(self)) for x in self._a)

    def __float__(self) -> float:
        return float(self._a)

    def __int__(self) -> int:
        return int(self._a)

    def __bool__(self) -> bool:
        return bool(self._a)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._a!r})"

    __hash__ = None


def _binary(name: str):
    def method(self: FakeArray, other: Any) -> Any:
        return _wrap(getattr(self._a, name)(_unwrap(other)), type(self))

    return method


for _name in (
    "add sub mul truediv floordiv pow matmul mod radd rsub rmul rtruediv rpow rmatmul "
    "lt le gt ge eq ne and or xor iadd isub imul itruediv ipow"
).split():
    setattr(FakeArray, f"__{_name}__", _binary(f"__{_name}__"))
FakeArray.__neg__ = lambda self: _wrap(-self._a, type(self))  # _wrap: a 0-d result stays an array, as in cupy
FakeArray.__abs__ = lambda self: _wrap(abs(self._a), type(self))
FakeArray.__invert__ = lambda self: _wrap(~self._a, type(self))


def _fix_inplace(name: str):
    def method(self: FakeArray, other: Any) -> FakeArray:
        getattr(self._a, name)(_unwrap(other))  # numpy updates self._a in place
        return self

    return method


for _name in ("iadd", "isub", "imul", "itruediv", "ipow"):
    setattr(FakeArray, f"__{_name}__", _fix_inplace(f"__{_name}__"))


def _unwrap(x: Any) -> Any:
    """Raw numpy for the fake arrays inside x; a TypeError for a real numpy array (mixing)."""
    if isinstance(x, FakeArray):
        return x._a
    if isinstance(x, np.ndarray):
        raise TypeError("cannot mix a numpy.ndarray with a fake-device array (move it first)")
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(i) for i in x)
    if isinstance(x, dict):
        return {k: _unwrap(v) for k, v in x.items()}
    return x


def _wrap(x: Any, kind: type = FakeArray) -> Any:
    """Device arrays of type ``kind`` for the numpy arrays (and numpy scalars, as cupy returns 0-d arrays) in x."""
    if isinstance(x, np.ndarray):
        return kind(x)
    if isinstance(x, np.generic) and not isinstance(x, np.dtype):
        return kind(np.asarray(x))
    if isinstance(x, (list, tuple)) and any(isinstance(i, np.ndarray) for i in x):
        return type(x)(_wrap(i, kind) for i in x)
    if callable(x) and not isinstance(x, type):
        return _Wrapped(x, kind)
    return x


class _Wrapped:
    """A numpy function (or ufunc, or bound method) taking and returning fake arrays."""

    def __init__(self, fn: Any, kind: type):
        self._fn, self._kind = fn, kind

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _wrap(self._fn(*_unwrap(args), **_unwrap(kwargs)), self._kind)

    def __getattr__(self, name: str) -> Any:  # ufunc.at, ufunc.reduce, ...
        return _wrap(getattr(self._fn, name), self._kind)


class FakeModule(types.ModuleType):
    """The numpy module with every callable wrapped to take and return ``kind`` arrays; dtypes and constants pass."""

    def __init__(self, name: str, kind: type = FakeArray):
        super().__init__(name)
        self._kind = kind

    def __getattr__(self, name: str) -> Any:
        value = getattr(np, name)
        return value if isinstance(value, (type, np.dtype, float, int)) else _wrap(value, self._kind)


fakexp = FakeModule("fakexp")


def _from_host(a: Any) -> FakeArray:
    return FakeArray(np.array(a))


def _to_host(a: FakeArray) -> np.ndarray:
    return a.get()


def register() -> backend.Backend:
    """Make the fake device known to npgen as backend 'fake' (device 'fake')."""
    return backend.register_backend(
        backend.Backend("fake", fakexp, FakeArray, "fake", _to_host, _from_host, backend.RandomStream(_from_host))
    )
