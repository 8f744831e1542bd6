"""npgen against PyTorch: every public op and layer, forward values and gradients, float64 and float32.

The cases are a table: a name, the npgen expression, the same expression in PyTorch (None when the
operators alone spell it the same way), the shapes of the floating inputs and their value range.
Each case runs forward in both libraries on the same numbers, then backward from the same random
upstream gradient, and compares outputs, dtypes and every input's gradient. Randomly composed
graphs (hypothesis) do the same for chains of ops. PyTorch is a test-only oracle: these tests skip
where it is not installed (``pip install torch hypothesis``).
"""

from __future__ import annotations

import numpy as np
import pytest

import npgen
from npgen import F, nn

torch = pytest.importorskip("torch")
TF = torch.nn.functional

TOLERANCE = {np.float64: dict(rtol=1e-9, atol=1e-12), np.float32: dict(rtol=2e-4, atol=2e-5)}


def _np_index(*parts):
    return tuple(np.array(p) if isinstance(p, list) else p for p in parts)


def _torch_index(*parts):
    return tuple(torch.tensor(p) if isinstance(p, list) else p for p in parts)


# name → (npgen expression, PyTorch expression or None for the same one, input shapes, value range)
CASES = {
    # arithmetic with broadcasting, 0-d and 1-d operands, and both orders
    "add_same_shape": (lambda a, b: a + b, None, [(3, 4), (3, 4)], (-2, 2)),
    "add_row_broadcast": (lambda a, b: a + b, None, [(3, 4), (4,)], (-2, 2)),
    "add_outer_broadcast": (lambda a, b: a + b, None, [(3, 1), (1, 4)], (-2, 2)),
    "add_batched_broadcast": (lambda a, b: a + b, None, [(2, 3, 4), (3, 1)], (-2, 2)),
    "add_0d_operand": (lambda a, b: a + b, None, [(3, 4), ()], (-2, 2)),
    "add_two_0d": (lambda a, b: a + b, None, [(), ()], (-2, 2)),
    "add_same_leaf_twice": (lambda a: a + a, None, [(3,)], (-2, 2)),
    "sub_broadcast_left": (lambda a, b: a - b, None, [(4,), (3, 4)], (-2, 2)),
    "rsub_number": (lambda a: 1.5 - a, None, [(3, 4)], (-2, 2)),
    "mul_broadcast": (lambda a, b: a * b, None, [(2, 3, 4), (4,)], (-2, 2)),
    "mul_number": (lambda a: a * 2.5, None, [(3,)], (-2, 2)),
    "div_broadcast": (lambda a, b: a / b, None, [(3, 4), (3, 1)], (0.5, 2)),
    "rdiv_number": (lambda a: 2.0 / a, None, [(3, 4)], (0.5, 2)),
    "neg": (lambda a: -a, None, [(3, 4)], (-2, 2)),
    "pow_integer": (lambda a: a**3, None, [(3, 4)], (-2, 2)),
    "pow_fractional": (lambda a: a**0.5, None, [(3, 4)], (0.5, 2)),
    "pow_negative": (lambda a: a**-2, None, [(3, 4)], (0.5, 2)),
    "pow_tensor_exponent": (lambda a, b: a**b, None, [(3, 4), (4,)], (0.5, 2)),
    "rpow_number_base": (lambda b: 2.0**b, None, [(3, 4)], (-2, 2)),
    # matmul on every shape torch.matmul accepts
    "matmul_vector_vector": (lambda a, b: a @ b, None, [(4,), (4,)], (-2, 2)),
    "matmul_matrix_vector": (lambda a, b: a @ b, None, [(3, 4), (4,)], (-2, 2)),
    "matmul_vector_matrix": (lambda a, b: a @ b, None, [(4,), (4, 5)], (-2, 2)),
    "matmul_matrix_matrix": (lambda a, b: a @ b, None, [(3, 4), (4, 5)], (-2, 2)),
    "matmul_batched": (lambda a, b: a @ b, None, [(2, 3, 4), (2, 4, 5)], (-2, 2)),
    "matmul_batched_matrix": (lambda a, b: a @ b, None, [(2, 3, 4), (4, 5)], (-2, 2)),
    "matmul_matrix_batched": (lambda a, b: a @ b, None, [(3, 4), (2, 4, 5)], (-2, 2)),
    "matmul_broadcast_batch": (lambda a, b: a @ b, None, [(2, 1, 3, 4), (5, 4, 2)], (-2, 2)),
    "matmul_batched_vector": (lambda a, b: a @ b, None, [(2, 3, 4), (4,)], (-2, 2)),
    "matmul_vector_batched": (lambda a, b: a @ b, None, [(4,), (2, 4, 5)], (-2, 2)),
    "F_matmul": (F.matmul, torch.matmul, [(3, 4), (4, 2)], (-2, 2)),
    # reductions: all, one axis, negative axes, tuples, keepdims, 0-d
    "sum_all": (lambda x: x.sum(), None, [(3, 4)], (-2, 2)),
    "sum_axis": (lambda x: x.sum(axis=1), lambda x: x.sum(dim=1), [(3, 4)], (-2, 2)),
    "sum_negative_axis": (lambda x: x.sum(axis=-1), lambda x: x.sum(dim=-1), [(2, 3, 4)], (-2, 2)),
    "sum_axes_keepdims": (
        lambda x: x.sum(axis=(0, -1), keepdims=True),
        lambda x: x.sum(dim=(0, -1), keepdim=True),
        [(2, 3, 4)],
        (-2, 2),
    ),
    "sum_0d": (lambda x: x.sum(), None, [()], (-2, 2)),
    "mean_all": (lambda x: x.mean(), None, [(3, 4)], (-2, 2)),
    "mean_negative_axis_keepdims": (
        lambda x: x.mean(axis=-2, keepdims=True),
        lambda x: x.mean(dim=-2, keepdim=True),
        [(2, 3, 4)],
        (-2, 2),
    ),
    "mean_axes": (lambda x: x.mean(axis=(0, 2)), lambda x: x.mean(dim=(0, 2)), [(2, 3, 4)], (-2, 2)),
    # shapes
    "reshape": (lambda x: x.reshape(4, -1), lambda x: x.reshape(4, -1), [(2, 3, 4)], (-2, 2)),
    "reshape_to_0d": (lambda x: x.reshape(()), lambda x: x.reshape(()), [(1,)], (-2, 2)),
    "transpose_square": (lambda x: x.transpose(-1, 0), None, [(3, 3)], (-2, 2)),
    "transpose_non_square": (lambda x: x.transpose(-1, 0), None, [(2, 3)], (-2, 2)),
    "transpose_batched": (lambda x: x.transpose(0, -2), None, [(2, 3, 4)], (-2, 2)),
    "permute_negative": (lambda x: x.permute(-1, 0, 1), None, [(2, 3, 4)], (-2, 2)),
    "T_matrix": (lambda x: x.T, None, [(2, 3)], (-2, 2)),
    # indexing: integers, negative integers, slices, None, Ellipsis, repeated and negative index arrays, masks
    "index_integer": (lambda x: x[1], None, [(3, 4)], (-2, 2)),
    "index_negative_integer": (lambda x: x[-1, -2], None, [(3, 4)], (-2, 2)),
    "index_slices": (lambda x: x[1:, ::-2], lambda x: x[1:, torch.tensor([3, 1])], [(3, 4)], (-2, 2)),
    "index_none_ellipsis": (lambda x: x[None, ..., 1], None, [(2, 3, 4)], (-2, 2)),
    "index_repeated_negative_rows": (
        lambda x: x[_np_index([0, -1, 0, 2])],
        lambda x: x[_torch_index([0, -1, 0, 2])],
        [(3, 4)],
        (-2, 2),
    ),
    "index_two_arrays": (
        lambda x: x[_np_index([0, 2, 0], [1, -1, 1])],
        lambda x: x[_torch_index([0, 2, 0], [1, -1, 1])],
        [(3, 4)],
        (-2, 2),
    ),
    "index_array_and_slice": (
        lambda x: x[_np_index(slice(None), [3, 0, 3])],
        lambda x: x[_torch_index(slice(None), [3, 0, 3])],
        [(3, 4)],
        (-2, 2),
    ),
    "index_mask": (
        lambda x: x[np.array([True, False, True])],
        lambda x: x[torch.tensor([True, False, True])],
        [(3, 4)],
        (-2, 2),
    ),
    # integers select first, then index arrays (PyTorch's layout, not numpy's)
    "index_integer_slice_array": (lambda x: x[0, :, [0, 1]], None, [(3, 4, 5)], (-2, 2)),
    "index_none_integer_slice_array": (lambda x: x[None, 1, :, [1]], None, [(3, 4, 5)], (-2, 2)),
    "index_array_none_integer": (lambda x: x[[0, 1], None, 2], None, [(3, 4, 5)], (-2, 2)),
    "index_integer_array_slice": (lambda x: x[2, [3, 0, 3], 1:4], None, [(3, 4, 5)], (-2, 2)),
    "index_ellipsis_integer_mask": (
        lambda x: x[..., 1, np.array([True, False, True, False, True])],
        lambda x: x[..., 1, torch.tensor([True, False, True, False, True])],
        [(3, 4, 5)],
        (-2, 2),
    ),
    # choosing elements and reshaping (kinks and ties: test_kinks_and_ties_match_pytorch)
    "abs": (F.abs, torch.abs, [(3, 4)], (-2, 2)),
    "abs_method": (lambda x: abs(x), None, [(3, 4)], (-2, 2)),
    "clamp": (lambda x: F.clamp(x, -0.5, 0.7), lambda x: torch.clamp(x, -0.5, 0.7), [(3, 4)], (-2, 2)),
    "clamp_max_only": (lambda x: x.clamp(max=0.3), None, [(3, 4)], (-2, 2)),
    "maximum": (F.maximum, torch.maximum, [(3, 4), (4,)], (-2, 2)),
    "minimum": (F.minimum, torch.minimum, [(3, 4), (3, 1)], (-2, 2)),
    "where": (
        lambda a, b: F.where(a > b, a, b * 2),
        lambda a, b: torch.where(a > b, a, b * 2),
        [(3, 4), (4,)],
        (-2, 2),
    ),
    "amax_axis": (lambda x: x.max(axis=1), lambda x: torch.amax(x, 1), [(3, 4)], (-2, 2)),
    "amax_all": (lambda x: x.max(), lambda x: x.max(), [(3, 4)], (-2, 2)),
    "amin_negative_axis_keepdims": (
        lambda x: x.min(axis=-1, keepdims=True),
        lambda x: torch.amin(x, -1, keepdim=True),
        [(2, 3, 4)],
        (-2, 2),
    ),
    "F_amin_axes": (lambda x: F.amin(x, axis=(0, 2)), lambda x: torch.amin(x, (0, 2)), [(2, 3, 4)], (-2, 2)),
    "stack": (lambda a, b: F.stack([a, b], axis=1), lambda a, b: torch.stack([a, b], 1), [(3, 4), (3, 4)], (-2, 2)),
    "stack_negative_axis": (
        lambda a, b: F.stack([a, b], axis=-1),
        lambda a, b: torch.stack([a, b], -1),
        [(3, 4), (3, 4)],
        (-2, 2),
    ),
    "unsqueeze": (lambda x: x.unsqueeze(-2), None, [(3, 4)], (-2, 2)),
    "squeeze_all": (lambda x: x.squeeze(), None, [(3, 1, 4, 1)], (-2, 2)),
    "squeeze_axis": (lambda x: x.squeeze(1), None, [(3, 1, 4)], (-2, 2)),
    "squeeze_axis_not_one": (lambda x: x.squeeze(0), None, [(3, 1, 4)], (-2, 2)),
    "flatten": (lambda x: x.flatten(1), None, [(2, 3, 4)], (-2, 2)),
    "flatten_all": (lambda x: x.flatten(), None, [(2, 3, 4)], (-2, 2)),
    "softmax": (F.softmax, lambda x: TF.softmax(x, -1), [(3, 4)], (-3, 3)),
    "softmax_axis0": (lambda x: F.softmax(x, 0), lambda x: TF.softmax(x, 0), [(3, 4)], (-3, 3)),
    "dropout_evaluation": (
        lambda x: F.dropout(x, 0.5, training=False),
        lambda x: TF.dropout(x, 0.5, training=False),
        [(3, 4)],
        (-2, 2),
    ),
    "dropout_p0": (lambda x: F.dropout(x, 0.0), lambda x: TF.dropout(x, 0.0), [(3, 4)], (-2, 2)),
    "dropout_p1": (lambda x: F.dropout(x, 1.0), lambda x: TF.dropout(x, 1.0), [(3, 4)], (-2, 2)),
    # elementwise functions (values kept off the kinks of relu and leaky_relu)
    "exp": (F.exp, torch.exp, [(3, 4)], (-2, 2)),
    "log": (F.log, torch.log, [(3, 4)], (0.5, 3)),
    "sqrt": (F.sqrt, torch.sqrt, [(3, 4)], (0.5, 3)),
    "tanh": (F.tanh, torch.tanh, [(3, 4)], (-2, 2)),
    "sigmoid": (F.sigmoid, torch.sigmoid, [(3, 4)], (-6, 6)),
    "sigmoid_large": (F.sigmoid, torch.sigmoid, [(3, 4)], (-60, 60)),
    "relu": (F.relu, torch.relu, [(3, 4)], (0.1, 2)),
    "relu_negative": (F.relu, torch.relu, [(3, 4)], (-2, -0.1)),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.2), lambda x: TF.leaky_relu(x, 0.2), [(3, 4)], (-2, -0.1)),
    "leaky_relu_default": (F.leaky_relu, TF.leaky_relu, [(3, 4)], (-2, -0.1)),
    "softplus": (F.softplus, TF.softplus, [(3, 4)], (-6, 6)),
    "softplus_large": (F.softplus, TF.softplus, [(3, 4)], (-40, 40)),
    "log_sigmoid": (F.log_sigmoid, TF.logsigmoid, [(3, 4)], (-6, 6)),
    "methods": (lambda x: x.exp().tanh().sigmoid().relu(), lambda x: x.exp().tanh().sigmoid().relu(), [(3,)], (-2, 2)),
    # linear algebra and joining
    "linear": (F.linear, TF.linear, [(5, 4), (3, 4), (3,)], (-2, 2)),
    "linear_no_bias": (F.linear, TF.linear, [(5, 4), (3, 4)], (-2, 2)),
    "linear_1d_input": (F.linear, TF.linear, [(4,), (3, 4), (3,)], (-2, 2)),
    "linear_batched_input": (F.linear, TF.linear, [(2, 5, 4), (3, 4), (3,)], (-2, 2)),
    "concatenate_axis0": (lambda *xs: F.concatenate(xs), lambda *xs: torch.cat(xs), [(2, 3), (1, 3)], (-2, 2)),
    "concatenate_negative_axis": (
        lambda *xs: F.concatenate(xs, axis=-1),
        lambda *xs: torch.cat(xs, dim=-1),
        [(2, 3), (2, 1), (2, 2)],
        (-2, 2),
    ),
    "split_sections": (lambda x: F.split(x, 3, axis=1), lambda x: torch.tensor_split(x, 3, dim=1), [(2, 6)], (-2, 2)),
    "split_indices_negative_axis": (
        lambda x: F.split(x, [1, 3], axis=-1),
        lambda x: torch.tensor_split(x, [1, 3], dim=-1),
        [(2, 3, 5)],
        (-2, 2),
    ),
    "split_one_piece_unused": (lambda x: F.split(x, 2)[1], lambda x: torch.tensor_split(x, 2)[1], [(4, 3)], (-2, 2)),
    # normalised exponentials
    "logsumexp_all": (F.logsumexp, lambda x: torch.logsumexp(x, dim=(0, 1)), [(3, 4)], (-3, 3)),
    "logsumexp_axis": (lambda x: F.logsumexp(x, axis=1), lambda x: torch.logsumexp(x, 1), [(3, 4)], (-3, 3)),
    "logsumexp_negative_axis_keepdims": (
        lambda x: F.logsumexp(x, axis=-2, keepdims=True),
        lambda x: torch.logsumexp(x, -2, keepdim=True),
        [(2, 3, 4)],
        (-3, 3),
    ),
    "logsumexp_large": (lambda x: F.logsumexp(x, axis=0), lambda x: torch.logsumexp(x, 0), [(3, 4)], (500, 800)),
    "log_softmax_last": (F.log_softmax, lambda x: TF.log_softmax(x, -1), [(3, 4)], (-3, 3)),
    "log_softmax_axis0": (lambda x: F.log_softmax(x, 0), lambda x: TF.log_softmax(x, 0), [(3, 4)], (-3, 3)),
    "log_softmax_middle_axis": (lambda x: F.log_softmax(x, -2), lambda x: TF.log_softmax(x, -2), [(2, 3, 4)], (-3, 3)),
    # batch normalisation (running statistics start at 0 and 1; evaluation uses other values)
    "batch_norm_training": (
        lambda x, w, b: F.batch_norm(x, np.zeros(4, x.dtype), np.ones(4, x.dtype), w, b, True),
        lambda x, w, b: TF.batch_norm(x, torch.zeros(4, dtype=x.dtype), torch.ones(4, dtype=x.dtype), w, b, True),
        [(6, 4), (4,), (4,)],
        (-2, 2),
    ),
    "batch_norm_evaluation": (
        lambda x, w, b: F.batch_norm(x, np.full(4, 0.3, x.dtype), np.full(4, 2.0, x.dtype), w, b, False),
        lambda x, w, b: TF.batch_norm(
            x, torch.full((4,), 0.3, dtype=x.dtype), torch.full((4,), 2.0, dtype=x.dtype), w, b
        ),
        [(6, 4), (4,), (4,)],
        (-2, 2),
    ),
    # losses
    "bce_with_logits_mean": (
        F.binary_cross_entropy_with_logits,
        TF.binary_cross_entropy_with_logits,
        [(4, 3), (4, 3)],
        (-3, 3),
    ),
    "bce_with_logits_sum": (
        lambda x, t: F.binary_cross_entropy_with_logits(x, t, reduction="sum"),
        lambda x, t: TF.binary_cross_entropy_with_logits(x, t, reduction="sum"),
        [(4, 3), (4, 3)],
        (-3, 3),
    ),
    "bce_with_logits_none": (
        lambda x, t: F.binary_cross_entropy_with_logits(x, t, reduction="none"),
        lambda x, t: TF.binary_cross_entropy_with_logits(x, t, reduction="none"),
        [(4, 3), (4, 3)],
        (-3, 3),
    ),
    "cross_entropy_mean": (
        lambda x: F.cross_entropy(x, np.array([0, 3, 1, 3])),
        lambda x: TF.cross_entropy(x, torch.tensor([0, 3, 1, 3])),
        [(4, 5)],
        (-3, 3),
    ),
    "cross_entropy_none": (
        lambda x: F.cross_entropy(x, np.array([2, 0]), reduction="none"),
        lambda x: TF.cross_entropy(x, torch.tensor([2, 0]), reduction="none"),
        [(2, 3)],
        (-3, 3),
    ),
    "gaussian_kl": (
        F.gaussian_kl,
        lambda mu, logvar: 0.5 * (mu * mu + logvar.exp() - 1 - logvar).sum(-1),
        [(4, 3), (4, 3)],
        (-2, 2),
    ),
    "gaussian_kl_two_gaussians": (
        F.gaussian_kl,
        lambda mq, lq, mp, lp: torch.distributions.kl_divergence(
            torch.distributions.Normal(mq, (lq / 2).exp()), torch.distributions.Normal(mp, (lp / 2).exp())
        ).sum(-1),
        [(4, 3), (4, 3), (4, 3), (3,)],
        (-2, 2),
    ),
}


