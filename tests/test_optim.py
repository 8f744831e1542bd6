"""Optimizers: the update rules written out by hand, lazily created state, and moving devices."""

from __future__ import annotations

import numpy as np
import pytest

import npgen
from npgen import backend, optim


def _param(values) -> npgen.Tensor:
    return npgen.Tensor(np.array(values, np.float64), requires_grad=True)


def test_adam_matches_the_bias_corrected_update_written_out():
    p = _param([1.0, -2.0, 3.0])
    opt = optim.Adam([p], lr=0.1, betas=(0.8, 0.9), eps=1e-8, weight_decay=0.01)
    x, m, v = p.data.copy(), np.zeros(3), np.zeros(3)
    rng = np.random.default_rng(0)
    for t in range(1, 6):
        g = rng.normal(size=3)
        p.grad = g.copy()
        opt.step()
        g = g + 0.01 * x
        m = 0.8 * m + 0.2 * g
        v = 0.9 * v + 0.1 * g * g
        x = x - 0.1 * (m / (1 - 0.8**t)) / (np.sqrt(v / (1 - 0.9**t)) + 1e-8)
        assert np.allclose(p.data, x, rtol=1e-12, atol=1e-12)


def test_sgd_with_momentum_matches_the_update_written_out():
    p = _param([1.0, 2.0])
    opt = optim.SGD([p], lr=0.5, momentum=0.9)
    x, buf = p.data.copy(), np.zeros(2)
    for g in ([1.0, 0.0], [0.5, -1.0], [0.0, 2.0]):
        p.grad = np.array(g)
        opt.step()
        buf = 0.9 * buf + np.array(g)
        x = x - 0.5 * buf
    assert np.allclose(p.data, x)


def test_plain_sgd_needs_no_state():
    p = _param([1.0])
    opt = optim.SGD([p], lr=0.1)
    p.grad = np.array([2.0])
    opt.step()
    assert np.allclose(p.data, [0.8]) and opt.state == {}


def test_parameters_without_gradient_are_left_alone():
    a, b = _param([1.0]), _param([1.0])
    opt = optim.Adam([a, b])
    a.grad = np.array([1.0])
    opt.step()
    assert b.data[0] == 1.0 and 1 not in opt.state


def test_updates_happen_in_place():
    p = _param([1.0, 2.0])
    data = p.data
    opt = optim.Adam([p])
    p.grad = np.ones(2)
    opt.step()
    assert p.data is data


def test_state_is_created_on_the_parameter_device_and_follows_a_move(device):
    model = npgen.nn.Linear(3, 2)
    opt = optim.Adam(model.parameters())
    model(npgen.randn(4, 3)).sum().backward()
    opt.step()
    assert backend.backend_of(opt.state[0]["exp_avg"]).name == device
    model.to("numpy")
    model(npgen.randn(4, 3, device="numpy")).sum().backward()
    opt.step()
    assert isinstance(opt.state[0]["exp_avg"], np.ndarray)


def test_zero_grad_clears_every_gradient():
    p = _param([1.0])
    p.grad = np.ones(1)
    opt = optim.Adam([p])
    opt.zero_grad()
    assert p.grad is None


def test_state_dict_round_trip_continues_identically():
    def run(opt_from=None):
        p = _param([1.0, 2.0])
        opt = optim.Adam([p], lr=0.1)
        if opt_from is not None:
            p.data[...] = opt_from[0]
            opt.load_state_dict(opt_from[1])
        for g in ([1.0, -1.0], [0.5, 0.5]):
            p.grad = np.array(g)
            opt.step()
        return p.data.copy(), opt.state_dict()

    after_two, state = run()
    resumed, _ = run((after_two, state))
    straight = _param([1.0, 2.0])
    opt = optim.Adam([straight], lr=0.1)
    for g in ([1.0, -1.0], [0.5, 0.5]) * 2:
        straight.grad = np.array(g)
        opt.step()
    assert np.array_equal(resumed, straight.data)


def test_load_state_dict_rejects_a_shape_mismatch():
    opt = optim.Adam([_param([1.0, 2.0])])
    bad = {"state": {0: {"step": 1, "exp_avg": np.zeros(3), "exp_avg_sq": np.zeros(3)}}, "param_groups": [{}]}
    with pytest.raises(ValueError, match=r"exp_avg of parameter 0: expected shape \(2,\), got \(3,\)"):
        opt.load_state_dict(bad)


def test_an_empty_parameter_list_is_refused():
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.Adam([])


def test_clip_grad_norm_scales_every_gradient_to_the_global_norm(device):
    model = npgen.nn.Linear(3, 2)
    model(npgen.randn(4, 3)).sum().backward()
    grads = [npgen.backend.to_numpy(p.grad).astype(np.float64) for p in model.parameters()]
    norm = np.sqrt(sum((g**2).sum() for g in grads))
    returned = optim.clip_grad_norm(model.parameters(), max_norm=norm / 4)
    assert returned == pytest.approx(norm, rel=1e-5)
    for p, g in zip(model.parameters(), grads):
        assert np.allclose(npgen.backend.to_numpy(p.grad), g / 4, rtol=1e-5)


def test_clip_grad_norm_leaves_small_gradients_and_missing_ones_alone():
    p, q = _param([3.0, 4.0]), _param([1.0])
    p.grad = np.array([0.3, 0.4])
    assert optim.clip_grad_norm([p, q], max_norm=1.0) == pytest.approx(0.5)
    assert np.array_equal(p.grad, [0.3, 0.4]) and q.grad is None


