"""examples/gan.py end to end at tiny size: the averaged generator resumes exactly, coverage is kept per epoch."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import npgen
from npgen import checkpoint, metrics
from npgen.models import Generator

from example_runs import run_numbers, run_ok

TINY = ["--train-size", "320", "--save-interval", "1000", "--coverage-samples", "200", "--n-eval", "200"]


@pytest.fixture(scope="module")
def cache_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment whose classifier cache holds an untrained classifier: scoring without a long training."""
    cache = tmp_path_factory.mktemp("cache")
    checkpoint.save(cache / metrics.classifier_path().name, classifier=metrics.make_classifier(), test_accuracy=0.0)
    return {**os.environ, "NPGEN_CACHE": str(cache)}


@pytest.fixture(scope="module")
def averaged_run(tmp_path_factory: pytest.TempPathFactory, cache_env: dict[str, str]) -> Path:
    """Two epochs with an averaged generator (β 0.9), uninterrupted: what the tests below compare against."""
    out = tmp_path_factory.mktemp("averaged")
    run_ok("gan.py", *TINY, "--epochs", "2", "--ema", "0.9", "--out", str(out), env=cache_env)
    return out


def test_an_interrupted_run_with_an_averaged_generator_resumes_to_the_same_numbers(tmp_path, cache_env, averaged_run):
    interrupted = tmp_path / "interrupted"
    run_ok("gan.py", *TINY, "--epochs", "1", "--ema", "0.9", "--out", str(interrupted), env=cache_env)
    run_ok("gan.py", *TINY, "--epochs", "2", "--ema", "0.9", "--resume", "--out", str(interrupted), env=cache_env)
    assert run_numbers(averaged_run, "quality") == run_numbers(interrupted, "quality")
    assert np.array_equal(np.load(averaged_run / "samples.npy"), np.load(interrupted / "samples.npy"))
    epochs = json.loads((averaged_run / "metrics.json").read_text())["epochs"]
    assert all("coverage" in e and "coverage_live" in e for e in epochs)
    # the averaged generator is the run's model, and it is not the live one
    run = npgen.load_run(averaged_run)
    assert isinstance(run.model, Generator) and run.flags["ema"] == 0.9
    live, averaged = run.modules["generator"], run.model
    assert not np.allclose(live.net[0].weight.numpy(), averaged.net[0].weight.numpy())
    assert int(checkpoint.read_metadata(averaged_run / "checkpoint.npz")["step"]) == 10


def test_the_averaged_runs_live_generator_is_the_plain_run(tmp_path, cache_env, averaged_run):
    """Averaging draws no random numbers, so one run with --ema scores both generators of a comparison."""
    plain = tmp_path / "plain"
    run_ok("gan.py", *TINY, "--epochs", "2", "--ema", "0", "--out", str(plain), env=cache_env)
    with_average, without = (json.loads((d / "metrics.json").read_text()) for d in (averaged_run, plain))
    assert [e["coverage_live"] for e in with_average["epochs"]] == [e["coverage"] for e in without["epochs"]]
    assert with_average["quality"]["gan_samples_live"] == without["quality"]["gan_samples"]
    assert with_average["quality"]["gan_samples"] != without["quality"]["gan_samples"]


def test_coverage_is_scored_every_n_epochs_and_drawn(tmp_path, cache_env):
    out = tmp_path / "run"
    printed = run_ok(
        "gan.py",
        *TINY,
        "--epochs",
        "3",
        "--ema",
        "0",
        "--coverage-every",
        "2",
        "--n-eval",
        "0",
        "--out",
        str(out),
        env=cache_env,
    )
    epochs = json.loads((out / "metrics.json").read_text())["epochs"]
    assert ["coverage" in e for e in epochs] == [False, True, False]
    assert not any("coverage_live" in e for e in epochs)  # no averaged generator: one generator to score
    fractions = epochs[1]["coverage"]["class_fractions"]
    assert len(fractions) == 10 and sum(fractions) == pytest.approx(1, abs=1e-3)
    assert "IS " in printed and (out / "coverage.png").stat().st_size > 0
    assert "generator_ema" not in checkpoint._read(out / "checkpoint.npz", arrays=False)[0]["modules"]
