"""gradcheck itself: it must reject wrong backwards, including the ones that fool weaker checks."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make

import npgen
from npgen import Function, GradcheckError, backend


class Cube(Function):
    """y = x³ with a correct backward, the control case."""

    def forward(self, x):
        self.save_for_backward(x)
        return x**3

    def backward(self, g):
        return g * 3 * self.saved[0] ** 2


class CubeIgnoringUpstream(Cube):
    """Forgets to multiply by g: passes a check that only ever uses an all-ones upstream gradient."""

    def backward(self, g):
        return 3 * self.saved[0] ** 2


class CubeWrongDerivative(Cube):
    """2x² instead of 3x²."""

    def backward(self, g):
        return g * 2 * self.saved[0] ** 2


class SumIgnoringUpstream(Function):
    """A scalar-output op whose backward ignores g: one-hot rows (g = 1) cannot see it, a random g can."""

    def forward(self, x):
        self.save_for_backward(x.shape)
        return x.sum()

    def backward(self, g):
        return backend.get_array_module(g).ones(self.saved[0])


def test_a_correct_custom_function_passes(device):
    assert npgen.gradcheck(lambda x: Cube()(x), [make(device, (2, 3))])


@pytest.mark.parametrize("mode", ["full", "fast"])
@pytest.mark.parametrize("wrong", [CubeIgnoringUpstream, CubeWrongDerivative, SumIgnoringUpstream])
def test_a_wrong_custom_function_is_rejected(device, wrong, mode):
    x = make(device, (2, 3), 0.5, 1.5)
    with pytest.raises(GradcheckError):
        npgen.gradcheck(lambda t: wrong()(t), [x], mode=mode)
    assert npgen.gradcheck(lambda t: wrong()(t), [x], mode=mode, raise_exception=False) is False


def test_the_failure_names_the_worst_output_and_input_element():
    class WrongAtOneElement(Cube):
        def backward(self, g):
            gx = g * 3 * self.saved[0] ** 2
            gx[1, 2] += g[1, 2]  # wrong only where output (1, 2) meets input (1, 2)
            return gx

    x = make("numpy", (2, 3), 0.5, 1.5)
    with pytest.raises(GradcheckError, match=r"d output\[0\]\(1, 2\) / d input\[0\]\(1, 2\)"):
        npgen.gradcheck(lambda t: WrongAtOneElement()(t), [x])


def test_a_function_whose_backward_returns_the_wrong_shape_is_rejected_with_the_op_named():
    class WrongShape(Cube):
        def backward(self, g):
            return g.sum(axis=0)

    with pytest.raises(RuntimeError, match="WrongShape.backward returned a gradient of shape"):
        npgen.gradcheck(lambda t: WrongShape()(t), [make("numpy", (2, 3))])


def test_float32_inputs_are_refused_with_a_hint():
    x = npgen.tensor(np.ones((2, 2), np.float32), requires_grad=True)
    with pytest.raises(TypeError, match="float64"):
        npgen.gradcheck(lambda t: t * 2, [x])


def test_inputs_without_grad_are_treated_as_constants():
    x, c = make("numpy", (3,)), make("numpy", (3,), requires_grad=False)
    assert npgen.gradcheck(lambda a, b: a * b, [x, c])


def test_gradcheck_leaves_inputs_and_their_grads_as_they_were():
    x = make("numpy", (2, 3))
    before = x.data.copy()
    x.grad = np.full((2, 3), 7.0)
    npgen.gradcheck(lambda t: t * t, [x], mode="full")
    npgen.gradcheck(lambda t: t * t, [x], mode="fast")
    assert np.array_equal(x.data, before)
    assert np.array_equal(x.grad, np.full((2, 3), 7.0))
