"""Shared fixtures: every device test runs on numpy, the fake device, and cupy (real on a GPU, else its double)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from fake_device import register

import npgen
from npgen import backend

from example_runs import stop_unfinished

register()


def _load_cupy_or_its_double() -> str:
    """'cupy' where real cupy has a usable CUDA device; else npgen's cupy code runs on the test double."""
    try:
        backend.get_backend("cupy")
        return "cupy"
    except Exception:  # no cupy, no device, a missing CUDA library: any failure means "no real cupy"
        saved = {m: sys.modules.pop(m) for m in [m for m in sys.modules if m == "cupy" or m.startswith("cupy.")]}
        sys.path.insert(0, str(CUPY_DOUBLE))
        try:
            backend.get_backend("cupy")  # npgen's own _load_cupy, importing the double as cupy
        finally:  # npgen keeps the double as its backend; other packages (torch) see the real cupy or none
            sys.path.remove(str(CUPY_DOUBLE))
            sys.modules.pop("cupy", None)
            sys.modules.update(saved)
        return "cupy double"


CUPY_DOUBLE = Path(__file__).parent / "cupy_double"
CUPY_KIND = _load_cupy_or_its_double()
CUPY = CUPY_KIND == "cupy"  # a real GPU
DEVICES = ["numpy", "fake", "cupy"]


def pytest_report_header(config) -> str:
    return f"npgen devices under test: numpy, fake, cupy (on the {CUPY_KIND})"


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    """The backend name a test runs on; new arrays (parameters, noise) are made there."""
    previous = backend.get_backend().name
    backend.use_backend(request.param)
    npgen.manual_seed(0)
    yield request.param
    backend.use_backend(previous)


@pytest.fixture(autouse=True)
def _seeded():
    npgen.manual_seed(0)


@pytest.fixture(autouse=True)
def _no_run_left_going():
    """A test that failed between starting an example run and finishing it leaves no process behind."""
    yield
    stop_unfinished()


@pytest.fixture(autouse=True, scope="module")
def _no_run_left_going_by_a_module_fixture():
    """The same for a module's shared runs (a fixture that failed half-way), at the module's end."""
    yield
    stop_unfinished()


def make(device: str, shape: tuple, low: float = -1.0, high: float = 1.0, seed: int = 0, requires_grad: bool = True):
    """A float64 leaf tensor on ``device`` with values drawn uniformly from [low, high)."""
    values = np.random.default_rng(seed).uniform(low, high, shape)
    return npgen.Tensor(backend.move(values, device), requires_grad=requires_grad)
