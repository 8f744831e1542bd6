"""Layers: Module, Parameter, Linear, activations, Dropout, BatchNorm1d, Sequential.

Shapes, defaults, initialisation and state_dict names follow PyTorch, so a PyTorch
state_dict converted to numpy arrays loads by name and gives the same outputs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from . import backend, checks
from . import functional as F
from .core import Tensor


class Parameter(Tensor):
    """A Tensor that a Module registers as trainable (requires_grad is on)."""

    def __init__(self, data: Any, requires_grad: bool = True):
        super().__init__(data, requires_grad=requires_grad)


class Module:
    """A building block with parameters, buffers and submodules, registered in assignment order."""

    def __init__(self) -> None:
        # Plain dicts keep insertion order, so parameters() is the same on every run.
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)

    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"call Module.__init__() in {type(self).__name__}.__init__ before assigning {name!r}")
        if name in self._buffers:  # e.g. `self.running_mean *= 0.9` reassigns: it stays a buffer
            object.__setattr__(self, name, value)
            return
        if name in self._parameters and not isinstance(value, (Parameter, type(None))):
            # as PyTorch: `lin.weight = array` or `lin.weight = lin.weight - 0.1` would silently leave
            # parameters(), the optimizer and state_dict holding the old Parameter
            raise TypeError(
                f"cannot assign a {type(value).__name__} to {type(self).__name__}.{name}, a parameter: "
                f"a Parameter or None is expected (to change its values: `with npgen.no_grad(): {name} -= ...`)"
            )
        if isinstance(value, (list, tuple)) and any(isinstance(v, Module) for v in value):
            raise TypeError(
                f"{type(self).__name__}.{name}: a {type(value).__name__} of Modules would not be registered "
                "(its parameters would be missing from parameters() and state_dict()): use Sequential(*modules)"
            )
        # a registry keeps its order when a name gets a new value of its kind (`lin.weight -= 0.1` sets it
        # again); a name that changes kind moves to the end of its new registry
        for registry, kind in ((self._parameters, Parameter), (self._modules, Module)):
            if isinstance(value, kind):
                registry[name] = value
            else:
                registry.pop(name, None)
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, array: Any) -> None:
        """Keep a raw array as state (saved and moved with the module, never trained)."""
        self._buffers[name] = None
        object.__setattr__(self, name, array)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The computation of this layer."""
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    # --- walking the tree ------------------------------------------------------------
    def named_modules(self, prefix: str = "", remove_duplicate: bool = True) -> Iterator[tuple[str, Module]]:
        """(dotted name, module) for this module ('') and every submodule, depth first; a shared one once."""
        seen: set[int] = set()
        stack = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if remove_duplicate and id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [(f"{name}.{child}" if name else child, m) for child, m in module._modules.items()]
            stack += reversed(children)

    def _named_members(self, kind: str, remove_duplicate: bool = True) -> Iterator[tuple[str, Any]]:
        """(dotted name, value) of every parameter (kind '_parameters') or buffer ('_buffers'), a shared one once.

        As in PyTorch, a module or parameter used in two places (a shared layer) is listed under its
        first name only, so an optimizer steps it once; ``state_dict`` keeps every name.
        """
        seen: set[int] = set()
        for prefix, module in self.named_modules(remove_duplicate=remove_duplicate):
            for name in getattr(module, kind):
                value = getattr(module, name)
                if remove_duplicate and id(value) in seen:
                    continue
                seen.add(id(value))
                yield (f"{prefix}.{name}" if prefix else name), value

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        """(dotted name, parameter) in registration order."""
        return self._named_members("_parameters")

    def parameters(self) -> list[Parameter]:
        """All trainable parameters, in registration order."""
        return [p for _, p in self.named_parameters()]

    def named_buffers(self) -> Iterator[tuple[str, Any]]:
        """(dotted name, array) of every buffer, a shared one once."""
        return self._named_members("_buffers")

    def train(self, mode: bool = True) -> Module:
        """Put this module and its submodules (only those) in training mode."""
        for _, module in self.named_modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self) -> Module:
        """Put this module and its submodules in evaluation mode."""
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Switch gradient tracking of all parameters (off: frozen, e.g. D during G's step)."""
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    def zero_grad(self) -> None:
        """Forget the gradients of all parameters."""
        for p in self.parameters():
            p.grad = None

    # --- moving and converting -------------------------------------------------------
    def _apply(self, convert: Any) -> Module:
        """Replace every parameter's and buffer's data in place (optimizers keep their references)."""
        for _, module in self.named_modules():
            for p in module._parameters.values():
                p.data = convert(p.data)
                p.grad = None if p.grad is None else convert(p.grad)
            for name in module._buffers:
                object.__setattr__(module, name, convert(getattr(module, name)))
        return self

    def to(self, device: str) -> Module:
        """Move parameters and buffers to ``device`` ('cpu', 'cuda', or a backend name)."""
        return self._apply(lambda a: backend.move(a, device))

    def double(self) -> Module:
        """Convert floating-point parameters and buffers to float64 (for gradient checks)."""
        return self._apply(lambda a: a.astype(np.float64) if a.dtype.kind == "f" else a)

    def float(self) -> Module:
        """Convert floating-point parameters and buffers to float32."""
        return self._apply(lambda a: a.astype(np.float32) if a.dtype.kind == "f" else a)

    # --- state -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Parameters and buffers by dotted name, module by module, as raw arrays (the live ones, not copies).

        As in PyTorch, a shared module or parameter appears under every name it has.
        """
        state = {}
        for prefix, module in self.named_modules(remove_duplicate=False):
            for name in [*module._parameters, *module._buffers]:
                value = getattr(module, name)
                state[f"{prefix}.{name}" if prefix else name] = value.data if isinstance(value, Tensor) else value
        return state

    def check_state_dict(self, state: dict[str, Any]) -> None:
        """Raise a KeyError, TypeError or ValueError listing every way ``state`` does not fit this module."""
        own = self.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if missing or unexpected:
            raise KeyError(
                f"{type(self).__name__}.load_state_dict: missing keys {missing}, unexpected keys {unexpected}"
            )
        shapes = {k: _shape(k, v) for k, v in state.items()}
        wrong = [f"{k}: expected {own[k].shape}, got {shapes[k]}" for k in own if own[k].shape != shapes[k]]
        if wrong:
            raise ValueError(f"{type(self).__name__}.load_state_dict: shape mismatch for " + "; ".join(wrong))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Copy arrays (numpy or device) into parameters and buffers, by name; all or nothing."""
        self.check_state_dict(state)
        # every name of a shared module or parameter, in order: it ends with its last name's value, as in PyTorch
        for prefix, module in self.named_modules(remove_duplicate=False):
            for name in module._buffers:
                key = f"{prefix}.{name}" if prefix else name
                object.__setattr__(module, name, _converted(state[key], getattr(module, name)))
            for name, p in module._parameters.items():
                p.data = _converted(state[f"{prefix}.{name}" if prefix else name], p.data)

    def __repr__(self) -> str:
        lines = [f"  ({name}): {child!r}".replace("\n", "\n  ") for name, child in self._modules.items()]
        return (
            f"{type(self).__name__}({self.extra_repr()})"
            if not lines
            else f"{type(self).__name__}(\n" + "\n".join(lines) + "\n)"
        )

    def extra_repr(self) -> str:
        """The constructor arguments shown in repr()."""
        return ""


def _check_sizes(**layer: tuple) -> None:
    """Layer sizes must be positive integers: a TypeError or ValueError naming the layer and the sizes."""
    ((name, sizes),) = layer.items()
    if not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in sizes):
        raise TypeError(f"{name} sizes must be integers, got {sizes}")
    if not all(n > 0 for n in sizes):
        raise ValueError(f"{name} sizes must be positive, got {sizes}")


