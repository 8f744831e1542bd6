"""The ops called as functions (imported as ``F``): each forward sits next to its vector-Jacobian product.

Notation in the docstrings: x is the input, y the output, g = ∂L/∂y the upstream
gradient, and each backward returns ∂L/∂x = gᵀ ∂y/∂x. Ops that would overflow
(exp of a large logit, log of a tiny probability) are written in stable forms:
softplus(x) = max(x, 0) + log(1 + e^−|x|) never exponentiates a positive number.

Plain first, fused second: where one op does the work of several (Linear, BatchNorm,
LogSoftmax, the losses, LeakyReLU, where, maximum, amax), its plain version, composed of
other ops so that it needs no VJP of its own, comes directly above it (``*_plain``); the
fused op says in one line why it exists, and a test proves the two equal in values and
gradients.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import backend, checks
from .backend import get_array_module
from .core import FloatFunction, Function, Tensor
from .ops import unbroadcast

# --- elementwise ---------------------------------------------------------------------


def _sigmoid(x: Any) -> Any:
    """σ(x) = 1/(1 + e^−x), written as ½(1 + tanh(x/2)) so no exponential can overflow."""
    return 0.5 * (1.0 + get_array_module(x).tanh(0.5 * x))


def _softplus(x: Any) -> Any:
    """log(1 + eˣ) = max(x, 0) + log1p(e^−|x|), finite for every finite x."""
    xp = get_array_module(x)
    return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))


class Exp(FloatFunction):
    """y = eˣ; ∂L/∂x = g·y."""

    def forward(self, x):
        y = get_array_module(x).exp(x)
        self.save_for_backward(y)
        return y

    def backward(self, g):
        return g * self.saved[0]


class Log(FloatFunction):
    """y = ln x; ∂L/∂x = g/x."""

    def forward(self, x):
        self.save_for_backward(x)
        return get_array_module(x).log(x)

    def backward(self, g):
        return g / self.saved[0]


class Sqrt(FloatFunction):
    """y = √x; ∂L/∂x = g/(2y)."""

    def forward(self, x):
        y = get_array_module(x).sqrt(x)
        self.save_for_backward(y)
        return y

    def backward(self, g):
        return g / (2 * self.saved[0])


class Tanh(FloatFunction):
    """y = tanh x; ∂L/∂x = g·(1 − y²)."""

    def forward(self, x):
        y = get_array_module(x).tanh(x)
        self.save_for_backward(y)
        return y

    def backward(self, g):
        y = self.saved[0]
        return g * (1 - y * y)


class Sigmoid(FloatFunction):
    """y = σ(x); ∂L/∂x = g·y(1 − y)."""

    def forward(self, x):
        y = _sigmoid(x)
        self.save_for_backward(y)
        return y

    def backward(self, g):
        y = self.saved[0]
        return g * y * (1 - y)


class ReLU(Function):
    """y = max(x, 0); ∂L/∂x = g·[x > 0]."""

    def forward(self, x):
        positive = x > 0  # one byte per element: all that backward needs
        self.save_for_backward(positive)
        return get_array_module(x).maximum(x, x.dtype.type(0))  # integers stay integers, as in PyTorch

    def backward(self, g):
        return g * self.saved[0]


def leaky_relu_plain(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    """x where x > 0, else a·x: a where, the plain form of LeakyReLU below."""
    return where(x > 0, x, x * negative_slope)


class LeakyReLU(FloatFunction):
    """y = x·slope(x) with slope 1 where x > 0, a elsewhere; ∂L/∂x = g·slope(x).

    Fused for speed: one multiply by a slope array, which also serves backward as it is.
    """

    def __init__(self, negative_slope: float):
        self.a = negative_slope
        self.label = f"LeakyReLU({negative_slope})"  # its name in a graph drawing

    def forward(self, x):
        # a float slope, not xp.where: numpy's where branches per element, ~50x slower on random signs
        slope = (x > 0).astype(x.dtype) * (1 - self.a) + self.a
        self.save_for_backward(slope)
        return x * slope

    def backward(self, g):
        return g * self.saved[0]


class Softplus(FloatFunction):
    """y = log(1 + eˣ); ∂L/∂x = g·σ(x)."""

    def forward(self, x):
        self.save_for_backward(x)
        return _softplus(x)

    def backward(self, g):
        return g * _sigmoid(self.saved[0])


class LogSigmoid(FloatFunction):
    """y = log σ(x) = −softplus(−x); ∂L/∂x = g·σ(−x)."""

    def forward(self, x):
        self.save_for_backward(x)
        return -_softplus(-x)

    def backward(self, g):
        return g * _sigmoid(-self.saved[0])


def exp(x: Tensor) -> Tensor:
    """Elementwise eˣ."""
    return Exp()(x)


def log(x: Tensor) -> Tensor:
    """Elementwise natural logarithm."""
    return Log()(x)


def sqrt(x: Tensor) -> Tensor:
    """Elementwise square root."""
    return Sqrt()(x)


def tanh(x: Tensor) -> Tensor:
    """Elementwise hyperbolic tangent."""
    return Tanh()(x)


def sigmoid(x: Tensor) -> Tensor:
    """Elementwise logistic function 1/(1 + e^−x)."""
    return Sigmoid()(x)


def relu(x: Tensor) -> Tensor:
    """Elementwise max(x, 0)."""
    return ReLU()(x)


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    """Elementwise x for x > 0, negative_slope·x otherwise."""
    checks.number("leaky_relu", "negative_slope", negative_slope, checks.FINITE)
    return LeakyReLU(negative_slope)(x)


def softplus(x: Tensor) -> Tensor:
    """Elementwise log(1 + eˣ), stable for large |x|."""
    return Softplus()(x)


def log_sigmoid(x: Tensor) -> Tensor:
    """Elementwise log σ(x), stable for large |x| (never log of a sigmoid)."""
    return LogSigmoid()(x)


# --- choosing elements: where, clamp, abs, maximum, max over an axis ----------------


def where_plain(condition: Any, a: Tensor, b: Tensor | float) -> Tensor:
    """c·a + (1 − c)·b with c the condition as 0/1: right only where both branches are finite."""
    c = _as_condition(condition).astype(a.dtype)
    return a * c + b * (1 - c)


class Where(Function):
    """y = a where the condition holds, else b; ∂L/∂a = g·[cond], ∂L/∂b = g·[¬cond], each summed to its shape.

    A primitive, for correctness: the plain form gives NaN wherever the branch not taken is
    infinite (0·∞), and keeping such values out of a result is what where is for.
    """

    def __init__(self, condition: Any):
        self.condition = condition  # a boolean array: not an input, it has no gradient

    def forward(self, a, b):
        self.save_for_backward(a.shape, b.shape)
        return get_array_module(a, b).where(self.condition, a, b)

    def backward(self, g):
        a_shape, b_shape = self.saved
        xp, need_a, need_b = get_array_module(g), *self.needs_input_grad
        ga = unbroadcast(xp.where(self.condition, g, 0), a_shape) if need_a else None
        gb = unbroadcast(xp.where(self.condition, 0, g), b_shape) if need_b else None
        return ga, gb


def maximum_plain(a: Tensor, b: Tensor | float) -> Tensor:
    """where(a > b, a, b): right away from ties."""
    return where(a > b, a, b)


class Maximum(Function):
    """y = max(a, b) elementwise; ∂L/∂a = g·([a > b] + ½[a = b]), ∂L/∂b = g·([b > a] + ½[a = b]).

    A primitive, for ties: the plain form gives all of a tie's gradient to b (PyTorch splits it
    evenly), and b + relu(a − b) does not give a back exactly.
    """

    def forward(self, a, b):
        self.save_for_backward(a, b)
        return get_array_module(a, b).maximum(a, b)

    def backward(self, g):
        a, b = self.saved
        need_a, need_b = self.needs_input_grad
        share_a = ((a > b) + 0.5 * (a == b)).astype(g.dtype)  # bool + ½·bool is float64
        return unbroadcast(g * share_a, a.shape) if need_a else None, unbroadcast(
            g * (1 - share_a), b.shape
        ) if need_b else None


def _kept(y: Any, axis: int | tuple | None, keepdims: bool) -> Any:
    """A reduction's result computed with its reduced axes kept (size 1): as it is, or with them dropped."""
    return y if keepdims else y.squeeze(axis) if axis is not None else y.reshape(())


