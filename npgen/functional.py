"""Primitive ops (imported as ``F``): each forward sits next to its vector-Jacobian product.

Notation in the docstrings: x is the input, y the output, g = ∂L/∂y the upstream
gradient, and each backward returns ∂L/∂x = gᵀ ∂y/∂x. Ops that would overflow
(exp of a large logit, log of a tiny probability) are written in stable forms:
softplus(x) = max(x, 0) + log(1 + e^−|x|) never exponentiates a positive number.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from .backend import get_array_module
from .core import FloatFunction, Function, Tensor, result_type, unbroadcast

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


class LeakyReLU(FloatFunction):
    """y = x·slope(x) with slope 1 where x > 0, a elsewhere; ∂L/∂x = g·slope(x)."""

    def __init__(self, negative_slope: float):
        self.a = negative_slope
        self.label = f"LeakyReLU({negative_slope})"  # its name in a graph drawing

    def forward(self, x):
        # Arithmetic on a float slope, not xp.where: numpy's where branches per element and is
        # ~50x slower than a multiply on random signs; the slope also serves backward as is.
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
    return LeakyReLU(negative_slope)(x)


def softplus(x: Tensor) -> Tensor:
    """Elementwise log(1 + eˣ), stable for large |x|."""
    return Softplus()(x)


def log_sigmoid(x: Tensor) -> Tensor:
    """Elementwise log σ(x), stable for large |x| (never log of a sigmoid)."""
    return LogSigmoid()(x)


# --- linear algebra and shapes -------------------------------------------------------


class Linear(FloatFunction):
    """y = x Wᵀ + b (W of shape (out, in), as in PyTorch).

    ∂L/∂x = g W,  ∂L/∂W = gᵀ x,  ∂L/∂b = Σ_rows g.
    """

    def forward(self, x, weight, bias=None):
        if x.ndim == 0 or weight.ndim != 2 or x.shape[-1] != weight.shape[1]:
            raise ValueError(
                f"linear: input of shape {x.shape} does not fit weight of shape {weight.shape} "
                f"(a weight is (out_features, in_features); in_features={weight.shape[-1]} is the input's last axis)"
            )
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
    return Linear()(x, weight) if bias is None else Linear()(x, weight, bias)


class Concatenate(Function):
    """y = [x₁, x₂, …] along ``axis``; each xᵢ gets back its own slice of g."""

    def __init__(self, axis: int):
        self.axis = axis

    def forward(self, *xs):
        self.save_for_backward([x.shape[self.axis] for x in xs])
        return get_array_module(*xs).concatenate(xs, axis=self.axis)

    def backward(self, g):
        bounds = list(itertools.accumulate(self.saved[0][:-1]))
        return tuple(get_array_module(g).split(g, bounds, axis=self.axis))


class Split(Function):
    """(y₁, y₂, …) = pieces of x along ``axis``; g of x is the pieces' gs put back together."""

    def __init__(self, sections: int | Sequence[int], axis: int):
        self.sections, self.axis = sections, axis

    def forward(self, x):
        return tuple(get_array_module(x).split(x, self.sections, axis=self.axis))

    def backward(self, *gs):
        return get_array_module(*gs).concatenate(gs, axis=self.axis)


