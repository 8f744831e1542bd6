"""Every op's backward agrees with central finite differences (float64), on every backend."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make

import npgen
from npgen import F, backend, nn

# name → (function of the inputs, input shapes, value range of the inputs)
UNARY = {
    "exp": (F.exp, (-2, 2)),
    "log": (F.log, (0.5, 3)),
    "sqrt": (F.sqrt, (0.5, 3)),
    "tanh": (F.tanh, (-2, 2)),
    "sigmoid": (F.sigmoid, (-4, 4)),
    "relu": (F.relu, (-1, 1)),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.2), (-1, 1)),
    "softplus": (F.softplus, (-4, 4)),
    "log_sigmoid": (F.log_sigmoid, (-4, 4)),
    "neg": (lambda x: -x, (-1, 1)),
    "pow": (lambda x: x**3, (-1, 1)),
    "pow_fractional": (lambda x: x**0.5, (0.5, 2)),
    "sum_all": (lambda x: x.sum(), (-1, 1)),
    "sum_axis": (lambda x: x.sum(axis=1), (-1, 1)),
    "sum_negative_axis_keepdims": (lambda x: x.sum(axis=-2, keepdims=True), (-1, 1)),
    "mean": (lambda x: x.mean(axis=0), (-1, 1)),
    "mean_all": (lambda x: x.mean(), (-1, 1)),
    "reshape": (lambda x: x.reshape(4, 3), (-1, 1)),
    "transpose": (lambda x: x.T, (-1, 1)),
    "getitem_slice": (lambda x: x[1:, ::2], (-1, 1)),
    "getitem_repeated_rows": (lambda x: x[backend.move(np.array([0, 0, 2]), x.device)], (-1, 1)),
    "logsumexp_rows": (lambda x: F.logsumexp(x, axis=1), (-3, 3)),
    "logsumexp_all": (lambda x: F.logsumexp(x), (-3, 3)),
    "log_softmax": (F.log_softmax, (-3, 3)),
    "split": (lambda x: F.split(x, [1, 3], axis=1), (-1, 1)),
    "split_one_piece_unused": (lambda x: F.split(x, 3, axis=0)[1], (-1, 1)),
    "sum_negative_axis": (lambda x: x.sum(axis=-1), (-1, 1)),
    "sum_negative_axis_of_3d": (lambda x: x.reshape(2, 3, 2).sum(axis=(-3, -1)), (-1, 1)),
    "permute_3_cycle": (lambda x: x.reshape(2, 3, 2).permute(2, 0, 1), (-1, 1)),
    "permute_3_cycle_reversed": (lambda x: x.reshape(2, 3, 2).permute(1, 2, 0), (-1, 1)),
    "getitem_slice_and_index_array": (lambda x: x[1:, backend.move(np.array([3, 0, 3]), x.device)], (-1, 1)),
    "getitem_integer_slice_index_array": (lambda x: x.reshape(2, 2, 3)[0, :, [2, 0]], (-1, 1)),
    "log_softmax_axis0": (lambda x: F.log_softmax(x, 0), (-3, 3)),
    # the ops a learner reaches for first, away from kinks and ties (those have tests of their own below)
    "abs": (F.abs, (-1, 1)),
    "clamp": (lambda x: F.clamp(x, -0.5, 0.4), (-1, 1)),
    "clamp_min_only": (lambda x: x.clamp(min=0.1), (-1, 1)),
    "maximum_constant": (lambda x: F.maximum(x, 0.2), (-1, 1)),
    "minimum_constant": (lambda x: F.minimum(x, 0.2), (-1, 1)),
    "where": (lambda x: F.where(x > 0, x * 2, x**2), (-1, 1)),
    "amax_rows": (lambda x: F.amax(x, axis=1), (-1, 1)),
    "amax_negative_axis_keepdims": (lambda x: x.max(axis=-2, keepdims=True), (-1, 1)),
    "amin_all": (lambda x: x.min(), (-1, 1)),
    "stack": (lambda x: F.stack([x, x * 2], axis=1), (-1, 1)),
    "stack_negative_axis": (lambda x: F.stack([x, x.exp()], axis=-1), (-1, 1)),
    "unsqueeze_squeeze": (lambda x: F.squeeze(x.unsqueeze(1) * 3, 1), (-1, 1)),
    "flatten": (lambda x: x.reshape(3, 2, 2).flatten(1), (-1, 1)),
    "softmax": (F.softmax, (-3, 3)),
    "softmax_axis0": (lambda x: F.softmax(x, 0), (-3, 3)),
    "dropout": (lambda x: (npgen.manual_seed(3), F.dropout(x, 0.3))[1], (-1, 1)),
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_op_backward_matches_finite_differences(device, name):
    fn, (low, high) = UNARY[name]
    x = make(device, (3, 4), low, high)
    assert npgen.gradcheck(fn, [x])


def test_relu_and_leaky_relu_gradients_at_exactly_zero_are_pytorchs(device):
    """At the kink PyTorch takes the left side: ReLU′(0) = 0, LeakyReLU′(0) = the slope."""
    for fn, expected in [(F.relu, 0.0), (lambda t: F.leaky_relu(t, 0.2), 0.2), (nn.LeakyReLU(0.3), 0.3)]:
        x = npgen.Tensor(backend.move(np.array([0.0, -0.5, 0.5]), device), requires_grad=True)
        fn(x).sum().backward()
        np.testing.assert_allclose(backend.to_numpy(x.grad), [expected, expected, 1.0], rtol=1e-12)


def test_relu_family_gradients_away_from_the_kink(device):
    # |x| ≥ 0.1 keeps finite differences from straddling the kink at 0.
    values = np.array([[-1.0, -0.1, 0.1, 1.0], [0.5, -0.5, 0.3, -0.3]])
    x = npgen.Tensor(backend.move(values, device), requires_grad=True)
    for fn in (F.relu, lambda t: F.leaky_relu(t, 0.01), lambda t: F.leaky_relu(t, 0.3), nn.ReLU(), nn.LeakyReLU(0.2)):
        assert npgen.gradcheck(fn, [x])


BINARY_SHAPES = [
    ((3, 4), (3, 4)),
    ((3, 4), (4,)),
    ((3, 1), (1, 4)),
    ((2, 3, 4), (3, 1)),
    ((3, 4), ()),
    ((2, 2), (2, 1)),
]


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
@pytest.mark.parametrize("shapes", BINARY_SHAPES, ids=str)
def test_broadcasting_binary_op_sums_gradients_back_to_each_shape(device, op, shapes):
    a = make(device, shapes[0], 0.5, 2.0, seed=1)
    b = make(device, shapes[1], 0.5, 2.0, seed=2)
    fn = {"add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y, "div": lambda x, y: x / y}
    assert npgen.gradcheck(fn[op], [a, b])


def test_reflected_operators_with_python_numbers(device):
    x = make(device, (2, 3), 0.5, 2.0)
    assert npgen.gradcheck(lambda t: 2.0 - t + 3.0 * t / 4.0 + 1.0 / t, [x])


@pytest.mark.parametrize(
    "shapes",
    [((3, 4), (4, 5)), ((4,), (4, 5)), ((3, 4), (4,)), ((2, 3, 4), (4, 2)), ((2, 1, 3, 4), (5, 4, 2))],
    ids=str,
)
def test_matmul_gradients(device, shapes):
    a, b = make(device, shapes[0], seed=1), make(device, shapes[1], seed=2)
    assert npgen.gradcheck(lambda x, y: x @ y, [a, b])


def test_linear_gradients_with_and_without_bias(device):
    x, w, b = make(device, (5, 3), seed=1), make(device, (4, 3), seed=2), make(device, (4,), seed=3)
    assert npgen.gradcheck(F.linear, [x, w, b])
    assert npgen.gradcheck(F.linear, [x, w])


@pytest.mark.parametrize("shape", [(3,), (2, 5, 3)], ids=["one_vector", "batched"])
def test_linear_gradients_on_a_vector_and_on_a_batch_of_batches(device, shape):
    x, w, b = make(device, shape, seed=1), make(device, (4, 3), seed=2), make(device, (4,), seed=3)
    assert npgen.gradcheck(F.linear, [x, w, b])


def test_batch_norm_gradients_with_a_scale_and_shift_other_than_one_and_zero(device):
    x = make(device, (6, 3), seed=1)
    weight, bias = make(device, (3,), 0.5, 2.0, seed=2), make(device, (3,), seed=3)
    stats = (backend.move(np.zeros(3), device), backend.move(np.ones(3), device))
    assert npgen.gradcheck(lambda *t: F.batch_norm(t[0], *stats, t[1], t[2], training=True), [x, weight, bias])


def test_binary_cross_entropy_gradients_with_a_broadcast_target_that_requires_grad(device):
    logits, target = make(device, (3, 4), -3, 3, seed=1), make(device, (4,), 0, 1, seed=2)
    assert npgen.gradcheck(F.binary_cross_entropy_with_logits, [logits, target])


def test_maximum_gradients_of_two_tensors_and_a_tie_shared_evenly(device):
    a, b = make(device, (3, 4), seed=1), make(device, (4,), seed=2)
    assert npgen.gradcheck(F.maximum, [a, b])
    assert npgen.gradcheck(F.minimum, [a, b])
    a = npgen.Tensor(backend.move(np.array([1.0, 2.0, 2.0]), device), requires_grad=True)
    b = npgen.Tensor(backend.move(np.array([1.0, 3.0, 1.0]), device), requires_grad=True)
    F.maximum(a, b).sum().backward()
    np.testing.assert_array_equal(backend.to_numpy(a.grad), [0.5, 0.0, 1.0])
    np.testing.assert_array_equal(backend.to_numpy(b.grad), [0.5, 1.0, 0.0])


def test_amax_shares_a_tie_and_clamp_and_abs_have_pytorchs_gradients_at_their_kinks(device):
    x = npgen.Tensor(backend.move(np.array([[1.0, 3.0, 3.0], [0.0, -1.0, 2.0]]), device), requires_grad=True)
    (x.max(axis=1) * backend.move(np.array([2.0, 1.0]), device)).sum().backward()
    np.testing.assert_array_equal(backend.to_numpy(x.grad), [[0.0, 1.0, 1.0], [0.0, 0.0, 1.0]])
    x = npgen.Tensor(backend.move(np.array([-1.0, 0.0, 0.5, 1.0, 2.0]), device), requires_grad=True)
    (x.clamp(0.0, 1.0) + x.abs()).sum().backward()  # clamp: 1 on [min, max], ends included; abs: sign(x), 0 at 0
    np.testing.assert_array_equal(backend.to_numpy(x.grad), [-1.0, 1.0, 2.0, 2.0, 1.0])


def test_where_takes_each_value_from_one_branch_so_an_infinite_other_branch_gives_no_nan(device):
    """cond·a + (1 − cond)·b would give 0·∞ = NaN where b is infinite and not taken."""
    x = npgen.Tensor(backend.move(np.array([0.0, 4.0]), device), requires_grad=True)
    b = npgen.Tensor(backend.move(np.array([np.inf, -np.inf]), device), requires_grad=True)
    y = F.where(x > 1, x, b)
    np.testing.assert_array_equal(backend.to_numpy(y.data), [np.inf, 4.0])
    y.sum().backward()
    np.testing.assert_array_equal(backend.to_numpy(x.grad), [0.0, 1.0])
    np.testing.assert_array_equal(backend.to_numpy(b.grad), [1.0, 0.0])


def test_dropout_zeroes_about_p_scales_the_rest_and_is_the_identity_in_evaluation(device):
    x = npgen.Tensor(backend.move(np.ones((200, 50)), device), requires_grad=True)
    y = F.dropout(x, 0.3)
    values = backend.to_numpy(y.data)
    assert set(np.unique(values)) == {0.0, 1 / 0.7}
    assert abs((values == 0).mean() - 0.3) < 0.02
    y.sum().backward()
    np.testing.assert_array_equal(backend.to_numpy(x.grad), values)  # ∂y/∂x is the mask itself
    layer = nn.Dropout(0.3).eval()
    assert layer(x) is x and F.dropout(x, 0.3, training=False) is x
    np.testing.assert_array_equal(backend.to_numpy(F.dropout(x, 1.0).data), np.zeros((200, 50)))


def test_concatenate_gradients(device):
    a, b = make(device, (2, 3), seed=1), make(device, (2, 1), seed=2)
    assert npgen.gradcheck(lambda x, y: F.concatenate([x, y], axis=1), [a, b])


def test_concatenate_gradients_of_three_pieces_along_a_negative_axis(device):
    a, b, c = make(device, (2, 3), seed=1), make(device, (2, 1), seed=2), make(device, (2, 2), seed=3)
    assert npgen.gradcheck(lambda x, y, z: F.concatenate([x, y, z], axis=-1), [a, b, c])


def test_binary_cross_entropy_with_logits_gradients(device):
    logits = make(device, (3, 4), -3, 3, seed=1)
    target = make(device, (3, 4), 0, 1, seed=2)
    for reduction in ("mean", "sum", "none"):
        assert npgen.gradcheck(lambda x, t, r=reduction: F.binary_cross_entropy_with_logits(x, t, r), [logits, target])


def test_cross_entropy_gradients(device):
    logits = make(device, (5, 4), -2, 2)
    labels = backend.move(np.array([0, 3, 1, 1, 2]), device)
    assert npgen.gradcheck(lambda x: F.cross_entropy(x, labels), [logits])
    assert npgen.gradcheck(lambda x: F.cross_entropy(x, labels, reduction="none"), [logits])


def test_gaussian_kl_gradients(device):
    mu, logvar = make(device, (3, 4), seed=1), make(device, (3, 4), seed=2)
    assert npgen.gradcheck(F.gaussian_kl, [mu, logvar])


def test_fast_mode_passes_the_same_ops(device):
    a, b = make(device, (4, 3), seed=1), make(device, (3, 2), seed=2)
    assert npgen.gradcheck(lambda x, y: F.tanh(x @ y).sum(axis=0), [a, b], mode="fast")


# --- stability at extreme inputs ------------------------------------------------------------------

EXTREME = np.array([-1e4, -50.0, -1.0, 0.0, 1.0, 50.0, 1e4])


@pytest.mark.parametrize(
    "name, fn",
    [
        ("sigmoid", F.sigmoid),
        ("softplus", F.softplus),
        ("log_sigmoid", F.log_sigmoid),
        ("bce", lambda x: F.binary_cross_entropy_with_logits(x, x * 0 + 1, reduction="none")),
        ("bce_target_0", lambda x: F.binary_cross_entropy_with_logits(x, x * 0, reduction="none")),
        ("logsumexp", lambda x: F.logsumexp(x.reshape(1, -1), axis=1)),
        ("log_softmax", lambda x: F.log_softmax(x.reshape(1, -1))),
        ("cross_entropy", lambda x: F.cross_entropy(x.reshape(1, -1), x.data[:1].astype(np.int64) * 0 + 3)),
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ops_on_logits_of_1e4_give_finite_values_and_gradients(device, name, fn, dtype):
    x = npgen.Tensor(backend.move(EXTREME.astype(dtype), device), requires_grad=True)
    y = fn(x)
    y.sum().backward()
    assert np.all(np.isfinite(y.numpy())), y.numpy()
    assert np.all(np.isfinite(backend.to_numpy(x.grad))), x.grad


def test_softplus_and_log_sigmoid_match_their_definitions_where_those_are_safe():
    x = np.linspace(-20, 20, 41)
    assert np.allclose(F.softplus(npgen.tensor(x)).numpy(), np.log1p(np.exp(x)))
    assert np.allclose(F.log_sigmoid(npgen.tensor(x)).numpy(), -np.log1p(np.exp(-x)))
    assert np.allclose(F.sigmoid(npgen.tensor(x)).numpy(), 1 / (1 + np.exp(-x)))


def test_losses_match_their_formulas():
    rng = np.random.default_rng(0)
    logits, target = rng.normal(size=(4, 5)), rng.uniform(size=(4, 5))
    p = 1 / (1 + np.exp(-logits))
    expected = -(target * np.log(p) + (1 - target) * np.log(1 - p))
    assert np.allclose(F.binary_cross_entropy_with_logits(npgen.tensor(logits), target, "none").numpy(), expected)
    assert np.isclose(F.binary_cross_entropy_with_logits(npgen.tensor(logits), target).item(), expected.mean())
    labels = np.array([1, 0, 4, 2])
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    assert np.isclose(F.cross_entropy(npgen.tensor(logits), labels).item(), -log_p[np.arange(4), labels].mean())
    mu, logvar = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    kl = 0.5 * (mu**2 + np.exp(logvar) - 1 - logvar).sum(axis=1)
    assert np.allclose(F.gaussian_kl(npgen.tensor(mu), npgen.tensor(logvar)).numpy(), kl)


def test_gaussian_kl_is_zero_for_the_prior_itself():
    zeros = npgen.tensor(np.zeros((2, 3)))
    assert np.array_equal(F.gaussian_kl(zeros, zeros).numpy(), np.zeros(2))


def test_gaussian_kl_of_two_gaussians_matches_its_closed_form_and_gradchecks():
    rng = np.random.default_rng(1)
    mu_q, logvar_q, mu_p = (rng.normal(size=(4, 2)) for _ in range(3))
    logvar_p = rng.normal(size=2)  # broadcast against the rows, as a learned prior would be
    var_q, var_p = np.exp(logvar_q), np.exp(logvar_p)
    expected = 0.5 * (np.log(var_p / var_q) + (var_q + (mu_q - mu_p) ** 2) / var_p - 1).sum(axis=1)
    tensors = [npgen.tensor(a, requires_grad=True) for a in (mu_q, logvar_q, mu_p, logvar_p)]
    assert np.allclose(F.gaussian_kl(*tensors).numpy(), expected)
    assert npgen.gradcheck(F.gaussian_kl, tensors)
    numbers = F.gaussian_kl(npgen.tensor(mu_q), npgen.tensor(logvar_q), 0.5, -1.0).numpy()
    expected_numbers = 0.5 * (-1.0 - logvar_q + (var_q + (mu_q - 0.5) ** 2) / np.exp(-1.0) - 1).sum(axis=1)
    assert np.allclose(numbers, expected_numbers)


def test_gaussian_kl_with_the_default_prior_is_the_standard_normal_form():
    rng = np.random.default_rng(2)
    mu, logvar = (npgen.tensor(rng.normal(size=(3, 4))) for _ in range(2))
    general = F.gaussian_kl(mu, logvar, npgen.tensor(np.zeros(4)), npgen.tensor(np.zeros(4)))
    assert np.allclose(F.gaussian_kl(mu, logvar).numpy(), general.numpy())
    assert np.allclose(F.gaussian_kl(mu, logvar, 0, 0).numpy(), general.numpy())


def test_jacobian_by_backward_equals_the_closed_form_of_a_small_function():
    rng = np.random.default_rng(3)
    weight, x = rng.normal(size=(3, 4)), rng.normal(size=(2, 4))
    jacobian = npgen.jacobian(lambda t: F.tanh(t @ npgen.tensor(weight.T)), x)
    expected = np.zeros((2, 3, 2, 4))
    for n in range(2):  # ∂tanh(Wx_n)_i/∂x_n,j = (1 − tanh²)_i W_ij; rows of other samples are 0
        expected[n, :, n, :] = (1 - np.tanh(weight @ x[n]) ** 2)[:, None] * weight
    assert jacobian.shape == (2, 3, 2, 4) and np.allclose(jacobian, expected)
    assert np.array_equal(npgen.jacobian(lambda t: t * 0 + 1, np.ones(3)), np.zeros((3, 3)))


def test_jacobian_refuses_a_function_that_returns_no_tensor():
    with pytest.raises(TypeError, match="fn must return one npgen Tensor, got tuple"):
        npgen.jacobian(lambda t: (t, t), np.ones(2))


def test_softplus_keeps_float32_accuracy_where_exp_of_x_is_tiny():
    """softplus(x) ≈ eˣ for x ≪ 0: log(1 + eˣ) written naively rounds 1 + eˣ to 1 and gives 0."""
    x = np.linspace(-80, -10, 1000).astype(np.float32)
    exact = np.log1p(np.exp(x.astype(np.float64)))
    relative_error = np.abs(F.softplus(npgen.tensor(x)).numpy() - exact) / exact
    assert relative_error.max() < 4e-7  # two float32 ulps


def test_jacobian_refuses_to_run_without_gradients():
    with npgen.no_grad(), pytest.raises(RuntimeError, match="outside no_grad"):
        npgen.jacobian(lambda t: t * t, np.ones(2))
