"""The engine off the models' paths: dtypes, private gradients, axes, matmul shapes, shared layers, errors.

Each test pins down one class of wrong answer with expected values worked out by hand, so these
run without PyTorch; tests/test_torch_parity.py checks the same classes against PyTorch.
"""

from __future__ import annotations

import numpy as np
import pytest

import npgen
from npgen import F, nn

# --- type promotion ------------------------------------------------------------------------------


def test_an_integer_tensor_with_a_python_float_gives_float32_and_never_truncates():
    pixels = npgen.tensor(np.array([255, 128], np.uint8))
    np.testing.assert_allclose((pixels * (1 / 255)).numpy(), [1.0, 128 / 255], rtol=1e-6)
    np.testing.assert_array_equal((pixels - 127.5).numpy(), [127.5, 0.5])
    assert (pixels * (1 / 255)).dtype == np.float32
    np.testing.assert_allclose((npgen.tensor(np.array([1, 2])) + 0.7).numpy(), [1.7, 2.7], rtol=1e-6)
    assert npgen.tensor(np.array([1, 2])).mean().item() == 1.5
    assert (npgen.tensor(np.array([1, 2])) / 2).numpy().tolist() == [0.5, 1.0]


def test_constants_take_a_float32_tensors_dtype_and_a_float32_parameter_gets_a_float32_gradient():
    x = npgen.tensor([1.0, 2.0], requires_grad=True)
    assert (x * np.array([1, 2])).dtype == np.float32
    assert (x * np.array([0.5, 0.25])).dtype == np.float32
    y = x * npgen.tensor(np.array([0.5, 0.25]))  # a float64 tensor: the computation is float64
    y.sum().backward()
    assert y.dtype == np.float64 and x.grad.dtype == np.float32


def test_a_float32_layer_fed_a_float64_batch_computes_in_float64_and_keeps_float32_gradients():
    layer = nn.Linear(2, 3)
    y = layer(npgen.tensor(np.ones((4, 2))))
    y.sum().backward()
    assert y.dtype == np.float64
    assert layer.weight.grad.dtype == np.float32 and layer.bias.grad.dtype == np.float32
    np.testing.assert_allclose(layer.weight.grad, np.full((3, 2), 4.0))


def test_only_floating_point_tensors_can_require_gradients():
    with pytest.raises(TypeError, match="int64"):
        npgen.tensor(np.array([1, 2]), requires_grad=True)


# --- gradients are private, writable arrays -------------------------------------------------------


def test_leaves_that_receive_one_upstream_gradient_get_separate_grad_arrays():
    a, b = npgen.tensor([1.0, 2.0], requires_grad=True), npgen.tensor([3.0, 4.0], requires_grad=True)
    c = npgen.tensor([5.0, 6.0], requires_grad=True)
    (((a + b) + c) * 1.0).sum().backward()
    assert a.grad is not b.grad and a.grad is not c.grad and b.grad is not c.grad
    a.grad *= 0
    np.testing.assert_array_equal(b.grad, [1.0, 1.0])


def test_clip_grad_norm_scales_each_gradient_once_when_leaves_share_an_upstream_gradient():
    a, b = npgen.tensor([1.0, 2.0], requires_grad=True), npgen.tensor([3.0, 4.0], requires_grad=True)
    c = npgen.tensor([1.0, 1.0], requires_grad=True)
    ((a + b) * c).sum().backward()  # ∂/∂a = ∂/∂b = c = (1, 1); ∂/∂c = a + b = (4, 6)
    norm = npgen.optim.clip_grad_norm([a, b, c], 0.1)
    assert norm == pytest.approx(np.sqrt(1 + 1 + 1 + 1 + 16 + 36))
    factor = 0.1 / (norm + 1e-6)
    np.testing.assert_allclose(a.grad, [factor, factor], rtol=1e-6)
    np.testing.assert_allclose(b.grad, [factor, factor], rtol=1e-6)
    np.testing.assert_allclose(c.grad, [4 * factor, 6 * factor], rtol=1e-6)


def test_the_gradient_of_a_sum_is_a_writable_array_of_its_own():
    w = npgen.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    w.sum().backward()
    assert w.grad.flags.writeable and w.grad.base is None
    npgen.optim.clip_grad_norm([w], 0.5)
    np.testing.assert_allclose(w.grad, np.full((2, 2), 0.25), rtol=1e-5)


def test_backward_never_stores_the_callers_gradient_array():
    x = npgen.tensor([1.0, 2.0], requires_grad=True)
    seed = np.ones(2, np.float32)
    x.backward(seed)
    x.grad *= 3
    np.testing.assert_array_equal(seed, [1.0, 1.0])


# --- axes and matmul shapes ---------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 3), (2, 3)], ids=["square", "non_square"])
def test_transpose_with_a_negative_axis_has_the_right_gradient(shape):
    x = npgen.tensor(np.arange(np.prod(shape), dtype=np.float64).reshape(shape), requires_grad=True)
    weights = np.arange(np.prod(shape), dtype=np.float64).reshape(shape[::-1]) + 1
    (x.transpose(-1, 0) * weights).sum().backward()
    np.testing.assert_array_equal(x.grad, weights.T)


