"""npgen benchmarks: matrix products, engine overhead, training steps against BLAS and against PyTorch.

    python benchmarks/run.py                 # numpy, cupy where a CUDA device exists, PyTorch if installed
    python benchmarks/run.py --quick         # fewer repetitions
    python benchmarks/run.py --tables models pytorch   # some of the tables (names below, in quotes)

Tables, printed and appended (with the machine, library versions, OPENBLAS_* settings and the
command) to benchmarks/RESULTS.md:
1. GFLOP/s of float32 matrix products at the models' shapes and a square sweep ("gemm"; on a GPU
   also host ↔ device copies in GB/s, "transfers"); with PyTorch installed, each layer's forward
   and two gradient products in numpy and in PyTorch, measured alternately ("pytorch-gemm").
2. Microseconds per op, forward + backward, on tiny arrays: the engine's Python cost ("overhead").
3. Milliseconds per training step of each model, the epoch it implies, and the ratio to the
   model's BLAS floor: 3 × its forward matmul time at measured GEMM rates ("models").
4. One numpy step split into matrix products, elementwise ops, optimizer and engine
   ("breakdown", breakdown.py), and the ops that take the most of it ("ops").
5. npgen against the same models in PyTorch (torch_models.py), run alternately in one process
   with numpy's BLAS thread count; peak resident memory of each in a fresh process ("pytorch").
6. The VAE step in the numpy peers HIPS autograd and DeZero (peer_models.py), alternately ("peers").
Each time is the median of several repetitions after a warm-up; GPU times synchronise first.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

import npgen
from npgen import F, backend

import npgen_models  # a sibling file: benchmarks/ is on the path when this script runs
from breakdown import op_breakdown, step_breakdown

RESULTS = Path(__file__).with_name("RESULTS.md")

# (rows, inner, columns) of the matrix products the three models run.
MODEL_SHAPES = [
    ("VAE encoder", 128, 784, 500),
    ("VAE decoder out", 128, 500, 784),
    ("GAN generator out", 64, 1024, 784),
    ("GAN discriminator in", 64, 784, 512),
    ("flow coupling in", 128, 392, 1024),
    ("flow coupling hidden", 128, 1024, 1024),
    ("flow coupling out", 128, 1024, 784),
]
SWEEP = [256, 512, 1024, 2048, 4096]


def synchronize(xp: Any) -> None:
    """Wait for the device to finish queued work (a no-op on the host)."""
    if xp is not np and hasattr(xp, "cuda"):
        xp.cuda.Device().synchronize()


def calls_per_sync(xp: Any) -> int:
    """How many calls one measurement runs back to back before it waits for the device (1 on the host).

    A GPU runs work queued behind the host: a synchronisation after every call would time the
    launch-and-wait round trip, not the device's work. One per measurement of 20 calls does not.
    """
    return 1 if xp is np else 20


def median_seconds(fn: Callable[[], Any], xp: Any, repeats: int) -> float:
    """Median wall time per call of ``fn`` over ``repeats`` measurements, after one warm-up run."""
    calls = calls_per_sync(xp)
    fn()
    synchronize(xp)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        synchronize(xp)
        times.append((time.perf_counter() - start) / calls)
    return statistics.median(times)


def alternating_medians(fns: dict[str, Callable[[], Any]], rounds: int, repeats: int) -> dict[str, float]:
    """Median seconds of each host function, timed in turns so that all see the same machine state.

    Each turn starts with a pause that lets the previous library's worker threads stop
    spin-waiting for work; without it they slowed the next one down (VAE ratios swung 0.49-1.16).
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            time.sleep(0.3)
            times[name].append(median_seconds(fn, np, repeats))
    return {name: statistics.median(t) for name, t in times.items()}


