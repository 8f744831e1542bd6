"""What coverage scoring costs a GAN run: one epoch's training steps against one end-of-epoch coverage score.

    python benchmarks/gan_coverage.py          # appends a table to benchmarks/RESULTS.md

examples/gan.py scores --coverage-samples (2000) samples each epoch with npgen's classifier:
the averaged generator's BatchNorm statistics measured afresh, then the class fractions, inception
score and Fréchet distance of both generators. Here the two costs take turns in one process, so a
drift of the machine's speed touches both; an epoch is 937 steps at batch 64 on 60,000 images.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

import gan  # noqa: E402

import npgen  # noqa: E402
from npgen.models import Discriminator, Generator  # noqa: E402
from npgen.models.gan import train_step  # noqa: E402
from npgen.optim import Adam, ExponentialMovingAverage  # noqa: E402

STEPS_PER_EPOCH = 60_000 // 64


def main() -> None:
    """Time 50 training steps (with the average's update) and one coverage score, alternately."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    npgen.runs.use_threads(1)
    npgen.manual_seed(0)
    generator, discriminator = Generator(), Discriminator()
    opt_g, opt_d = (
        Adam(generator.parameters(), 2e-4, (0.5, 0.999)),
        Adam(discriminator.parameters(), 2e-4, (0.5, 0.999)),
    )
    average = ExponentialMovingAverage(generator, 0.999)
    real = npgen.Tensor(np.random.default_rng(0).uniform(-1, 1, (64, 784)).astype(np.float32))
    coverage = gan.Coverage(np.random.default_rng(3).standard_normal((2000, 100)).astype(np.float32))
    step_seconds, coverage_seconds = [], []
    for _ in range(args.rounds):
        start = time.perf_counter()
        for _ in range(50):
            train_step(generator, discriminator, opt_g, opt_d, real)
            average.update(generator)
        step_seconds.append((time.perf_counter() - start) / 50)
        start = time.perf_counter()
        coverage.score(gan.measure_statistics(average, 0))
        coverage.score(generator)
        coverage_seconds.append(time.perf_counter() - start)
    epoch = statistics.median(step_seconds) * STEPS_PER_EPOCH
    score = statistics.median(coverage_seconds)
    text = (
        f"\n## Coverage scoring in a GAN run ({time.strftime('%Y-%m-%d')})\n\n"
        f"`python benchmarks/gan_coverage.py` (medians of {args.rounds} alternating rounds, one BLAS thread):"
        f" an epoch of training steps with the average's update {epoch:.1f} s; one coverage score (statistics"
        f" measured, both generators scored on 2000 samples) {score:.2f} s: {100 * score / epoch:.1f}% of an"
        " epoch at the default --coverage-every 1.\n"
    )
    print(text)
    if not args.no_append:
        with open(Path(__file__).with_name("RESULTS.md"), "a", encoding="utf-8") as f:
            f.write(text)


if __name__ == "__main__":
    main()