def _inputs(shapes: list, value_range: tuple, dtype: type, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(*value_range, shape).astype(dtype) for shape in shapes]


def _outputs(y) -> tuple:
    return y if isinstance(y, tuple) else (y,)


def _compare(name: str, ours: np.ndarray, theirs: torch.Tensor, dtype: type) -> None:
    theirs = theirs.detach().numpy()
    assert ours.shape == theirs.shape, f"{name}: shape {ours.shape}, PyTorch {theirs.shape}"
    assert ours.dtype == theirs.dtype, f"{name}: dtype {ours.dtype}, PyTorch {theirs.dtype}"
    np.testing.assert_allclose(ours, theirs, **TOLERANCE[dtype], err_msg=name)


def run_both(npgen_fn, torch_fn, arrays: list[np.ndarray], seed: int = 1):
    """Forward and backward of one expression in both libraries; returns (our results, PyTorch's) as numpy."""
    ours = [npgen.tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    ys, ts = _outputs(npgen_fn(*ours)), _outputs(torch_fn(*theirs))
    # one random upstream gradient per output: L = Σ_k Σ w_k ⊙ y_k, the same numbers in both libraries
    weights = [np.random.default_rng(seed + k).standard_normal(y.shape).astype(y.dtype) for k, y in enumerate(ys)]
    sum(((y * w).sum() for y, w in zip(ys, weights)), start=0.0).backward()
    sum((t * torch.tensor(w)).sum() for t, w in zip(ts, weights)).backward()
    return ([y.numpy() for y in ys], [x.grad for x in ours]), (ts, [x.grad for x in theirs])


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_op_matches_pytorch_forward_and_backward(name, dtype):
    npgen_fn, torch_fn, shapes, value_range = CASES[name]
    arrays = _inputs(shapes, value_range, dtype, seed=len(name))
    (ys, grads), (ts, torch_grads) = run_both(npgen_fn, torch_fn or npgen_fn, arrays)
    assert len(ys) == len(ts)
    for k, (y, t) in enumerate(zip(ys, ts)):
        _compare(f"{name} output {k}", y, t, dtype)
    for k, (g, t) in enumerate(zip(grads, torch_grads)):
        assert (g is None) == (t is None), f"{name}: gradient of input {k} is {g}, PyTorch's {t}"
        if g is not None:
            _compare(f"{name} gradient of input {k}", g, t, dtype)


# --- integer and bool inputs: forward values and dtypes --------------------------------------------
INTEGER_CASES = {
    "uint8_times_float": (lambda x: x * (1 / 255), np.array([255, 128, 0], np.uint8)),
    "uint8_minus_float": (lambda x: x - 127.5, np.array([255, 128, 0], np.uint8)),
    "int64_plus_float": (lambda x: x + 0.7, np.array([1, 2, -3])),
    "int64_plus_int": (lambda x: x + 2, np.array([1, 2, -3])),
    "int64_true_division": (lambda x: x / 2, np.array([1, 2, -3])),
    "int_divided_by_int_tensor": (lambda x: x / x, np.array([1, 2, -3])),
    "int32_pow_int": (lambda x: x**2, np.array([1, 2, -3], np.int32)),
    "int64_pow_float": (lambda x: x**0.5, np.array([1, 4, 9])),
    "int64_sum": (lambda x: x.sum(), np.array([[1, 2], [3, 4]])),
    "int64_sum_axis": (lambda x: x.sum(-1), np.array([[1, 2], [3, 4]])),
    "int64_exp": (lambda x: x.exp(), np.array([0, 1, 2])),
    "int64_sigmoid": (lambda x: x.sigmoid(), np.array([0, 1, -2])),
    "int64_relu": (lambda x: x.relu(), np.array([0, 1, -2])),
    "int64_matmul": (lambda x: x @ x, np.array([[1, 2], [3, 4]])),
    "int64_index": (lambda x: x[1:], np.array([1, 2, 3])),
    "int64_reshape": (lambda x: x.reshape(2, 2), np.array([1, 2, 3, 4])),
    "bool_plus_int": (lambda x: x + 1, np.array([True, False])),
    "bool_times_float": (lambda x: x * 1.5, np.array([True, False])),
    "bool_sum": (lambda x: x.sum(), np.array([True, False, True])),
    "uint8_sum_axis": (lambda x: x.sum(0), np.array([[200, 100], [100, 250]], np.uint8)),
}


@pytest.mark.parametrize("name", sorted(INTEGER_CASES))
def test_integer_and_bool_inputs_match_pytorch(name):
    fn, array = INTEGER_CASES[name]
    ours, theirs = fn(npgen.tensor(array)), fn(torch.tensor(array))
    assert ours.dtype == theirs.numpy().dtype, f"{name}: npgen {ours.dtype}, PyTorch {theirs.dtype}"
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6, err_msg=name)


