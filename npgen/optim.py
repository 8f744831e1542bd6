"""Optimizers: SGD (with momentum) and Adam, updating parameters in place as PyTorch does; gradient clipping;
an exponential moving average of a model's weights."""

from __future__ import annotations

import copy
import math
import threading
from collections.abc import Iterable
from typing import Any, Callable

import numpy as np

from . import backend, checks
from .core import Tensor, no_grad
from .nn import BatchNorm1d, Module


class Optimizer:
    """Holds the parameters (a list: fixed order) and per-parameter state, keyed by position."""

    def __init__(self, params: Iterable[Tensor], defaults: dict[str, Any]):
        params = checks.tensor_list(type(self).__name__, params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        if len({id(p) for p in params}) != len(params):  # it would be stepped twice per step
            raise ValueError("optimizer got the same parameter twice; model.parameters() lists a shared one once")
        self.param_groups = [{"params": params, **defaults}]
        self.state: dict[int, dict[str, Any]] = {}

    def _params(self) -> Iterable[tuple[int, Tensor, dict[str, Any]]]:
        """(index, parameter, its group) for every parameter with a gradient."""
        i = 0
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    yield i, p, group
                i += 1

    def _state_for(self, i: int, p: Tensor, names: tuple[str, ...]) -> dict[str, Any]:
        """The state of parameter i, created lazily (zeros) on the parameter's device, moved if it moved."""
        state = self.state.get(i)
        if state is None:
            xp = backend.get_array_module(p.data)
            state = self.state[i] = {"step": 0, **{name: xp.zeros_like(p.data) for name in names}}
        elif backend.backend_of(state[names[0]]) is not backend.backend_of(p.data):
            for name in names:
                state[name] = backend.move(state[name], p.device)
        return state

    def zero_grad(self) -> None:
        """Forget the gradients of all parameters (set them to None)."""
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def state_dict(self) -> dict[str, Any]:
        """Hyperparameters and per-parameter state, in PyTorch's layout."""
        groups = [{k: v for k, v in g.items() if k != "params"} for g in self.param_groups]
        return {"state": {i: dict(s) for i, s in self.state.items()}, "param_groups": groups}

    def check_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Raise a ValueError if ``state_dict`` does not fit these parameters."""
        params = [p for g in self.param_groups for p in g["params"]]
        if len(state_dict["param_groups"]) != len(self.param_groups):
            raise ValueError("optimizer state has a different number of parameter groups")
        for i, entries in state_dict["state"].items():
            if not 0 <= int(i) < len(params):
                raise ValueError(f"optimizer state names parameter {i}, but there are only {len(params)}")
            for name, value in entries.items():
                if name != "step" and tuple(value.shape) != params[int(i)].shape:
                    raise ValueError(
                        f"optimizer state {name} of parameter {i}: "
                        f"expected shape {params[int(i)].shape}, got {tuple(value.shape)}"
                    )

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore hyperparameters and state; checked against the parameters first, all or nothing."""
        self.check_state_dict(state_dict)
        params = [p for g in self.param_groups for p in g["params"]]
        for group, saved in zip(self.param_groups, state_dict["param_groups"]):
            group.update({k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k != "params"})
        self.state = {}
        for i, entries in state_dict["state"].items():
            p = params[int(i)]
            self.state[int(i)] = {
                name: int(value) if name == "step" else backend.move(value, p.device).astype(p.dtype, copy=True)
                for name, value in entries.items()
            }


def _check_hyperparameters(**values: float) -> None:
    """Learning rate, momentum, eps and weight decay must be finite and not negative (as PyTorch checks)."""
    for name, value in values.items():
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"invalid {name}: {value} (it must be a finite number ≥ 0)")


class SGD(Optimizer):
    """p ← p − lr·b with b ← μ·b + g (b = g without momentum), g including weight_decay·p."""

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-2, momentum: float = 0.0, weight_decay: float = 0.0):
        _check_hyperparameters(lr=lr, momentum=momentum, weight_decay=weight_decay)
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})

    def step(self) -> None:
        """Update every parameter that has a gradient."""
        for i, p, group in self._params():
            g = p.grad if not group["weight_decay"] else p.grad + group["weight_decay"] * p.data
            if group["momentum"]:
                state = self._state_for(i, p, ("momentum_buffer",))
                buf = state["momentum_buffer"]
                buf *= group["momentum"]
                buf += g
                g = buf
            p.data -= group["lr"] * g
            p._version[0] += 1  # a graph that saved p before this step can no longer run backward


