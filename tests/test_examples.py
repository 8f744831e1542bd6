"""The example scripts run end to end on small settings, and an interrupted VAE run resumes exactly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parents[1] / "examples"


def _run(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_classifier_example_trains_and_writes_its_figures(tmp_path):
    out = _run("mnist_classifier.py", "--epochs", "1", "--train-size", "10000", "--out", str(tmp_path))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.85, out
    assert (tmp_path / "loss.png").stat().st_size > 0 and (tmp_path / "mistakes.png").stat().st_size > 0


VAE_QUICK = ["--hidden", "32", "--zdim", "2", "--train-size", "3000", "--iw-samples", "5"]


def test_an_interrupted_vae_run_resumes_to_the_same_numbers(tmp_path):
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    _run("vae.py", *VAE_QUICK, "--epochs", "2", "--out", str(straight))
    _run("vae.py", *VAE_QUICK, "--epochs", "1", "--out", str(interrupted))
    out = _run("vae.py", *VAE_QUICK, "--epochs", "2", "--resume", "--out", str(interrupted))
    assert "resumed" in out and "after epoch 1" in out

    def numbers(path: Path) -> dict:
        metrics = json.loads((path / "metrics.json").read_text())
        epochs = [{k: v for k, v in e.items() if k != "seconds"} for e in metrics["epochs"]]
        return {"epochs": epochs, "test": metrics["test"]}

    assert numbers(straight) == numbers(interrupted)
    figures = {p.name for p in straight.glob("*.png")}
    assert {"elbo.png", "manifold.png", "samples_epoch_0_untrained.png", "means_epoch_2_end.png"} <= figures


FLOW_QUICK = ["--hidden", "16", "--n-flows", "1", "--train-size", "1000", "--batch-size", "250"]


def test_a_constant_rate_flow_run_extended_on_resume_gives_the_same_numbers(tmp_path):
    """Under a constant rate more epochs only extend a run (a cosine schedule's run: tests/test_runs.py)."""
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    constant = [*FLOW_QUICK, "--lr-schedule", "constant"]
    _run("flow.py", *constant, "--epochs", "2", "--out", str(straight))
    _run("flow.py", *constant, "--epochs", "1", "--out", str(interrupted))
    _run("flow.py", *constant, "--epochs", "2", "--resume", "--out", str(interrupted))

    def numbers(path: Path) -> dict:
        metrics = json.loads((path / "metrics.json").read_text())
        return {
            "train": [e["train_bpd"] for e in metrics["epochs"]],
            "val": [e["val_bpd"] for e in metrics["epochs"]],
            "test": metrics["test_bpd"],
        }

    assert numbers(straight) == numbers(interrupted)
    assert numbers(straight)["test"] > 1.0
    assert (straight / "bpd.png").exists() and (straight / "samples_epoch_2_end_T0.7.png").exists()
