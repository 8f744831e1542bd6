"""Real NVP: identity at initialisation, exact inverses, and log-determinants checked against Jacobians."""

from __future__ import annotations

import math

import numpy as np
import pytest

import npgen
from npgen import backend
from npgen.models import Coupling, Flow, MaskedCoupling
from npgen.models.flow import ALPHA, checkerboard, postprocess, preprocess


def _randomize(module: npgen.nn.Module, scale: float = 0.1, seed: int = 0) -> None:
    """Non-zero weights everywhere (a fresh coupling's last layer is zero, which would hide bugs)."""
    rng = np.random.default_rng(seed)
    for p in module.parameters():
        p.data[...] = backend.move(rng.normal(0, scale, p.shape).astype(p.dtype), p.device)


def _jacobian_by_differences(fn, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """J[i, j] = ∂fᵢ/∂xⱼ at one point x (D,), by central differences."""
    columns = []
    for j in range(len(x)):
        step = np.zeros_like(x)
        step[j] = eps
        columns.append((fn(x + step) - fn(x - step)) / (2 * eps))
    return np.stack(columns, axis=1)


def _jacobian_by_backward(fn_tensor, x: np.ndarray) -> np.ndarray:
    """J by npgen.jacobian: fn_tensor maps a batch of one (1, D) to (1, D)."""
    return npgen.jacobian(fn_tensor, x[None, :])[0, :, 0, :]


def test_checkerboard_masks_alternate_and_complement():
    b0, b1 = checkerboard(28, 0), checkerboard(28, 1)
    assert b0.shape == (784,) and b0.sum() == 392 and np.array_equal(b0 + b1, np.ones(784))
    assert b0.reshape(28, 28)[0, :4].tolist() == [1, 0, 1, 0] and b0.reshape(28, 28)[1, :2].tolist() == [0, 1]


def test_a_fresh_coupling_is_exactly_the_identity():
    x = npgen.randn(5, 784)
    y, logdet = MaskedCoupling(checkerboard(28), n_hidden=32)(x)
    assert np.array_equal(y.numpy(), x.numpy()) and np.array_equal(logdet.numpy(), np.zeros(5))
    x1, x2 = npgen.randn(5, 392), npgen.randn(5, 392)
    y2, logdet = Coupling(392, 392, n_hidden=32)(x1, x2)
    assert np.array_equal(y2.numpy(), x2.numpy()) and np.array_equal(logdet.numpy(), np.zeros(5))


@pytest.mark.parametrize("n", [1, 7, 19])
def test_inverse_undoes_forward_and_their_log_dets_cancel(device, n):
    flow = Flow(n_flows=2, n_hidden=64)
    _randomize(flow, scale=0.05)
    x = npgen.randn(n, 784)
    z, forward_logdet = flow(x)
    x_back, inverse_logdet = flow.inverse(z)
    x_np, back = x.numpy(), x_back.numpy()
    assert np.mean(np.abs(back - x_np) / (np.abs(x_np) + 1e-8)) < 1e-5
    assert (
        np.max(np.abs(forward_logdet.numpy() + inverse_logdet.numpy()))
        < 1e-5 * np.abs(forward_logdet.numpy()).max() + 1e-5
    )
    assert np.abs(forward_logdet.numpy()).min() > 0.1  # the test is not trivially about the identity


def test_coupling_log_det_equals_the_log_determinant_of_its_jacobian():
    masked = MaskedCoupling(checkerboard(4, 1), n_hidden=8).double()
    split = Coupling(7, 9, n_hidden=8).double()  # x = [x₁ (7 values), x₂ (9)] → [x₁, y₂]
    for coupling in (masked, split):
        _randomize(coupling, scale=0.5)

    def full(t: npgen.Tensor, coupling) -> tuple[npgen.Tensor, npgen.Tensor]:
        """The coupling as a map of the whole vector."""
        if coupling is masked:
            return masked(t)
        y2, logdet = split(t[:, :7], t[:, 7:])
        return npgen.F.concatenate([t[:, :7], y2], axis=1), logdet

    x = np.random.default_rng(1).normal(size=16)
    for coupling in (masked, split):
        forward = lambda v, c=coupling: full(npgen.tensor(v[None, :]), c)[0].numpy()[0]  # noqa: E731
        backward_of = lambda t, c=coupling: full(t, c)[0]  # noqa: E731
        _, logdet = full(npgen.tensor(x[None, :]), coupling)
        for jacobian in (_jacobian_by_differences(forward, x), _jacobian_by_backward(backward_of, x)):
            sign, log_abs_det = np.linalg.slogdet(jacobian)
            assert sign != 0 and log_abs_det == pytest.approx(logdet.item(), abs=1e-6)


@pytest.mark.parametrize("parity", [0, 1])
def test_the_split_coupling_computes_what_the_masked_one_does_with_only_its_live_weights(parity):
    """Given a masked coupling's weights, the split form gives the same outputs, log-dets and gradients."""
    side, hidden = 6, 5
    mask = checkerboard(side, parity)
    kept, changed = np.flatnonzero(mask), np.flatnonzero(1 - mask)
    masked = MaskedCoupling(mask, n_hidden=hidden).double()
    _randomize(masked, scale=0.4)
    split = Coupling(len(kept), len(changed), n_hidden=hidden).double()
    w1, b1, w2, b2, w3, b3 = (p.data for p in masked.parameters())
    d = side * side
    live_rows = np.concatenate([changed, d + changed])  # the scale, then the shift, of each changed value
    for p, value in zip(split.parameters(), [w1[:, kept], b1, w2, b2, w3[live_rows], b3[live_rows]]):
        p.data = value.copy()

    rng = np.random.default_rng(7)
    x, g, h = rng.normal(size=(3, d)), rng.normal(size=(3, d)), rng.normal(size=3)
    y, logdet = masked(npgen.tensor(x))
    ((y * g).sum() + (logdet * h).sum()).backward()
    y2, logdet2 = split(npgen.tensor(x[:, kept]), npgen.tensor(x[:, changed]))
    ((y2 * g[:, changed]).sum() + (logdet2 * h).sum()).backward()

    np.testing.assert_allclose(y.numpy()[:, changed], y2.numpy(), rtol=1e-12)
    np.testing.assert_array_equal(y.numpy()[:, kept], x[:, kept])
    np.testing.assert_allclose(logdet.numpy(), logdet2.numpy(), rtol=1e-12)
    g1, gb1, g2, gb2, g3, gb3 = (p.grad for p in masked.parameters())
    expected = [g1[:, kept], gb1, g2, gb2, g3[live_rows], gb3[live_rows]]
    for ours, theirs in zip(split.parameters(), expected):
        np.testing.assert_allclose(ours.grad, theirs, rtol=1e-10, atol=1e-14)
    dead_rows = np.setdiff1d(np.arange(2 * d), live_rows)
    assert not g1[:, changed].any() and not g3[dead_rows].any() and not gb3[dead_rows].any()  # never trained


def test_the_split_coupling_starts_from_the_masked_forms_initial_distribution():
    npgen.manual_seed(0)
    split, masked = Coupling(392, 392, n_hidden=1024, full_dim=784), MaskedCoupling(checkerboard(28), 1024)
    bound = 1 / math.sqrt(784)
    for layer in (split.net[0], masked.net[0]):
        assert np.abs(layer.weight.data).max() <= bound and np.abs(layer.weight.data).max() > 0.99 * bound
        assert np.abs(layer.bias.data).max() <= bound


def test_whole_flow_log_det_equals_the_log_determinant_of_its_jacobian():
    flow = Flow(n_flows=2, n_hidden=8, side=4).double()
    _randomize(flow, scale=0.5)
    x = np.random.default_rng(2).normal(size=16)
    _, logdet = flow(npgen.tensor(x[None, :]))
    forward = lambda v: flow(npgen.tensor(v[None, :]))[0].numpy()[0]  # noqa: E731
    for jacobian in (_jacobian_by_differences(forward, x), _jacobian_by_backward(lambda t: flow(t)[0], x)):
        assert np.linalg.slogdet(jacobian)[1] == pytest.approx(logdet.item(), abs=1e-6)


def test_preprocessing_log_det_equals_the_log_determinant_of_its_jacobian():
    rng = np.random.default_rng(3)
    x, u = rng.integers(0, 256, (1, 9)).astype(np.float64), rng.uniform(size=(1, 9))
    _, logdet = preprocess(x, u)
    jacobian = _jacobian_by_differences(lambda v: preprocess(v[None, :], np.zeros((1, 9)))[0][0], (x + u)[0], eps=1e-5)
    assert np.linalg.slogdet(jacobian)[1] == pytest.approx(logdet[0], abs=1e-6)
    jacobian_backward = _jacobian_by_backward(lambda t: _preprocess_as_ops(t), (x + u)[0])
    assert np.linalg.slogdet(jacobian_backward)[1] == pytest.approx(logdet[0], abs=1e-6)


def _preprocess_as_ops(x_tilde: npgen.Tensor) -> npgen.Tensor:
    """The preprocessing written with npgen ops, so backward can differentiate it."""
    p = ALPHA / 2 + (1 - ALPHA) * x_tilde / 256
    return npgen.F.log(p) - npgen.F.log(1 - p)


def test_postprocess_inverts_preprocess():
    rng = np.random.default_rng(4)
    x, u = rng.integers(0, 256, (3, 784)).astype(np.float64), rng.uniform(size=(3, 784))
    y, _ = preprocess(x, u)
    assert np.allclose(postprocess(y), x + u, atol=1e-6)


def test_log_prob_gradients_with_respect_to_the_coupling_networks(device):
    flow = Flow(n_flows=1, n_hidden=3, side=2).double()
    _randomize(flow, scale=0.3)
    x = backend.move(np.array([[0.0, 17.0, 200.0, 255.0], [3.0, 128.0, 64.0, 9.0]]), device)
    u = backend.move(np.random.default_rng(5).uniform(size=(2, 4)), device)
    assert npgen.gradcheck(lambda *params: flow.log_prob(x, u), flow.parameters())


def test_bits_per_dim_of_an_identity_flow_match_the_formula_written_out():
    flow = Flow(n_flows=1, n_hidden=4)
    rng = np.random.default_rng(6)
    x, u = rng.integers(0, 256, (4, 784)).astype(np.float32), rng.uniform(size=(4, 784)).astype(np.float32)
    d = 784
    v = (x.astype(np.float64) + u) / 256
    p = ALPHA / 2 + (1 - ALPHA) * v
    y = np.log(p) - np.log(1 - p)
    log_px = (
        -0.5 * (y**2 + np.log(2 * np.pi)).sum(1) - d * np.log(256) + d * np.log(1 - ALPHA) - np.log(p * (1 - p)).sum(1)
    )
    expected = -log_px / (d * np.log(2))
    assert np.allclose(flow.bpd(x, u).numpy(), expected, rtol=1e-5)
    assert np.all(expected > 8)  # a missing ln 256 term would put these 8 bits lower


def test_extreme_images_have_finite_log_probabilities():
    flow = Flow(n_flows=1, n_hidden=16)
    _randomize(flow, scale=0.05)
    images = np.stack([np.zeros(784), np.full(784, 255.0), np.tile([0.0, 255.0], 392)]).astype(np.uint8)
    for u in (np.zeros((3, 784), np.float32), np.full((3, 784), 0.999999, np.float32), None):
        assert np.all(np.isfinite(flow.log_prob(images, u).numpy()))


def test_samples_are_integer_pixels(device):
    flow = Flow(n_flows=1, n_hidden=16)
    images = flow.sample(6, temperature=0.7).numpy()
    assert images.shape == (6, 784) and images.min() >= 0 and images.max() <= 255
    assert np.array_equal(images, np.floor(images))


def test_parameter_count_of_the_reference_model():
    n = sum(p.size for p in Flow(n_flows=4, n_hidden=1024).parameters())
    assert n == 8 * (392 * 1024 + 1024 + 1024 * 1024 + 1024 + 1024 * 784 + 784) and math.isclose(
        n / 1e6, 18.0, abs_tol=0.05
    )
    masked = 8 * (784 * 1024 + 1024 + 1024 * 1024 + 1024 + 1024 * 1568 + 1568)  # 27.7M in the masked form
    assert math.isclose(1 - n / masked, 0.35, abs_tol=0.01)


def _masked_twin(flow: Flow, side: int, hidden: int) -> list:
    """The masked couplings, in image order, computing what ``flow``'s split couplings compute."""
    d, twins = side * side, []
    for k, coupling in enumerate(flow.couplings):
        mask = checkerboard(side, k % 2)
        kept, changed = np.flatnonzero(mask), np.flatnonzero(1 - mask)
        twin = MaskedCoupling(mask, n_hidden=hidden).double()
        w1, b1, w2, b2, w3, b3 = (p.data for p in coupling.parameters())
        full_w1, full_w3, full_b3 = np.zeros((hidden, d)), np.zeros((2 * d, hidden)), np.zeros(2 * d)
        full_w1[:, kept] = w1
        full_w3[np.concatenate([changed, d + changed])] = w3
        full_b3[np.concatenate([changed, d + changed])] = b3
        for p, value in zip(twin.parameters(), [full_w1, b1, w2, b2, full_w3, full_b3]):
            p.data = value.copy()
        twins.append(twin)
    return twins


def test_the_split_flow_gives_the_masked_flows_likelihood_and_samples_in_image_order():
    side, hidden = 4, 5
    flow = Flow(n_flows=2, n_hidden=hidden, side=side).double()
    _randomize(flow, scale=0.4)
    twins = _masked_twin(flow, side, hidden)
    rng = np.random.default_rng(8)
    x, u = rng.integers(0, 256, (3, 16)).astype(np.float64), rng.uniform(size=(3, 16))

    y, logdet = preprocess(x, u)
    y = npgen.tensor(y)
    for twin in twins:  # the masked flow on pixels in image order
        y, ld = twin(y)
        logdet = logdet + ld.numpy()
    expected = -0.5 * (y.numpy() ** 2 + np.log(2 * np.pi)).sum(1) + logdet
    np.testing.assert_allclose(flow.log_prob(x, u).numpy(), expected, rtol=1e-12)

    z = rng.normal(size=(3, 16))  # in the split flow's (checkerboard) order
    z_image = np.empty_like(z)
    z_image[:, flow.order] = z
    back = npgen.tensor(z_image)
    for twin in reversed(twins):
        back, _ = twin.inverse(back)
    expected_images = np.clip(np.floor(postprocess(back.numpy())), 0, 255)
    np.testing.assert_array_equal(flow.sample(3, z=z).numpy(), expected_images)
