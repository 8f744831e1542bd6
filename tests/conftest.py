"""Shared fixtures: every device test runs on numpy, on the fake device, and on cupy where a GPU exists."""

from __future__ import annotations

import numpy as np
import pytest
from fake_device import register

import npgen
from npgen import backend

register()


def _cupy_usable() -> bool:
    try:
        backend.get_backend("cupy")
        return True
    except RuntimeError:
        return False


CUPY = _cupy_usable()
DEVICES = ["numpy", "fake"] + (["cupy"] if CUPY else [])


def pytest_report_header(config) -> str:
    return f"npgen devices under test: {', '.join(DEVICES)}" + ("" if CUPY else " (cupy: no usable CUDA device)")


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


def make(device: str, shape: tuple, low: float = -1.0, high: float = 1.0, seed: int = 0, requires_grad: bool = True):
    """A float64 leaf tensor on ``device`` with values drawn uniformly from [low, high)."""
    values = np.random.default_rng(seed).uniform(low, high, shape)
    return npgen.Tensor(backend.move(values, device), requires_grad=requires_grad)