def test_functional_ops_on_integer_tensors_match_pytorch():
    x = np.array([[1, 2, 3], [4, 5, 6]])
    for ours, theirs in [
        (F.log_softmax(npgen.tensor(x)), TF.log_softmax(torch.tensor(x).float(), -1)),
        (F.logsumexp(npgen.tensor(x), axis=1), torch.logsumexp(torch.tensor(x).float(), 1)),
        (F.concatenate([npgen.tensor(x), npgen.tensor(x * 0.5)]), torch.cat([torch.tensor(x), torch.tensor(x * 0.5)])),
    ]:
        assert ours.dtype == theirs.numpy().dtype
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6)


DTYPES = ["bool", "uint8", "int32", "int64", "float32", "float64"]


@pytest.mark.parametrize("left", DTYPES)
@pytest.mark.parametrize("right", DTYPES + ["python_bool", "python_int", "python_float"])
def test_type_promotion_matches_pytorch(left, right):
    """Every pair of dtypes, as dimensioned tensors, 0-d tensors and Python numbers, promotes as in PyTorch."""
    a = np.ones((2,), left)
    python = {"python_bool": True, "python_int": 2, "python_float": 2.5}
    operands = [python[right]] if right in python else [np.ones((2,), right), np.ones((), right)]
    for b in operands:
        for op in (lambda u, v: u + v, lambda u, v: u * v):
            wrap_ours = npgen.tensor if isinstance(b, np.ndarray) else lambda v: v
            wrap_theirs = torch.tensor if isinstance(b, np.ndarray) else lambda v: v
            for x, y in [(a, b), (b, a)] if isinstance(b, np.ndarray) else [(a, b)]:
                ours = op(npgen.tensor(x), wrap_ours(y)) if x is a else op(wrap_ours(x), npgen.tensor(y))
                theirs = op(torch.tensor(x), wrap_theirs(y)) if x is a else op(wrap_theirs(x), torch.tensor(y))
                assert ours.dtype == theirs.numpy().dtype, f"{x.dtype}{x.shape} and {y!r}: npgen {ours.dtype}"