def gemm_rows(name: str, repeats: int) -> list[str]:
    """GFLOP/s of float32 matrix products at the models' shapes and a square sweep."""
    b = backend.get_backend(name)
    rng = np.random.default_rng(0)
    rows = []
    for label, m, k, n in MODEL_SHAPES + [(f"square {s}", s, s, s) for s in SWEEP]:
        x = b.from_host(rng.standard_normal((m, k), np.float32))
        w = b.from_host(rng.standard_normal((k, n), np.float32))
        seconds = median_seconds(lambda x=x, w=w: x @ w, b.xp, repeats if m * n * k < 1e9 else max(3, repeats // 5))
        rows.append(f"| {name} | {label} | {m}×{k}·{k}×{n} | {2 * m * k * n / seconds / 1e9:.1f} |")
    return rows


def layer_products(x: Any, weight: Any, g: Any) -> dict[str, Callable[[], Any]]:
    """The three products of a Linear layer in the layout npgen and PyTorch run them (weight is (out, in))."""
    return {
        "forward x·Wᵀ": lambda: x @ weight.T,
        "input grad g·W": lambda: g @ weight,
        "weight grad gᵀ·x": lambda: g.T @ x,
    }


def torch_gemm_rows(rounds: int) -> list[str]:
    """GFLOP/s of each layer product of the models in numpy (npgen's) and in PyTorch, alternating, same threads.

    Forward and both backward products, as the layers run them: where PyTorch's BLAS is faster at
    these shapes, a whole training step cannot beat PyTorch's by more than the rest of the step.
    """
    import torch

    torch.set_num_threads(blas_threads())
    rng = np.random.default_rng(0)
    rows = []
    for label, m, k, n in MODEL_SHAPES:
        x, w, g = (rng.standard_normal(shape, np.float32) for shape in ((m, k), (n, k), (m, n)))
        numpy_products = layer_products(x, w, g)
        torch_products = layer_products(*(torch.from_numpy(a) for a in (x, w, g)))
        for product in numpy_products:
            timed = {"numpy": numpy_products[product], "torch": torch_products[product]}
            seconds = alternating_medians(timed, rounds, repeats=20)
            rates = [2 * m * k * n / seconds[library] / 1e9 for library in timed]
            rows.append(f"| {label} | {product} | {m}×{k}→{n} | {rates[0]:.1f} | {rates[1]:.1f} |")
    return rows


def transfer_rows(name: str, repeats: int) -> list[str]:
    """GB/s of host → device and device → host copies (kept apart from the GEMM timings above)."""
    b = backend.get_backend(name)
    rows = []
    for label, shape in (("one batch", (128, 784)), ("flow parameters", (27_700_000,))):
        host = np.random.default_rng(0).standard_normal(shape, np.float32)
        device = b.from_host(host)
        to_device = median_seconds(lambda host=host: b.from_host(host), b.xp, repeats)
        to_host = median_seconds(lambda device=device: backend.to_numpy(device), b.xp, repeats)
        size = f"{host.nbytes / 2**20:.1f} MiB"
        rows.append(
            f"| {name} | {label} | {size} | {host.nbytes / to_device / 1e9:.2f} | {host.nbytes / to_host / 1e9:.2f} |"
        )
    return rows


def overhead_rows(name: str, repeats: int) -> list[str]:
    """Microseconds per op for forward + backward on tiny arrays: the engine's Python cost."""
    npgen.use_backend(name)
    x = npgen.randn(4, 4, requires_grad=True)
    w = npgen.randn(4, 4, requires_grad=True)
    cases = {"add": lambda: x + w, "mul": lambda: x * w, "matmul": lambda: x @ w, "tanh": lambda: F.tanh(x),
             "linear": lambda: F.linear(x, w)}  # fmt: skip
    rows = []
    for label, op in cases.items():

        def step(op: Callable[[], npgen.Tensor] = op) -> None:
            for _ in range(100):
                op().sum().backward()

        seconds = median_seconds(step, backend.get_backend(name).xp, repeats)
        rows.append(f"| {name} | {label} | {seconds / 100 * 1e6:.1f} |")
    return rows


def blas_floor_seconds(name: str, shapes: list[tuple[int, int, int]], repeats: int) -> float:
    """3 × the forward matmul time of one step (forward, and two products in backward) at measured GEMM rates."""
    b = backend.get_backend(name)
    rng = np.random.default_rng(0)
    total = 0.0
    for m, k, n in set(shapes):
        x = b.from_host(rng.standard_normal((m, k), np.float32))
        w = b.from_host(rng.standard_normal((k, n), np.float32))
        total += shapes.count((m, k, n)) * 3 * median_seconds(lambda x=x, w=w: x @ w, b.xp, repeats)
    return total


def model_rows(name: str, repeats: int) -> list[str]:
    """Per model: ms per training step, the epoch it implies, its BLAS floor and the ratio to it.

    Steps and floor are timed in alternation, and the ratio is the median of the ratios of each
    round, so that the machine's slow drifts (10-30% on small virtual machines) cancel out. Each
    round's step time is the median of three steps run back to back after a warm-up, as in
    training: a lone step after other work finds the parameters gone from the caches.
    """
    npgen.use_backend(name)
    npgen.manual_seed(0)
    xp = backend.get_backend(name).xp
    rows = []
    for label, make_step in npgen_models.STEPS.items():
        if name == "cupy":
            xp.get_default_memory_pool().free_all_blocks()  # the pool's high-water mark starts afresh
        step = make_step(np.random.default_rng(0))
        step()  # the optimizer's state exists from the first step on
        device = backend.device_memory_mib() if name == "cupy" else None  # this model's, before the floor's matrices
        steps, floors = [], []
        for _ in range(repeats):
            steps.append(median_seconds(step, xp, 3))
            floors.append(blas_floor_seconds(name, npgen_models.FORWARD_MATMULS[label], 3))
        del step  # its model, optimizer state and batch go back to the pool before the next model
        seconds, floor = statistics.median(steps), statistics.median(floors)
        ratio = statistics.median(s / f for s, f in zip(steps, floors))
        epoch = seconds * npgen_models.STEPS_PER_EPOCH[label]
        cells = [f"{seconds * 1e3:.1f}", f"{epoch:.1f}", f"{floor * 1e3:.1f}", f"{ratio:.2f}"]
        cells.append("—" if device is None else f"{device:.0f}")
        rows.append(f"| {name} | {label} | " + " | ".join(cells) + " |")
    return rows


def breakdown_rows(repeats: int) -> list[str]:
    """Per model (numpy): ms per step in matrix products, elementwise ops, the optimizer and the engine."""
    npgen.use_backend("numpy")
    npgen.manual_seed(0)
    rows = []
    for label, make_step in npgen_models.STEPS.items():
        parts = step_breakdown(make_step(np.random.default_rng(0)), repeats)
        cells = [f"{parts[p] * 1e3:.1f}" for p in ("matmul", "elementwise", "optimizer", "engine", "total")]
        rows.append(f"| numpy | {label} | " + " | ".join(cells) + " |")
    return rows


def op_rows(repeats: int, top: int = 6) -> list[str]:
    """Per model (numpy): the ``top`` parts (an op's forward or backward, an optimizer's step) by ms per step."""
    npgen.use_backend("numpy")
    npgen.manual_seed(0)
    rows = []
    for label, make_step in npgen_models.STEPS.items():
        parts, total = op_breakdown(make_step(np.random.default_rng(0)), repeats)
        for part, seconds in list(parts.items())[:top]:
            rows.append(f"| {label} | {part} | {seconds * 1e3:.2f} | {seconds / total:.0%} |")
    return rows


@functools.cache  # npgen's flow meets two PyTorch flows: one measurement of it serves both rows
def peak_memory_mib(framework: str, label: str) -> tuple[float, float]:
    """(peak, after imports) resident memory of a fresh process that builds one model and trains a few steps."""
    command = [sys.executable, __file__, "--peak-memory", framework, label]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    peak, after_import = done.stdout.split()[-2:]
    return float(peak), float(after_import)


def torch_rows(repeats: int) -> list[str]:
    """npgen and PyTorch in one process, alternating runs of each model's step; time and memory ratios."""
    import torch

    import torch_models

    torch.set_num_threads(blas_threads())
    npgen.use_backend("numpy")
    npgen.manual_seed(0)
    rows = []
    for label, torch_label in TORCH_PAIRS:
        steps = {
            "npgen": npgen_models.STEPS[label](np.random.default_rng(0)),
            "torch": torch_models.STEPS[torch_label](np.random.default_rng(0)),
        }
        ms = {f: seconds * 1e3 for f, seconds in alternating_medians(steps, rounds=repeats, repeats=3).items()}
        memory = {"npgen": peak_memory_mib("npgen", label), "torch": peak_memory_mib("torch", torch_label)}
        cells = [f"{ms['npgen']:.1f}", f"{ms['torch']:.1f}", f"{ms['npgen'] / ms['torch']:.2f}"]
        cells += [f"{memory[f][0]:.0f} ({memory[f][1]:.0f})" for f in steps]
        cells.append(f"{memory['npgen'][0] / memory['torch'][0]:.2f}")
        rows.append(f"| {label} | {torch_label} | " + " | ".join(cells) + " |")
    return rows


# npgen's models and the PyTorch models they are timed against: the flow twice, against the masked
# form a user writes from the assignment's template and against the split form npgen itself runs.
TORCH_PAIRS = [
    ("VAE (batch 128)", "VAE (batch 128)"),
    ("GAN (batch 64)", "GAN (batch 64)"),
    ("flow (batch 128)", "flow, masked template (batch 128)"),
    ("flow (batch 128)", "flow, split form (batch 128)"),
]


def peer_rows(rounds: int) -> list[str]:
    """The VAE step in npgen and in the numpy peers a user might pick instead (HIPS autograd, DeZero), alternating."""
    import peer_models

    npgen.use_backend("numpy")
    npgen.manual_seed(0)
    steps, reasons = {"npgen": npgen_models.STEPS["VAE (batch 128)"](np.random.default_rng(0))}, {}
    for name, make in peer_models.STEPS.items():
        try:
            steps[name] = make(np.random.default_rng(0))
        except ImportError as error:  # not installed, or not importable with this numpy
            reasons[name] = f"skipped: {error}"
    ms = {name: seconds * 1e3 for name, seconds in alternating_medians(steps, rounds=rounds, repeats=3).items()}
    rows = [f"| {name} | {ms[name]:.1f} | {ms[name] / ms['npgen']:.2f} |" for name in steps]
    return rows + [f"| {name} | {reason} | |" for name, reason in reasons.items()]


def measure_peak_memory(framework: str, label: str) -> None:
    """Child process of ``peak_memory_mib``: build, train a few steps, print the peak and after-import MiB."""
    if framework == "torch":  # imported only here, so that the npgen process never loads PyTorch
        import torch

        import torch_models

        torch.set_num_threads(blas_threads())
    module = npgen_models if framework == "npgen" else torch_models
    after_import = own_rss_mib("VmRSS")
    step = module.STEPS[label](np.random.default_rng(0))
    for _ in range(3):
        step()
    print(own_rss_mib("VmHWM"), after_import)


def own_rss_mib(field: str) -> float:
    """This process's resident memory in MiB: "VmRSS" now, "VmHWM" at its peak.

    Linux's VmHWM starts afresh at exec; getrusage's ru_maxrss (the fallback elsewhere) may carry
    the parent's peak over a fork, which would give every child the benchmark process's own peak.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def blas_threads() -> int:
    """Threads of numpy's BLAS (PyTorch is given the same number)."""
    try:
        from threadpoolctl import threadpool_info

        return max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")
    except (ImportError, ValueError):
        return os.cpu_count() or 1


def torch_note() -> str:
    """Empty if PyTorch can be imported, else why its rows are missing."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return "PyTorch rows missing: PyTorch is not installed (it is optional: pip install torch)"
    return ""


def machine() -> str:
    """One line on the machine, the libraries, numpy's BLAS and the OPENBLAS_* settings in force."""
    parts = [
        platform.processor() or platform.machine(),
        f"{os.cpu_count()} cores",
        f"Python {platform.python_version()}",
    ]
    parts.append(f"numpy {np.__version__}")
    try:
        from threadpoolctl import threadpool_info

        parts += [
            f"{i['internal_api']} {i['version']} ({i['num_threads']} threads, {i.get('architecture', '?')} kernels)"
            for i in threadpool_info()
            if i["user_api"] == "blas"
        ]
    except ImportError:
        parts.append("BLAS: install threadpoolctl to report it")
    if not torch_note():
        import torch

        parts.append(f"torch {torch.__version__} ({blas_threads()} threads)")
    if "cupy" in available_backends()[0]:
        cupy = backend.get_backend("cupy").xp
        parts.append(f"cupy {cupy.__version__} on {cupy.cuda.runtime.getDeviceProperties(0)['name'].decode()}")
    settings = [f"{v}={os.environ[v]}" for v in sorted(os.environ) if v.startswith("OPENBLAS_")]
    parts += settings or ["no OPENBLAS_* variables set"]
    return ", ".join(parts)


def available_backends() -> tuple[list[str], str]:
    """The backends to measure, and a note on why cupy is missing if it is."""
    try:
        backend.get_backend("cupy")
        return ["numpy", "cupy"], ""
    except RuntimeError as error:
        return ["numpy"], f"cupy rows missing: {error}"


def table(header: list[str], rows: list[str]) -> str:
    """A markdown table."""
    return "\n".join(["| " + " | ".join(header) + " |", "|" + " --- |" * len(header), *rows])


TABLES = ["gemm", "transfers", "pytorch-gemm", "overhead", "models", "breakdown", "ops", "pytorch", "peers"]


def main() -> None:
    """Run the tables (all, or those named with --tables), print them, and append them to RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument(
        "--tables", nargs="+", choices=TABLES, default=TABLES, help="which tables to run (default: all)"
    )
    parser.add_argument("--peak-memory", nargs=2, metavar=("FRAMEWORK", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peak_memory:
        return measure_peak_memory(*args.peak_memory)
    repeats = 3 if args.quick else 10
    names, note = available_backends()
    notes = [n for n in (note, torch_note()) if n]
    devices = [n for n in names if n != "numpy"]
    builders = {  # name → (header, rows); a table runs only when asked for and possible here
        "gemm": lambda: (["backend", "product", "shape", "GFLOP/s"], sum((gemm_rows(n, repeats) for n in names), [])),
        "transfers": lambda: (
            ["backend", "copy", "size", "host → device GB/s", "device → host GB/s"],
            sum((transfer_rows(n, repeats) for n in devices), []),
        ),
        "pytorch-gemm": lambda: (
            ["layer", "product", "batch×in→out", "numpy GFLOP/s", "PyTorch GFLOP/s"],
            torch_gemm_rows(max(3, repeats // 2)),
        ),
        "overhead": lambda: (
            ["backend", "op", "µs per forward + backward"],
            sum((overhead_rows(n, repeats) for n in names), []),
        ),
        "models": lambda: (
            ["backend", "model", "ms per training step", "s per epoch (implied)", "BLAS floor, ms per step", "ratio"]
            + ["GPU memory pool, MiB"],
            sum((model_rows(n, repeats) for n in names), []),
        ),
        "breakdown": lambda: (
            ["backend", "model", "matmul ms", "elementwise ms", "optimizer ms", "engine ms", "total ms"],
            breakdown_rows(max(3, repeats // 2)),
        ),
        "ops": lambda: (["model", "op", "ms per step", "share of the step"], op_rows(max(3, repeats // 2))),
        "pytorch": lambda: (
            [
                "npgen model",
                "PyTorch model",
                "npgen ms",
                "PyTorch ms",
                "npgen/PyTorch",
                "npgen peak MiB (after imports)",
            ]
            + ["PyTorch peak MiB (after imports)", "memory ratio"],
            torch_rows(max(3, repeats // 2)),
        ),
        "peers": lambda: (["VAE step (batch 128)", "ms per step", "÷ npgen"], peer_rows(max(3, repeats // 2))),
    }
    possible = {"transfers": bool(devices), "pytorch-gemm": not torch_note(), "pytorch": not torch_note()}
    tables = [table(*builders[name]()) for name in TABLES if name in args.tables and possible.get(name, True)]
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    report = [f"## {stamp}", "", f"`{' '.join(['python'] + sys.argv)}` — float32, seed 0", "", machine(), ""]
    report += [line for n in notes for line in (n, "")] + [t + "\n" for t in tables]
    text = "\n".join(report)
    print(text)
    with RESULTS.open("a", encoding="utf-8") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
