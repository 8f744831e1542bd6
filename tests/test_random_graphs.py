"""Randomly composed graphs against PyTorch: chains of ops on random shapes, every gradient compared.

hypothesis draws a shape, three leaves that broadcast against it, and a program of up to eight
steps (elementwise functions, arithmetic with a leaf, reductions over a random axis, softmax-type
normalisations, axis swaps, repeated-index gathers, matrix products). Both libraries run the same
program on the same float64 numbers; the outputs, every leaf's gradient, and the gradients after
clip_grad_norm must agree. Skips where PyTorch or hypothesis is not installed.
"""

from __future__ import annotations

import numpy as np
import pytest

import npgen
from npgen import F

torch = pytest.importorskip("torch")
hypothesis = pytest.importorskip("hypothesis")
st = pytest.importorskip("hypothesis.strategies")


class NpgenSpelling:
    """The program's steps written with npgen."""

    tanh, sigmoid, exp, log, sqrt = F.tanh, F.sigmoid, F.exp, F.log, F.sqrt
    softplus, log_sigmoid = F.softplus, F.log_sigmoid
    leaky_relu = staticmethod(lambda h: F.leaky_relu(h, 0.1))
    sum = staticmethod(lambda h, axis: h.sum(axis=axis, keepdims=True))
    mean = staticmethod(lambda h, axis: h.mean(axis=axis))
    logsumexp = staticmethod(lambda h, axis: F.logsumexp(h, axis=axis, keepdims=True))
    log_softmax = staticmethod(F.log_softmax)
    gather = staticmethod(lambda h, index: h[..., np.array(index)])
    concatenate = staticmethod(lambda a, b: F.concatenate([a, b], axis=-1))
    tensor = staticmethod(lambda a: npgen.tensor(a, requires_grad=True))


class TorchSpelling:
    """The same steps written with PyTorch."""

    tanh, sigmoid, exp, log, sqrt = torch.tanh, torch.sigmoid, torch.exp, torch.log, torch.sqrt
    softplus, log_sigmoid = torch.nn.functional.softplus, torch.nn.functional.logsigmoid
    leaky_relu = staticmethod(lambda h: torch.nn.functional.leaky_relu(h, 0.1))
    sum = staticmethod(lambda h, axis: h.sum(dim=axis, keepdim=True))
    mean = staticmethod(lambda h, axis: h.mean(dim=axis))
    logsumexp = staticmethod(lambda h, axis: torch.logsumexp(h, axis, keepdim=True))
    log_softmax = staticmethod(lambda h, axis: torch.nn.functional.log_softmax(h, axis))
    gather = staticmethod(lambda h, index: h[..., torch.tensor(index)])
    concatenate = staticmethod(lambda a, b: torch.cat([a, b], dim=-1))
    tensor = staticmethod(lambda a: torch.tensor(a, requires_grad=True))


def _axis(h, k: int) -> int:
    """A valid axis of h, negative half of the time."""
    axis = k % h.ndim
    return axis - h.ndim if k % 2 else axis


