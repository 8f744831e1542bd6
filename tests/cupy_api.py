"""What npgen asks of cupy: every array-module name, ndarray method and keyword, and a checker.

``USED`` is the declared list; ``scan_npgen`` reads npgen's source for the array-module calls it
makes (``xp.name(...)``, ``get_array_module(...).name(...)``), so a test can prove the list
complete; ``missing`` looks each entry up in an installed cupy (no GPU needed) and returns what
is absent. Run as a script, it prints ``missing(cupy, USED)`` as JSON for the real cupy.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
from pathlib import Path
from typing import Any

NPGEN = Path(__file__).parents[1] / "npgen"

# dotted name → the keywords npgen passes to it
USED: dict[str, tuple[str, ...]] = {
    # array-module functions called as xp.name(...)
    **{name: () for name in "abs arange broadcast_to clip empty exp floor full isfinite log log1p maximum".split()},
    "asarray": ("dtype",),
    **{name: () for name in "ones ones_like sign tanh vdot where zeros zeros_like".split()},
    "concatenate": ("axis",),
    "split": ("axis",),
    "divide": ("out",),
    "multiply": ("out",),
    "sqrt": ("out",),
    "add.at": (),
    "ElementwiseKernel": (),
    # npgen/backend.py: loading, moving, random numbers, memory
    "ndarray": (),
    "asnumpy": (),
    "cuda.runtime.getDeviceCount": (),
    "cuda.Device.synchronize": (),
    "get_default_memory_pool": (),
    "random.RandomState": (),
    "random.RandomState.seed": (),
    "random.RandomState.standard_normal": ("dtype",),
    "random.RandomState.uniform": ("dtype",),
    "random.RandomState.permutation": (),
    # ndarray methods the ops call
    "ndarray.astype": ("copy",),
    "ndarray.sum": ("axis", "keepdims", "dtype"),
    "ndarray.max": ("axis", "keepdims"),
    "ndarray.mean": ("axis",),
    "ndarray.var": ("axis",),
    **{f"ndarray.{name}": () for name in "reshape transpose swapaxes squeeze ravel copy item get".split()},
}

UFUNC_KEYWORDS = {"out", "dtype", "casting"}


def scan_npgen() -> dict[str, set[str]]:
    """Every array-module call in npgen's source: {name: keywords passed}."""
    calls: dict[str, set[str]] = {}
    for path in NPGEN.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                name = _array_module_attribute(node.func)
                if name:
                    calls.setdefault(name, set()).update(k.arg for k in node.keywords if k.arg)
    return calls


def _array_module_attribute(func: ast.Attribute) -> str | None:
    """'name' for xp.name / get_array_module(...).name / backend.xp.name, 'add.at' for xp.add.at."""
    value = func.value
    if isinstance(value, ast.Attribute) and _is_array_module(value.value):
        return f"{value.attr}.{func.attr}"
    return func.attr if _is_array_module(value) else None


def _is_array_module(node: ast.AST) -> bool:
    if isinstance(node, ast.Name):
        return node.id == "xp"
    if isinstance(node, ast.Attribute):
        return node.attr == "xp"
    return isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "get_array_module"


def _parameters(fn: Any) -> set[str] | None:
    """The parameter names of a function, a Cython method (from its docstring's first line) or None for a ufunc."""
    if type(fn).__name__ == "ufunc":
        return None
    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        first = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        match = re.match(r"[\w.]+\((.*)\)", first)
        if not match:
            return set()
        return {p.split("=")[0].strip().lstrip("*").split()[-1] for p in match.group(1).split(",") if p.strip()}


def missing(cupy: Any, used: dict[str, tuple[str, ...]]) -> list[str]:
    """The entries of ``used`` (names, or 'name(keyword=)') that the given cupy module lacks."""
    absent = []
    for dotted, keywords in used.items():
        obj = cupy
        for part in dotted.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if obj is None:
            absent.append(dotted)
            continue
        known = _parameters(obj)
        allowed = UFUNC_KEYWORDS if known is None else known
        absent += [f"{dotted}({k}=)" for k in keywords if k not in allowed and "kwargs" not in allowed]
    return absent


def kernel_source(in_params: str, out_params: str, body: str, name: str) -> str:
    """A CUDA translation unit running an ElementwiseKernel body for float and double, as cupy would.

    cupy generates its own wrapper only when a kernel is first called on a device; this one gives
    the body the same names and types (inputs by value, outputs by reference), so NVRTC checks
    npgen's part of the kernel on a machine without a GPU.
    """
    ins = ", ".join(f"const T {p.split()[-1]}" for p in in_params.split(","))
    outs = ", ".join(f"T &{p.split()[-1]}" for p in out_params.split(","))
    args = [p.split()[-1] for p in in_params.split(",")]
    results = [p.split()[-1] for p in out_params.split(",")]
    kernels = []
    for ctype in ("float", "double"):
        params = ", ".join([f"const {ctype}* {a}" if a == args[0] else f"{ctype} {a}" for a in args])
        params += ", " + ", ".join(f"{ctype}* {r}" for r in results) + ", long long n"
        call = ", ".join([f"{args[0]}[i]", *args[1:], *(f"{r}[i]" for r in results)])
        kernels.append(
            f'extern "C" __global__ void {name}_{ctype}({params}) {{\n'
            f"  long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;\n"
            f"  if (i < n) {name}_body<{ctype}>({call});\n}}"
        )
    return f"template <typename T>\n__device__ void {name}_body({ins}, {outs}) {{\n{body}\n}}\n\n" + "\n".join(kernels)


def compile_with_nvrtc(source: str, arch: str) -> bytes:
    """The machine code (CUBIN) of ``source`` for GPU architecture sm_``arch`` ('80', '90'), compiled without a GPU.

    cupy's own compiler entry points ask the (absent) device for its architecture, so this uses
    cupy's NVRTC binding (cupy_backends.cuda.libs.nvrtc) directly; a compile error raises with NVRTC's log.
    """
    from cupy_backends.cuda.libs import nvrtc

    program = nvrtc.createProgram(source, "npgen_kernels.cu", [], [])
    try:
        nvrtc.compileProgram(program, [f"--gpu-architecture=sm_{arch}"])
        return nvrtc.getCUBIN(program)
    except nvrtc.NVRTCError as error:
        raise RuntimeError(nvrtc.getProgramLog(program)) from error
    finally:
        nvrtc.destroyProgram(program)


if __name__ == "__main__":
    import cupy

    print(json.dumps(missing(cupy, USED)))