def test_transpose_swaps_two_axes_of_any_tensor_and_permute_reorders_all():
    x = npgen.tensor(np.zeros((2, 3, 4)))
    assert x.transpose(0, -1).shape == (4, 3, 2)
    assert x.permute(-1, 0, 1).shape == (4, 2, 3)
    with pytest.raises(ValueError, match=r"\(0, 0, 1\).*\(2, 3, 4\)"):
        x.permute(0, 0, 1)


def test_matmul_of_two_vectors_is_differentiable():
    a, b = npgen.tensor([1.0, 2.0], requires_grad=True), npgen.tensor([3.0, 4.0], requires_grad=True)
    (a @ b).backward()
    np.testing.assert_array_equal(a.grad, [3.0, 4.0])
    np.testing.assert_array_equal(b.grad, [1.0, 2.0])


def test_matmul_of_a_batch_with_a_vector_is_differentiable():
    a = npgen.tensor(np.ones((2, 3, 4)), requires_grad=True)
    b = npgen.tensor(np.arange(4.0), requires_grad=True)
    (a @ b).sum().backward()
    np.testing.assert_array_equal(a.grad, np.broadcast_to(np.arange(4.0), (2, 3, 4)))
    np.testing.assert_array_equal(b.grad, np.full(4, 6.0))


def test_matmul_and_linear_shape_errors_name_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(4, 5\)"):
        npgen.randn(2, 3) @ npgen.randn(4, 5)
    with pytest.raises(ValueError, match=r"\(2, 5\).*\(3, 4\).*in_features=4"):
        nn.Linear(4, 3)(npgen.randn(2, 5))


# --- shared parameters and backward's argument ------------------------------------------------------


def test_a_layer_used_twice_lists_its_parameters_once_and_is_stepped_once():
    lin = nn.Linear(3, 3)
    model = nn.Sequential(lin, nn.Tanh(), lin)
    assert [name for name, _ in model.named_parameters()] == ["0.weight", "0.bias"]
    assert list(model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]  # every name, as in PyTorch
    before = lin.weight.data.copy()
    opt = npgen.optim.SGD(model.parameters(), lr=0.1)
    model(npgen.randn(4, 3)).sum().backward()
    opt.step()
    np.testing.assert_allclose(lin.weight.data, before - 0.1 * lin.weight.grad, rtol=1e-6)


def test_an_optimizer_refuses_a_parameter_listed_twice():
    lin = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="twice"):
        npgen.optim.Adam([lin.weight, lin.weight])


def test_backward_checks_the_gradients_shape_against_the_tensors():
    x = npgen.tensor([1.0, 2.0, 3.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"\(2, 3\).*\(3,\)"):
        (x * 2).backward(np.ones((2, 3)))
    with pytest.raises(RuntimeError, match=r"\(2,\).*\(3,\)"):
        (x * 2).backward(np.ones(2))
    (x * 2).backward([1.0, 0.0, 2.0])
    np.testing.assert_array_equal(x.grad, [2.0, 0.0, 4.0])


def test_cross_entropy_keeps_integer_labels_out_of_the_graph():
    logits = npgen.tensor(np.zeros((2, 3)), requires_grad=True)
    F.cross_entropy(logits, np.array([0, 2])).backward()
    np.testing.assert_allclose(logits.grad, [[-1 / 3, 1 / 6, 1 / 6], [1 / 6, 1 / 6, -1 / 3]])


def test_a_one_element_tensor_converts_to_bool_and_float_and_a_larger_one_refuses():
    loss = npgen.tensor(2.5)
    assert float(loss) == 2.5 and (loss > 2) and not (loss > 3)
    with pytest.raises(RuntimeError, match=r"\(2,\) is ambiguous"):
        bool(npgen.tensor([1.0, 2.0]) > 0)


def test_an_integer_array_widens_an_integer_tensor_instead_of_wrapping_around():
    small = npgen.tensor(np.array([100], np.int8))
    assert (small + np.array([1000])).numpy().tolist() == [1100]
    assert (small + 1).dtype == np.int8  # a Python int is a constant: the tensor's dtype stays


def test_unsigned_integers_sum_to_int64():
    assert npgen.tensor(np.array([200, 100], np.uint8)).sum().dtype == np.int64


def test_an_integer_tensor_cannot_be_switched_to_require_gradients():
    x = npgen.tensor(np.array([1, 2]))
    with pytest.raises(TypeError, match="int64"):
        x.requires_grad = True


def test_pow_at_a_zero_base_has_pytorchs_gradients_not_nan():
    base = npgen.tensor([0.0, 0.0, 0.0, 2.0], requires_grad=True)
    exponent = npgen.tensor([0.0, 2.0, 0.5, 0.0], requires_grad=True)
    (base**exponent).sum().backward()
    np.testing.assert_array_equal(base.grad, [0.0, 0.0, np.inf, 0.0])
    np.testing.assert_allclose(exponent.grad, [0.0, 0.0, 0.0, np.log(2.0)], rtol=1e-6)


def test_a_linear_weight_that_is_not_a_matrix_gets_a_shape_error():
    with pytest.raises(ValueError, match=r"\(2, 4\).*\(4,\)"):
        F.linear(npgen.randn(2, 4), npgen.randn(4))