def concatenate(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join tensors along an existing axis."""
    return Concatenate(axis)(*tensors)


def split(x: Tensor, indices_or_sections: int | Sequence[int], axis: int = 0) -> tuple[Tensor, ...]:
    """Cut x into equal sections, or at the given indices, along ``axis`` (numpy.split semantics)."""
    if not isinstance(indices_or_sections, int):
        indices_or_sections = list(indices_or_sections)
    return Split(indices_or_sections, axis)(x)


# --- batch normalisation --------------------------------------------------------------


class BatchNorm(FloatFunction):
    """y = γ·x̂ + β with x̂ = (x − μ)/√(σ² + ε), per feature, μ and σ² the batch's mean and biased variance.

    μ and σ² come in as constants, but they are functions of x; the VJP accounts for that. With
    x̂ and s = 1/√(σ² + ε), and ĝ = g·γ (means over the batch):
    ∂L/∂x = s·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)),  ∂L/∂γ = Σ g·x̂,  ∂L/∂β = Σ g.
    """

    def __init__(self, eps: float):
        self.eps = eps

    def forward(self, x, weight, bias, mean, var):
        inv_std = 1 / get_array_module(x).sqrt(var + self.eps)
        x_hat = (x - mean) * inv_std
        self.save_for_backward(x_hat, inv_std, weight)
        return x_hat * weight + bias

    def backward(self, g):
        x_hat, inv_std, weight = self.saved
        g_hat = g * weight
        gx = inv_std * (g_hat - g_hat.mean(axis=0) - x_hat * (g_hat * x_hat).mean(axis=0))
        return gx, (g * x_hat).sum(axis=0), g.sum(axis=0), None, None


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
    if not training:
        scale = weight / sqrt(Tensor(running_var) + eps)
        return (x - Tensor(running_mean)) * scale + bias
    n = x.shape[0]
    if n < 2:
        raise ValueError("batch_norm in training mode needs more than one sample per batch")
    data = x.data.astype(result_type(x, weight, bias, float_only=True), copy=False)  # the op's own dtype
    mean, var = data.mean(axis=0), data.var(axis=0)
    y = BatchNorm(eps)(x, weight, bias, mean, var)
    running_mean *= 1 - momentum
    running_mean += momentum * mean
    running_var *= 1 - momentum
    running_var += (momentum * n / (n - 1)) * var
    return y


# --- normalised exponentials ---------------------------------------------------------


def _logsumexp(x: Any, axis: int | None) -> Any:
    """log Σ e^x over ``axis`` (keeping it), as m + log Σ e^(x−m) with m = max x: no exponential overflows."""
    xp = get_array_module(x)
    m = x.max(axis=axis, keepdims=True)
    return m + xp.log(xp.exp(x - m).sum(axis=axis, keepdims=True))


class LogSumExp(FloatFunction):
    """y = log Σᵢ e^xᵢ = m + log Σᵢ e^(xᵢ−m) with m = max x; ∂L/∂x = g·softmax(x)."""

    def __init__(self, axis: int | None, keepdims: bool):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        y = _logsumexp(x, self.axis)
        self.save_for_backward(x, y)
        return y if self.keepdims else y.squeeze(self.axis) if self.axis is not None else y.reshape(())

    def backward(self, g):
        x, y = self.saved
        g = g.reshape(y.shape)  # give back the reduced axis so g broadcasts against x
        return g * get_array_module(x).exp(x - y)


class LogSoftmax(FloatFunction):
    """y = x − logsumexp(x); ∂L/∂x = g − softmax(x)·Σ g."""

    def __init__(self, axis: int):
        self.axis = axis

    def forward(self, x):
        y = x - _logsumexp(x, self.axis)
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


# --- losses --------------------------------------------------------------------------


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


class BCEWithLogits(FloatFunction):
    """ℓ = −[t log σ(x) + (1−t) log(1−σ(x))] = softplus(x) − t·x.

    ∂ℓ/∂x = σ(x) − t,  ∂ℓ/∂t = −x.
    """

    def forward(self, x, t):
        self.save_for_backward(x, t)
        return _softplus(x) - t * x

    def backward(self, g):
        x, t = self.saved
        gx = unbroadcast(g * (_sigmoid(x) - t), x.shape)
        gt = unbroadcast(-g * x, t.shape) if self.needs_input_grad[1] else None
        return gx, gt


def _broadcast_shape(*shapes: tuple) -> tuple | None:
    """The shape that ``shapes`` broadcast to, or None if they do not."""
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        return None


def binary_cross_entropy_with_logits(logits: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Bernoulli negative log-likelihood of ``target`` under probabilities σ(logits), in nats."""
    target_shape = tuple(target.shape) if hasattr(target, "shape") else np.shape(target)
    if _broadcast_shape(logits.shape, target_shape) != logits.shape:  # (N,) targets, (N, 1) logits: (N, N)
        raise ValueError(
            f"binary_cross_entropy_with_logits: target shape {target_shape} does not fit logits {logits.shape}"
        )
    return _reduce(BCEWithLogits()(logits, target), reduction)


class CrossEntropy(FloatFunction):
    """ℓₙ = −log softmax(xₙ)[yₙ] for integer labels y; ∂ℓₙ/∂xₙ = softmax(xₙ) − onehot(yₙ)."""

    def __init__(self, labels: Any):
        self.labels = labels  # not an input: labels have no gradient and keep their integer dtype

    def forward(self, x):
        xp = get_array_module(x, self.labels)
        log_p = x - _logsumexp(x, -1)
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
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy expects logits of shape (N, C), got {logits.shape}")
    labels = labels.data if isinstance(labels, Tensor) else labels
    labels = labels if hasattr(labels, "dtype") else get_array_module(logits.data).asarray(labels)
    if labels.shape != (logits.shape[0],) or labels.dtype.kind not in "iu":
        raise ValueError(
            f"cross_entropy expects {logits.shape[0]} integer labels, got {labels.dtype} of shape {labels.shape}"
        )
    if ((labels < 0) | (labels >= logits.shape[1])).any():  # a negative label would silently pick a class from the end
        raise ValueError(f"cross_entropy: labels must lie in 0..{logits.shape[1] - 1}")
    return _reduce(CrossEntropy(labels)(logits), reduction)


class GaussianKL(FloatFunction):
    """KL(N(μ, σ²) ‖ N(0, I)) per row = ½ Σ_d (μ² + σ² − 1 − log σ²), with log σ² = ``logvar``.

    ∂KL/∂μ = μ,  ∂KL/∂logvar = ½(σ² − 1).
    """

    def forward(self, mu, logvar):
        var = get_array_module(logvar).exp(logvar)
        self.save_for_backward(mu, var)
        return 0.5 * (mu * mu + var - 1 - logvar).sum(axis=-1)

    def backward(self, g):
        mu, var = self.saved
        g = g[..., None]
        return g * mu, g * 0.5 * (var - 1)


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """Closed-form KL divergence of N(μ, diag(exp(logvar))) from N(0, I), one value per row (nats)."""
    if mu.shape != logvar.shape:
        raise ValueError(f"gaussian_kl needs mu and logvar of one shape, got {mu.shape} and {logvar.shape}")
    return GaussianKL()(mu, logvar)


# --- the elementwise ops also as Tensor methods, as in PyTorch -----------------------
Tensor.exp = exp
Tensor.log = log
Tensor.sqrt = sqrt
Tensor.tanh = tanh
Tensor.sigmoid = sigmoid
Tensor.relu = relu
