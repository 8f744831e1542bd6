"""Numerical gradient checking: compare backward() with central finite differences.

For inputs x and an output y = f(x), the finite-difference Jacobian column for element
x_j is (f(x + ε e_j) − f(x − ε e_j)) / 2ε, accurate to O(ε²) in float64. backward()
gives rows of the same Jacobian: with upstream gradient v it returns vᵀJ.

Two traps are avoided on purpose. An all-ones upstream gradient would pass a backward
that forgets to multiply by its incoming gradient, so the upstream vectors here are
random. And float32 is too coarse for differences of size ε, so inputs must be float64.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable

import numpy as np

from . import backend, checks
from .core import Tensor, is_grad_enabled, no_grad


class GradcheckError(RuntimeError):
    """backward() disagrees with finite differences."""


def gradcheck(
    fn: Callable[..., Any],
    inputs: Tensor | Sequence[Tensor],
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    mode: str = "full",
    raise_exception: bool = True,
    seed: int = 0,
) -> bool:
    """Check the gradients of ``fn`` with respect to every input that requires grad.

    ``mode='full'`` compares whole Jacobians, one-hot row by one-hot row, plus one random
    projection vᵀJ, and names the worst (output, input) element on failure.
    ``mode='fast'`` compares one random projection vᵀJu per output and falls back to
    full mode to report a failure. Returns True, or False / raises GradcheckError.
    """
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    _check_inputs(inputs)
    _check_settings(eps, atol, rtol)
    rng = np.random.default_rng(seed)  # its own stream: checking must not shift npgen's
    if mode == "full":
        problem = _full_check(fn, inputs, eps, atol, rtol, rng)
    elif mode == "fast":
        problem = _fast_check(fn, inputs, eps, atol, rtol, rng)
        if problem is not None:
            problem = _full_check(fn, inputs, eps, atol, rtol, rng) or problem
    else:
        raise ValueError(f"mode must be 'full' or 'fast', got {mode!r}")
    if problem is not None and raise_exception:
        raise GradcheckError(problem)
    return problem is None


def _check_inputs(inputs: list[Tensor]) -> None:
    for i, x in enumerate(inputs):
        if not isinstance(x, Tensor):
            raise TypeError(f"gradcheck input {i} is a {type(x).__name__}, not a Tensor")
        if x.requires_grad and x.dtype != np.float64:
            raise TypeError(f"gradcheck input {i} is {x.dtype}; finite differences need float64 (use .double())")
        if x.requires_grad and x.creator is not None:
            raise ValueError(f"gradcheck input {i} is not a leaf; pass leaf tensors (x.detach() with requires_grad)")
        if not x.data.flags.c_contiguous:
            x.data = x.data.copy()  # perturbing through a flat view needs contiguous memory
    if not any(x.requires_grad for x in inputs):
        raise ValueError("gradcheck: no input requires grad, so there is nothing to check")


def _check_settings(eps: float, atol: float, rtol: float) -> None:
    """A step of 0 compares nothing and a NaN or negative tolerance passes everything or nothing: refused."""
    checks.number("gradcheck", "eps", eps, checks.POSITIVE)
    checks.number("gradcheck", "atol", atol, checks.NONNEGATIVE)
    checks.number("gradcheck", "rtol", rtol, checks.NONNEGATIVE)


def _outputs(fn: Callable[..., Any], inputs: list[Tensor]) -> list[Tensor]:
    out = fn(*inputs)
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _analytic_vjp(fn: Callable[..., Any], inputs: list[Tensor], k: int, v: np.ndarray) -> list[np.ndarray]:
    """vᵀ ∂y_k/∂x for every input x that requires grad, by one fresh forward and backward."""
    saved = [x.grad for x in inputs]
    for x in inputs:
        x.grad = None
    y = _outputs(fn, inputs)[k]
    if y.requires_grad:
        y.backward(backend.move(v.astype(y.dtype), y.device))
    grads = [
        np.zeros(x.shape) if x.grad is None else backend.to_numpy(x.grad).astype(np.float64)
        for x in inputs
        if x.requires_grad
    ]
    for x, g in zip(inputs, saved):
        x.grad = g
    return grads


def _evaluate(fn: Callable[..., Any], inputs: list[Tensor]) -> list[np.ndarray]:
    with no_grad():
        return [backend.to_numpy(y.data).astype(np.float64) for y in _outputs(fn, inputs)]


def _numerical_jacobians(fn: Callable[..., Any], inputs: list[Tensor], eps: float) -> list[list[np.ndarray]]:
    """J[k][i] of shape (y_k.size, x_i.size), one central difference per input element."""
    checked = [x for x in inputs if x.requires_grad]
    sizes = [y.size for y in _evaluate(fn, inputs)]
    jac = [[np.zeros((n, x.size)) for x in checked] for n in sizes]
    for i, x in enumerate(checked):
        flat = x.data.reshape(-1)  # a view: writing to it perturbs x
        for j in range(x.size):
            original = float(flat[j])
            flat[j] = original + eps
            plus = _evaluate(fn, inputs)
            flat[j] = original - eps
            minus = _evaluate(fn, inputs)
            flat[j] = original
            for k in range(len(sizes)):
                jac[k][i][:, j] = (plus[k] - minus[k]).reshape(-1) / (2 * eps)
    return jac


def _mismatch(analytic: np.ndarray, numerical: np.ndarray, atol: float, rtol: float) -> int | None:
    """Flat index of the worst violation of |a − n| ≤ atol + rtol·|n|, or None if there is none.

    A NaN or an infinity on either side is a violation (the worst, the first of them) unless both
    sides hold the same infinity: written as "not within tolerance", a comparison with NaN fails.
    """
    with np.errstate(invalid="ignore"):  # ∞ − ∞ is NaN here, and counts as a violation
        excess = np.abs(analytic - numerical) - (atol + rtol * np.abs(numerical))
        bad = ~(excess <= 0) & ~(analytic == numerical)
    if not bad.any():
        return None
    return int(np.argmax(np.where(bad, np.where(np.isfinite(excess), excess, np.inf), -np.inf)))


def _not_finite(outputs: list[np.ndarray]) -> str | None:
    """A message naming the first output element that is NaN or infinite: no derivative can be checked there."""
    for k, y in enumerate(outputs):
        bad = np.flatnonzero(~np.isfinite(y))
        if bad.size:
            where = f"output[{k}]{_at(bad[0], y.shape)}"
            return f"gradcheck failed: {where} is {y.flat[bad[0]]} (the forward pass is not finite)"
    return None


def _full_check(
    fn: Callable[..., Any], inputs: list[Tensor], eps: float, atol: float, rtol: float, rng: np.random.Generator
) -> str | None:
    outputs = _evaluate(fn, inputs)
    if (problem := _not_finite(outputs)) is not None:
        return problem
    numerical = _numerical_jacobians(fn, inputs, eps)
    positions = [n for n, x in enumerate(inputs) if x.requires_grad]
    for k, y in enumerate(outputs):
        rows = [_analytic_vjp(fn, inputs, k, onehot) for onehot in _onehots(y.shape)]  # rows[r][i]
        for i, num in enumerate(numerical[k]):
            analytic = np.array([row[i].reshape(-1) for row in rows]).reshape(num.shape)
            found = _mismatch(analytic, num, atol, rtol)
            if found is not None:
                r, c = np.unravel_index(found, num.shape)
                return (
                    f"gradcheck failed: d output[{k}]{_at(r, y.shape)} / d input[{positions[i]}]"
                    f"{_at(c, inputs[positions[i]].shape)}: analytic {analytic[r, c]:.6g}, "
                    f"numerical {num[r, c]:.6g} (tolerance atol={atol} + rtol={rtol}·|numerical|)"
                )
        v = rng.standard_normal(y.shape)
        for i, g in enumerate(_analytic_vjp(fn, inputs, k, v)):
            expected = v.reshape(-1) @ numerical[k][i]
            found = _mismatch(g.reshape(-1), expected, atol, rtol)
            if found is not None:
                c = found
                return (
                    f"gradcheck failed for a random upstream gradient: d output[{k}] / d input[{positions[i]}]"
                    f"{_at(c, inputs[positions[i]].shape)}: analytic {g.flat[c]:.6g}, numerical {expected[c]:.6g} "
                    "(the one-hot rows agree: does backward use its incoming gradient?)"
                )
    return None


def _fast_check(
    fn: Callable[..., Any], inputs: list[Tensor], eps: float, atol: float, rtol: float, rng: np.random.Generator
) -> str | None:
    checked = [x for x in inputs if x.requires_grad]
    directions = [rng.standard_normal(x.shape) for x in checked]
    originals = [x.data.copy() for x in checked]

    def evaluate_at(sign: float) -> list[np.ndarray]:
        for x, x0, u in zip(checked, originals, directions):
            x.data[...] = x0 + sign * eps * backend.move(u, x.device)
        return _evaluate(fn, inputs)

    plus, minus = evaluate_at(+1.0), evaluate_at(-1.0)
    for x, x0 in zip(checked, originals):
        x.data[...] = x0
    if (problem := _not_finite(_evaluate(fn, inputs))) is not None:
        return problem
    for k, (yp, ym) in enumerate(zip(plus, minus)):
        v = rng.standard_normal(yp.shape)
        numerical = float(np.sum(v * (yp - ym)) / (2 * eps))
        analytic = sum(float(np.sum(g * u)) for g, u in zip(_analytic_vjp(fn, inputs, k, v), directions))
        if _mismatch(np.array([analytic]), np.array([numerical]), atol, rtol) is not None:
            return f"gradcheck (fast) failed for output[{k}]: vᵀJu analytic {analytic:.6g}, numerical {numerical:.6g}"
    return None


def _onehots(shape: tuple) -> list[np.ndarray]:
    size = int(np.prod(shape))
    return [np.eye(1, size, r).reshape(shape) for r in range(size)]


def _at(flat_index: int, shape: tuple) -> str:
    return str(tuple(int(i) for i in np.unravel_index(flat_index, shape))) if shape else ""


def jacobian(fn: Callable[[Tensor], Tensor], x: Any) -> np.ndarray:
    """The Jacobian J[i…, j…] = ∂fn(x)[i…]/∂x[j…] by brute force: one forward and backward per output element.

    Row i is vᵀJ with v the one-hot upstream gradient of output element i, so J costs as many
    passes as fn(x) has elements: meant for small inputs (a flow on 4×4 images, a test). ``x`` is a
    Tensor or an array (kept on its device and dtype; integers become float64); J is a float64
    host array of shape fn(x).shape + x.shape, the layout of ``torch.autograd.functional.jacobian``.
    """
    if not is_grad_enabled():
        raise RuntimeError("jacobian needs gradients: call it outside no_grad() (under it, every row would be 0)")
    data = x.data if isinstance(x, Tensor) else backend.get_backend().xp.asarray(x)
    if data.dtype.kind != "f":
        data = data.astype(np.float64)
    shape = _output(fn, Tensor(data.copy())).shape
    rows = []
    for i in range(int(np.prod(shape))):
        leaf = Tensor(data.copy(), requires_grad=True)
        y = _output(fn, leaf)
        upstream = np.zeros(shape, dtype=y.dtype)
        upstream.flat[i] = 1
        if y.requires_grad:
            y.backward(backend.move(upstream, y.device))
        rows.append(np.zeros(data.shape) if leaf.grad is None else backend.to_numpy(leaf.grad).astype(np.float64))
    return np.stack(rows).reshape(shape + data.shape) if rows else np.zeros(shape + data.shape)


def _output(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """fn(x), or a TypeError that says what fn returned instead of one Tensor."""
    y = fn(x)
    if not isinstance(y, Tensor):
        raise TypeError(f"jacobian: fn must return one npgen Tensor, got {type(y).__name__}")
    return y
