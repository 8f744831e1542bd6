"""npgen benchmarks: matrix products at the models' shapes, engine overhead, and model training steps.

    python benchmarks/run.py                 # numpy, and cupy where a CUDA device exists
    python benchmarks/run.py --quick         # fewer repetitions

Prints markdown tables and appends them, with the machine, library versions and the
command, to benchmarks/RESULTS.md. Each time is the median of several repetitions after a
warm-up; GPU times synchronise the device before the clock stops.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

import npgen
from npgen import F, backend
from npgen.models import VAE, Discriminator, Flow, Generator
from npgen.models.gan import train_step

RESULTS = Path(__file__).with_name("RESULTS.md")

# (rows, inner, columns) of the matrix products the three models run.
MODEL_SHAPES = [
    ("VAE encoder", 128, 784, 500),
    ("VAE decoder out", 128, 500, 784),
    ("GAN generator out", 64, 1024, 784),
    ("GAN discriminator in", 64, 784, 512),
    ("flow coupling in", 128, 784, 1024),
    ("flow coupling hidden", 128, 1024, 1024),
    ("flow coupling out", 128, 1024, 1568),
]
SWEEP = [256, 512, 1024, 2048, 4096]


def synchronize(xp: Any) -> None:
    """Wait for the device to finish queued work (a no-op on the host)."""
    if xp is not np and hasattr(xp, "cuda"):
        xp.cuda.Device().synchronize()


def median_seconds(fn: Callable[[], Any], xp: Any, repeats: int) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs, after one warm-up run."""
    fn()
    synchronize(xp)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(xp)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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


# The forward matrix products (rows, inner, columns) of one training step of each model.
FORWARD_MATMULS = {
    "VAE (batch 128)": [(128, 784, 500), (128, 500, 20), (128, 500, 20), (128, 20, 500), (128, 500, 784)],
    "GAN (batch 64)": [(64, 100, 128), (64, 128, 256), (64, 256, 512), (64, 512, 1024), (64, 1024, 784)]
    + [(64, 784, 512), (64, 512, 256), (64, 256, 1)] * 3,  # D sees real, fake (D step) and fake (G step)
    "flow (batch 128)": [(128, 784, 1024), (128, 1024, 1024), (128, 1024, 1568)] * 8,
}


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


def model_step_rows(name: str, repeats: int) -> list[str]:
    """Seconds per training step of each model at its reference size, and the epoch it implies."""
    npgen.use_backend(name)
    npgen.manual_seed(0)
    rng = np.random.default_rng(0)
    on_device = backend.get_backend(name).from_host
    rows = []

    vae = VAE()
    vae_opt = npgen.optim.Adam(vae.parameters())
    vae_x = npgen.Tensor(on_device((rng.uniform(size=(128, 784)) < 0.3).astype(np.float32)))

    def vae_step() -> None:
        loss = vae.loss(vae_x)
        vae_opt.zero_grad()
        loss.backward()
        vae_opt.step()

    generator, discriminator = Generator(), Discriminator()
    opt_g = npgen.optim.Adam(generator.parameters(), 2e-4, (0.5, 0.999))
    opt_d = npgen.optim.Adam(discriminator.parameters(), 2e-4, (0.5, 0.999))
    gan_x = npgen.Tensor(on_device(rng.uniform(-1, 1, (64, 784)).astype(np.float32)))

    flow = Flow()
    flow_opt = npgen.optim.Adam(flow.parameters())
    flow_x = on_device(rng.integers(0, 256, (128, 784)).astype(np.uint8))

    def flow_step() -> None:
        loss = flow.bpd(flow_x).mean()
        flow_opt.zero_grad()
        loss.backward()
        flow_opt.step()

    for label, step, steps_per_epoch in (
        ("VAE (batch 128)", vae_step, 50_000 // 128 + 1),
        ("GAN (batch 64)", lambda: train_step(generator, discriminator, opt_g, opt_d, gan_x), 60_000 // 64),
        ("flow (batch 128)", flow_step, 50_000 // 128 + 1),
    ):
        seconds = median_seconds(step, backend.get_backend(name).xp, repeats)
        floor = blas_floor_seconds(name, FORWARD_MATMULS[label], repeats)
        cells = [
            f"{seconds * 1e3:.1f}",
            f"{seconds * steps_per_epoch:.1f}",
            f"{floor * 1e3:.1f}",
            f"{seconds / floor:.2f}",
        ]
        rows.append(f"| {name} | {label} | " + " | ".join(cells) + " |")
    return rows


def machine() -> str:
    """One line on the machine, the libraries and the BLAS behind numpy."""
    parts = [
        platform.processor() or platform.machine(),
        f"{os.cpu_count()} cores",
        f"Python {platform.python_version()}",
    ]
    parts.append(f"numpy {np.__version__}")
    try:
        from threadpoolctl import threadpool_info

        parts += [f"{i['internal_api']} {i['version']} ({i['num_threads']} threads)" for i in threadpool_info()]
    except ImportError:
        parts.append("BLAS: install threadpoolctl to report it")
    for variable in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS"):
        if variable in os.environ:
            parts.append(f"{variable}={os.environ[variable]}")
    return ", ".join(parts)


def available_backends() -> tuple[list[str], str]:
    """The backends to measure, and a note on why cupy is missing if it is."""
    try:
        backend.get_backend("cupy")
        return ["numpy", "cupy"], ""
    except RuntimeError as error:
        return ["numpy"], f"cupy rows missing: {error}"


def main() -> None:
    """Run every table, print it, and append it to RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    repeats = 3 if args.quick else 10
    names, note = available_backends()
    tables = [
        "| backend | product | shape | GFLOP/s |\n| --- | --- | --- | --- |\n"
        + "\n".join(sum((gemm_rows(n, repeats) for n in names), [])),
        "| backend | op | µs per forward + backward |\n| --- | --- | --- |\n"
        + "\n".join(sum((overhead_rows(n, repeats) for n in names), [])),
        "| backend | model | ms per training step | s per epoch (implied) | BLAS floor, ms per step | ratio |\n"
        "| --- | --- | --- | --- | --- | --- |\n"
        + "\n".join(sum((model_step_rows(n, max(3, repeats // 2)) for n in names), [])),
    ]
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    report = [f"## {stamp}", "", f"`{' '.join(['python'] + sys.argv)}` — float32, seed 0", "", machine(), ""]
    report += ([note, ""] if note else []) + [t + "\n" for t in tables]
    text = "\n".join(report)
    print(text)
    with RESULTS.open("a", encoding="utf-8") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
