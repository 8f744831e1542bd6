"""The example scripts run end to end on small settings, and an interrupted VAE run resumes exactly."""

from __future__ import annotations

import json
import subprocess
import sys

from npgen.plot import pyplot, save_figure

from example_runs import EXAMPLES, FLOW_QUICK, VAE_QUICK, finish, run_numbers, run_ok, start, stop_unfinished


def test_help_and_flag_errors_answer_without_importing_matplotlib():
    """pyplot's import takes ~0.7 s: every script imports it when it draws, not when it starts."""
    check = f"""
import pathlib, runpy, sys
sys.path.insert(0, {str(EXAMPLES)!r})  # as when a script runs: its siblings import
for script in sorted(pathlib.Path({str(EXAMPLES)!r}).glob("*.py")):
    sys.argv = [str(script), "--help"]
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit:
        pass
    assert "matplotlib" not in sys.modules, f"{{script.name}} imported matplotlib before drawing"
print("checked", script.name)
"""
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "checked" in done.stdout, done.stderr[-2000:]


def test_figures_leave_a_backend_the_caller_chose_alone():
    check = """
import matplotlib
matplotlib.use("svg")
import matplotlib.pyplot
from npgen.plot import pyplot
assert pyplot().get_backend() == "svg", pyplot().get_backend()
"""
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_classifier_example_trains_and_writes_its_figures(tmp_path):
    out = run_ok("mnist_classifier.py", "--epochs", "1", "--train-size", "10000", "--out", str(tmp_path))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.85, out
    assert (tmp_path / "loss.png").stat().st_size > 0 and (tmp_path / "mistakes.png").stat().st_size > 0


def test_an_interrupted_vae_run_resumes_to_the_same_numbers(tmp_path):
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    uninterrupted = start("vae.py", *VAE_QUICK, "--epochs", "2", "--out", str(straight))
    run_ok("vae.py", *VAE_QUICK, "--epochs", "1", "--out", str(interrupted))
    out = run_ok("vae.py", *VAE_QUICK, "--epochs", "2", "--resume", "--out", str(interrupted))
    assert "resumed" in out and "after epoch 1" in out
    finish(uninterrupted)

    assert run_numbers(straight, "test") == run_numbers(interrupted, "test")
    figures = {p.name for p in straight.glob("*.png")}
    assert {"elbo.png", "manifold.png", "samples_epoch_0_untrained.png", "means_epoch_2_end.png"} <= figures


def test_a_constant_rate_flow_run_extended_on_resume_gives_the_same_numbers(tmp_path):
    """Under a constant rate more epochs only extend a run (a cosine schedule's run: tests/test_runs.py)."""
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    constant = [*FLOW_QUICK, "--lr-schedule", "constant"]
    uninterrupted = start("flow.py", *constant, "--epochs", "2", "--out", str(straight))
    run_ok("flow.py", *constant, "--epochs", "1", "--out", str(interrupted))
    run_ok("flow.py", *constant, "--epochs", "2", "--resume", "--out", str(interrupted))
    finish(uninterrupted)

    assert run_numbers(straight, "test_bpd") == run_numbers(interrupted, "test_bpd")
    assert run_numbers(straight, "test_bpd")["test"] > 1.0
    assert (straight / "bpd.png").exists() and (straight / "samples_epoch_2_end_T0.7.png").exists()


def test_a_run_a_test_left_going_is_stopped_and_its_files_closed(tmp_path):
    left = start("vae.py", "--epochs", "1000", "--out", str(tmp_path))
    stop_unfinished()  # what the suite does after every test
    assert left.process.poll() is not None and left.stdout.closed and left.stderr.closed


def test_save_figure_makes_its_folder_closes_the_figure_and_crops_only_when_tight(tmp_path):
    plt = pyplot()
    shapes = {}
    for tight in (False, True):
        fig, ax = plt.subplots(figsize=(4, 3))
        ax.plot([0, 1])
        path = tmp_path / "new" / f"{tight}.png"
        save_figure(fig, path, dpi=50, tight=tight)
        assert not plt.fignum_exists(fig.number)
        shapes[tight] = plt.imread(path).shape[:2]
    assert shapes[False] == (150, 200) and shapes[True] != (150, 200)  # 4 × 3 inches at 50 dots per inch
