"""Reverse-mode automatic differentiation: Tensor, Function, and the backward pass.

A Tensor wraps a raw array (numpy or cupy). Every operation on Tensors is a Function:
``forward`` computes the output from raw arrays, ``backward`` turns the gradient of the
loss with respect to the output (the upstream gradient g) into gradients with respect to
the inputs, the vector-Jacobian product gᵀ ∂y/∂x. Calling a Function records it as the
``creator`` of its outputs, which is all the graph there is.

``Tensor.backward`` walks that graph from the loss back to the leaves in topological
order, without recursion, and accumulates gradients into ``.grad`` of the leaves.
Memory: a Function holds its outputs only weakly, and the pass frees every node's saved
arrays and links as soon as the node is done, so no graph outlives a training step.

Types follow PyTorch's promotion rule (``result_type``, spelled out in ``npgen.dtypes``):
dimensioned tensors outrank 0-d tensors, which outrank constants (Python numbers, floating arrays);
a lower rank counts only if its category is higher (bool < integer < floating), a floating
constant then as float32. So an integer tensor times 0.5 is float32, never truncated, a constant
takes a floating tensor's dtype, and every gradient has its input's dtype.

This file holds the few ops that Tensor's operators need (+ - * / ** @, sum, reshape,
transpose, indexing); the rest live in ``npgen.functional``.
"""

from __future__ import annotations

import contextlib
import math
import operator
import weakref
from collections.abc import Iterator
from typing import Any, Callable

import numpy as np

from . import backend, checks, dtypes

_grad_enabled = True


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Record no graph inside this block (evaluation, sampling, optimizer updates)."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


def is_grad_enabled() -> bool:
    """Whether operations are being recorded for backward."""
    return _grad_enabled