# --- layers ------------------------------------------------------------------------------------------


def _load_from_torch(ours: nn.Module, theirs: torch.nn.Module, dtype: type) -> None:
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    ours.double() if dtype == np.float64 else ours.float()
    theirs.double() if dtype == np.float64 else theirs.float()


LAYERS = {
    "Linear": (lambda: nn.Linear(4, 3), lambda: torch.nn.Linear(4, 3), (5, 4)),
    "Linear_no_bias": (lambda: nn.Linear(4, 3, bias=False), lambda: torch.nn.Linear(4, 3, bias=False), (5, 4)),
    "ReLU": (nn.ReLU, torch.nn.ReLU, (5, 4)),
    "LeakyReLU": (lambda: nn.LeakyReLU(0.2), lambda: torch.nn.LeakyReLU(0.2), (5, 4)),
    "Sigmoid": (nn.Sigmoid, torch.nn.Sigmoid, (5, 4)),
    "Tanh": (nn.Tanh, torch.nn.Tanh, (5, 4)),
    "BatchNorm1d": (lambda: nn.BatchNorm1d(4), lambda: torch.nn.BatchNorm1d(4), (6, 4)),
    "Sequential": (
        lambda: nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.LeakyReLU(0.2), nn.Linear(6, 2), nn.Sigmoid()),
        lambda: torch.nn.Sequential(
            torch.nn.Linear(4, 6),
            torch.nn.BatchNorm1d(6),
            torch.nn.LeakyReLU(0.2),
            torch.nn.Linear(6, 2),
            torch.nn.Sigmoid(),
        ),
        (6, 4),
    ),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_matches_pytorch_in_training_and_evaluation(name, dtype):
    make_ours, make_theirs, shape = LAYERS[name]
    torch.manual_seed(0)
    ours, theirs = make_ours(), make_theirs()
    _load_from_torch(ours, theirs, dtype)
    for step in range(2):  # two training steps (running statistics move), then evaluation
        x = np.random.default_rng(step).uniform(-2, 2, shape).astype(dtype)
        (ys, grads), (ts, torch_grads) = run_both(ours, theirs, [x], seed=step)
        _compare(f"{name} output", ys[0], ts[0], dtype)
        _compare(f"{name} input gradient", grads[0], torch_grads[0], dtype)
        for (key, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters()):
            _compare(f"{name} gradient of {key}", p.grad, q.grad, dtype)
            p.grad, q.grad = None, None
    for key, value in theirs.state_dict().items():
        np.testing.assert_allclose(np.asarray(ours.state_dict()[key]), value.numpy(), **TOLERANCE[dtype], err_msg=key)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.eval(), theirs.eval()
    x = np.random.default_rng(9).uniform(-2, 2, shape).astype(dtype)
    _compare(f"{name} evaluation output", ours(npgen.tensor(x)).numpy(), theirs(torch.tensor(x)), dtype)