def _shape(key: str, value: Any) -> tuple:
    """The shape of a state_dict value: an array, a Tensor, or a (nested) list of numbers."""
    if isinstance(value, (list, tuple)):
        value = np.asarray(value)
    if not hasattr(value, "shape"):
        raise TypeError(f"load_state_dict: {key} is a {type(value).__name__}, not an array")
    return tuple(value.shape)


def _converted(array: Any, like: Any) -> Any:
    """A copy of ``array`` (a Tensor, an array of any backend, or a list) with the device and dtype of ``like``."""
    if isinstance(array, Tensor):
        array = array.data
    if not backend.is_array(array):
        array = np.asarray(array)
    moved = backend.move(array, backend.backend_of(like).name)
    return moved.astype(like.dtype, copy=moved is array)


class Linear(Module):
    """y = x Wᵀ + b with W of shape (out_features, in_features), initialised U(−1/√in, 1/√in)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        _check_sizes(Linear=(in_features, out_features))
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features)
        rng = backend.default_generator()
        self.weight = Parameter(rng.uniform((out_features, in_features), -bound, bound))
        self.bias = Parameter(rng.uniform((out_features,), -bound, bound)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class ReLU(Module):
    """max(x, 0) elementwise."""

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x)


class LeakyReLU(Module):
    """x for x > 0, negative_slope·x otherwise."""

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = checks.number("LeakyReLU", "negative_slope", negative_slope, checks.FINITE)

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Sigmoid(Module):
    """1/(1 + e^−x) elementwise."""

    def forward(self, x: Tensor) -> Tensor:
        return F.sigmoid(x)


class Tanh(Module):
    """tanh(x) elementwise."""

    def forward(self, x: Tensor) -> Tensor:
        return F.tanh(x)


class Dropout(Module):
    """Zeroes each element with probability p in training (scaling the rest by 1/(1 − p)); the identity in eval()."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = checks.number("Dropout", "p", p, checks.PROBABILITY)

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class BatchNorm1d(Module):
    """Batch normalisation of (N, C) inputs (``F.batch_norm``): the parameters γ, β and the running statistics."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        _check_sizes(BatchNorm1d=(num_features,))
        checks.number("BatchNorm1d", "eps", eps, checks.POSITIVE)
        if momentum is None:  # PyTorch's cumulative average; npgen keeps the exponential one
            raise ValueError(
                "BatchNorm1d: momentum=None (a cumulative average) is not supported; give a number in [0, 1]"
            )
        checks.number("BatchNorm1d", "momentum", momentum, checks.PROBABILITY)
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        xp = backend.get_backend().xp
        self.weight = Parameter(xp.ones(num_features, np.float32))
        self.bias = Parameter(xp.zeros(num_features, np.float32))
        self.register_buffer("running_mean", xp.zeros(num_features, np.float32))
        self.register_buffer("running_var", xp.ones(num_features, np.float32))
        self.register_buffer("num_batches_tracked", xp.zeros((), np.int64))

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 2 or x.shape[1] != self.num_features:
            raise ValueError(f"BatchNorm1d({self.num_features}) expects input (N, {self.num_features}), got {x.shape}")
        y = F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, self.training, self.momentum, self.eps
        )
        if self.training:
            self.num_batches_tracked += 1
        return y

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class Sequential(Module):
    """Modules applied one after another; named '0', '1', … as in PyTorch."""

    def __init__(self, *modules: Module):
        super().__init__()
        for i, module in enumerate(modules):
            if not isinstance(module, Module):
                hint = ": pass the layers themselves, Sequential(*layers)" if isinstance(module, (list, tuple)) else ""
                raise TypeError(f"Sequential takes Modules, got a {type(module).__name__} at position {i}{hint}")
            setattr(self, str(i), module)

    def forward(self, x: Tensor) -> Tensor:
        for module in self._modules.values():
            x = module(x)
        return x

    def __getitem__(self, i: int) -> Module:
        return list(self._modules.values())[i]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())
