"""The ops behind Tensor's operators and methods: + - * / ** @, sum, mean, reshape, permute, transpose, indexing.

Each op is a Function: its forward on raw arrays, and its backward, the vector-Jacobian product
∂L/∂x = gᵀ ∂y/∂x with g = ∂L/∂y. The end of this file binds them to Tensor's operators, with the
comparisons (no gradient) and the in-place operators (no graph). The rest of the ops, called as
functions, live in ``npgen.functional``.
"""

from __future__ import annotations

import math
import operator
from typing import Any, Callable

import numpy as np

from . import backend, checks
from .core import FloatFunction, Function, Tensor, is_grad_enabled, result_type


def unbroadcast(grad: Any, shape: tuple) -> Any:
    """Sum ``grad`` over the axes that broadcasting added or stretched, back to ``shape``.

    If x of shape ``shape`` was broadcast to y, then y_j = x_{k(j)} and the chain rule
    sums the upstream gradient over every j that read the same x_k.
    """
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    stretched = tuple(i + extra for i, n in enumerate(shape) if n == 1)  # summing an axis of 1 changes nothing
    grad = grad.sum(axis=tuple(range(extra)) + stretched, keepdims=True)
    return grad.reshape(shape)


class Add(Function):
    """y = a + b; ∂L/∂a = g, ∂L/∂b = g, each summed back to its operand's shape."""

    def forward(self, a, b):
        self.save_for_backward(a.shape, b.shape)
        return a + b

    def backward(self, g):
        a_shape, b_shape = self.saved
        need_a, need_b = self.needs_input_grad
        return unbroadcast(g, a_shape) if need_a else None, unbroadcast(g, b_shape) if need_b else None


class Sub(Function):
    """y = a − b; ∂L/∂a = g, ∂L/∂b = −g, each summed back to its operand's shape."""

    def forward(self, a, b):
        self.save_for_backward(a.shape, b.shape)
        return a - b

    def backward(self, g):
        a_shape, b_shape = self.saved
        need_a, need_b = self.needs_input_grad
        return unbroadcast(g, a_shape) if need_a else None, unbroadcast(-g, b_shape) if need_b else None


class Mul(Function):
    """y = a ⊙ b; ∂L/∂a = g·b, ∂L/∂b = g·a, each summed back to its operand's shape."""

    def forward(self, a, b):
        self.save_for_backward(a, b)
        return a * b

    def backward(self, g):
        a, b = self.saved
        need_a, need_b = self.needs_input_grad
        return unbroadcast(g * b, a.shape) if need_a else None, unbroadcast(g * a, b.shape) if need_b else None


class Div(FloatFunction):
    """y = a / b (true division, as in PyTorch: 1 / 2 is 0.5); ∂L/∂a = g/b, ∂L/∂b = −g·a/b²."""

    def forward(self, a, b):
        self.save_for_backward(a, b)
        return a / b

    def backward(self, g):
        a, b = self.saved
        need_a, need_b = self.needs_input_grad
        ga = g / b
        return unbroadcast(ga, a.shape) if need_a else None, unbroadcast(-ga * a / b, b.shape) if need_b else None


class Neg(Function):
    """y = −x; ∂L/∂x = −g."""

    def forward(self, x):
        return -x

    def backward(self, g):
        return -g


class Pow(Function):
    """y = aᵇ; ∂L/∂a = g·b·aᵇ⁻¹, ∂L/∂b = g·y·ln a (b is usually a constant: its gradient is skipped).

    As in PyTorch, ∂y/∂a is 0 where b = 0 (a⁰ = 1 for every a) and ∂y/∂b is 0 where a = 0 and
    b ≥ 0 (0ᵇ is constant there), instead of the 0·∞ the formulas give at a = 0.
    """

    def forward(self, a, b):
        y = a**b
        self.save_for_backward(a, b, y)
        return y

    def backward(self, g):
        a, b, y = self.saved
        need_a, need_b = self.needs_input_grad
        xp = backend.get_array_module(a)
        with np.errstate(divide="ignore", invalid="ignore"):  # the 0·∞ cases are replaced just below
            ga = unbroadcast(g * xp.where(b == 0, 0, b * a ** (b - 1)), a.shape) if need_a else None
            gb = unbroadcast(g * xp.where((a == 0) & (b >= 0), 0, y * xp.log(a)), b.shape) if need_b else None
        return ga, gb


class MatMul(Function):
    """y = a @ b; ∂L/∂a = g @ bᵀ, ∂L/∂b = aᵀ @ g (1-D operands are treated as a row / column)."""

    def forward(self, a, b):
        self.save_for_backward(a, b)
        return a @ b

    def backward(self, g):
        a, b = self.saved
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        if b.ndim == 1:  # give g back the axes that 1-D operands dropped: b's column first, then a's row
            g = g[..., None]
        if a.ndim == 1:
            g = g[..., None, :]
        need_a, need_b = self.needs_input_grad
        ga = unbroadcast(g @ b2.swapaxes(-1, -2), a2.shape).reshape(a.shape) if need_a else None
        gb = unbroadcast(a2.swapaxes(-1, -2) @ g, b2.shape).reshape(b.shape) if need_b else None
        return ga, gb