def test_pow_at_a_zero_base_matches_pytorch():
    base, exponent = np.array([0.0, 0.0, 0.0, 2.0, 0.0]), np.array([0.0, 2.0, 0.5, 0.0, 1.0])
    (_, grads), (_, torch_grads) = run_both(lambda a, b: a**b, lambda a, b: a**b, [base, exponent])
    for ours, theirs in zip(grads, torch_grads):
        np.testing.assert_array_equal(ours, theirs.numpy())


def test_a_shared_parameter_loads_from_its_last_name_as_in_pytorch():
    shared = torch.nn.Linear(2, 2)
    theirs = torch.nn.Sequential(shared, torch.nn.Tanh(), shared)
    lin = nn.Linear(2, 2)
    ours = nn.Sequential(lin, nn.Tanh(), lin)
    state = {
        k: np.full(tuple(v.shape), 1.0 if k.startswith("0.") else 2.0, np.float32)
        for k, v in theirs.state_dict().items()
    }
    theirs.load_state_dict({k: torch.tensor(v) for k, v in state.items()})
    ours.load_state_dict(state)
    np.testing.assert_array_equal(lin.weight.data, shared.weight.detach().numpy())


def test_clip_grad_norm_of_a_nan_gradient_spreads_nan_as_in_pytorch():
    ours, theirs = npgen.Tensor(np.zeros(2)), torch.zeros(2, dtype=torch.float64, requires_grad=True)
    ours.grad, theirs.grad = np.array([np.nan, 1.0]), torch.tensor([np.nan, 1.0], dtype=torch.float64)
    assert np.isnan(npgen.optim.clip_grad_norm([ours], 1.0))
    torch.nn.utils.clip_grad_norm_([theirs], 1.0)
    np.testing.assert_array_equal(ours.grad, theirs.grad.numpy())