def amax_plain(x: Tensor, axis: int | tuple | None = None, keepdims: bool = False) -> Tensor:
    """Σ x·[x = max x] over ``axis``, the mask a constant: right where the maximum is attained once."""
    winners = x.data == x.data.max(axis=axis, keepdims=True)
    return (x * winners).sum(axis=axis, keepdims=keepdims)


class Max(Function):
    """y = max x over ``axis``; ∂L/∂x = g·[x = y]/k, shared by the k elements that attain the max.

    A primitive, for ties: the plain form gives a tie the whole gradient at each of its elements
    (PyTorch's amax shares it), and dividing its sum by k rounds.
    """

    def __init__(self, axis: int | tuple | None, keepdims: bool):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        y = x.max(axis=self.axis, keepdims=True)
        self.save_for_backward(x == y)
        return _kept(y, self.axis, self.keepdims)

    def backward(self, g):
        winners = self.saved[0]
        count = winners.sum(axis=self.axis, keepdims=True)
        return g.reshape(count.shape) * winners / count


def _as_condition(condition: Any) -> Any:
    """The raw boolean array of a condition (a bool Tensor or array), or a TypeError saying what came."""
    condition = condition.data if isinstance(condition, Tensor) else condition
    kind = getattr(condition, "dtype", type(condition).__name__)
    if kind != np.bool_:
        raise TypeError(f"where: the condition must be a bool tensor or array (such as x > 0), got {kind}")
    return condition


