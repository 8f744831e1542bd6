"""The array-module switch: choosing, moving, refusing to mix, seeding."""

from __future__ import annotations

import subprocess
import sys
import types

import numpy as np
import pytest
from fake_device import FakeArray, fakexp

import npgen
from npgen import F, backend


def test_the_fake_device_refuses_implicit_numpy_like_cupy_does():
    a = FakeArray(np.ones(3))
    with pytest.raises(TypeError):
        np.exp(a)
    with pytest.raises(TypeError):
        np.asarray(a)
    with pytest.raises(TypeError):
        np.ones(3) + a
    with pytest.raises(TypeError):
        fakexp.maximum(a, np.ones(3))


def test_ops_on_device_tensors_stay_on_the_device(device):
    x = npgen.randn(3, 4, requires_grad=True)
    y = F.log_softmax(F.tanh(x @ npgen.randn(4, 2)) * 2.0)
    y.sum().backward()
    expected = backend.get_backend(device).array_type
    assert isinstance(y.data, expected) and isinstance(x.grad, expected)


def test_mixing_backends_in_one_op_raises_a_type_error_naming_both():
    host = npgen.randn(2, device="numpy")
    fake = npgen.randn(2, device="fake")
    with pytest.raises(TypeError, match=r"numpy \(ndarray\) and fake \(FakeArray\)"):
        host + fake


def test_tensor_to_moves_and_back():
    x = npgen.tensor([1.0, 2.0])
    on_fake = x.to("fake")
    assert isinstance(on_fake.data, FakeArray) and on_fake.device == "fake"
    assert np.array_equal(on_fake.to("cpu").numpy(), x.numpy())
    assert x.to("cpu") is x


def test_unknown_backend_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown backend or device 'tpu'"):
        backend.use_backend("tpu")


def test_loading_cupy_without_it_explains_what_is_missing_and_keeps_the_cause(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # what Python does for a package that is not installed
    with pytest.raises(RuntimeError, match="needs CuPy, which is not installed") as info:
        backend._load_cupy()
    assert isinstance(info.value.__cause__, ImportError)


def test_loading_cupy_without_a_device_says_so(monkeypatch):
    runtime = types.SimpleNamespace(getDeviceCount=lambda: 0)
    no_device = types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime))
    monkeypatch.setitem(sys.modules, "cupy", no_device)
    with pytest.raises(RuntimeError, match="needs a CUDA device"):
        backend._load_cupy()


def test_loading_cupy_without_a_cuda_library_names_the_library_and_the_fix(monkeypatch):
    class CudaWithoutCublas:
        runtime = types.SimpleNamespace(getDeviceCount=lambda: 1)
        curand = nvrtc = types.SimpleNamespace()

        def __getattr__(self, name: str):
            raise ImportError(f'Failure finding "lib{name}.so.12": No such file')

    cupy = types.SimpleNamespace(cuda=CudaWithoutCublas(), random=types.SimpleNamespace(RandomState=object))
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    with pytest.raises(RuntimeError, match=r"libcublas\.so\.12.*npgen\[gpu\]"):
        backend._load_cupy()


def test_npgen_backend_environment_variable_chooses_the_default():
    code = "import npgen; print(npgen.backend.get_backend().name)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"NPGEN_BACKEND": "numpy"})
    assert run.stdout.strip() == "numpy"
    bad = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"NPGEN_BACKEND": "tpu"})
    assert "unknown backend or device 'tpu'" in bad.stderr


def test_same_seed_gives_bit_identical_training_losses(device):
    def train() -> list[float]:
        npgen.manual_seed(123)
        model = npgen.nn.Sequential(
            npgen.nn.Linear(5, 8), npgen.nn.BatchNorm1d(8), npgen.nn.ReLU(), npgen.nn.Linear(8, 1)
        )
        opt = npgen.optim.Adam(model.parameters())
        losses = []
        for _ in range(5):
            x = npgen.randn(16, 5)
            loss = F.binary_cross_entropy_with_logits(model(x), npgen.rand(16, 1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses

    assert train() == train()


def test_random_draws_take_the_requested_dtype():
    assert npgen.randn(3, dtype=np.float64).dtype == np.float64
    assert npgen.rand(3).dtype == np.float32
    assert npgen.zeros(2, 3).shape == (2, 3) and npgen.ones((2,)).numpy().tolist() == [1.0, 1.0]