@pytest.mark.parametrize("layout", ["several chunks", "strided (not contiguous)"])
def test_adam_updates_every_element_of_large_and_strided_parameters(layout):
    rng = np.random.default_rng(1)
    if layout == "several chunks":
        data = rng.normal(size=3 * optim.CHUNK + 7)  # the last chunk a short one
    else:
        data = np.asfortranarray(rng.normal(size=(300, 200)))
    p = npgen.Tensor(data, requires_grad=True)
    opt = optim.Adam([p], lr=0.01)
    x, m, v = data.copy(), np.zeros(data.shape), np.zeros(data.shape)
    for t in range(1, 4):
        g = rng.normal(size=data.shape)
        p.grad = g.copy()
        opt.step()
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        x = x - 0.01 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    assert p.data is data
    assert np.allclose(p.data, x, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("size", [5, optim.CHUNK * 3 + 3], ids=["one_chunk", "several_chunks"])
def test_the_fast_adam_gives_the_plain_updates_numbers(device, size):
    """The chunked host path and the fused GPU kernel against adam_update written as the paper."""
    start = np.random.default_rng(0).normal(size=size).astype(np.float32)
    params = [npgen.Tensor(backend.move(start.copy(), device), requires_grad=True) for _ in range(2)]
    fast, plain = (
        optim.Adam([p], lr=0.01, betas=(0.8, 0.99), weight_decay=0.1, fast=f) for p, f in zip(params, (True, False))
    )
    for t in range(3):
        g = np.random.default_rng(t + 1).normal(size=size).astype(np.float32)
        for p in params:
            p.grad = backend.move(g.copy(), device)
        fast.step()
        plain.step()
    np.testing.assert_allclose(backend.to_numpy(params[0].data), backend.to_numpy(params[1].data), rtol=2e-6, atol=1e-7)
    assert not np.array_equal(backend.to_numpy(params[0].data), start)


def test_cosine_annealing_runs_from_the_peak_rate_to_zero_and_refuses_steps_outside_it():
    rates = [optim.cosine_annealing(1e-3, step, 100) for step in range(101)]
    assert rates[0] == 1e-3 and rates[50] == pytest.approx(5e-4) and rates[100] == pytest.approx(0, abs=1e-18)
    assert all(a > b for a, b in zip(rates, rates[1:]))  # strictly falling
    assert rates[25] - rates[26] < rates[50] - rates[51]  # slow at the ends, fastest halfway
    for step in (-1, 101):
        with pytest.raises(ValueError, match=f"step {step} is outside the schedule's 0..100"):
            optim.cosine_annealing(1e-3, step, 100)
    with pytest.raises(ValueError, match="total ≥ 1"):
        optim.cosine_annealing(1e-3, 0, 0)  # a schedule of no steps


def test_sgd_weight_decay_adds_decay_times_the_weight_to_the_gradient():
    p = npgen.tensor(np.array([1.0, -2.0]), requires_grad=True)
    p.grad = np.array([0.5, 0.5])
    optim.SGD([p], lr=0.1, weight_decay=0.2).step()  # p − lr·(g + λp)
    np.testing.assert_allclose(p.data, [1.0 - 0.1 * (0.5 + 0.2), -2.0 - 0.1 * (0.5 - 0.4)], rtol=1e-12)


def test_clip_grad_norm_adds_its_epsilon_to_the_norm():
    """With a norm of 2e-6 the 1e-6 in max_norm / (norm + 1e-6) changes the factor by a third."""
    p = npgen.tensor(np.zeros(2), requires_grad=True)
    p.grad = np.array([0.0, 2e-6])
    assert optim.clip_grad_norm([p], 1e-6) == pytest.approx(2e-6, rel=1e-12)
    np.testing.assert_allclose(p.grad, [0.0, 2e-6 * 1e-6 / 3e-6], rtol=1e-12)


def test_clip_grad_norm_of_a_nan_gradient_makes_every_gradient_nan():
    p, q = npgen.tensor(np.zeros(2), requires_grad=True), npgen.tensor(np.zeros(1), requires_grad=True)
    p.grad, q.grad = np.array([np.nan, 1.0]), np.array([1.0])
    assert np.isnan(optim.clip_grad_norm([p, q], 1.0))
    assert np.isnan(p.grad).all() and np.isnan(q.grad).all()


@pytest.mark.parametrize("eps", [1e-3, 0.5])
def test_the_fast_adam_with_a_large_eps_gives_the_plain_updates_numbers(eps):
    rng = np.random.default_rng(0)
    start, grads = rng.standard_normal(1000), [rng.standard_normal(1000) * 1e-3 for _ in range(3)]
    params = [npgen.tensor(start.copy(), requires_grad=True) for _ in range(2)]
    fast, plain = (optim.Adam([p], lr=0.01, eps=eps, fast=f) for p, f in zip(params, (True, False)))
    for g in grads:
        for p in params:
            p.grad = g.copy()
        fast.step(), plain.step()
    np.testing.assert_allclose(params[0].data, params[1].data, rtol=1e-12, atol=1e-15)
    moved = np.abs(params[1].data - start).max()
    assert moved > 1e-4  # eps this large still lets Adam move, so the comparison means something


@pytest.mark.parametrize("max_norm", [0.0, -1.0, float("nan")])
def test_clip_grad_norm_refuses_a_bound_that_is_not_positive(max_norm):
    p = npgen.tensor(np.zeros(2), requires_grad=True)
    p.grad = np.ones(2)
    with pytest.raises(ValueError, match="max_norm must be positive"):
        optim.clip_grad_norm([p], max_norm)
    np.testing.assert_array_equal(p.grad, [1.0, 1.0])


def test_clip_grad_norm_of_parameters_without_gradients_is_zero():
    p = npgen.tensor(np.zeros(2), requires_grad=True)
    assert optim.clip_grad_norm([p], 1.0) == 0.0 and p.grad is None