def test_a_shared_layer_trains_as_in_pytorch():
    torch.manual_seed(0)
    shared = torch.nn.Linear(3, 3).double()
    theirs = torch.nn.Sequential(shared, torch.nn.Tanh(), shared)
    lin = nn.Linear(3, 3)
    ours = nn.Sequential(lin, nn.Tanh(), lin)
    _load_from_torch(ours, theirs, np.float64)
    assert [k for k, _ in ours.named_parameters()] == [k for k, _ in theirs.named_parameters()]
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [k for k, _ in ours.named_modules()] == [k for k, _ in theirs.named_modules()]
    opt, torch_opt = npgen.optim.Adam(ours.parameters(), lr=0.1), torch.optim.Adam(theirs.parameters(), lr=0.1)
    for step in range(3):
        x = np.random.default_rng(step).uniform(-1, 1, (4, 3))
        run_both(ours, theirs, [x], seed=step)
        opt.step(), torch_opt.step()
        opt.zero_grad(), torch_opt.zero_grad()
    np.testing.assert_allclose(lin.weight.data, shared.weight.detach().numpy(), rtol=1e-9)


@pytest.mark.parametrize("max_norm", [0.01, 1.0, 1e3])
def test_clip_grad_norm_matches_pytorch_on_leaves_that_share_a_gradient(max_norm):
    arrays = _inputs([(3, 4), (3, 4), (4,)], (-2, 2), np.float64, seed=3)
    (_, grads), (_, _) = run_both(lambda a, b, c: (a + b) * c, lambda a, b, c: (a + b) * c, arrays)
    ours = [npgen.Tensor(g) for g in grads]
    for t, g in zip(ours, grads):
        t.grad = g
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    upstream = torch.tensor(np.random.default_rng(1).standard_normal((3, 4)))  # run_both's, for seed 1
    ((theirs[0] + theirs[1]) * theirs[2] * upstream).sum().backward()
    norm = npgen.optim.clip_grad_norm(ours, max_norm)
    torch_norm = torch.nn.utils.clip_grad_norm_(theirs, max_norm)
    assert norm == pytest.approx(torch_norm.item(), rel=1e-12)
    for t, p in zip(ours, theirs):
        np.testing.assert_allclose(t.grad, p.grad.numpy(), rtol=1e-12)


