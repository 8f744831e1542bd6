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


def positive_int(owner: str, name: str, value: Any) -> int:
    """``value`` if it is an integer ≥ 1 (not a bool, not a string), else a TypeError or ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{owner}: {name} must be a positive integer, got {value!r} of type {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{owner}: {name} must be a positive integer, got {value}")
    return int(value)


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
