"""Every fused op gives what its plain version, composed of other ops, gives: values and gradients, on every backend.

The plain versions (``F.*_plain``) need no VJP of their own, so this proves each hand-written VJP
of a fused op against the chain rule through simpler ops. Inputs stay where the plain forms are
valid: finite, no ties (maximum, amax), no zero (leaky_relu's kink).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make

import npgen
from npgen import F, backend


def _labels(device: str) -> object:
    return backend.move(np.array([2, 0, 3, 3, 1]), device)


def _mask(device: str) -> object:
    return backend.move(np.array([[True, False, True, False]] * 5), device)


# name → (fused, plain, input shapes, value range); functions take the device name and then the inputs
PAIRS = {
    "linear": (
        lambda d, x, w, b: F.linear(x, w, b),
        lambda d, x, w, b: F.linear_plain(x, w, b),
        [(5, 3), (4, 3), (4,)],
    ),
    "linear_no_bias": (lambda d, x, w: F.linear(x, w), lambda d, x, w: F.linear_plain(x, w), [(2, 5, 3), (4, 3)]),
    "batch_norm": (
        lambda d, x, w, b: F.batch_norm(
            x, backend.move(np.zeros(4), d), backend.move(np.ones(4), d), w, b, training=True, eps=1e-3
        ),
        lambda d, x, w, b: F.batch_norm_plain(x, w, b, eps=1e-3),
        [(5, 4), (4,), (4,)],
    ),
    "log_softmax": (lambda d, x: F.log_softmax(x), lambda d, x: F.log_softmax_plain(x), [(5, 4)]),
    "log_softmax_axis0": (lambda d, x: F.log_softmax(x, 0), lambda d, x: F.log_softmax_plain(x, 0), [(5, 4)]),
    "logsumexp": (lambda d, x: F.logsumexp(x, axis=1), lambda d, x: F.logsumexp_plain(x, axis=1), [(5, 4)]),
    "logsumexp_all_keepdims": (
        lambda d, x: F.logsumexp(x, keepdims=True),
        lambda d, x: F.logsumexp_plain(x, keepdims=True),
        [(5, 4)],
    ),
    "binary_cross_entropy_with_logits": (
        lambda d, x, t: F.binary_cross_entropy_with_logits(x, t, reduction="none"),
        lambda d, x, t: F.binary_cross_entropy_with_logits_plain(x, t),
        [(5, 4), (4,)],
    ),
    "cross_entropy": (
        lambda d, x: F.cross_entropy(x, _labels(d), reduction="none"),
        lambda d, x: F.cross_entropy_plain(x, _labels(d)),
        [(5, 4)],
    ),
    "gaussian_kl": (lambda d, m, v: F.gaussian_kl(m, v), lambda d, m, v: F.gaussian_kl_plain(m, v), [(5, 4), (5, 4)]),
    "leaky_relu": (lambda d, x: F.leaky_relu(x, 0.2), lambda d, x: F.leaky_relu_plain(x, 0.2), [(5, 4)]),
    "where": (
        lambda d, a, b: F.where(_mask(d), a, b),
        lambda d, a, b: F.where_plain(_mask(d), a, b),
        [(5, 4), (4,)],
    ),
    "maximum": (lambda d, a, b: F.maximum(a, b), lambda d, a, b: F.maximum_plain(a, b), [(5, 4), (4,)]),
    "amax": (lambda d, x: F.amax(x, axis=0), lambda d, x: F.amax_plain(x, axis=0), [(5, 4)]),
    "amax_all_keepdims": (
        lambda d, x: F.amax(x, keepdims=True),
        lambda d, x: F.amax_plain(x, keepdims=True),
        [(5, 4)],
    ),
}


def _run(fn, device: str, shapes: list, upstream_seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    inputs = [make(device, shape, -2.0, 2.0, seed=i + 1) for i, shape in enumerate(shapes)]
    y = fn(device, *inputs)
    upstream = backend.move(np.random.default_rng(upstream_seed).standard_normal(y.shape), device)
    y.backward(upstream)
    return backend.to_numpy(y.data), [backend.to_numpy(x.grad) for x in inputs]


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_the_fused_op_gives_its_plain_versions_values_and_gradients(device, name):
    fused, plain, shapes = PAIRS[name]
    y_fused, grads_fused = _run(fused, device, shapes, upstream_seed=7)
    y_plain, grads_plain = _run(plain, device, shapes, upstream_seed=7)
    assert y_fused.shape == y_plain.shape
    np.testing.assert_allclose(y_fused, y_plain, rtol=1e-12, atol=1e-12, err_msg=f"{name} values")
    for k, (a, b) in enumerate(zip(grads_fused, grads_plain)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=f"{name} gradient of input {k}")


def test_every_plain_version_in_functional_is_compared_here():
    plain = {name.removesuffix("_plain") for name in dir(F) if name.endswith("_plain")}
    compared = {name for name in PAIRS if name in plain}
    assert plain == compared, f"plain versions without a comparison: {sorted(plain - compared)}"


def test_the_plain_versions_are_written_with_ops_only():
    """A plain version records a graph of other ops: no Function of its own in functional.py."""
    x = npgen.Tensor(np.ones((2, 3)), requires_grad=True)
    y = F.log_softmax_plain(x)
    assert type(y.creator).__name__ == "Sub"