OPTIMIZERS = {
    "Adam": (lambda p: npgen.optim.Adam(p, lr=0.05), lambda p: torch.optim.Adam(p, lr=0.05)),
    "Adam_weight_decay": (
        lambda p: npgen.optim.Adam(p, lr=0.05, betas=(0.5, 0.9), weight_decay=0.1),
        lambda p: torch.optim.Adam(p, lr=0.05, betas=(0.5, 0.9), weight_decay=0.1),
    ),
    "SGD": (lambda p: npgen.optim.SGD(p, lr=0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    "SGD_momentum_weight_decay": (
        lambda p: npgen.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01),
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01),
    ),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_steps_match_pytorch(name):
    make_ours, make_theirs = OPTIMIZERS[name]
    torch.manual_seed(0)
    theirs = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)).double()
    ours = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    _load_from_torch(ours, theirs, np.float64)
    opt, torch_opt = make_ours(ours.parameters()), make_theirs(theirs.parameters())
    for step in range(4):
        x = np.random.default_rng(step).uniform(-1, 1, (5, 3))
        run_both(ours, theirs, [x], seed=step)
        opt.step(), torch_opt.step()
        opt.zero_grad(), torch_opt.zero_grad()
    for key, value in theirs.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[key], value.numpy(), rtol=1e-9, err_msg=key)


def test_comparisons_match_pytorch():
    a, b = np.array([[1.0, -2.0], [0.5, 3.0]]), np.array([0.5, 0.0])
    ops = [lambda u, v: u < v, lambda u, v: u > v, lambda u, v: u > 0.7, lambda u, v: u <= v, lambda u, v: u >= v]
    ops += [lambda u, v: u == v, lambda u, v: u != v, lambda u, v: u == 0.5, lambda u, v: u != 3]
    for op in ops:
        ours, theirs = op(npgen.tensor(a), npgen.tensor(b)), op(torch.tensor(a), torch.tensor(b))
        assert ours.dtype == np.bool_
        np.testing.assert_array_equal(ours.numpy(), theirs.detach().numpy())


