"""The autodiff engine: accumulation, deep graphs, no_grad, memory, dtypes and error messages."""

from __future__ import annotations

import gc
import sys
import weakref

import numpy as np
import pytest

import npgen
from npgen import F, Function, Tensor, nn


def test_gradient_of_a_shared_subexpression_accumulates_over_both_paths():
    x = npgen.tensor([2.0, 3.0], requires_grad=True)
    y = x * x  # used twice below
    (y + y * 3).sum().backward()
    assert np.allclose(x.grad, 4 * 2 * x.numpy())


def test_gradients_accumulate_across_backward_calls_until_zeroed():
    x = npgen.tensor([1.0, 2.0], requires_grad=True)
    (x * 3).sum().backward()
    (x * 3).sum().backward()
    assert np.allclose(x.grad, [6.0, 6.0])
    x.grad = None
    (x * 3).sum().backward()
    assert np.allclose(x.grad, [3.0, 3.0])


def test_a_chain_far_deeper_than_pythons_recursion_limit_backpropagates():
    """A recursive backward would stop at ~1000 ops (Python's default limit); the chain is 20 times that."""
    x = npgen.tensor(1.0, requires_grad=True)
    y = x
    for _ in range(20 * sys.getrecursionlimit()):
        y = y * 1.0
    y.backward()
    assert x.grad == pytest.approx(1.0)


def test_no_grad_records_nothing():
    x = npgen.tensor([1.0], requires_grad=True)
    with npgen.no_grad():
        y = x * 2
    assert not y.requires_grad and y.creator is None
    assert npgen.is_grad_enabled()


def test_backward_twice_through_a_freed_graph_raises():
    x = npgen.tensor([1.0], requires_grad=True)
    y = (x * 2).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="already freed"):
        y.backward()


def test_backward_without_grad_on_a_non_scalar_explains():
    x = npgen.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="one-element"):
        (x * 2).backward()


def test_backward_with_an_explicit_upstream_gradient():
    x = npgen.tensor([1.0, 2.0], requires_grad=True)
    (x * 3).backward(np.array([10.0, 100.0], np.float32))
    assert np.allclose(x.grad, [30.0, 300.0])


def test_detach_cuts_the_graph():
    x = npgen.tensor([1.0], requires_grad=True)
    y = (x * 2).detach() * x
    y.sum().backward()
    assert np.allclose(x.grad, [2.0])


def _live(kind: type) -> int:
    gc.collect()
    # type(), not isinstance: isinstance also reads o.__class__, which some libraries' lazy
    # objects (PyTorch's, once another test imported it) answer with a deprecation warning
    return sum(issubclass(type(o), kind) for o in gc.get_objects())


def test_a_training_step_leaves_no_graph_alive():
    npgen.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 1))
    opt = npgen.optim.Adam(model.parameters())
    x = npgen.randn(32, 8)

    def step() -> None:
        loss = F.binary_cross_entropy_with_logits(model(x), np.ones((32, 1), np.float32))
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    functions, tensors = _live(Function), _live(Tensor)
    for _ in range(5):
        step()
    assert _live(Function) == functions == 0
    assert _live(Tensor) == tensors


def test_saved_arrays_are_released_during_backward():
    x = npgen.tensor(np.ones((100, 100), np.float32), requires_grad=True)
    loss = F.exp(x).sum()  # the exp output lives only inside the graph
    exp_node = loss.creator.inputs[0].creator
    saved = weakref.ref(exp_node.saved[0])
    loss.backward()
    assert exp_node.saved == () and exp_node.inputs == ()
    gc.collect()
    assert saved() is None


def test_python_numbers_take_the_tensor_dtype_no_float64_upcast():
    x = npgen.tensor(np.ones(3, np.float32), requires_grad=True)
    y = (2.5 * x + 1.0) / 3.0 - 0.5
    y = F.exp(y) ** 2
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32


def test_float64_arrays_meeting_a_float32_tensor_become_float32():
    x = npgen.tensor(np.ones(3, np.float32), requires_grad=True)
    target = np.full(3, 0.5)  # float64, as numpy makes by default
    assert (x * target).dtype == np.float32
    assert F.binary_cross_entropy_with_logits(x, target).dtype == np.float32


def test_float64_stays_float64():
    x = npgen.tensor(np.ones(3), requires_grad=True)
    assert (x * 2.0).dtype == np.float64


