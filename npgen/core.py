"""Reverse-mode automatic differentiation: Tensor, Function, and the backward pass.

A Tensor wraps a raw array (numpy or cupy). Every operation on Tensors is a Function:
``forward`` computes the output from raw arrays, ``backward`` turns the gradient of the
loss with respect to the output, g = ∂L/∂y, into gradients with respect to the inputs,
the vector-Jacobian product ∂L/∂x = gᵀ ∂y/∂x. Calling a Function records it as the
``creator`` of its outputs, which is all the graph there is.

The backward pass orders that graph from the loss back to the leaves, without recursion, runs
each node's backward once all the nodes that used its outputs have run, and adds each leaf's
gradient into its ``.grad``. Memory: a Function holds its outputs only weakly, and the pass frees
every node's saved arrays and links as soon as the node is done, so no graph outlives a step.

Types follow PyTorch's promotion rule (``result_type``, spelled out in ``npgen.dtypes``), applied
once, where a Function is called: its forward sees arrays of one dtype, and every gradient is
cast back to its input's dtype.

The ops behind Tensor's operators (+ - * / ** @, indexing, sum, reshape, ...) live in
``npgen.ops``, the rest in ``npgen.functional``.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np

from . import backend, dtypes

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
        # in-place changes of the array so far, a counter that detach() shares: backward refuses stale inputs
        self._version = [0]

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
        """The same data (the same array: an in-place change shows in both), cut off from the graph."""
        detached = Tensor(self.data)
        detached._version = self._version
        return detached

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

    # --- the backward pass (below Function) --------------------------------------------
    def backward(self, grad: Any = None) -> None:
        """Accumulate ∂self/∂leaf · grad into ``.grad`` of every leaf that requires it.

        ``grad`` is the upstream gradient (default 1, for a one-element tensor). Gradients of
        intermediate tensors are dropped as soon as they are used; only leaves keep theirs.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad (made under no_grad?)")
        _backward_pass(self, _seed_gradient(self, grad))


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


def _seed_gradient(root: Tensor, grad: Any) -> Any:
    """The gradient that starts backward: ones for a one-element tensor, else the caller's, checked and copied."""
    xp = backend.get_array_module(root.data)
    if grad is None:
        if root.size != 1:
            raise RuntimeError(f"backward() without grad needs a one-element tensor, got shape {root.shape}")
        return xp.ones_like(root.data)
    raw = grad.data if isinstance(grad, Tensor) else grad
    grad = raw if backend.is_array(raw) else xp.asarray(raw)
    backend.get_array_module(root.data, grad)  # one backend, or a TypeError naming both
    if grad.shape != root.shape:
        raise RuntimeError(f"backward(grad): grad has shape {grad.shape}, but the tensor has shape {root.shape}")
    return grad.astype(root.dtype)  # a copy: the caller's array never becomes a .grad


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

    A Function is math only. Calling it promotes its inputs to one dtype first; arguments that
    have no gradient (an axis, an index, a condition, class labels) go to its constructor; and the
    public function that creates it checks the arguments, so forward and backward check nothing.
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
            self.versions = [x._version[0] for x in inputs]
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


class FloatFunction(Function):
    """An op defined only in floating point (division, exp, log, …): integer inputs are computed as float32."""

    float_only = True


# --- the backward pass ---------------------------------------------------------------------------


def _backward_pass(root: Tensor, seed: Any) -> None:
    """Run every node's backward from ``root`` to the leaves, then add each leaf's gradient into its .grad."""
    grads = {root: seed}  # g = ∂L/∂y of the tensors whose consumers have all run
    given: set[int] = set()  # the arrays that some leaf holds as its .grad
    for node in _graph_order(root.creator) if root.creator is not None else ():
        _refuse_stale(node)
        gys = [grads.pop(y, None) if (y := ref()) is not None else None for ref in node.outputs]
        if any(g is not None for g in gys):  # else no path from the root runs through this node
            xp = backend.get_array_module(next(g for g in gys if g is not None))
            gys = [xp.zeros(shape, dtype) if g is None else g for g, (shape, dtype) in zip(gys, node.output_meta)]
            for x, gx in zip(node.inputs, _input_grads(node, node.backward(*gys))):
                if gx is not None and x.creator is None:
                    _accumulate(x, gx, given)
                elif gx is not None:
                    grads[x] = grads[x] + gx if x in grads else gx
        node.inputs, node.saved, node.outputs, node.released = (), (), [], True  # free the node now
    if root.creator is None:
        _accumulate(root, seed, given)


def _graph_order(root: Function) -> list[Function]:
    """Every node behind ``root``, each after all its consumers: the reversed depth-first postorder.

    An explicit stack, not recursion: a deep graph must not hit Python's recursion limit."""
    order, seen, stack = [], {root}, [(root, iter(root.inputs))]
    while stack:
        x = next(stack[-1][1], None)
        if x is None:
            order.append(stack.pop()[0])
        elif x.creator is not None and x.creator not in seen:
            seen.add(x.creator)
            stack.append((x.creator, iter(x.creator.inputs)))
    return order[::-1]


def _input_grads(node: Function, gxs: Any) -> list:
    """``node.backward``'s result as one gradient per input (None where none is needed), each in its input's dtype."""
    gxs = gxs if isinstance(gxs, tuple) else (gxs,)
    name = type(node).__name__
    if len(gxs) != len(node.inputs):
        raise RuntimeError(f"{name}.backward returned {len(gxs)} gradients for {len(node.inputs)} inputs")
    kept = []
    for x, gx, needed in zip(node.inputs, gxs, node.needs_input_grad):
        if needed and gx is not None and gx.shape != x.shape:
            raise RuntimeError(
                f"{name}.backward returned a gradient of shape {gx.shape} for an input of shape {x.shape}"
            )
        kept.append(None if not needed or gx is None else gx if gx.dtype == x.dtype else gx.astype(x.dtype))
    return kept


def _accumulate(leaf: Tensor, grad: Any, given: set[int]) -> None:
    """leaf.grad += grad. The one rule that keeps .grad the leaf's own writable array: a view (of an upstream
    gradient, a read-only broadcast) or an array that another leaf already holds is copied first."""
    if leaf.grad is None:
        leaf.grad = grad.copy() if grad.base is not None or id(grad) in given else grad
    else:
        leaf.grad = leaf.grad + grad
    if isinstance(leaf.grad, np.generic):  # numpy gives 0-d results as scalars, which nothing can scale in place
        leaf.grad = np.asarray(leaf.grad)
    given.add(id(leaf.grad))


def _refuse_stale(node: Function) -> None:
    """A node that an earlier backward freed, or whose tensors changed in place since its forward, cannot run."""
    if node.released:
        raise RuntimeError(
            "backward through a graph that a previous backward() already freed; recompute the forward pass"
        )
    changed = any(x._version[0] != v for x, v in zip(node.inputs, node.versions))
    if changed or any((y := ref()) is not None and y._version[0] for ref in node.outputs):
        raise RuntimeError(
            f"{type(node).__name__}: a tensor it used was changed in place (+=, -=, *=, /=, an optimizer step) "
            "after the forward pass, so what it saved may be stale; recompute the forward pass after the change"
        )


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
