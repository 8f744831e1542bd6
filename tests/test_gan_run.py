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

from example_runs import finish, run_numbers, run_ok, start

TINY = ["--train-size", "320", "--save-interval", "1000", "--coverage-samples", "200", "--n-eval", "200"]


@pytest.fixture(scope="module")
def cache_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment whose classifier cache holds an untrained classifier: scoring without a long training."""
    cache = tmp_path_factory.mktemp("cache")
    checkpoint.save(cache / metrics.classifier_path().name, classifier=metrics.make_classifier(), test_accuracy=0.0)
    return {**os.environ, "NPGEN_CACHE": str(cache)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, cache_env: dict[str, str]) -> dict[str, Path]:
    """The runs the tests below compare, started together (independent, they share the cores).

    averaged: two epochs with an averaged generator (β 0.9), uninterrupted; interrupted: its first
    epoch alone, to be resumed; plain: two epochs without averaging; coverage: scored every 2 epochs.
    """
    out = {name: tmp_path_factory.mktemp(name) for name in ("averaged", "interrupted", "plain", "coverage")}
    every_2 = ["--ema", "0", "--coverage-every", "2", "--n-eval", "0"]
    started = {
        "averaged": start(
            "gan.py", *TINY, "--epochs", "2", "--ema", "0.9", "--out", str(out["averaged"]), env=cache_env
        ),
        "interrupted": start(
            "gan.py", *TINY, "--epochs", "1", "--ema", "0.9", "--out", str(out["interrupted"]), env=cache_env
        ),
        "plain": start("gan.py", *TINY, "--epochs", "2", "--ema", "0", "--out", str(out["plain"]), env=cache_env),
        "coverage": start("gan.py", *TINY, "--epochs", "3", *every_2, "--out", str(out["coverage"]), env=cache_env),
    }
    for name, run in started.items():
        (out[name] / "printed.txt").write_text(finish(run))  # the run's standard output, for the tests
    return out


def test_an_interrupted_run_with_an_averaged_generator_resumes_to_the_same_numbers(cache_env, runs):
    averaged_run, interrupted = runs["averaged"], runs["interrupted"]
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


def test_the_averaged_runs_live_generator_is_the_plain_run(runs):
    """Averaging draws no random numbers, so one run with --ema scores both generators of a comparison."""
    with_average, without = (json.loads((runs[name] / "metrics.json").read_text()) for name in ("averaged", "plain"))
    assert [e["coverage_live"] for e in with_average["epochs"]] == [e["coverage"] for e in without["epochs"]]
    assert with_average["quality"]["gan_samples_live"] == without["quality"]["gan_samples"]
    assert with_average["quality"]["gan_samples"] != without["quality"]["gan_samples"]


def test_coverage_is_scored_every_n_epochs_and_drawn(runs):
    out = runs["coverage"]
    epochs = json.loads((out / "metrics.json").read_text())["epochs"]
    assert ["coverage" in e for e in epochs] == [False, True, False]
    assert not any("coverage_live" in e for e in epochs)  # no averaged generator: one generator to score
    fractions = epochs[1]["coverage"]["class_fractions"]
    assert len(fractions) == 10 and sum(fractions) == pytest.approx(1, abs=1e-3)
    assert "IS " in (out / "printed.txt").read_text() and (out / "coverage.png").stat().st_size > 0
    assert "generator_ema" not in checkpoint._read(out / "checkpoint.npz", arrays=False)[0]["modules"]