# Each step: (lib, current value h, leaves, integer parameter k) → new h. Steps that need an axis
# or a leaf that does not fit h's shape fall back to tanh.
STEPS = {
    "tanh": lambda lib, h, leaves, k: lib.tanh(h),
    "sigmoid": lambda lib, h, leaves, k: lib.sigmoid(h),
    "softplus": lambda lib, h, leaves, k: lib.softplus(h),
    "log_sigmoid": lambda lib, h, leaves, k: lib.log_sigmoid(h),
    "leaky_relu": lambda lib, h, leaves, k: lib.leaky_relu(h),
    "exp_tanh": lambda lib, h, leaves, k: lib.exp(lib.tanh(h)),
    "log_square": lambda lib, h, leaves, k: lib.log(h * h + 1),
    "sqrt_square": lambda lib, h, leaves, k: lib.sqrt(h * h + 0.5),
    "pow": lambda lib, h, leaves, k: (h * h + 1) ** (0.5 + k % 3),
    "add_leaf": lambda lib, h, leaves, k: h + leaves[k % 3],
    "sub_leaf": lambda lib, h, leaves, k: leaves[k % 3] - h,
    "mul_leaf": lambda lib, h, leaves, k: h * leaves[k % 3],
    "div_leaf": lambda lib, h, leaves, k: h / (leaves[k % 3] * leaves[k % 3] + 1),
    "square": lambda lib, h, leaves, k: h * h,
    "scale": lambda lib, h, leaves, k: 0.5 * h - 1.0,
    "sum": lambda lib, h, leaves, k: lib.sum(h, _axis(h, k)),
    "mean": lambda lib, h, leaves, k: lib.mean(h, _axis(h, k)) if h.ndim > 1 else lib.tanh(h),
    "logsumexp": lambda lib, h, leaves, k: lib.logsumexp(h, _axis(h, k)),
    "log_softmax": lambda lib, h, leaves, k: lib.log_softmax(h, _axis(h, k)),
    "transpose": lambda lib, h, leaves, k: h.transpose(_axis(h, k), _axis(h, k // 2 + 1)),
    "gather": lambda lib, h, leaves, k: lib.gather(h, [k % h.shape[-1], -1, k % h.shape[-1]]),
    "matmul_own_transpose": lambda lib, h, leaves, k: h @ h.transpose(-1, -2) if h.ndim > 1 else h @ h,
    "concatenate_leaf": lambda lib, h, leaves, k: lib.concatenate(h, leaves[0]) if h.shape == leaves[0].shape else h,
    "index_first": lambda lib, h, leaves, k: h[k % h.shape[0]] if h.ndim > 1 else lib.tanh(h),
}


def _fits(h_shape: tuple, leaf_shape: tuple) -> bool:
    try:
        np.broadcast_shapes(h_shape, leaf_shape)
        return True
    except ValueError:
        return False


def run_program(lib, arrays: list[np.ndarray], program: list[tuple[str, int]]):
    """The program's output and its leaves, in one library."""
    leaves = [lib.tensor(a) for a in arrays]
    h = leaves[0]
    for name, k in program:
        if "leaf" in name and not _fits(tuple(h.shape), tuple(leaves[k % 3].shape)):
            name = "tanh"
        h = STEPS[name](lib, h, leaves, k)
        h = h.reshape(1) if h.ndim == 0 else h  # a vector product leaves a 0-d tensor: the next step needs an axis
    return h, leaves


@st.composite
def programs(draw):
    """A shape, three leaves that broadcast against it, and a program of steps."""
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    leaf_shapes = [shape, shape[1:], tuple(1 if draw(st.booleans()) else n for n in shape)]
    arrays = [rng.uniform(-1.5, 1.5, s) for s in leaf_shapes]
    program = draw(st.lists(st.tuples(st.sampled_from(sorted(STEPS)), st.integers(0, 7)), min_size=1, max_size=8))
    return arrays, program


@hypothesis.settings(max_examples=150, deadline=None, derandomize=True, database=None)
@hypothesis.given(programs())
def test_random_graphs_match_pytorch_in_values_gradients_and_clipping(case):
    arrays, program = case
    ours, our_leaves = run_program(NpgenSpelling, arrays, program)
    theirs, their_leaves = run_program(TorchSpelling, arrays, program)
    np.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), rtol=1e-9, atol=1e-12)

    weights = np.random.default_rng(0).standard_normal(ours.shape)
    (ours * weights).sum().backward()
    (theirs * torch.tensor(weights)).sum().backward()
    for k, (a, b) in enumerate(zip(our_leaves, their_leaves)):
        assert (a.grad is None) == (b.grad is None), f"leaf {k}: npgen {a.grad}, PyTorch {b.grad}"
        if a.grad is not None:
            np.testing.assert_allclose(a.grad, b.grad.numpy(), rtol=1e-8, atol=1e-10, err_msg=f"leaf {k}")

    norm = npgen.optim.clip_grad_norm(our_leaves, 0.1)
    torch_norm = torch.nn.utils.clip_grad_norm_([t for t in their_leaves if t.grad is not None], 0.1)
    assert norm == pytest.approx(torch_norm.item(), rel=1e-9)
    for a, b in zip(our_leaves, their_leaves):
        if a.grad is not None:
            np.testing.assert_allclose(a.grad, b.grad.numpy(), rtol=1e-8, atol=1e-10)