class Tensor:
    """An array that remembers the Function that made it, so gradients can flow back."""

    __array_priority__ = 1000  # numpy array (op) Tensor defers to Tensor's reflected operator

    def __init__(self, data: Any, requires_grad: bool = False):
        if isinstance(data, Tensor):
            raise TypeError("Tensor(data) takes a raw array; use tensor.detach() to copy a Tensor")
        if isinstance(data, (np.generic, int, float, bool)):
            data = np.asarray(data)  # numpy reductions return scalars; keep everything an array
        backend.backend_of(data)  # fails clearly on lists, strings, foreign arrays
        if data.dtype.kind not in "biuf":  # np.asarray('abc') or of None would make a tensor of text or objects
            raise TypeError(f"a tensor holds bools, integers or floats, got dtype {data.dtype}")
        self.data = data
        self.grad: Any = None
        self.requires_grad = requires_grad
        self.creator: Function | None = None
        self._version = 0  # counts in-place changes: backward refuses inputs changed after their forward

    @property
    def requires_grad(self) -> bool:
        """Whether backward computes a gradient for this tensor (floating-point tensors only)."""
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if value and self.data.dtype.kind != "f":  # an integer gradient would be silently truncated
            raise TypeError(f"only floating-point tensors can require gradients, got dtype {self.data.dtype}")
        self._requires_grad = value

    # --- what the array is -----------------------------------------------------------
    shape = property(lambda self: self.data.shape, doc="The shape of the data.")
    dtype = property(lambda self: self.data.dtype, doc="The dtype of the data.")
    ndim = property(lambda self: self.data.ndim, doc="The number of dimensions.")
    size = property(lambda self: self.data.size, doc="The number of elements.")
    device = property(lambda self: backend.backend_of(self.data).device, doc="'cpu', 'cuda', ...")

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"tensor({backend.to_numpy(self.data)!r}{grad})".replace("\n", "\n       ")

    # --- leaving the graph -----------------------------------------------------------
    def detach(self) -> Tensor:
        """The same data, cut off from the graph."""
        return Tensor(self.data)

    def item(self) -> float:
        """The value of a one-element tensor as a Python number."""
        return self.data.item()

    def __float__(self) -> float:
        return float(self.item())

    def __bool__(self) -> bool:
        if self.size != 1:  # as in PyTorch: `if loss > 10` must not be silently true for an array
            raise RuntimeError(f"the truth value of a tensor of shape {self.shape} is ambiguous")
        return bool(self.item())

    def numpy(self) -> np.ndarray:
        """A host (numpy) copy of the data."""
        return backend.to_numpy(self.data).copy()

    def to(self, device: str) -> Tensor:
        """This tensor on ``device`` ('cpu', 'cuda', or a backend name): a new leaf if it moved."""
        data = backend.move(self.data, device)
        return self if data is self.data else Tensor(data, requires_grad=self.requires_grad)

    # --- the backward pass -----------------------------------------------------------
    def backward(self, grad: Any = None) -> None:
        """Accumulate d(self)/d(leaf) · grad into ``.grad`` of every leaf that requires it.

        ``grad`` is the upstream gradient (default 1, for a scalar loss). Nodes run in
        topological order: a node runs only after every node that used its outputs has
        passed its gradient back. Gradients of intermediate tensors are dropped as soon
        as they are used; only leaves keep theirs.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad (made under no_grad?)")
        grad = self._seed_gradient(grad)
        stored: set[int] = set()  # the arrays already stored in some leaf's .grad
        if self.creator is None:
            self._accumulate(grad, stored)
            return

        pending = _count_consumers(self.creator)
        grads: dict[Tensor, Any] = {self: grad}
        ready = [self.creator]
        while ready:
            node = ready.pop()
            if node.released:
                raise RuntimeError(
                    "backward through a graph that a previous backward() already freed; recompute the forward pass"
                )
            if _changed_in_place(node):
                raise RuntimeError(
                    f"{type(node).__name__}: a tensor it used was changed in place (+=, -=, *=, /=) after the "
                    "forward pass, so backward would use the new values; recompute the forward pass after the change"
                )
            upstream = node._output_grads(grads)
            if upstream is not None:
                node._apply_backward(upstream, grads, stored)
            for x in node.inputs:
                if x.creator is not None:
                    pending[x.creator] -= 1
                    if pending[x.creator] == 0:
                        ready.append(x.creator)
            node._release()

    def _seed_gradient(self, grad: Any) -> Any:
        """The gradient that starts backward: ones for a one-element tensor, else the caller's, checked and copied."""
        xp = backend.get_array_module(self.data)
        if grad is None:
            if self.size != 1:
                raise RuntimeError(f"backward() without grad needs a one-element tensor, got shape {self.shape}")
            return xp.ones_like(self.data)
        raw = _raw(grad)
        grad = raw if backend.is_array(raw) else xp.asarray(raw)
        backend.get_array_module(self.data, grad)  # one backend, or a TypeError naming both
        if grad.shape != self.shape:
            raise RuntimeError(f"backward(grad): grad has shape {grad.shape}, but the tensor has shape {self.shape}")
        return grad.astype(self.dtype)  # a copy: the caller's array never becomes a .grad

    def _accumulate(self, grad: Any, stored: set[int]) -> None:
        """Add ``grad`` into .grad, which is always this leaf's own writable array.

        A first gradient is kept as it is unless another leaf could see it: a view (of another
        gradient, or a read-only broadcast) or an array already in another leaf's .grad is copied.
        """
        if grad.shape != self.shape:
            raise RuntimeError(f"gradient of shape {grad.shape} for a tensor of shape {self.shape}")
        if self.grad is not None:
            self.grad = self.grad + grad
        else:
            self.grad = grad.copy() if grad.base is not None or id(grad) in stored else grad
        if isinstance(self.grad, np.generic):  # numpy gives 0-d results as scalars, which nothing can scale in place
            self.grad = np.asarray(self.grad)
        stored.add(id(self.grad))

    def sum(self, axis: int | tuple | None = None, keepdims: bool = False) -> Tensor:
        """Sum over ``axis`` (all axes if None)."""
        return Sum(axis, keepdims)(self)

    def mean(self, axis: int | tuple | None = None, keepdims: bool = False) -> Tensor:
        """Mean over ``axis`` (all axes if None): a sum times 1/n."""
        axes = range(self.ndim) if axis is None else (axis,) if isinstance(axis, int) else axis
        n = math.prod(self.shape[a] for a in axes)
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
            raise ValueError(
                f"axes {tuple(axes)} are not a permutation of the {n} axes of a tensor of shape {self.shape}"
            )
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

    T = property(lambda self: Transpose(tuple(reversed(range(self.ndim))))(self), doc="The axes reversed.")


# Tensor's operators: each one calls an op defined further down this file.
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
        self._version += 1
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


def _raw(x: Any) -> Any:
    return x.data if isinstance(x, Tensor) else x


def tensor(data: Any, requires_grad: bool = False, dtype: Any = None, device: str | None = None) -> Tensor:
    """A new leaf tensor from a list, number or array (Python floats become float32, as in PyTorch)."""
    if isinstance(data, Tensor):
        data = data.data
    if not backend.is_array(data):  # a list or a number: build it on the host first
        data = np.asarray(data)
        if dtype is None and data.dtype == np.float64:
            dtype = np.float32
    array = backend.move(data, device or backend.get_backend().name)
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    if array is data:
        array = array.copy()  # a leaf owns its memory, as torch.tensor does
    return Tensor(array, requires_grad=requires_grad)


