"""How many BLAS threads should a training step use? Each model's step with 1 thread and with all cores.

    python benchmarks/threads.py            # appends a table to benchmarks/RESULTS.md
    python benchmarks/threads.py --rounds 3 --no-append

Two conditions, one after the other in one sitting: a quiet machine, and the same machine
while a second process trains the same model (what happens when a student runs two
experiments at once). The second process follows the thread count being measured, as a second
run started with the same flag would. Within a condition, the thread counts take turns round
by round, so a drift of the machine's speed touches both alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))

from npgen_models import STEPS  # noqa: E402

STEPS_PER_TIMING = {"VAE (batch 128)": 40, "GAN (batch 64)": 20, "flow (batch 128)": 3}


def seconds_per_step(step: Callable[[], None], n: int) -> float:
    """Wall seconds per step over ``n`` steps."""
    start = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - start) / n


def competitor(model: str, control: Path) -> None:
    """Train ``model`` forever, with the thread count written in ``control`` (read before every step)."""
    step = STEPS[model](np.random.default_rng(1))
    while True:
        threads = int(control.read_text() or 1)
        with threadpool_limits(threads, user_api="blas"):
            step()


def measure(model: str, counts: list[int], rounds: int, control: Path | None) -> dict[int, float]:
    """Median ms per step for each thread count, the counts taking turns in each round."""
    step = STEPS[model](np.random.default_rng(0))
    step()  # first-call costs (allocations, Adam's state) out of the timing
    times: dict[int, list[float]] = {c: [] for c in counts}
    for _ in range(rounds):
        for c in counts:
            if control is not None:
                control.write_text(str(c))
                time.sleep(0.5)  # the competitor takes up the new count at its next step
            with threadpool_limits(c, user_api="blas"):
                times[c].append(seconds_per_step(step, STEPS_PER_TIMING[model]))
    return {c: 1000 * statistics.median(t) for c, t in times.items()}


def main() -> None:
    """Measure, print the table and append it to RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-append", action="store_true", help="print only")
    parser.add_argument("--competitor", nargs=2, metavar=("MODEL", "CONTROL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.competitor:
        competitor(args.competitor[0], Path(args.competitor[1]))
        return
    cores = os.cpu_count() or 1
    counts = [1, cores]
    rows = []
    for model in STEPS:
        quiet = measure(model, counts, args.rounds, None)
        control = Path(f"/tmp/npgen-threads-{os.getpid()}")
        control.write_text("1")
        second = subprocess.Popen([sys.executable, __file__, "--competitor", model, str(control)])
        try:
            time.sleep(2)  # let it build its model
            busy = measure(model, counts, args.rounds, control)
        finally:
            second.kill()
            control.unlink()
        row = f"| {model} | {quiet[1]:.1f} | {quiet[cores]:.1f} | {busy[1]:.1f} | {busy[cores]:.1f} |"
        print(row, flush=True)
        rows.append(row)
    header = (
        f"| model | quiet, 1 thread (ms) | quiet, {cores} threads (ms) | beside a second run, 1 thread each (ms)"
        f" | beside a second run, {cores} threads each (ms) |\n| --- | --- | --- | --- | --- |"
    )
    text = (
        f"\n## BLAS threads per training step ({time.strftime('%Y-%m-%d')}, {cores} cores)\n\n"
        f"`python benchmarks/threads.py` (medians of {args.rounds} alternating rounds):\n\n"
        + header
        + "\n"
        + "\n".join(rows)
        + "\n"
    )
    print(text)
    if not args.no_append:
        with open(Path(__file__).with_name("RESULTS.md"), "a", encoding="utf-8") as f:
            f.write(text)


if __name__ == "__main__":
    main()