def adam_update(p: Any, g: Any, m: Any, v: Any, t: int, lr: float, betas: tuple[float, float], eps: float) -> None:
    """One Adam step of one parameter, in place, as the paper writes it (Kingma & Ba, 2015, Algorithm 1).

        m ← β₁m + (1−β₁)g           the running mean of the gradient
        v ← β₂v + (1−β₂)g²          the running mean of its square
        m̂ = m/(1−β₁ᵗ),  v̂ = v/(1−β₂ᵗ)   bias corrections (m and v start at zero)
        p ← p − lr·m̂/(√v̂ + ε)       ε added to √v̂, as PyTorch does

    This is the reference; ``Adam(fast=True)`` computes the same numbers in fewer passes.
    """
    b1, b2 = betas
    xp = backend.get_array_module(p)
    m *= b1
    m += (1 - b1) * g
    v *= b2
    v += (1 - b2) * g * g
    m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
    p -= lr * m_hat / (xp.sqrt(v_hat) + eps)


# --- fast on the host: the same update in cache-sized chunks --------------------------------------

# Elements per chunk: p, g, m, v and the scratch (1.25 MiB of float32) stay in one core's cache between
# passes; the best size inside training steps (benchmarks/adam_chunks.py; one core, see RESULTS.md).
CHUNK = 1 << 16


def _chunks(p: Any, g: Any, m: Any, v: Any) -> list[tuple]:
    """Cache-sized pieces (p, g, m, v) of one parameter's update, as flat views.

    Whole-array numpy operations stream every intermediate through main memory, a dozen passes
    over each of the flow's 18M parameters; piece by piece, the passes after the first hit the
    cache. p, m and v are updated through the views, so they must be contiguous; they are unless
    someone replaced .data by a strided array, which is then updated whole.
    """
    if not all(a.flags.c_contiguous for a in (p, m, v)):
        return [(p, g, m, v)]
    p, g, m, v = (a.reshape(-1) for a in (p, g, m, v))
    return [(p[i : i + CHUNK], g[i : i + CHUNK], m[i : i + CHUNK], v[i : i + CHUNK]) for i in range(0, p.size, CHUNK)]


def _adam_chunk(p: Any, g: Any, m: Any, v: Any, constants: tuple[float, float, float, float, float]) -> None:
    """``adam_update`` on one chunk, in fewer passes: p ← p − step_size·√(1−β₂ᵗ)·m / (√v + ε√(1−β₂ᵗ)).

    With step_size = lr/(1−β₁ᵗ), adam_update's last line is p − step_size·m / (√v/√(1−β₂ᵗ) + ε);
    multiplied through by √(1−β₂ᵗ) it needs one pass fewer. Every intermediate goes into a reused
    scratch buffer, never a new array.
    """
    b1, b2, step_size, sqrt_bc2, eps = constants
    xp = backend.get_array_module(p)
    tmp = _scratch(xp, p.shape, p.dtype)
    m *= b1
    xp.multiply(g, 1 - b1, out=tmp)
    m += tmp
    v *= b2
    xp.multiply(g, g, out=tmp)
    tmp *= 1 - b2
    v += tmp
    xp.sqrt(v, out=tmp)
    tmp += eps * sqrt_bc2
    xp.divide(m, tmp, out=tmp)
    tmp *= -step_size * sqrt_bc2
    p += tmp


_scratch_buffers: dict[tuple, Any] = {}


def _scratch(xp: Any, shape: tuple, dtype: Any) -> Any:
    """A work array of ``shape``: a view into one flat buffer per (module, dtype, thread), grown as needed.

    Per thread, because a program may step two optimizers in two threads at once.
    """
    size = math.prod(shape)
    key = (xp.__name__, dtype, threading.get_ident())
    buffer = _scratch_buffers.get(key)
    if buffer is None or buffer.size < size:
        buffer = _scratch_buffers[key] = xp.empty(size, dtype)
    return buffer[:size].reshape(shape)


# --- fast on a GPU: the same update as one kernel -------------------------------------------------