def _count_consumers(root: Function) -> dict[Function, int]:
    """For each node reachable from ``root``: how many recorded uses its outputs have."""
    pending = {root: 0}
    stack = [root]
    while stack:  # an explicit stack: deep graphs must not hit Python's recursion limit
        node = stack.pop()
        for x in node.inputs:
            parent = x.creator
            if parent is not None:
                if parent not in pending:
                    pending[parent] = 0
                    stack.append(parent)
                pending[parent] += 1
    return pending


def _changed_in_place(node: Function) -> bool:
    """Whether an input or output of ``node`` was changed in place since its forward pass (which may have saved it)."""
    inputs = any(x._version != version for x, version in zip(node.inputs, node.versions))
    return inputs or any((y := ref()) is not None and y._version for ref in node.outputs)


class Function:
    """One differentiable operation. Subclass it and write ``forward`` and ``backward``.

    ``forward(*arrays)`` receives raw arrays and returns an array (or a tuple of them);
    keep what backward needs with ``self.save_for_backward(...)``.
    ``backward(*grads)`` receives one upstream gradient per output and returns one
    gradient per input (None where an input needs none), each of that input's shape;
    ``self.needs_input_grad`` says which inputs need one, so backward can skip the work for
    constants (a mask, noise, a scalar factor), which is often as large as the rest.
    backward may return g itself, but must not change g in place nor return an array that
    something else holds (a saved input): the engine hands g on to other inputs and leaves.
    """

    inputs: tuple[Tensor, ...] = ()
    saved: tuple = ()
    released = False
    float_only = False  # True for ops that are only defined in floating point: integer inputs become float32

    def __call__(self, *args: Any) -> Any:
        dtype = result_type(*args, float_only=self.float_only)
        inputs = _as_tensors(args, dtype)
        xs = [x.data if x.dtype == dtype else x.data.astype(dtype) for x in inputs]
        backend.get_array_module(*xs)  # all on one backend, or a TypeError naming both
        ys = self.forward(*xs)
        multiple = isinstance(ys, tuple)
        outputs = [Tensor(y) for y in (ys if multiple else (ys,))]
        if _grad_enabled and any(x.requires_grad for x in inputs):
            self.inputs = inputs
            self.versions = [x._version for x in inputs]
            self.needs_input_grad = tuple(x.requires_grad for x in inputs)
            self.outputs = [weakref.ref(y) for y in outputs]  # weak: outputs own their creator
            self.output_meta = [(y.shape, y.dtype) for y in outputs]
            for y in outputs:
                if y.dtype.kind == "f":  # an integer output (an index, a count) has no gradient, as in PyTorch
                    y.requires_grad, y.creator = True, self
        else:
            self.saved = ()  # nothing will call backward: drop what forward kept
        return tuple(outputs) if multiple else outputs[0]

    def forward(self, *xs: Any) -> Any:
        """Compute the output arrays from the input arrays."""
        raise NotImplementedError

    def backward(self, *grads: Any) -> Any:
        """Return the gradient with respect to each input, given those of the outputs."""
        raise NotImplementedError

    def save_for_backward(self, *arrays: Any) -> None:
        """Keep arrays for backward; the engine frees them once backward has run."""
        self.saved = arrays

    # --- the engine's side, used by Tensor.backward only -----------------------------
    def _output_grads(self, grads: dict[Tensor, Any]) -> list | None:
        """The upstream gradients of this node's outputs (zeros for unused ones), or None if all unused."""
        found = [grads.pop(y, None) if (y := ref()) is not None else None for ref in self.outputs]
        if all(g is None for g in found):
            return None
        xp = backend.get_array_module(next(g for g in found if g is not None))
        return [xp.zeros(s, d) if g is None else g for g, (s, d) in zip(found, self.output_meta)]

    def _apply_backward(self, upstream: list, grads: dict[Tensor, Any], stored: set[int]) -> None:
        """Run backward and hand each input its gradient, in its dtype (leaves keep theirs in .grad)."""
        gxs = self.backward(*upstream)
        gxs = gxs if isinstance(gxs, tuple) else (gxs,)
        if len(gxs) != len(self.inputs):
            raise RuntimeError(
                f"{type(self).__name__}.backward returned {len(gxs)} gradients for {len(self.inputs)} inputs"
            )
        for x, gx, needed in zip(self.inputs, gxs, self.needs_input_grad):
            if not needed or gx is None:
                continue
            if gx.shape != x.shape:
                raise RuntimeError(
                    f"{type(self).__name__}.backward returned a gradient of shape {gx.shape} "
                    f"for an input of shape {x.shape}"
                )
            if gx.dtype != x.dtype:
                gx = gx.astype(x.dtype)  # computed in a promoted dtype; the input keeps its own
            if x.creator is None:
                x._accumulate(gx, stored)
            else:
                grads[x] = gx if x not in grads else grads[x] + gx

    def _release(self) -> None:
        """Forget inputs and saved arrays, so memory is freed as the backward pass goes."""
        self.inputs, self.saved, self.outputs, self.released = (), (), [], True