class Sum(Function):
    """y = Σ x over ``axis``; ∂L/∂x = g broadcast back over the summed axes (each x reached y with weight 1)."""

    def __init__(self, axis: int | tuple | None, keepdims: bool):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.save_for_backward(x.shape)
        wide = np.int64 if x.dtype.kind in "biu" else None  # integers sum to int64, as in PyTorch
        return x.sum(axis=self.axis, keepdims=self.keepdims, dtype=wide)

    def backward(self, g):
        (shape,) = self.saved
        if not self.keepdims and self.axis is not None:
            axes = (self.axis,) if isinstance(self.axis, int) else self.axis
            g = g.reshape([1 if i in {a % len(shape) for a in axes} else n for i, n in enumerate(shape)])
        elif not self.keepdims:
            g = g.reshape((1,) * len(shape))
        return backend.get_array_module(g).broadcast_to(g, shape)


class Reshape(Function):
    """y = x in a new shape; ∂L/∂x = g in x's shape."""

    def __init__(self, shape: tuple):
        self.shape = shape

    def forward(self, x):
        self.save_for_backward(x.shape)
        return x.reshape(self.shape)

    def backward(self, g):
        return g.reshape(self.saved[0])


class Transpose(Function):
    """y = x with its axes permuted (non-negative, a permutation); ∂L/∂x = g permuted back by the inverse."""

    def __init__(self, axes: tuple):
        self.axes = axes

    def forward(self, x):
        return x.transpose(self.axes)

    def backward(self, g):
        return g.transpose(tuple(np.argsort(self.axes)))


class GetItem(Function):
    """y = x[index]; ∂L/∂x = g scattered into zeros at ``index``, added where an index repeats."""

    def __init__(self, index: Any):
        self.index = tuple(_raw(i) for i in index) if isinstance(index, tuple) else _raw(index)

    def forward(self, x):
        self.save_for_backward(x.shape, x.dtype)
        return x[self.index]

    def backward(self, g):
        shape, dtype = self.saved
        xp = backend.get_array_module(g)
        gx = xp.zeros(shape, dtype)
        if _is_basic(self.index):
            gx[self.index] = g  # slices and integers pick each element at most once
        else:
            xp.add.at(gx, self.index, g)  # unlike gx[index] += g, adds every repeated index
        return gx


def _is_basic(index: Any) -> bool:
    """Whether ``index`` uses only integers, slices, None and Ellipsis (no index arrays)."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(isinstance(i, (int, slice, type(None), type(Ellipsis))) for i in parts)


# --- Tensor's methods and operators ----------------------------------------------------


def sum(self, axis: int | tuple | None = None, keepdims: bool = False) -> Tensor:
    """Sum over ``axis`` (all axes if None)."""
    return Sum(axis, keepdims)(self)


def mean(self, axis: int | tuple | None = None, keepdims: bool = False) -> Tensor:
    """Mean over ``axis`` (all axes if None): a sum times 1/n."""
    n = math.prod(self.shape[a] for a in checks.axes("mean", axis, self.shape))
    return self.sum(axis, keepdims) * (1.0 / n if n else math.nan)  # the mean of nothing is NaN, as in PyTorch


def reshape(self, *shape: int) -> Tensor:
    """The same elements in a new shape (one entry may be -1)."""
    shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    return Reshape(tuple(shape))(self)


def permute(self, *axes: int) -> Tensor:
    """The axes in a new order: axis i of the result is axis ``axes[i]`` of this tensor."""
    axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
    n = self.ndim
    if len(axes) != n or sorted(a % n for a in axes if -n <= a < n) != list(range(n)):
        raise ValueError(f"axes {tuple(axes)} are not a permutation of the {n} axes of a tensor of shape {self.shape}")
    return Transpose(tuple(a % n for a in axes))(self)  # negative axes count from the end


def transpose(self, axis0: int, axis1: int) -> Tensor:
    """Swap two axes (as PyTorch's transpose; numpy's transpose(axes) is ``permute``)."""
    for axis in (axis0, axis1):
        if not -self.ndim <= axis < max(self.ndim, 1):
            raise IndexError(f"transpose: axis {axis} is out of range for a tensor of shape {self.shape}")
    axes = list(range(self.ndim))
    if self.ndim:
        axes[axis0], axes[axis1] = axes[axis1], axes[axis0]
    return Transpose(tuple(axes))(self)


Tensor.sum, Tensor.mean, Tensor.reshape, Tensor.permute, Tensor.transpose = sum, mean, reshape, permute, transpose
Tensor.T = property(lambda self: Transpose(tuple(reversed(range(self.ndim))))(self), doc="The axes reversed.")


def _raw(x: Any) -> Any:
    return x.data if isinstance(x, Tensor) else x


Tensor.__add__ = lambda self, other: Add()(self, other)
Tensor.__radd__ = lambda self, other: Add()(other, self)
Tensor.__sub__ = lambda self, other: Sub()(self, other)
Tensor.__rsub__ = lambda self, other: Sub()(other, self)
Tensor.__mul__ = lambda self, other: Mul()(self, other)
Tensor.__rmul__ = lambda self, other: Mul()(other, self)
Tensor.__truediv__ = lambda self, other: Div()(self, other)
Tensor.__rtruediv__ = lambda self, other: Div()(other, self)
Tensor.__neg__ = lambda self: Neg()(self)
Tensor.__pow__ = lambda self, other: Pow()(self, other)
Tensor.__rpow__ = lambda self, other: Pow()(other, self)
Tensor.__matmul__ = lambda self, other: _matmul(self, other)
Tensor.__rmatmul__ = lambda self, other: _matmul(other, self)


def _matmul(a: Any, b: Any) -> Tensor:
    """a @ b, the shapes checked first: numpy's mismatch message names a gufunc signature, not the shapes."""
    checks.matmul_shapes(tuple(getattr(a, "shape", ())), tuple(getattr(b, "shape", ())))
    return MatMul()(a, b)