# The fused Adam update as a cupy ElementwiseKernel: (input parameters, output parameters, body, name).
# The body is adam_update, element by element, with bc1 = 1 − β₁ᵗ and bc2 = 1 − β₂ᵗ: one pass over memory.
ADAM_KERNEL = (
    "T g, T b1, T b2, T lr, T bc1, T bc2, T eps",
    "T p, T m, T v",
    """
m = b1 * m + (1 - b1) * g;
v = b2 * v + (1 - b2) * g * g;
p -= lr * (m / bc1) / (sqrt(v / bc2) + eps);
""",
    "npgen_adam",
)
_adam_kernels: dict[Any, Any] = {}  # compiled once per array module


def fused_adam(array: Any) -> Callable | None:
    """On a backend that compiles elementwise kernels (cupy), Adam's update as one kernel; None elsewhere."""
    xp = backend.get_array_module(array)
    if not hasattr(xp, "ElementwiseKernel"):
        return None
    if xp not in _adam_kernels:
        _adam_kernels[xp] = xp.ElementwiseKernel(*ADAM_KERNEL)
    kernel = _adam_kernels[xp]

    def update(g: Any, b1: float, b2: float, lr: float, bc1: float, bc2: float, eps: float, p: Any, m: Any, v: Any):
        scalar = p.dtype.type
        kernel(g, scalar(b1), scalar(b2), scalar(lr), scalar(bc1), scalar(bc2), scalar(eps), p, m, v)

    return update


