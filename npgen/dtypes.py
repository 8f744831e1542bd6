"""Type promotion: which dtype an op computes in, by PyTorch's rule.

Each dtype has a category: bool < integer < floating. Operands come in three ranks: dimensioned
tensors, 0-d tensors, and constants (Python numbers and floating-point arrays; a raw integer or
bool array counts as a tensor of its shape, so an int8 tensor plus an int64 array is int64, never
wrapped around). Within a rank, the higher
category wins, and within a category the wider type (int32 ⊕ int64 → int64, float32 ⊕ float64 →
float64). Across ranks, the highest rank present decides, and a lower rank changes the result only
if its category is higher: a float32 tensor times a float64 array stays float32, an integer tensor
times 0.5 becomes float32 (a floating constant asks for floating point, not for a width).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

FLOAT32 = np.dtype(np.float32)  # PyTorch's default floating dtype


def category(dtype: Any) -> int:
    """0 for bool, 1 for integers, 2 for floating point (npgen has no complex types): the order of promotion."""
    return {"b": 0, "u": 1, "i": 1}.get(dtype.kind, 2)


def promote_types(a: Any, b: Any) -> Any:
    """The dtype of a ⊕ b for operands of one rank: the higher category, else the wider type."""
    if a == b:
        return a
    ca, cb = category(a), category(b)
    return np.result_type(a, b) if ca == cb else a if ca > cb else b


def is_integer_array(value: Any) -> bool:
    """Whether ``value`` is a raw array (or numpy scalar) of integers or bools: it promotes like a tensor."""
    dtype = getattr(value, "dtype", None)
    return not isinstance(value, (bool, int, float)) and isinstance(dtype, np.dtype) and dtype.kind in "biu"


def constant_dtype(value: Any) -> Any:
    """The dtype a constant (a Python number or a raw array) takes part with: float32 if it is floating."""
    if isinstance(value, (bool, int, float)):
        value = np.asarray(value)  # bool, int64 or float64
    if not isinstance(getattr(value, "dtype", None), np.dtype):  # a list, a string, another library's tensor
        kind = type(value)
        raise TypeError(
            f"ops take Tensors, Python numbers and numpy or cupy arrays, got a {kind.__module__}.{kind.__name__}"
            + (" (convert a PyTorch tensor with .numpy())" if kind.__module__.startswith("torch") else "")
        )
    return FLOAT32 if value.dtype.kind == "f" else value.dtype


def promote(ranks: tuple[list, list, list], float_only: bool = False) -> Any:
    """The result dtype of the dtypes of dimensioned tensors, 0-d tensors and constants (in that order of rank).

    ``float_only``: the op is defined only in floating point, so a non-floating result becomes float32.
    """
    result = None
    for dtypes in ranks:
        if dtypes:
            dtype = functools.reduce(promote_types, dtypes)
            result = dtype if result is None or category(dtype) > category(result) else result
    return FLOAT32 if float_only and category(result) < 2 else result