def where(condition: Any, a: Tensor | float, b: Tensor | float) -> Tensor:
    """a where ``condition`` (a bool tensor or array) holds, else b; a and b broadcast, numbers allowed."""
    condition = _as_condition(condition)
    get_array_module(condition, *(t.data for t in (a, b) if isinstance(t, Tensor)))  # one backend, or a TypeError
    return Where(condition)(a, b)


def clamp(x: Tensor, min: Tensor | float | None = None, max: Tensor | float | None = None) -> Tensor:
    """x limited to [min, max] (either may be None): two wheres, so ∂L/∂x = g inside, boundaries included."""
    if min is not None:
        x = where(x < min, min, x)
    if max is not None:
        x = where(x > max, max, x)
    return x


def abs(x: Tensor) -> Tensor:
    """|x| = x·sign(x), sign a constant: ∂L/∂x = g·sign(x), 0 at 0 (as in PyTorch)."""
    return x * get_array_module(x.data).sign(x.data)


def maximum(a: Tensor, b: Tensor | float) -> Tensor:
    """Elementwise max(a, b), broadcasting; a tie shares its gradient evenly, as in PyTorch."""
    return Maximum()(a, b)


def minimum(a: Tensor, b: Tensor | float) -> Tensor:
    """Elementwise min(a, b) = −max(−a, −b)."""
    return -maximum(-a, -b)


def _check_reduced_axes(name: str, x: Tensor, axis: int | tuple | None) -> None:
    """A max or min over an empty axis has no value: a ValueError naming the axis and the shape."""
    if any(x.shape[a] == 0 for a in checks.axes(name, axis, x.shape)):
        raise ValueError(f"{name}: cannot reduce over an empty axis (axis={axis}) of a tensor of shape {x.shape}")


