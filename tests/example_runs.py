"""The example scripts run as a user runs them, on small settings: shared by the tests of the scripts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

EXAMPLES = Path(__file__).parents[1] / "examples"

VAE_QUICK = ["--hidden", "32", "--zdim", "2", "--train-size", "2000", "--iw-samples", "2"]
FLOW_QUICK = ["--hidden", "16", "--n-flows", "1", "--train-size", "500", "--batch-size", "250"]


def without_data(empty: Path) -> dict[str, str]:
    """An environment whose MNIST folder is ``empty`` (made here): a run that reads any data stops, naming the file."""
    empty.mkdir(exist_ok=True)
    return {**os.environ, "NPGEN_DATA": str(empty)}


def command(script: str, *args: str) -> list[str]:
    """The command line that runs ``script`` of examples/ with ``args``."""
    return [sys.executable, str(EXAMPLES / script), *args]


def run(script: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run an example script; its exit status and output are the caller's to check."""
    return subprocess.run(command(script, *args), capture_output=True, text=True, timeout=300, env=env)


def run_ok(script: str, *args: str, env: dict[str, str] | None = None) -> str:
    """Run an example script that must succeed; its standard output."""
    done = run(script, *args, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@dataclass
class Started:
    """An example run going on in the background, its output collected in temporary files."""

    process: subprocess.Popen
    stdout: IO[str]
    stderr: IO[str]


_unfinished: list[Started] = []  # runs started and not yet finished: stopped when their test ends


def start(script: str, *args: str, env: dict[str, str] | None = None) -> Started:
    """Start an example run and return at once: a test's independent runs share the machine's cores.

    Each run uses one BLAS thread (the scripts' default), so two at once take little longer than one.
    """
    stdout, stderr = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    process = subprocess.Popen(command(script, *args), stdout=stdout, stderr=stderr, text=True, env=env)
    _unfinished.append(Started(process, stdout, stderr))
    return _unfinished[-1]


def finish(started: Started) -> str:
    """Wait for a started run, which must succeed; its standard output."""
    try:
        started.process.wait(timeout=300)
        started.stdout.seek(0)
        started.stderr.seek(0)
        output, errors = started.stdout.read(), started.stderr.read()
    finally:
        _stop(started)
    assert started.process.returncode == 0, errors[-3000:]
    return output


def stop_unfinished() -> None:
    """Kill the runs a failed test left going: they would take the cores from the tests after it."""
    while _unfinished:
        _stop(_unfinished[-1])


def _stop(started: Started) -> None:
    if started.process.poll() is None:
        started.process.kill()
        started.process.wait()
    started.stdout.close()
    started.stderr.close()
    if started in _unfinished:
        _unfinished.remove(started)


def run_numbers(out: Path, test_key: str | None = None) -> dict:
    """A finished run's results from ``out``/metrics.json: every epoch's, without timing and memory, and the test's."""
    metrics = json.loads((out / "metrics.json").read_text())
    epochs = [{k: v for k, v in e.items() if "second" not in k and "memory" not in k} for e in metrics["epochs"]]
    return {"epochs": epochs, "test": metrics[test_key] if test_key else None}