def test_cosine_annealing_gives_pytorchs_cosine_annealing_lr_rates():
    weight = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([weight], lr=3e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=40)
    for step in range(41):
        assert npgen.optim.cosine_annealing(3e-3, step, 40) == pytest.approx(
            opt.param_groups[0]["lr"], rel=1e-9, abs=1e-15
        )
        opt.step()
        schedule.step()


KINKS_AND_TIES = {
    "relu_at_zero": (F.relu, torch.relu, [np.array([0.0, -1.0, 1.0])]),
    "leaky_relu_at_zero": (
        lambda x: F.leaky_relu(x, 0.2),
        lambda x: TF.leaky_relu(x, 0.2),
        [np.array([0.0, -1.0, 1.0])],
    ),
    "abs_at_zero": (F.abs, torch.abs, [np.array([0.0, -1.0, 1.0])]),
    "clamp_at_its_ends": (
        lambda x: x.clamp(0.0, 1.0),
        lambda x: x.clamp(0.0, 1.0),
        [np.array([-1.0, 0.0, 0.5, 1.0, 2.0])],
    ),
    "maximum_ties": (F.maximum, torch.maximum, [np.array([1.0, 2.0, 2.0]), np.array([1.0, 3.0, 1.0])]),
    "minimum_ties": (F.minimum, torch.minimum, [np.array([1.0, 2.0, 2.0]), np.array([1.0, 3.0, 1.0])]),
    "amax_ties": (lambda x: x.max(axis=1), lambda x: torch.amax(x, 1), [np.array([[3.0, 1.0, 3.0], [2.0, 2.0, 2.0]])]),
    "amin_ties_all": (lambda x: x.min(), lambda x: x.min(), [np.array([[1.0, 1.0], [2.0, 1.0]])]),
}


@pytest.mark.parametrize("name", sorted(KINKS_AND_TIES))
def test_kinks_and_ties_match_pytorch(name):
    """Where a derivative is not defined, the one PyTorch picks: the left side at a kink, a tie shared evenly."""
    npgen_fn, torch_fn, arrays = KINKS_AND_TIES[name]
    (ys, grads), (ts, torch_grads) = run_both(npgen_fn, torch_fn, arrays)
    _compare(name, ys[0], ts[0], np.float64)
    for k, (g, t) in enumerate(zip(grads, torch_grads)):
        _compare(f"{name} gradient of input {k}", g, t, np.float64)


INF = np.inf
EDGES = {
    "logsumexp_infinite_rows": (
        lambda x: F.logsumexp(x, axis=1),
        lambda x: torch.logsumexp(x, 1),
        np.array([[-INF, -INF], [1.0, INF], [INF, INF], [-INF, 1.0]]),
    ),
    "logsumexp_empty_axis": (lambda x: F.logsumexp(x, axis=1), lambda x: torch.logsumexp(x, 1), np.zeros((2, 0))),
    "log_softmax_infinite_rows": (
        F.log_softmax,
        lambda x: TF.log_softmax(x, -1),
        np.array([[-INF, -INF], [1.0, INF], [-INF, 1.0]]),
    ),
    "log_softmax_empty_axis": (F.log_softmax, lambda x: TF.log_softmax(x, -1), np.zeros((2, 0))),
    "softmax_infinite_rows": (F.softmax, lambda x: TF.softmax(x, -1), np.array([[-INF, 1.0], [1.0, INF]])),
    "cross_entropy_infinite_rows": (
        lambda x: F.cross_entropy(x, np.array([0, 1, 1]), reduction="none"),
        lambda x: TF.cross_entropy(x, torch.tensor([0, 1, 1]), reduction="none"),
        np.array([[-INF, -INF], [1.0, INF], [-INF, 1.0]]),
    ),
}


@pytest.mark.parametrize("name", sorted(EDGES))
def test_normalised_exponentials_at_infinities_and_on_empty_axes_match_pytorch(name):
    npgen_fn, torch_fn, array = EDGES[name]
    ours, theirs = npgen.tensor(array, requires_grad=True), torch.tensor(array, requires_grad=True)
    y, t = npgen_fn(ours), torch_fn(theirs)
    np.testing.assert_array_equal(y.numpy(), t.detach().numpy())
    upstream = np.ones(y.shape)
    y.backward(upstream)
    t.backward(torch.tensor(upstream))
    np.testing.assert_array_equal(ours.grad, theirs.grad.numpy())


def test_an_op_with_a_pytorch_tensor_is_a_type_error_that_says_how_to_convert_it():
    with pytest.raises(TypeError, match=r"got a torch.Tensor \(convert a PyTorch tensor with .numpy\(\)\)"):
        npgen.tensor([1.0]) + torch.ones(1)


def test_an_in_place_change_of_a_leaf_that_requires_grad_is_refused_as_in_pytorch():
    ours, theirs = npgen.tensor([1.0], requires_grad=True), torch.tensor([1.0], requires_grad=True)
    for p in (ours, theirs):
        with pytest.raises(RuntimeError, match="leaf"):
            p -= 0.1
    with npgen.no_grad(), torch.no_grad():
        ours -= 0.1
        theirs -= 0.1
    np.testing.assert_array_equal(ours.numpy(), theirs.detach().numpy())
