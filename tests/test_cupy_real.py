"""The installed cupy (no GPU needed): every name and keyword npgen uses exists, and its kernel compiles.

These run in a subprocess, because this test session imports the cupy test double as ``cupy``
where there is no GPU. They skip where cupy (``cupy-cuda12x``) or NVRTC (``nvidia-cuda-nvrtc-cu12``)
is not installed; CI installs both.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cupy_api import USED, scan_npgen

TESTS = Path(__file__).parent


def _with_real_cupy(code: str) -> str:
    """Run ``code`` in a fresh Python that imports the installed cupy; skip if there is none."""
    env = dict(os.environ, PYTHONPATH=str(TESTS))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    if "ModuleNotFoundError: No module named 'cupy" in done.stderr:
        pytest.skip("cupy is not installed (pip install cupy-cuda12x)")
    if "nvrtc" in done.stderr.lower() and ("OSError" in done.stderr or "ImportError" in done.stderr):
        pytest.skip("NVRTC is not installed (pip install nvidia-cuda-nvrtc-cu12)")
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_declared_cupy_api_covers_every_array_module_call_in_npgen():
    calls = scan_npgen()
    assert len(calls) > 20  # the scan finds npgen's calls at all
    undeclared = {
        name: keywords for name, keywords in calls.items() if name not in USED or not keywords <= set(USED[name])
    }
    assert not undeclared, f"add these to tests/cupy_api.py USED: {undeclared}"


def test_every_name_and_keyword_npgen_uses_exists_in_the_installed_cupy():
    out = _with_real_cupy(
        "import json, cupy, cupy_api\n"
        "print(json.dumps(cupy_api.missing(cupy, cupy_api.USED)))\n"
        "controls = {'not_a_function': (), 'ndarray.sum': ('keepdim',), 'concatenate': ('dim',), 'exp': ('where2',)}\n"
        "print(json.dumps(cupy_api.missing(cupy, controls)))\n"
        "print(cupy.__version__)"
    )
    absent, controls, version = out.splitlines()
    assert json.loads(absent) == [], f"cupy {version} lacks what npgen uses"
    # negative controls: a checker that finds nothing missing here would be checking nothing
    assert json.loads(controls) == ["not_a_function", "ndarray.sum(keepdim=)", "concatenate(dim=)", "exp(where2=)"]


def test_the_fused_adam_kernel_compiles_with_nvrtc_and_a_planted_error_does_not():
    out = _with_real_cupy(
        "import cupy_api\n"
        "from npgen.optim import ADAM_KERNEL\n"
        "source = cupy_api.kernel_source(*ADAM_KERNEL)\n"
        "for arch in ('80', '90'):\n"
        "    print(arch, b'npgen_adam_float' in cupy_api.compile_with_nvrtc(source, arch))\n"
        "broken = cupy_api.kernel_source(*ADAM_KERNEL[:2], ADAM_KERNEL[2].replace('g * g;', 'g * g'), ADAM_KERNEL[3])\n"
        "try:\n"
        "    cupy_api.compile_with_nvrtc(broken, '80')\n"
        "    print('planted error compiled')\n"
        "except RuntimeError as error:\n"
        "    print('planted error refused:', str(error).splitlines()[0])\n"
    )
    lines = out.splitlines()
    assert lines[:2] == ["80 True", "90 True"], out
    assert lines[2].startswith("planted error refused:") and "error" in lines[2], out