class Adam(Optimizer):
    """Adam with PyTorch's bias correction: ``adam_update`` on every parameter that has a gradient.

    ``fast`` (the default) gets the same numbers another way: on a GPU one fused kernel per
    parameter; on the host, cache-sized chunks with fewer passes over memory. ``fast=False``
    runs ``adam_update`` as written.
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        fast: bool = True,
    ):
        _check_hyperparameters(lr=lr, eps=eps, weight_decay=weight_decay)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"Adam's betas must be two numbers in [0, 1), got {betas!r}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay})
        self.fast = fast

    def step(self) -> None:
        """Update every parameter that has a gradient."""
        for i, p, group in self._params():
            p._version[0] += 1  # a graph that saved p before this step can no longer run backward
            state = self._state_for(i, p, ("exp_avg", "exp_avg_sq"))
            state["step"] += 1
            t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
            g = p.grad if not group["weight_decay"] else p.grad + group["weight_decay"] * p.data
            if not self.fast:
                adam_update(p.data, g, m, v, t, group["lr"], group["betas"], group["eps"])
                continue
            (b1, b2), eps = group["betas"], group["eps"]
            fused = fused_adam(p.data)
            if fused is not None:  # one pass over memory: a single GPU kernel
                fused(g, b1, b2, group["lr"], 1 - b1**t, 1 - b2**t, eps, p.data, m, v)
                continue
            constants = (b1, b2, group["lr"] / (1 - b1**t), math.sqrt(1 - b2**t), eps)
            for chunk in _chunks(p.data, g, m, v):
                _adam_chunk(*chunk, constants)


def cosine_annealing(peak: float, step: int, total_steps: int) -> float:
    """The rate for ``step`` (0-based) of ``total_steps``, annealed from ``peak`` to 0: peak·½(1 + cos(π·step/total)).

    The closed form of torch.optim.lr_scheduler.CosineAnnealingLR with eta_min = 0 and T_max =
    total_steps. Big steps early, while far from a minimum; ever smaller ones towards the end,
    where a constant rate would keep the weights jittering around it.
    """
    checks.number("cosine_annealing", "peak", peak, checks.NONNEGATIVE)
    if not 0 <= step <= total_steps or total_steps < 1:
        raise ValueError(f"cosine_annealing: step {step} is outside the schedule's 0..{total_steps} (total ≥ 1)")
    return peak * 0.5 * (1 + math.cos(math.pi * step / total_steps))


def clip_grad_norm(params: Iterable[Tensor], max_norm: float) -> float:
    """Scale all gradients by one factor so their global L2 norm is at most ``max_norm``; return the norm before.

    ‖g‖ = √(Σ_p Σ_i g_pi²); the factor is max_norm / (‖g‖ + 10⁻⁶) where that is below 1, as in
    torch.nn.utils.clip_grad_norm_. One rare batch with a huge gradient would otherwise fill Adam's
    moment estimates and push every parameter a full step along that batch's direction at once.
    """
    if not max_norm > 0:  # a negative bound would flip every gradient: ascent instead of descent
        raise ValueError(f"max_norm must be positive, got {max_norm}")
    grads = [p.grad for p in checks.tensor_list("clip_grad_norm", params) if p.grad is not None]
    if not grads:
        return 0.0
    # vdot of the flattened gradient with itself: a BLAS dot, no squared temporary of the gradient's size;
    # the sum stays on the device, so a GPU run waits for one read back, not one per parameter
    squares = [backend.get_array_module(g).vdot(g.ravel(), g.ravel()) for g in grads]
    norm = math.sqrt(float(sum(squares[1:], squares[0])))
    factor = max_norm / (norm + 1e-6)
    if not factor >= 1:  # also for a NaN norm, which then spreads to every gradient, as in PyTorch
        for g in grads:
            g *= factor
    return norm


# --- an averaged copy of a model: weights that move slower than the optimizer's --------------------
class ExponentialMovingAverage(Module):
    """A copy of ``module`` whose parameters follow its own: θ_avg ← β·θ_avg + (1 − β)·θ at each ``update``.

    The average of the last ~1/(1 − β) steps' weights: where training oscillates around a good
    point (a GAN's generator in its minimax game), the average sits nearer that point than any one
    step. The semantics of PyTorch's ``AveragedModel(module, multi_avg_fn=get_ema_multi_avg_fn(β))``:
    the first update copies the parameters, each later one moves them 1 − β of the way to the
    model's; buffers (BatchNorm's running statistics) are copied from the model, not averaged, and
    ``state_dict`` holds ``n_averaged`` and ``module.<name>``, as PyTorch's does. The copied
    statistics were measured with the live weights; ``update_batch_norm`` measures them for the
    averaged ones.
    """

    def __init__(self, module: Module, decay: float = 0.999):
        super().__init__()
        checks.number("ExponentialMovingAverage", "decay", decay, checks.PROBABILITY)
        self.decay = decay
        self.module = copy.deepcopy(module)
        self.register_buffer("n_averaged", backend.get_array_module(module.parameters()[0].data).zeros((), np.int64))

    def forward(self, *args: Any) -> Any:
        return self.module(*args)

    def update(self, model: Module) -> None:
        """Move the averaged parameters towards ``model``'s (copy them on the first call); copy its buffers."""
        self._check_same_layout(model)
        with no_grad():
            for average, current in zip(self.module.parameters(), model.parameters()):
                if self.n_averaged == 0:
                    average.data[...] = current.data
                else:  # θ_avg + (1 − β)(θ − θ_avg) = β·θ_avg + (1 − β)·θ, as torch's lerp computes it
                    average.data += (1 - self.decay) * (current.data - average.data)
                average._version[0] += 1
            for (_, average), (_, current) in zip(self.module.named_buffers(), model.named_buffers()):
                average[...] = current
        self.n_averaged += 1

    def _check_same_layout(self, model: Module) -> None:
        """Refuse a model whose parameters and buffers differ in name or shape from the averaged copy's."""
        ours = [(n, tuple(a.shape)) for n, a in [*self.module.named_parameters(), *self.module.named_buffers()]]
        theirs = [(n, tuple(a.shape)) for n, a in [*model.named_parameters(), *model.named_buffers()]]
        if ours != theirs:
            different = next((f"{a} against {b}" for a, b in zip(ours, theirs) if a != b), "a different count")
            raise ValueError(f"ExponentialMovingAverage.update: the model is not the one averaged ({different})")


def update_batch_norm(module: Module, batches: Iterable[Any]) -> None:
    """Measure the BatchNorm layers' running statistics afresh: the plain average over ``batches`` (no gradient).

    As ``torch.optim.swa_utils.update_bn``: the statistics are reset, then the k-th batch enters
    with momentum 1/k, so after K batches the running mean and variance are the mean of the K
    batches' statistics. For an averaged model, whose weights never produced the statistics
    its buffers hold; the module's mode and momenta are restored afterwards.
    """
    norms = [m for _, m in module.named_modules() if isinstance(m, BatchNorm1d)]
    momenta, training = [bn.momentum for bn in norms], module.training
    for bn in norms:
        bn.running_mean[...], bn.running_var[...], bn.num_batches_tracked[...] = 0, 1, 0
    module.train()
    try:
        with no_grad():
            for k, x in enumerate(batches, 1):
                for bn in norms:
                    bn.momentum = 1 / k
                module(x)
    finally:
        for bn, momentum in zip(norms, momenta):
            bn.momentum = momentum
        module.train(training)
