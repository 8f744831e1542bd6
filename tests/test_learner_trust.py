"""What a learner meets in their first hour: their own training loop, their own op, their own experiment.

One test per class of silent wrong answer or unclear error, with the expected values worked out
by hand, so every test here runs without PyTorch (tests/test_torch_parity.py checks the same
classes against PyTorch where it is installed).
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import npgen
from npgen import F, nn, optim
from npgen.gradcheck import _mismatch
from npgen.models.flow import Flow
from npgen.models.gan import Discriminator, Generator, train_step
from npgen.models.vae import VAE

from example_runs import VAE_QUICK, command

# --- your own training loop: in-place operators with PyTorch's rules ------------------------------


def _regression_data() -> tuple[npgen.Tensor, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 3)).astype(np.float32)
    return npgen.tensor(x), (x @ np.array([[1.0], [-2.0], [0.5]], np.float32)).astype(np.float32)


def _mse(model: nn.Module, x: npgen.Tensor, y: np.ndarray) -> npgen.Tensor:
    return ((model(x) - y) ** 2).mean()


def test_a_training_loop_written_with_in_place_updates_trains_exactly_as_sgd():
    x, y = _regression_data()
    npgen.manual_seed(0)
    ours = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    npgen.manual_seed(0)
    reference = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    sgd = optim.SGD(reference.parameters(), lr=0.05)
    first = _mse(ours, x, y).item()
    for _ in range(20):
        loss = _mse(ours, x, y)
        ours.zero_grad()
        loss.backward()
        with npgen.no_grad():
            for p in ours.parameters():
                p -= 0.05 * p.grad
        loss = _mse(reference, x, y)
        sgd.zero_grad()
        loss.backward()
        sgd.step()
    assert _mse(ours, x, y).item() < 0.5 * first
    for (name, p), q in zip(ours.named_parameters(), reference.parameters()):
        np.testing.assert_array_equal(p.data, q.data, err_msg=name)


def test_an_in_place_update_keeps_the_parameter_registered_in_module_optimizer_and_state_dict():
    lin = nn.Linear(2, 3)
    weight, opt = lin.weight, optim.SGD(lin.parameters(), lr=0.1)
    before = weight.data.copy()
    with npgen.no_grad():
        lin.weight -= 0.1  # Python sets lin.weight again: it must keep its place
    assert lin.weight is weight and lin.parameters()[0] is weight and opt.param_groups[0]["params"][0] is weight
    assert [name for name, _ in lin.named_parameters()] == ["weight", "bias"] and list(lin.state_dict()) == [
        "weight",
        "bias",
    ]
    np.testing.assert_allclose(lin.state_dict()["weight"], before - 0.1, rtol=1e-6)


def test_a_tensor_changed_through_detach_or_an_optimizer_step_after_the_forward_pass_is_refused_by_backward():
    w = npgen.tensor([1.0, 2.0], requires_grad=True)
    x = npgen.tensor([3.0, 4.0], requires_grad=True)
    y = (w * x).sum()
    view = x.detach()
    view += 1  # the same array as x, which Mul saved
    with pytest.raises(RuntimeError, match="Mul: a tensor it used was changed in place"):
        y.backward()
    y = (w * x).sum()
    w.grad = np.ones(2, np.float32)
    optim.SGD([w], lr=0.1).step()  # w changes before this graph's backward
    with pytest.raises(RuntimeError, match="Mul"):
        y.backward()


def test_an_in_place_change_of_a_leaf_that_requires_grad_is_refused_outside_no_grad():
    p = npgen.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"leaf tensor that requires grad.*no_grad"):
        p -= 0.1
    np.testing.assert_array_equal(p.data, [1.0, 2.0])


def test_in_place_operators_refuse_what_no_graph_would_record():
    w = npgen.tensor([1.0, 2.0], requires_grad=True)
    y = w * 2
    with pytest.raises(RuntimeError, match=r"write x = x \+ y"):
        y += 1  # y belongs to a graph
    x = npgen.tensor([1.0, 2.0])
    with pytest.raises(RuntimeError, match="not recorded"):
        x *= w  # w requires grad: its gradient would be lost


def test_in_place_operators_change_the_same_array_and_keep_its_dtype_and_shape():
    x = npgen.tensor([1.0, 2.0])
    array = x.data
    x += 1
    x /= 2
    x -= np.array([0.5, 0.5])
    assert x.data is array and x.dtype == np.float32
    np.testing.assert_array_equal(x.numpy(), [0.5, 1.0])
    counts = npgen.tensor(np.array([1, 2]))
    counts += 3
    np.testing.assert_array_equal(counts.numpy(), [4, 5])
    with pytest.raises(TypeError, match="int64 tensor cannot hold"):
        counts += 0.5
    with pytest.raises(TypeError, match="int64 tensor cannot hold"):
        counts /= 2
    with pytest.raises(ValueError, match=r"shape \(2,\) cannot take \+ \(3, 2\)"):
        x += np.ones((3, 2))


def test_backward_refuses_a_saved_tensor_that_was_changed_in_place_after_the_forward_pass():
    w = npgen.tensor([1.0, 2.0], requires_grad=True)
    x = npgen.tensor([3.0, 4.0])
    y = (w * x).sum()
    x += 1  # Mul saved x: its gradient for w would now be wrong
    with pytest.raises(RuntimeError, match=r"Mul: a tensor it used was changed in place"):
        y.backward()
    out = F.exp(w)
    with npgen.no_grad():
        out *= 2  # Exp saved its output
    with pytest.raises(RuntimeError, match="Exp"):
        out.sum().backward()


@pytest.mark.parametrize("value", [np.zeros((3, 2), np.float32), npgen.tensor(np.zeros((3, 2), np.float32))])
def test_assigning_a_non_parameter_to_a_parameters_name_is_a_type_error(value):
    lin = nn.Linear(2, 3)
    weight = lin.weight
    with pytest.raises(TypeError, match=r"Linear\.weight, a parameter: a Parameter or None"):
        lin.weight = value
    assert lin.weight is weight and "weight" in lin.state_dict()


# --- containers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (([nn.Linear(2, 5), nn.ReLU()],), r"got a list at position 0: pass the layers themselves"),
        ((nn.Linear(2, 5), "relu"), r"got a str at position 1"),
    ],
)
def test_sequential_refuses_anything_that_is_not_a_module(args, message):
    with pytest.raises(TypeError, match=message):
        nn.Sequential(*args)


def test_a_list_of_modules_assigned_to_a_module_is_refused():
    model = nn.Module()
    with pytest.raises(TypeError, match=r"list of Modules would not be registered"):
        model.layers = [nn.Linear(2, 2), nn.Linear(2, 2)]


# --- comparisons ---------------------------------------------------------------------------------


def test_comparisons_are_elementwise_boolean_tensors_that_index():
    x = npgen.tensor([0.0, 1.0, 0.0, 2.0])
    for result, expected in [
        (x == 0, [True, False, True, False]),
        (x != 0, [False, True, False, True]),
        (x <= 1, [True, True, True, False]),
        (x >= 1, [False, True, False, True]),
        (x < 1, [True, False, True, False]),
        (x > 1, [False, False, False, True]),
        (x == npgen.tensor([0.0, 0.0, 0.0, 2.0]), [True, False, True, True]),
    ]:
        assert isinstance(result, npgen.Tensor) and result.dtype == np.bool_ and not result.requires_grad
        np.testing.assert_array_equal(result.numpy(), expected)
    np.testing.assert_array_equal(x[x != 0].numpy(), [1.0, 2.0])
    assert (x == None) is False  # noqa: E711 (comparing with None is what this checks)
    assert len({x, x}) == 1  # tensors stay usable as dict keys and set members


# --- 0-d leaves ------------------------------------------------------------------------------------


def test_a_0d_leaf_gets_an_array_gradient_that_clip_grad_norm_scales():
    x = npgen.tensor(2.0, requires_grad=True)
    (x * x).backward()
    assert isinstance(x.grad, np.ndarray) and x.grad.shape == () and x.grad == 4.0
    p = npgen.tensor(1.0, requires_grad=True)
    (p * 20.0).backward()
    assert isinstance(p.grad, np.ndarray)
    assert optim.clip_grad_norm([p], 1.0) == pytest.approx(20.0)
    assert p.grad == pytest.approx(20.0 / (20.0 + 1e-6))


# --- indexing layout ---------------------------------------------------------------------------------

# index → the same selection written as PyTorch applies it: the integers first, then the index arrays
LAYOUTS = {
    "int_slice_array": ((0, slice(None), [0, 1]), lambda a: a[0][:, [0, 1]]),
    "array_none_int": (([0, 1], None, 2), lambda a: a[:, 2][[0, 1], None]),
    "none_int_slice_array": ((None, 1, slice(None), [1]), lambda a: a[None, 1][:, :, [1]]),
    "int_array_slice": ((2, [3, 0, 3], slice(1, 4)), lambda a: a[2][[3, 0, 3], 1:4]),
    "ellipsis_int_mask": ((Ellipsis, 1, np.array([True, False, True, False, True])), lambda a: a[:, 1][:, [0, 2, 4]]),
    "int_mask_array": ((1, np.array([True, False, True, True])), lambda a: a[1][[0, 2, 3]]),
}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_integer_and_array_indices_give_pytorchs_layout_forward_and_backward(name):
    index, expected = LAYOUTS[name]
    array = np.arange(3 * 4 * 5, dtype=np.float64).reshape(3, 4, 5)
    np.testing.assert_array_equal(npgen.tensor(array)[index].numpy(), expected(array))
    x = npgen.tensor(np.random.default_rng(0).standard_normal(array.shape), requires_grad=True)
    assert npgen.gradcheck(lambda t: t[index], [x])


def test_the_reported_case_of_an_integer_a_slice_and_an_index_array():
    assert npgen.tensor(np.zeros((3, 4, 5)))[0, :, [0, 1]].shape == (4, 2)


# --- gradcheck never passes a non-finite value ---------------------------------------------------------


class _NaNBackward(npgen.Function):
    def forward(self, x):
        return x * 2

    def backward(self, g):
        return g * np.nan


class _NaNAtOnePoint(npgen.Function):
    """y = 3x with a backward that is right except for a NaN at element 0 and a wrong factor at element 2."""

    def forward(self, x):
        return x * 3

    def backward(self, g):
        gx = g * 3
        gx[0] = np.nan
        gx[2] *= 1.5
        return gx


@pytest.mark.parametrize("mode", ["full", "fast"])
def test_gradcheck_fails_a_nan_gradient_in_both_modes(mode):
    x = npgen.tensor(np.array([0.3, -0.2, 0.5]), requires_grad=True)
    with pytest.raises(npgen.GradcheckError, match="nan"):
        npgen.gradcheck(lambda t: _NaNBackward()(t), [x], mode=mode)
    with pytest.raises(npgen.GradcheckError):
        npgen.gradcheck(lambda t: _NaNAtOnePoint()(t), [x], mode=mode)
    assert not npgen.gradcheck(lambda t: _NaNAtOnePoint()(t), [x], mode=mode, raise_exception=False)


def test_gradcheck_names_a_nan_first_and_does_not_let_it_hide_other_errors():
    assert _mismatch(np.array([np.nan, 1.0, 9.0]), np.array([1.0, 1.0, 1.0]), 1e-5, 1e-3) == 0
    assert _mismatch(np.array([1.0, 1.0, 9.0]), np.array([1.0, np.nan, 1.0]), 1e-5, 1e-3) == 1
    assert _mismatch(np.array([1.0, 1.0, 9.0]), np.array([1.0, 1.0, 1.0]), 1e-5, 1e-3) == 2
    assert _mismatch(np.array([np.inf, -np.inf]), np.array([np.inf, -np.inf]), 1e-5, 1e-3) is None
    assert _mismatch(np.array([np.inf]), np.array([-np.inf]), 1e-5, 1e-3) == 0
    assert _mismatch(np.array([np.inf, np.nan, 5.0]), np.zeros(3), 1e-5, 1e-3) == 0  # the first of them


def test_gradcheck_fails_a_forward_pass_that_is_not_finite():
    x = npgen.tensor(np.array([1.0, 0.0, 2.0]), requires_grad=True)
    with pytest.raises(npgen.GradcheckError, match=r"output\[0\]\(1,\) is -inf"):
        npgen.gradcheck(F.log, [x])


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(eps=0), "eps must be a finite number > 0, got 0"),
        (dict(eps=-1e-6), "eps must be"),
        (dict(atol=np.nan), "atol must be a finite number ≥ 0, got nan"),
        (dict(rtol=-1.0), "rtol must be"),
        (dict(atol=np.inf), "atol must be"),
    ],
)
def test_gradcheck_refuses_settings_that_would_pass_a_wrong_backward(settings, message):
    x = npgen.tensor(np.array([0.3, -0.2]), requires_grad=True)
    with pytest.raises(ValueError, match=message):
        npgen.gradcheck(lambda t: _NaNBackward()(t), [x], **settings)


# --- logsumexp and log_softmax at the edges -------------------------------------------------------------


def test_logsumexp_of_infinite_and_empty_rows_is_pytorchs():
    inf = np.inf
    rows = npgen.tensor(np.array([[-inf, -inf], [1.0, inf], [-inf, 1.0]]), requires_grad=True)
    y = F.logsumexp(rows, axis=1)
    np.testing.assert_array_equal(y.numpy(), [-inf, inf, 1.0])
    y.backward(np.array([1.0, 1.0, 1.0]))
    np.testing.assert_array_equal(rows.grad, [[np.nan, np.nan], [0.0, np.nan], [0.0, 1.0]])
    np.testing.assert_array_equal(F.logsumexp(npgen.tensor(np.zeros((2, 0))), axis=1).numpy(), [-inf, -inf])
    assert F.logsumexp(npgen.tensor(np.zeros(0))).item() == -inf


def test_log_softmax_and_cross_entropy_of_infinite_rows_are_pytorchs():
    inf = np.inf
    logits = npgen.tensor(np.array([[-inf, -inf], [1.0, inf], [-inf, 1.0]]))
    np.testing.assert_array_equal(F.log_softmax(logits).numpy(), [[np.nan, np.nan], [np.nan, np.nan], [-inf, 0.0]])
    np.testing.assert_array_equal(
        F.cross_entropy(logits, np.array([0, 1, 1]), reduction="none").numpy(), [np.nan, np.nan, 0.0]
    )
    assert F.log_softmax(npgen.tensor(np.zeros((2, 0))), axis=1).shape == (2, 0)


# --- one run per --out at a time ------------------------------------------------------------------------

HOLD_THE_LOCK = (
    "import sys, time; from pathlib import Path; from npgen import runs; "
    "runs.prepare_out(Path(sys.argv[1])); print('locked', flush=True); time.sleep(120)"
)


def _holder(out) -> subprocess.Popen:
    """A process that locks ``out`` as a training run does and then waits."""
    process = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK, str(out)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "locked"
    return process


def test_a_second_run_into_an_out_in_use_stops_before_any_work_naming_the_directory_and_the_holder(tmp_path):
    out = tmp_path / "shared"
    holder = _holder(out)
    try:
        started = time.monotonic()
        second = subprocess.run(
            command("vae.py", *VAE_QUICK, "--epochs", "1", "--out", str(out)),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode != 0
        assert f"--out {out} is in use by another run (pid {holder.pid}" in second.stderr
        assert time.monotonic() - started < 60 and not (out / "metrics.json").exists()
    finally:
        holder.kill()
        holder.wait()


def test_a_run_killed_with_sigkill_leaves_no_stale_lock(tmp_path):
    out = tmp_path / "killed"
    holder = _holder(out)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    again = _holder(out)  # the OS released the dead process's lock
    again.kill()
    again.wait()


def test_two_runs_started_together_into_one_out_leave_one_complete_run(tmp_path):
    out = tmp_path / "both"
    runs = [
        subprocess.Popen(
            command("vae.py", *VAE_QUICK, "--epochs", "1", "--seed", str(seed), "--out", str(out)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (0, 1)
    ]
    results = [(run.wait(timeout=300), run.communicate()[1]) for run in runs]
    codes = sorted(code for code, _ in results)
    assert codes[0] == 0 and codes[1] != 0, results
    refusal = next(err for code, err in results if code != 0)
    assert "in use by another run" in refusal or "holds a run already" in refusal
    assert (out / "checkpoint.npz").is_file() and (out / "metrics.json").is_file()


# --- no silent nonsense ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, error, message",
    [
        (
            lambda: nn.BatchNorm1d(4, momentum=math.nan),
            ValueError,
            r"BatchNorm1d: momentum must be a number in \[0, 1\], got nan",
        ),
        (lambda: nn.BatchNorm1d(4, eps=-1), ValueError, "BatchNorm1d: eps must be a finite number > 0, got -1"),
        (lambda: nn.LeakyReLU(math.nan), ValueError, "LeakyReLU: negative_slope must be a finite number, got nan"),
        (lambda: F.leaky_relu(npgen.tensor([1.0]), math.inf), ValueError, "negative_slope must be a finite number"),
        (lambda: optim.cosine_annealing(math.nan, 0, 10), ValueError, "peak must be a finite number ≥ 0, got nan"),
        (lambda: Flow(n_flows=2, n_hidden=8).sample(2, temperature=math.nan), ValueError, "temperature must be"),
        (lambda: nn.Dropout(1.5), ValueError, r"Dropout: p must be a number in \[0, 1\], got 1.5"),
        (lambda: F.dropout(npgen.tensor([1.0]), -0.1), ValueError, r"dropout: p must be a number in \[0, 1\]"),
        (
            lambda: F.batch_norm(
                npgen.tensor(np.ones((3, 2))), np.zeros(2), np.ones(2), None, None, True, momentum=2.0
            ),
            ValueError,
            r"batch_norm: momentum must be a number in \[0, 1\], got 2.0",
        ),
    ],
)
def test_hyperparameters_outside_their_range_are_refused_where_they_are_given(make, error, message):
    with pytest.raises(error, match=message):
        make()


@pytest.mark.parametrize(
    "pixels, error, message",
    [
        (np.full((4, 784), 255, np.uint8), TypeError, r"uint8 pixels: use x / 127.5 - 1"),
        (np.full((4, 784), 255.0, np.float32), ValueError, r"pixels in \[-1, 1\].*got values in \[255.0, 255.0\]"),
        (np.full((4, 784), np.nan, np.float32), ValueError, r"pixels in \[-1, 1\]"),
    ],
)
def test_the_gan_step_refuses_pixels_outside_minus_one_to_one(pixels, error, message):
    generator, discriminator = Generator(latent_dim=4, hidden=(8, 8)), Discriminator(hidden=(8, 4))
    opt_g, opt_d = optim.Adam(generator.parameters()), optim.Adam(discriminator.parameters())
    with pytest.raises(error, match=message):
        train_step(generator, discriminator, opt_g, opt_d, npgen.tensor(pixels))


# --- common mistakes get messages that name the argument, what came and what was expected ----------------


@pytest.mark.parametrize(
    "mistake, error, message",
    [
        (lambda: optim.Adam(nn.Linear(2, 2)), TypeError, r"Adam takes the parameters, got the Linear itself"),
        (lambda: optim.clip_grad_norm(nn.Linear(2, 2), 1.0), TypeError, r"clip_grad_norm takes the parameters"),
        (lambda: optim.SGD([np.zeros(2)]), TypeError, r"SGD takes Tensors .* got a ndarray"),
        (lambda: optim.Adam(nn.Linear(2, 2).parameters(), betas=0.9), ValueError, r"betas must be two numbers .* 0.9"),
        (lambda: npgen.tensor([1.0]) + _Foreign(), TypeError, r"numpy or cupy arrays, got a .*_Foreign"),
        (
            lambda: npgen.tensor(np.zeros((3, 4, 5))).transpose(0, 5),
            IndexError,
            r"axis 5 is out of range .*\(3, 4, 5\)",
        ),
        (lambda: VAE(hidden=8, z_dim=2).loss(npgen.tensor(np.zeros(784))), ValueError, r"\(N, 784\), got \(784,\)"),
        (lambda: Flow(n_flows=2, n_hidden=8).sample(2, z=np.zeros((2, 10))), ValueError, r"\(2, 784\), got \(2, 10\)"),
        (lambda: npgen.data.DataLoader(np.zeros(4), batch_size="2"), ValueError, r"positive integer, got '2' \(str\)"),
        (lambda: nn.BatchNorm1d(4, momentum=None), ValueError, r"momentum=None .* is not supported"),
        (lambda: F.where(npgen.tensor([1.0]), 1.0, npgen.tensor([0.0])), TypeError, "condition must be a bool"),
        (lambda: F.amax(npgen.tensor(np.zeros((2, 0))), axis=1), ValueError, r"empty axis \(axis=1\).*\(2, 0\)"),
        (lambda: F.unsqueeze(npgen.tensor([1.0]), 3), IndexError, r"axis 3 is out of range .*\(1,\)"),
        (lambda: npgen.tensor(np.zeros((2, 3))).flatten(2), IndexError, r"flatten: axis 2 is out of range"),
        (lambda: npgen.tensor(np.zeros((2, 3))).mean(axis=-3), IndexError, r"mean: axis -3 is out of range"),
        (lambda: F.amax(npgen.tensor(np.zeros((2, 3))), axis=5), IndexError, r"amax: axis 5 is out of range"),
        (lambda: npgen.tensor(np.ones((2, 3))) @ np.ones((2, 3)), ValueError, r"matmul: shapes \(2, 3\) and \(2, 3\)"),
        (
            lambda: nn.Linear(3, 2)(npgen.tensor(np.ones((4, 2)))),
            ValueError,
            r"linear: input of shape \(4, 2\) does not fit",
        ),
    ],
)
def test_common_mistakes_get_a_message_that_names_them(mistake, error, message):
    with pytest.raises(error, match=message):
        mistake()


class _Foreign:
    """Another library's array: it has a dtype, but not numpy's."""

    dtype = "float32"
    shape = (1,)