def test_tensor_factory_follows_pytorch_dtypes():
    assert npgen.tensor([1.0, 2.0]).dtype == np.float32
    assert npgen.tensor([1, 2]).dtype == np.int64
    assert npgen.tensor(np.zeros(2)).dtype == np.float64


def test_tensor_factory_copies_so_a_leaf_owns_its_memory():
    a = np.zeros(3, np.float32)
    t = npgen.tensor(a)
    t.data[0] = 1
    assert a[0] == 0


def test_tensor_refuses_what_is_no_array():
    with pytest.raises(TypeError, match="got list"):
        Tensor([1.0, 2.0])


def test_tensor_methods_item_numpy_and_shape():
    x = npgen.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert x.shape == (2, 2) and x.ndim == 2 and x.size == 4 and len(x) == 2
    assert x.sum().item() == 10.0
    assert isinstance(x.numpy(), np.ndarray) and x.device == "cpu"
    assert x.T.numpy()[0, 1] == 3.0
    assert (x > 2.0).numpy().tolist() == [[False, False], [True, True]]
    assert "tensor(" in repr(x)


def test_methods_mirror_functional_ops():
    x = npgen.tensor([0.5, 1.0])
    for name in ("exp", "log", "sqrt", "tanh", "sigmoid", "relu"):
        assert np.allclose(getattr(x, name)().numpy(), getattr(F, name)(x).numpy())


def test_pow_differentiates_a_tensor_base_and_a_tensor_exponent():
    base = npgen.tensor(np.array([0.5, 1.5, 2.0]), requires_grad=True)
    exponent = npgen.tensor(np.array([1.5, -0.5, 2.0]), requires_grad=True)
    assert npgen.gradcheck(lambda a, b: a**b, [base, exponent])
    assert npgen.gradcheck(lambda b: 2.0**b, [exponent])


def test_a_custom_function_is_the_extension_point():
    class Square(Function):
        def forward(self, x):
            self.save_for_backward(x)
            return x * x

        def backward(self, g):
            return 2 * g * self.saved[0]

    x = npgen.tensor([3.0], requires_grad=True)
    Square()(x).sum().backward()
    assert x.grad.tolist() == [6.0]


def test_a_backward_returning_too_few_gradients_is_named():
    class Bad(Function):
        def forward(self, a, b):
            return a + b

        def backward(self, g):
            return g

    a, b = npgen.tensor([1.0], requires_grad=True), npgen.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="Bad.backward returned 1 gradients for 2 inputs"):
        Bad()(a, b).sum().backward()


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "matmul", "constant first"])
def test_binary_ops_compute_no_gradient_for_a_constant_operand(op, monkeypatch):
    from npgen import ops

    x = npgen.randn(4, 3, requires_grad=True)
    constant = np.full((3, 3) if op == "matmul" else (3,), 2.0, np.float32)
    apply = {
        "add": lambda: x + constant,
        "sub": lambda: x - constant,
        "mul": lambda: x * constant,
        "div": lambda: x / constant,
        "matmul": lambda: x @ Tensor(constant),
        "constant first": lambda: constant * x,
    }[op]
    y = apply().sum()
    shapes = []  # every gradient passes through unbroadcast, so its calls name the gradients computed
    original = ops.unbroadcast
    monkeypatch.setattr(ops, "unbroadcast", lambda grad, shape: shapes.append(shape) or original(grad, shape))
    y.backward()
    assert x.grad.shape == (4, 3)
    assert (3,) not in shapes and (3, 3) not in shapes


def test_no_op_checks_anything_in_its_forward_or_backward():
    """Guard rails live in the public functions (npgen/checks.py): a Function's forward and backward are math only."""
    import ast
    from pathlib import Path

    ops_found, offenders = 0, []
    for path in Path(npgen.__file__).parent.rglob("*.py"):
        for cls in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            bases = {getattr(b, "id", None) for b in getattr(cls, "bases", [])}
            if isinstance(cls, ast.ClassDef) and bases & {"Function", "FloatFunction"}:
                ops_found += 1
                for method in (m for m in cls.body if isinstance(m, ast.FunctionDef)):
                    if method.name in ("forward", "backward"):
                        bad = [n for n in ast.walk(method) if isinstance(n, (ast.Raise, ast.Assert, ast.Try))]
                        offenders += [f"{path.name}:{n.lineno} {cls.name}.{method.name}" for n in bad]
    assert ops_found > 30 and not offenders, offenders