def _comparison(compare: Callable[[Any, Any], Any]) -> Callable[[Tensor, Any], Any]:
    """An elementwise comparison operator: a boolean tensor, outside any graph (it has no gradient)."""

    def operator_(self: Tensor, other: Any) -> Any:
        other = _raw(other)
        if backend.is_array(other):
            backend.get_array_module(self.data, other)  # one backend, or a TypeError naming both
        elif not isinstance(other, (bool, int, float)):
            return NotImplemented  # x == None is False, as in Python and PyTorch
        return Tensor(compare(self.data, other))

    return operator_


Tensor.__eq__ = _comparison(operator.eq)
Tensor.__ne__ = _comparison(operator.ne)
Tensor.__lt__ = _comparison(operator.lt)
Tensor.__le__ = _comparison(operator.le)
Tensor.__gt__ = _comparison(operator.gt)
Tensor.__ge__ = _comparison(operator.ge)
Tensor.__hash__ = object.__hash__  # tensors stay usable as dict keys (by identity) although == is elementwise


def _in_place(update: Callable[[Any, Any], Any], symbol: str) -> Callable[[Tensor, Any], Tensor]:
    """An in-place operator (+= -= *= /=): the tensor's own array changes, the Tensor stays the same object.

    Refused, as in PyTorch, where autograd would need the old values or cannot record the change
    (``checks.in_place``); a change after a forward pass that saved the tensor is caught by backward.
    """

    def operator_(self: Tensor, other: Any) -> Tensor:
        promoted = result_type(self, other, float_only=symbol == "/=")
        checks.in_place(self, other, symbol, promoted, is_grad_enabled())
        update(self.data, _raw(other))
        self._version[0] += 1
        return self

    return operator_


Tensor.__iadd__ = _in_place(operator.iadd, "+=")
Tensor.__isub__ = _in_place(operator.isub, "-=")
Tensor.__imul__ = _in_place(operator.imul, "*=")
Tensor.__itruediv__ = _in_place(operator.itruediv, "/=")


def _getitem(self: Tensor, index: Any) -> Tensor:
    """x[index] in PyTorch's layout: integers select first (as x[0] alone does), then any index arrays.

    numpy counts an integer beside an index array as one more index array, so x[0, :, [0, 1]] of a
    (3, 4, 5) tensor is (2, 4) there (index arrays that a slice separates put their axis first) and
    (4, 2) in PyTorch. Two plain steps give PyTorch's layout: the integers, slices, None and
    Ellipsis first, then the index arrays at the axes that are left.
    """
    parts = tuple(_raw(i) for i in index) if isinstance(index, tuple) else (_raw(index),)
    if not (any(map(_is_integer, parts)) and any(map(_is_index_array, parts))):
        return GetItem(index)(self)
    first = tuple(q for p in parts for q in ((slice(None),) * _axes_of(p) if _is_index_array(p) else (p,)))
    second = tuple(p if _is_index_array(p) or p is Ellipsis else slice(None) for p in parts if not _is_integer(p))
    return GetItem(second)(GetItem(first)(self))


def _is_integer(part: Any) -> bool:
    """An integer index: a Python or numpy integer, or a 0-d integer array (PyTorch treats those alike)."""
    if isinstance(part, (int, np.integer)):
        return not isinstance(part, bool)
    return backend.is_array(part) and part.ndim == 0 and part.dtype.kind in "iu"


def _is_index_array(part: Any) -> bool:
    """An index array: a list, or an array of integers or bools with at least one axis."""
    return isinstance(part, list) or (backend.is_array(part) and part.ndim > 0)


def _axes_of(part: Any) -> int:
    """How many axes an index array consumes: a boolean mask all of its own, integers one."""
    array = np.asarray(part) if isinstance(part, list) else part
    return array.ndim if array.dtype.kind == "b" else 1


Tensor.__getitem__ = _getitem
