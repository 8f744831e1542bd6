"""npgen: a minimal, readable NumPy library for generative models, with a CuPy backend.

The public face, in PyTorch's vocabulary: Tensor, tensor, no_grad, manual_seed,
gradcheck, jacobian, load_run, and the modules nn, optim, functional (as F), data and checkpoint; viz draws
the graph of a computation, runs holds what the training scripts share.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import backend, checkpoint, data, functional, nn, ops, optim, runs, viz
from . import functional as F
from .backend import get_array_module, manual_seed, use_backend
from .core import Function, Tensor, is_grad_enabled, no_grad, tensor
from .gradcheck import GradcheckError, gradcheck, jacobian
from .runs import Run, load_run

__version__ = "0.1.0"


def _new(make: Any, shape: tuple, dtype: Any, device: str | None, requires_grad: bool) -> Tensor:
    shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    return Tensor(make(backend.get_backend(device), tuple(shape), dtype), requires_grad=requires_grad)


def randn(*shape: int, dtype: Any = np.float32, device: str | None = None, requires_grad: bool = False) -> Tensor:
    """Standard normal samples from npgen's generator."""
    return _new(lambda b, s, d: b.rng.normal(s, d), shape, dtype, device, requires_grad)


def rand(*shape: int, dtype: Any = np.float32, device: str | None = None, requires_grad: bool = False) -> Tensor:
    """Uniform samples on [0, 1) from npgen's generator."""
    return _new(lambda b, s, d: b.rng.uniform(s, dtype=d), shape, dtype, device, requires_grad)


def zeros(*shape: int, dtype: Any = np.float32, device: str | None = None, requires_grad: bool = False) -> Tensor:
    """A tensor of zeros."""
    return _new(lambda b, s, d: b.xp.zeros(s, d), shape, dtype, device, requires_grad)


def ones(*shape: int, dtype: Any = np.float32, device: str | None = None, requires_grad: bool = False) -> Tensor:
    """A tensor of ones."""
    return _new(lambda b, s, d: b.xp.ones(s, d), shape, dtype, device, requires_grad)


__all__ = [
    "F",
    "Function",
    "GradcheckError",
    "Run",
    "Tensor",
    "backend",
    "checkpoint",
    "data",
    "functional",
    "get_array_module",
    "gradcheck",
    "is_grad_enabled",
    "jacobian",
    "load_run",
    "manual_seed",
    "nn",
    "no_grad",
    "ones",
    "ops",
    "optim",
    "rand",
    "randn",
    "tensor",
    "use_backend",
    "runs",
    "viz",
    "zeros",
]