class FloatFunction(Function):
    """An op defined only in floating point (division, exp, log, …): integer inputs are computed as float32."""

    float_only = True


def result_type(*operands: Any, float_only: bool = False) -> Any:
    """The dtype of an op's result by PyTorch's promotion rule (see this module's docstring)."""
    ranks: tuple[list, list, list] = ([], [], [])  # dimensioned tensors, 0-d tensors, constants
    for a in operands:
        if isinstance(a, Tensor) or dtypes.is_integer_array(a):  # integer arrays widen like tensors: no wrap-around
            ranks[a.ndim == 0].append(a.dtype)
        else:
            ranks[2].append(dtypes.constant_dtype(a))
    return dtypes.promote(ranks, float_only)


def _as_tensors(args: tuple, dtype: Any) -> tuple[Tensor, ...]:
    """Wrap constants (Python numbers, arrays) as Tensors of ``dtype`` on the backend of a Tensor argument.

    A Python number becomes a 0-d array filled on the device (``full``): on a GPU that is a kernel
    argument, not a host→device copy that the step would wait for.
    """
    like = next((a for a in args if isinstance(a, Tensor)), None)
    if like is None:
        raise TypeError("an op needs at least one Tensor argument")
    xp = backend.get_array_module(like.data)
    return tuple(
        a
        if isinstance(a, Tensor)
        else Tensor(xp.full((), a, dtype) if isinstance(a, (bool, int, float)) else a.astype(dtype, copy=False))
        for a in args
    )


def unbroadcast(grad: Any, shape: tuple) -> Any:
    """Sum ``grad`` over the axes that broadcasting added or stretched, back to ``shape``.

    If x of shape ``shape`` was broadcast to y, then y_j = x_{k(j)} and the chain rule
    sums the upstream gradient over every j that read the same x_k.
    """
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    stretched = tuple(i + extra for i, n in enumerate(shape) if n == 1 and grad.shape[i + extra] != 1)
    grad = grad.sum(axis=tuple(range(extra)) + stretched, keepdims=True)
    return grad.reshape(shape)


class Add(Function):
    """y = a + b; ∂y/∂a = ∂y/∂b = 1."""

    def forward(self, a, b):
        self.save_for_backward(a.shape, b.shape)
        return a + b

    def backward(self, g):
        a_shape, b_shape = self.saved
        need_a, need_b = self.needs_input_grad
        return unbroadcast(g, a_shape) if need_a else None, unbroadcast(g, b_shape) if need_b else None


class Sub(Function):
    """y = a − b; ∂y/∂a = 1, ∂y/∂b = −1."""

    def forward(self, a, b):
        self.save_for_backward(a.shape, b.shape)
        return a - b

    def backward(self, g):
        a_shape, b_shape = self.saved
        need_a, need_b = self.needs_input_grad
        return unbroadcast(g, a_shape) if need_a else None, unbroadcast(-g, b_shape) if need_b else None


class Mul(Function):
    """y = a ⊙ b; ∂y/∂a = b, ∂y/∂b = a."""

    def forward(self, a, b):
        self.save_for_backward(a, b)
        return a * b

    def backward(self, g):
        a, b = self.saved
        need_a, need_b = self.needs_input_grad
        return unbroadcast(g * b, a.shape) if need_a else None, unbroadcast(g * a, b.shape) if need_b else None


class Div(FloatFunction):
    """y = a / b (true division, as in PyTorch: 1 / 2 is 0.5); ∂y/∂a = 1/b, ∂y/∂b = −a/b²."""

    def forward(self, a, b):
        self.save_for_backward(a, b)
        return a / b

    def backward(self, g):
        a, b = self.saved
        need_a, need_b = self.needs_input_grad
        ga = g / b
        return unbroadcast(ga, a.shape) if need_a else None, unbroadcast(-ga * a / b, b.shape) if need_b else None


class Neg(Function):
    """y = −x."""

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
    """y = Σ x over ``axis``; each x reached y with weight 1, so g is broadcast back."""

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
    """y = x in a new shape; the gradient takes the old shape back."""

    def __init__(self, shape: tuple):
        self.shape = shape

    def forward(self, x):
        self.save_for_backward(x.shape)
        return x.reshape(self.shape)

    def backward(self, g):
        return g.reshape(self.saved[0])


class Transpose(Function):
    """y = x with permuted axes (non-negative, a permutation); the gradient is permuted back by the inverse."""

    def __init__(self, axes: tuple):
        self.axes = axes

    def forward(self, x):
        return x.transpose(self.axes)

    def backward(self, g):
        return g.transpose(tuple(np.argsort(self.axes)))


class GetItem(Function):
    """y = x[index]; the gradient scatters g back into zeros, adding where an index repeats."""

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