def amax(x: Tensor, axis: int | tuple | None = None, keepdims: bool = False) -> Tensor:
    """The maximum over ``axis`` (all axes if None), as torch.amax: the values, a tie sharing the gradient."""
    _check_reduced_axes("amax", x, axis)
    return Max(axis, keepdims)(x)


def amin(x: Tensor, axis: int | tuple | None = None, keepdims: bool = False) -> Tensor:
    """The minimum over ``axis`` = −amax(−x)."""
    _check_reduced_axes("amin", x, axis)
    return -Max(axis, keepdims)(-x)


# --- linear algebra and shapes -------------------------------------------------------


def linear_plain(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x Wᵀ + b from a transpose, a matmul and an add."""
    y = x @ weight.T
    return y if bias is None else y + bias


class Linear(FloatFunction):
    """y = x Wᵀ + b (W of shape (out, in), as in PyTorch); ∂L/∂x = g W, ∂L/∂W = gᵀ x, ∂L/∂b = Σ_rows g.

    Fused for memory and speed: one node, the bias added in place, and no weight gradient for a frozen layer.
    """

    def forward(self, x, weight, bias=None):
        self.save_for_backward(x, weight)
        y = x @ weight.T
        if bias is not None:
            y += bias  # in place: saves one temporary as large as the output
        return y

    def backward(self, g):
        x, weight = self.saved
        needs = self.needs_input_grad + (False,) * (3 - len(self.needs_input_grad))
        rows = g.reshape(-1, g.shape[-1])  # any leading batch axes act as one
        gx = g @ weight if needs[0] else None
        gw = rows.T @ x.reshape(-1, x.shape[-1]) if needs[1] else None  # skipped for frozen layers
        gb = rows.sum(axis=0) if needs[2] else None
        return (gx, gw, gb)[: len(self.needs_input_grad)]


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """Matrix product a @ b."""
    return a @ b


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x Wᵀ + b, the affine map of a Linear layer, as one op."""
    checks.linear_shapes(x.shape, weight.shape)
    return Linear()(x, weight) if bias is None else Linear()(x, weight, bias)


class Concatenate(Function):
    """y = [x₁, x₂, …] along ``axis``; ∂L/∂xᵢ = the slice of g where xᵢ sits."""

    def __init__(self, axis: int):
        self.axis = axis

    def forward(self, *xs):
        self.save_for_backward([x.shape[self.axis] for x in xs])
        return get_array_module(*xs).concatenate(xs, axis=self.axis)

    def backward(self, g):
        bounds = list(itertools.accumulate(self.saved[0][:-1]))
        return tuple(get_array_module(g).split(g, bounds, axis=self.axis))


class Split(Function):
    """(y₁, y₂, …) = pieces of x along ``axis``; ∂L/∂x = [g₁, g₂, …] put back together."""

    def __init__(self, sections: int | Sequence[int], axis: int):
        self.sections, self.axis = sections, axis

    def forward(self, x):
        return tuple(get_array_module(x).split(x, self.sections, axis=self.axis))

    def backward(self, *gs):
        return get_array_module(*gs).concatenate(gs, axis=self.axis)


def concatenate(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join tensors along an existing axis."""
    return Concatenate(axis)(*tensors)


def stack(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join tensors of one shape along a new axis: each unsqueezed there, then concatenated."""
    return concatenate([unsqueeze(t, axis) for t in tensors], axis)


def unsqueeze(x: Tensor, axis: int) -> Tensor:
    """x with a new axis of size 1 at ``axis`` (−1 appends it): a reshape."""
    if not -x.ndim - 1 <= axis <= x.ndim:
        raise IndexError(f"unsqueeze: axis {axis} is out of range for a tensor of shape {x.shape}")
    shape = list(x.shape)
    shape.insert(axis % (x.ndim + 1), 1)
    return x.reshape(shape)


def squeeze(x: Tensor, axis: int | None = None) -> Tensor:
    """x without its axes of size 1 (only ``axis``, if given and of size 1, as in PyTorch): a reshape."""
    if axis is not None and not -max(x.ndim, 1) <= axis < max(x.ndim, 1):
        raise IndexError(f"squeeze: axis {axis} is out of range for a tensor of shape {x.shape}")
    drop = [i for i, n in enumerate(x.shape) if n == 1 and (axis is None or i == axis % x.ndim)]
    return x.reshape([n for i, n in enumerate(x.shape) if i not in drop])


def flatten(x: Tensor, start_axis: int = 0, end_axis: int = -1) -> Tensor:
    """x with axes start_axis … end_axis merged into one (all of them by default): a reshape."""
    if x.ndim == 0:
        return x.reshape(1)
    start, end = checks.axes("flatten", (start_axis, end_axis), x.shape)
    return x.reshape(*x.shape[:start], math.prod(x.shape[start : end + 1]), *x.shape[end + 1 :])


def split(x: Tensor, indices_or_sections: int | Sequence[int], axis: int = 0) -> tuple[Tensor, ...]:
    """Cut x into equal sections, or at the given indices, along ``axis`` (numpy.split semantics)."""
    if not isinstance(indices_or_sections, int):
        indices_or_sections = list(indices_or_sections)
    return Split(indices_or_sections, axis)(x)


# --- batch normalisation --------------------------------------------------------------


def batch_norm_plain(x: Tensor, weight: Tensor, bias: Tensor, eps: float = 1e-5) -> Tensor:
    """γ·(x − μ)/√(σ² + ε) + β with the batch's mean μ and biased variance σ², from ten ops."""
    centered = x - x.mean(axis=0)
    var = (centered * centered).mean(axis=0)
    return centered / sqrt(var + eps) * weight + bias


class BatchNorm(FloatFunction):
    """y = γ·x̂ + β with x̂ = (x − μ)/√(σ² + ε), per feature, μ and σ² the batch's mean and biased variance.

    μ and σ² are functions of x, and the VJP accounts for that. With s = 1/√(σ² + ε) and
    ĝ = g·γ (means over the batch):
    ∂L/∂x = s·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)),  ∂L/∂γ = Σ g·x̂,  ∂L/∂β = Σ g.

    Fused for memory: one node saving x̂ where the plain form keeps a batch-sized array per op.
    ``mean`` and ``var`` stay on the op after forward, for the running statistics.
    """

    def __init__(self, eps: float):
        self.eps = eps

    def forward(self, x, weight, bias):
        self.mean, self.var = x.mean(axis=0), x.var(axis=0)
        inv_std = 1 / get_array_module(x).sqrt(self.var + self.eps)
        x_hat = (x - self.mean) * inv_std
        self.save_for_backward(x_hat, inv_std, weight)
        return x_hat * weight + bias

    def backward(self, g):
        x_hat, inv_std, weight = self.saved
        g_hat = g * weight
        gx = inv_std * (g_hat - g_hat.mean(axis=0) - x_hat * (g_hat * x_hat).mean(axis=0))
        return gx, (g * x_hat).sum(axis=0), g.sum(axis=0)


def batch_norm(
    x: Tensor,
    running_mean: Any,
    running_var: Any,
    weight: Tensor,
    bias: Tensor,
    training: bool,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Batch normalisation of (N, C) inputs with running statistics, as torch.nn.functional.batch_norm.

    Training: normalise with the batch's mean and biased variance, and move the running
    estimates (raw arrays, updated in place, outside any graph) by ``momentum`` toward the batch
    mean and the *unbiased* batch variance. Evaluation: normalise with the running estimates.
    """
    checks.number("batch_norm", "momentum", momentum, checks.PROBABILITY)
    checks.number("batch_norm", "eps", eps, checks.POSITIVE)
    if not training:
        scale = weight / sqrt(Tensor(running_var) + eps)
        return (x - Tensor(running_mean)) * scale + bias
    n = x.shape[0]
    if n < 2:
        raise ValueError("batch_norm in training mode needs more than one sample per batch")
    op = BatchNorm(eps)
    y = op(x, weight, bias)
    running_mean *= 1 - momentum
    running_mean += momentum * op.mean
    running_var *= 1 - momentum
    running_var += (momentum * n / (n - 1)) * op.var
    return y


# --- normalised exponentials ---------------------------------------------------------


def _max_or_minus_inf(x: Any, axis: int | None) -> Any:
    """max x over ``axis`` (keeping it); −∞ over an empty axis, the max of nothing."""
    if x.size:
        return x.max(axis=axis, keepdims=True)
    shape = [1 if axis is None or i == axis % x.ndim else n for i, n in enumerate(x.shape)]
    return get_array_module(x).full(shape, -np.inf, x.dtype)


def _logsumexp(x: Any, axis: int | None) -> Any:
    """log Σ e^x over ``axis`` (keeping it), as m + log Σ e^(x−m) with m = max x: no exponential overflows.

    An infinite m shifts by 0 instead (as PyTorch does): a row of −∞ gives −∞ and a row holding +∞
    gives +∞, where x − m would be ∞ − ∞ = NaN.
    """
    xp = get_array_module(x)
    m = _max_or_minus_inf(x, axis)
    m = xp.where(xp.isfinite(m), m, 0)
    with np.errstate(divide="ignore", over="ignore"):  # log 0 = −∞ for an empty or all −∞ row; e^∞ = ∞ for +∞
        return m + xp.log(xp.exp(x - m).sum(axis=axis, keepdims=True))


def _log_softmax(x: Any, axis: int) -> Any:
    """x − logsumexp(x) along ``axis``, computed as (x − m) − log Σ e^(x−m) with m = max x.

    Unlike logsumexp, log_softmax of a row holding +∞, or of −∞ only, is NaN throughout (as in
    PyTorch): no distribution puts its mass there. A −∞ beside finite logits is a probability of 0.
    """
    xp = get_array_module(x)
    with np.errstate(invalid="ignore", divide="ignore"):  # ∞ − ∞ in a row that holds ∞: NaN, as intended
        shifted = x - _max_or_minus_inf(x, axis)
        return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


def logsumexp_plain(x: Tensor, axis: int | None = None, keepdims: bool = False) -> Tensor:
    """m + log Σ e^(x−m) from exp, sum and log, the shift m = max x a constant (it cancels in the gradient)."""
    m = x.data.max(axis=axis, keepdims=True)
    y = log(exp(x - m).sum(axis=axis, keepdims=True)) + m
    return y if keepdims else y.sum(axis=axis)  # summing the kept axes of size 1 drops them


class LogSumExp(FloatFunction):
    """y = log Σᵢ e^xᵢ = m + log Σᵢ e^(xᵢ−m) with m = max x; ∂L/∂x = g·softmax(x) = g·e^(x−y).

    Fused for memory and the edges: one node saving x and y, and PyTorch's values for rows of ±∞.
    """

    def __init__(self, axis: int | None, keepdims: bool):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        y = _logsumexp(x, self.axis)
        self.save_for_backward(x, y)
        return _kept(y, self.axis, self.keepdims)

    def backward(self, g):
        x, y = self.saved
        g = g.reshape(y.shape)  # give back the reduced axis so g broadcasts against x
        return g * get_array_module(x).exp(x - y)


def log_softmax_plain(x: Tensor, axis: int = -1) -> Tensor:
    """x − logsumexp(x) along ``axis``, from the plain logsumexp above."""
    return x - logsumexp_plain(x, axis, keepdims=True)


class LogSoftmax(FloatFunction):
    """y = x − logsumexp(x); ∂L/∂x = g − softmax(x)·Σ g.

    Fused for memory: one node saving y, where the plain form keeps four arrays of x's size.
    """

    def __init__(self, axis: int):
        self.axis = axis

    def forward(self, x):
        y = _log_softmax(x, self.axis)
        self.save_for_backward(y)
        return y

    def backward(self, g):
        y = self.saved[0]
        return g - get_array_module(y).exp(y) * g.sum(axis=self.axis, keepdims=True)


def logsumexp(x: Tensor, axis: int | None = None, keepdims: bool = False) -> Tensor:
    """log Σ exp(x) over ``axis``, without overflow."""
    return LogSumExp(axis, keepdims)(x)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """log of the softmax over ``axis``, without overflow."""
    return LogSoftmax(axis)(x)


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """e^xᵢ / Σⱼ e^xⱼ over ``axis``: exp of log_softmax, so it needs no VJP of its own."""
    return exp(log_softmax(x, axis))


# --- regularisation ------------------------------------------------------------------


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """In training, each element zeroed with probability p and the rest scaled by 1/(1 − p); else x itself.

    x times a constant mask m (drawn from npgen's generator), so ∂L/∂x = g·m and no VJP of its own.
    The scaling keeps E[y] = x, so evaluation needs no correction (inverted dropout, as in PyTorch).
    """
    checks.number("dropout", "p", p, checks.PROBABILITY)
    if not training or p == 0:
        return x
    dtype = x.dtype if x.dtype.kind == "f" else np.float32
    mask = (backend.backend_of(x.data).rng.uniform(x.shape, dtype=dtype) >= p).astype(dtype)
    mask *= 1 / (1 - p) if p < 1 else 0.0
    return x * mask


# --- losses --------------------------------------------------------------------------


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def binary_cross_entropy_with_logits_plain(logits: Tensor, target: Any) -> Tensor:
    """−[t log σ(x) + (1−t) log(1−σ(x))] per element, with log(1 − σ(x)) = log σ(−x)."""
    return -(log_sigmoid(logits) * target + log_sigmoid(-logits) * (1 - target))


class BCEWithLogits(FloatFunction):
    """ℓ = −[t log σ(x) + (1−t) log(1−σ(x))] = softplus(x) − t·x; ∂L/∂x = g·(σ(x) − t), ∂L/∂t = −g·x.

    Fused for speed: two elementwise passes where the plain form makes eight.
    """

    def forward(self, x, t):
        self.save_for_backward(x, t)
        return _softplus(x) - t * x

    def backward(self, g):
        x, t = self.saved
        gx = unbroadcast(g * (_sigmoid(x) - t), x.shape)
        gt = unbroadcast(-g * x, t.shape) if self.needs_input_grad[1] else None
        return gx, gt


def binary_cross_entropy_with_logits(logits: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Bernoulli negative log-likelihood of ``target`` under probabilities σ(logits), in nats."""
    checks.target_fits("binary_cross_entropy_with_logits", target, logits.shape)
    return _reduce(BCEWithLogits()(logits, target), reduction)


def cross_entropy_plain(logits: Tensor, labels: Any) -> Tensor:
    """−log_softmax(x)[n, yₙ] per row: the plain log_softmax, then an index."""
    rows = get_array_module(logits.data).arange(len(logits))
    return -log_softmax_plain(logits)[rows, labels]


class CrossEntropy(FloatFunction):
    """ℓₙ = −log softmax(xₙ)[yₙ] for integer labels y; ∂L/∂xₙ = gₙ·(softmax(xₙ) − onehot(yₙ)).

    Fused for memory and speed: one node, its gradient written into the softmax it saved.
    """

    def __init__(self, labels: Any):
        self.labels = labels  # like an axis, a constant of the op: labels have no gradient and stay integers

    def forward(self, x):
        xp = get_array_module(x, self.labels)
        log_p = _log_softmax(x, -1)
        rows = xp.arange(len(x))
        self.save_for_backward(log_p, rows)
        return -log_p[rows, self.labels]

    def backward(self, g):
        log_p, rows = self.saved
        gx = get_array_module(log_p).exp(log_p)
        gx[rows, self.labels] -= 1  # each row once, so plain indexed subtraction is safe
        return gx * g[:, None]


def cross_entropy(logits: Tensor, labels: Any, reduction: str = "mean") -> Tensor:
    """Softmax cross-entropy of integer class ``labels`` (an array or Tensor) given (N, C) logits."""
    labels = checks.class_labels("cross_entropy", labels, logits)
    return _reduce(CrossEntropy(labels)(logits), reduction)


def gaussian_kl_plain(mu: Tensor, logvar: Tensor) -> Tensor:
    """½ Σ_d (μ² + e^logvar − 1 − logvar) per row, from six ops."""
    return ((mu * mu + exp(logvar) - 1 - logvar) * 0.5).sum(axis=-1)


class GaussianKL(FloatFunction):
    """KL(N(μ, σ²) ‖ N(0, I)) per row = ½ Σ_d (μ² + σ² − 1 − log σ²), with log σ² = ``logvar``.

    ∂L/∂μ = g·μ,  ∂L/∂logvar = g·½(σ² − 1). Fused for speed and memory: one node instead of six.
    """

    def forward(self, mu, logvar):
        var = get_array_module(logvar).exp(logvar)
        self.save_for_backward(mu, var)
        return 0.5 * (mu * mu + var - 1 - logvar).sum(axis=-1)

    def backward(self, g):
        mu, var = self.saved
        g = g[..., None]
        return g * mu, g * 0.5 * (var - 1)


def gaussian_kl(mu_q: Tensor, logvar_q: Tensor, mu_p: Any = 0.0, logvar_p: Any = 0.0) -> Tensor:
    """KL(N(μ_q, diag e^logvar_q) ‖ N(μ_p, diag e^logvar_p)) per row, in nats.

    = ½ Σ_d (logvar_p − logvar_q + (e^logvar_q + (μ_q − μ_p)²)·e^−logvar_p − 1). ``mu_p`` and
    ``logvar_p`` (tensors or numbers, broadcast against μ_q) default to the standard normal
    N(0, I), the VAE's prior, which takes the fused ``GaussianKL``; any other p is composed from
    ops, so its gradient reaches μ_p and logvar_p too.
    """
    if mu_q.shape != logvar_q.shape:
        raise ValueError(f"gaussian_kl needs mu_q and logvar_q of one shape, got {mu_q.shape} and {logvar_q.shape}")
    if _is_zero(mu_p) and _is_zero(logvar_p):
        return GaussianKL()(mu_q, logvar_q)
    xp = get_array_module(mu_q.data)
    mu_p, logvar_p = (v if isinstance(v, Tensor) else Tensor(xp.asarray(v, dtype=mu_q.dtype)) for v in (mu_p, logvar_p))
    squared_distance = (mu_q - mu_p) * (mu_q - mu_p)
    per_dimension = logvar_p - logvar_q + (exp(logvar_q) + squared_distance) * exp(-logvar_p) - 1
    return (per_dimension * 0.5).sum(axis=-1)


def _is_zero(value: Any) -> bool:
    """True for the number 0 (the standard normal's mean and log-variance), False for anything else."""
    return isinstance(value, (int, float)) and value == 0


# --- the elementwise ops also as Tensor methods, as in PyTorch -----------------------
Tensor.exp = exp
Tensor.log = log
Tensor.sqrt = sqrt
Tensor.tanh = tanh
Tensor.sigmoid = sigmoid
Tensor.relu = relu
Tensor.abs = Tensor.__abs__ = abs
Tensor.clamp = clamp
Tensor.max = amax
Tensor.min = amin
Tensor.softmax = softmax
Tensor.unsqueeze = unsqueeze
Tensor.squeeze = squeeze
Tensor.flatten = flatten
