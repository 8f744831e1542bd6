"""Guard rails at the public boundary: each check names the argument, what came, and what was expected.

The math (every Function's forward and backward) checks nothing. The public functions,
constructors and operators that a user calls check their arguments here first, so a mistake
fails where it is made, with a message that says how to fix it, instead of as NaNs later or as
an error from deep inside numpy.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable

import numpy as np

from . import backend, dtypes

# (test, what it asks for): the ranges hyperparameters come in; NaN fails every one of them
FINITE = (math.isfinite, "a finite number")
POSITIVE = (lambda v: 0 < v < math.inf, "a finite number > 0")
NONNEGATIVE = (lambda v: 0 <= v < math.inf, "a finite number ≥ 0")
PROBABILITY = (lambda v: 0 <= v <= 1, "a number in [0, 1]")


def number(owner: str, name: str, value: Any, rule: tuple[Callable[[Any], bool], str]) -> Any:
    """``value`` if it is a real number that passes ``rule``, else a TypeError or ValueError naming it."""
    test, wanted = rule
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: {name} must be {wanted}, got {value!r} of type {type(value).__name__}")
    if not test(value):
        raise ValueError(f"{owner}: {name} must be {wanted}, got {value!r}")
    return value


def axes(owner: str, axis: int | tuple | None, shape: tuple) -> tuple[int, ...]:
    """The axes that ``axis`` names (all of them for None) as non-negative numbers, or an IndexError naming it."""
    named = range(len(shape)) if axis is None else (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    for a in named:
        if not -max(len(shape), 1) <= a < max(len(shape), 1):
            raise IndexError(f"{owner}: axis {a} is out of range for a tensor of shape {shape}")
    return tuple(a % max(len(shape), 1) for a in named)


def tensor_list(owner: str, params: Any) -> list:
    """The tensors of ``params`` (an iterable such as model.parameters(), or one tensor) as a list."""
    from .core import Tensor
    from .nn import Module

    if isinstance(params, Module):
        raise TypeError(
            f"{owner} takes the parameters, got the {type(params).__name__} itself: pass model.parameters()"
        )
    if isinstance(params, Tensor):
        return [params]
    if not hasattr(params, "__iter__"):
        raise TypeError(f"{owner} takes an iterable of Tensors (model.parameters()), got {type(params).__name__}")
    params = list(params)
    wrong = next((p for p in params if not isinstance(p, Tensor)), None)
    if wrong is not None:
        raise TypeError(f"{owner} takes Tensors (model.parameters()), got a {type(wrong).__name__} among them")
    return params


def matmul_shapes(a: tuple, b: tuple) -> None:
    """a @ b needs a's last axis to match b's second to last (its only one, for a vector) and batch axes that
    broadcast; a ValueError naming both shapes otherwise."""
    try:
        fits = bool(a) and bool(b) and a[-1] == b[-2 if len(b) > 1 else 0]
        fits = fits and np.broadcast_shapes(a[:-2], b[:-2]) is not None
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"matmul: shapes {a} and {b} cannot be multiplied")


def linear_shapes(x: tuple, weight: tuple) -> None:
    """x Wᵀ needs a weight (out_features, in_features) and an input whose last axis has in_features."""
    if not x or len(weight) != 2 or x[-1] != weight[1]:
        raise ValueError(
            f"linear: input of shape {x} does not fit weight of shape {weight} "
            f"(a weight is (out_features, in_features); in_features={weight[-1]} is the input's last axis)"
        )


def target_fits(owner: str, target: Any, shape: tuple) -> None:
    """A loss's target must broadcast to its input's shape without growing it: (N,) targets for (N, 1) logits
    would make an (N, N) loss."""
    target_shape = tuple(target.shape) if hasattr(target, "shape") else np.shape(target)
    try:
        fits = np.broadcast_shapes(shape, target_shape) == tuple(shape)
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"{owner}: target shape {target_shape} does not fit logits {shape}")


def class_labels(owner: str, labels: Any, logits: Any) -> Any:
    """The raw integer array of ``labels``, one per row of the (N, C) ``logits``, each in 0..C−1.

    The range is read on the host only: on a GPU the check would wait for the device every step.
    """
    if logits.ndim != 2:
        raise ValueError(f"{owner} expects logits of shape (N, C), got {logits.shape}")
    labels = getattr(labels, "data", labels) if not backend.is_array(labels) else labels
    labels = labels if backend.is_array(labels) else backend.get_array_module(logits.data).asarray(labels)
    if labels.shape != (logits.shape[0],) or labels.dtype.kind not in "iu":
        raise ValueError(
            f"{owner} expects {logits.shape[0]} integer labels, got {labels.dtype} of shape {labels.shape}"
        )
    backend.get_array_module(logits.data, labels)  # one backend, or a TypeError naming both
    on_host = backend.backend_of(labels).name == "numpy"
    if on_host and ((labels < 0) | (labels >= logits.shape[1])).any():  # a negative label would pick from the end
        raise ValueError(f"{owner}: labels must lie in 0..{logits.shape[1] - 1}")
    return labels


def integer_pixels(owner: str, x: Any, dim: int) -> Any:
    """``x`` if it is a batch (N ≥ 1, dim) of integer pixel values 0..255 (uint8, or integers in any dtype).

    uint8 needs no check; any other dtype costs one read of its range (and, on a GPU, a wait).
    """
    if x.ndim != 2 or x.shape[1] != dim or len(x) == 0:
        raise ValueError(f"{owner}: expected images of shape (N ≥ 1, {dim}), got {x.shape}")
    if x.dtype != np.uint8:
        xp = backend.get_array_module(x)
        low, high, fractional = float(x.min()), float(x.max()), bool((x != xp.floor(x)).any())
        if not (0 <= low and high <= 255) or fractional:
            raise ValueError(
                f"{owner}: pixels must be integers 0..255, got {x.dtype} values in [{low}, {high}]"
                + (" with fractions" if fractional else "")
            )
    return x


def in_place(target: Any, other: Any, symbol: str, result_dtype: Any, grad_enabled: bool) -> None:
    """Refuse ``target symbol other`` (+=, -=, *=, /=) where PyTorch would: a change autograd cannot see or needs
    undone, a result of a higher category than the tensor's dtype, or a shape that broadcasting would change."""
    raw = getattr(other, "data", other)
    if backend.is_array(raw):
        backend.get_array_module(target.data, raw)  # one backend, or a TypeError naming both
    if grad_enabled and target.requires_grad and target.creator is None:
        raise RuntimeError(
            f"a leaf tensor that requires grad cannot change in place ({symbol}) while gradients are recorded: "
            f"its gradient would describe values it no longer has. Update parameters under "
            f"`with npgen.no_grad():` (p -= lr * p.grad), or write x = x {symbol[0]} y for a new tensor"
        )
    if grad_enabled and (target.requires_grad or getattr(other, "requires_grad", False)):
        raise RuntimeError(
            f"x {symbol} y on a tensor of a graph, or with a y that requires grad, is not recorded for backward: "
            f"write x = x {symbol[0]} y (a new tensor), or make the change under `with npgen.no_grad():`"
        )
    if dtypes.category(result_dtype) > dtypes.category(target.dtype):
        raise TypeError(
            f"{symbol} would make a {result_dtype} result, which a {target.dtype} tensor cannot hold in place: "
            f"write x = x {symbol[0]} y for a new tensor"
        )
    other_shape = tuple(getattr(raw, "shape", ()))
    try:
        fits = np.broadcast_shapes(target.shape, other_shape) == target.shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"{symbol}: a tensor of shape {target.shape} cannot take {symbol[0]} {other_shape} in place")
