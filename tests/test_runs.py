"""Runs that never lose a good result, and bad input that always gets a clear answer.

Library input first (checkpoints, optimizers, data, models, the metrics command), then the
example scripts as a user runs them: a diverging loss, flags that would change a resumed run,
flags out of range, and a run stopped between its two checkpoint writes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import npgen
from npgen import checkpoint, metrics, nn, optim, runs
from npgen.checkpoint import CheckpointError
from npgen.data import binarize
from npgen.models import VAE, Flow

from example_runs import FLOW_QUICK, VAE_QUICK, command, finish, run, run_numbers, start, without_data

# --- library input ------------------------------------------------------------------------------------


def test_a_checkpoint_with_non_finite_weights_is_refused_and_the_file_on_disk_kept(tmp_path):
    model = nn.Linear(2, 2)
    checkpoint.save(tmp_path / "ck.npz", model=model)
    good = model.weight.data.copy()
    model.weight.data[0, 0] = np.nan
    with pytest.raises(CheckpointError, match=r"model/weight.*NaN"):
        checkpoint.save(tmp_path / "ck.npz", model=model)
    checkpoint.load(tmp_path / "ck.npz", model=model)
    np.testing.assert_array_equal(model.weight.data, good)


def test_a_save_removes_the_temporary_files_of_killed_saves(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".ck.npz.{dead.stdout.strip()}.tmp"
    stale.write_bytes(b"half a checkpoint")
    other = tmp_path / ".other.npz.1.tmp"  # another file's temporary: not this save's business
    other.write_bytes(b"")
    checkpoint.save(tmp_path / "ck.npz", model=nn.Linear(2, 2))
    assert not stale.exists() and other.exists()


def test_checkpoint_metadata_reads_without_touching_the_random_streams(tmp_path):
    checkpoint.save(tmp_path / "ck.npz", model=nn.Linear(2, 2), history=[1, 2])
    npgen.manual_seed(3)
    expected = npgen.randn(2).numpy()
    npgen.manual_seed(3)
    assert checkpoint.read_metadata(tmp_path / "ck.npz") == {"history": [1, 2]}
    np.testing.assert_array_equal(npgen.randn(2).numpy(), expected)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: optim.Adam(p, lr=-1), "invalid lr: -1"),
        (lambda p: optim.Adam(p, eps=-1e-8), "invalid eps"),
        (lambda p: optim.Adam(p, betas=(0.9, 1.0)), r"betas must be two numbers in \[0, 1\)"),
        (lambda p: optim.Adam(p, lr=float("nan")), "invalid lr: nan"),
        (lambda p: optim.SGD(p, lr=0.1, momentum=-0.5), "invalid momentum: -0.5"),
        (lambda p: optim.SGD(p, lr=0.1, weight_decay=-1), "invalid weight_decay"),
    ],
)
def test_optimizers_refuse_hyperparameters_out_of_range(make, message):
    with pytest.raises(ValueError, match=message):
        make(nn.Linear(2, 2).parameters())


def test_clip_grad_norm_refuses_a_bound_that_would_flip_the_gradients():
    w = npgen.tensor([1.0], requires_grad=True)
    w.grad = np.array([1.0], np.float32)
    with pytest.raises(ValueError, match="max_norm must be positive, got -1"):
        optim.clip_grad_norm([w], -1)


def test_the_mean_of_an_empty_batch_is_nan_not_a_crash():
    assert np.isnan(npgen.tensor(np.zeros((0, 3))).mean().item())


def test_binarize_refuses_float_images_that_would_all_become_zero():
    with pytest.raises(TypeError, match=r"uint8 .* float32"):
        binarize(np.random.default_rng(0).random((2, 784), dtype=np.float32), "threshold")


def test_load_state_dict_names_a_value_that_is_not_an_array_and_takes_lists():
    layer = nn.Linear(2, 1)
    with pytest.raises(TypeError, match="bias is a NoneType"):
        layer.load_state_dict({"weight": np.zeros((1, 2)), "bias": None})
    layer.load_state_dict({"weight": [[1.0, 2.0]], "bias": [0.5]})
    assert layer.weight.data.tolist() == [[1.0, 2.0]] and layer.weight.dtype == np.float32


def test_the_vae_refuses_raw_pixels_and_asks_for_binarized_ones():
    with pytest.raises(TypeError, match="uint8 pixels: use npgen.data.binarize"):
        VAE(hidden=8, z_dim=2).loss(npgen.tensor(np.full((2, 784), 255, np.uint8)))


@pytest.mark.parametrize("bad", [-1.0, 256.0, np.nan])
def test_the_flow_refuses_pixels_outside_0_to_255(bad):
    x = np.full((2, 784), 100.0, np.float32)
    x[1, 5] = bad
    with pytest.raises(ValueError, match=r"pixels must be integers 0..255, got float32 values"):
        Flow(n_flows=1, n_hidden=8).log_prob(x)


@pytest.mark.parametrize(
    "write, message",
    [
        (lambda p: np.save(p, np.full((5, 784), np.nan)), "5 values are NaN|3920 values are NaN"),
        (lambda p: np.save(p, np.zeros((1, 784))), r"N ≥ 2, got \(1, 784\)"),
        (lambda p: np.save(p, np.zeros((0, 784))), r"N ≥ 2, got \(0, 784\)"),
        (lambda p: np.savez(p, samples=np.zeros((5, 784))), "a .npz archive"),
        (lambda p: p.write_text("0.5 0.5\n"), "not a .npy file"),
        (lambda p: np.save(p, np.full((3, 784), 2.0)), r"values span \[2, 2\], expected \[0, 1\]"),
    ],
    ids=["nan", "one_sample", "empty", "npz", "text", "out_of_range"],
)
def test_the_metrics_command_names_what_is_wrong_with_a_samples_file(tmp_path, write, message):
    path = tmp_path / "samples.npy"
    write(path)
    if not path.exists():  # np.savez appends .npz
        path = tmp_path / "samples.npy.npz"
    with pytest.raises(SystemExit, match=message):
        metrics.load_samples(path)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: nn.Linear(0, 3), ValueError, r"Linear sizes must be positive, got \(0, 3\)"),
        (lambda: nn.Linear(2.5, 3), TypeError, r"Linear sizes must be integers, got \(2.5, 3\)"),
        (lambda: nn.BatchNorm1d(-2), ValueError, r"BatchNorm1d sizes must be positive"),
        (lambda: VAE(z_dim=0), ValueError, r"Linear sizes must be positive"),
        (lambda: Flow(n_flows=0), ValueError, "n_flows ≥ 1"),
        (lambda: npgen.tensor("abc"), TypeError, "bools, integers or floats, got dtype <U3"),
        (lambda: npgen.tensor(None), TypeError, "got dtype object"),
        (
            lambda: npgen.data.DataLoader(np.zeros(4), batch_size=2.5),
            ValueError,
            "batch_size must be a positive integer",
        ),
        (lambda: optim.Adam(nn.Linear(2, 2).parameters(), betas=(0.9,)), ValueError, "two numbers"),
        (lambda: npgen.manual_seed(1.7), ValueError, "integer ≥ 0, got 1.7"),
        (lambda: npgen.manual_seed(-1), ValueError, "integer ≥ 0, got -1"),
        (
            lambda: npgen.F.cross_entropy(npgen.randn(4, 3), np.array([0, 1, -1, 1])),
            ValueError,
            r"labels must lie in 0..2",
        ),
        (
            lambda: npgen.F.cross_entropy(npgen.randn(2, 3), np.array([0.0, 1.0])),
            ValueError,
            "integer labels, got float64",
        ),
        (
            lambda: npgen.F.binary_cross_entropy_with_logits(npgen.randn(4, 1), np.ones(4, np.float32)),
            ValueError,
            r"target shape \(4,\) does not fit logits \(4, 1\)",
        ),
        (lambda: Flow(n_flows=1, n_hidden=4).log_prob(np.zeros((2, 783), np.uint8)), ValueError, r"\(N ≥ 1, 784\)"),
        (lambda: Flow(n_flows=1, n_hidden=4).log_prob(np.full((2, 784), 0.5)), ValueError, "with fractions"),
        (lambda: VAE(hidden=4, z_dim=2).log_likelihood(npgen.zeros(2, 784), k=0), ValueError, "k ≥ 1"),
        (lambda: checkpoint.save("/tmp/npgen-unused.npz", weights=np.zeros(2)), TypeError, "'weights' is neither"),
    ],
)
def test_bad_library_input_gets_an_error_that_names_it(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_a_checkpoint_that_is_not_an_npgen_one_gets_a_clear_error(tmp_path):
    text, empty, plain = tmp_path / "text.npz", tmp_path / "empty.npz", tmp_path / "plain.npz"
    text.write_text("not a checkpoint")
    empty.write_bytes(b"")
    np.savez(plain, weights=np.zeros(2))
    for path, message in [(text, "not a .npz archive"), (empty, "not a .npz archive"), (plain, "not a readable npgen")]:
        with pytest.raises(CheckpointError, match=message):
            checkpoint.read_metadata(path)


def test_the_metrics_command_reads_integer_samples_by_value_and_checks_tanh_range(tmp_path):
    path = tmp_path / "samples.npy"
    np.save(path, np.tile(np.array([0, 1], np.uint8), (3, 392)))
    assert metrics.load_samples(path).max() == 1.0  # 0/1 samples, not pixel levels 0 and 1/255
    with pytest.raises(SystemExit, match="--tanh-range, but no value is negative"):
        metrics.load_samples(path, tanh_range=True)
    with pytest.raises(SystemExit, match="a directory, not a file"):
        metrics.load_samples(tmp_path)


# --- the example scripts ------------------------------------------------------------------------------

GAN_QUICK = ["--train-size", "640", "--n-eval", "0", "--coverage-every", "0"]
CLASSIFIER_QUICK = ["--train-size", "2000"]


@pytest.mark.parametrize(
    "script, args",
    [
        ("vae.py", [*VAE_QUICK, "--lr", "1e30"]),
        ("gan.py", [*GAN_QUICK, "--lr", "1e30"]),
        ("flow.py", [*FLOW_QUICK, "--lr", "1e30"]),
        ("mnist_classifier.py", [*CLASSIFIER_QUICK, "--lr", "1e30"]),
    ],
)
def test_a_diverging_run_stops_at_the_first_non_finite_step_and_exits_with_an_error(tmp_path, script, args):
    done = run(script, *args, "--epochs", "2", "--out", str(tmp_path))
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert "non-finite" in done.stderr and "at epoch 1, step" in done.stderr, done.stderr[-2000:]
    assert not (tmp_path / "checkpoint.npz").exists() and not (tmp_path / "metrics.json").exists()


@pytest.mark.parametrize(
    "script, args, message",
    [
        ("vae.py", ["--zdim", "0"], "argument --zdim: 0 is not a positive integer"),
        ("vae.py", ["--hidden", "0"], "argument --hidden: 0 is not a positive integer"),
        ("vae.py", ["--iw-samples", "-3"], "argument --iw-samples: -3 is not an integer ≥ 0"),
        ("vae.py", ["--train-size", "-10"], "argument --train-size: -10 is not a positive integer"),
        ("vae.py", ["--train-size", "0"], "argument --train-size: 0 is not a positive integer"),
        ("vae.py", ["--train-size", "50001"], "--train-size 50001: there are only 50,000 training images"),
        ("vae.py", ["--lr", "abc"], "argument --lr: 'abc' is not a positive number"),
        ("vae.py", ["--iw-samples", "1000000000"], "--iw-samples 1000000000: at most 100,000"),
        ("gan.py", ["--save-interval", "0"], "argument --save-interval: 0 is not a positive integer"),
        ("gan.py", ["--train-size", "256", "--batch-size", "512"], "--train-size 256 is smaller than --batch-size 512"),
        ("gan.py", ["--n-eval", "1"], "--n-eval 1: scoring needs at least 2 samples"),
        ("gan.py", ["--batch-size", "1"], "--batch-size 1: the generator's batch normalisation needs at least 2"),
        ("gan.py", ["--beta1", "1.5"], "argument --beta1: 1.5 is not a number in [0, 1)"),
        ("flow.py", ["--clip-grad", "-1"], "argument --clip-grad: -1 is not a number ≥ 0"),
        ("flow.py", ["--n-flows", "0"], "argument --n-flows: 0 is not a positive integer"),
        ("mnist_classifier.py", ["--epochs", "0"], "argument --epochs: 0 is not a positive integer"),
    ],
)
def test_flags_out_of_range_are_refused_before_any_work(tmp_path, script, args, message):
    done = run(script, *args, "--out", str(tmp_path / "run"), env=without_data(tmp_path / "no_data"))
    assert done.returncode == 2 and message in done.stderr, done.stderr[-2000:]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("script", ["vae.py", "gan.py", "flow.py", "mnist_classifier.py"])
def test_an_output_directory_that_cannot_be_written_is_refused_before_training(tmp_path, script):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    no_data = without_data(tmp_path / "no_data")  # refused before the data is read
    done = run(script, "--out", str(a_file), env=no_data)
    assert done.returncode == 1 and f"--out {a_file} is a file, not a directory" in done.stderr
    done = run(script, "--out", str(a_file / "inside"), env=no_data)
    assert done.returncode == 1 and f"--out {a_file / 'inside'} is not writable" in done.stderr


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-epoch VAE run at quick settings; a test that changes it works on a copy (``copy_of``)."""
    out = tmp_path_factory.mktemp("vae_run") / "run"
    assert run("vae.py", *VAE_QUICK, "--epochs", "1", "--out", str(out)).returncode == 0
    return out


def copy_of(finished: Path, tmp_path: Path) -> Path:
    """A copy of a finished run's --out, under ``tmp_path``."""
    return Path(shutil.copytree(finished, tmp_path / "run"))


def test_a_new_run_refuses_an_output_directory_that_holds_a_run(tmp_path, vae_run):
    out = copy_of(vae_run, tmp_path)
    before = (out / "checkpoint.npz").read_bytes()
    no_data = without_data(tmp_path / "no_data")  # refusals come before the data is read
    done = run("vae.py", *VAE_QUICK, "--epochs", "1", "--out", str(out), env=no_data)
    assert done.returncode == 1 and "holds a run already" in done.stderr and "--resume" in done.stderr
    assert (out / "checkpoint.npz").read_bytes() == before
    done = run("vae.py", *VAE_QUICK, "--epochs", "1", "--resume", "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]  # resuming a finished run changes nothing, and says so
    done = run("flow.py", *FLOW_QUICK, "--epochs", "1", "--resume", "--out", str(out), env=no_data)
    assert done.returncode == 1 and "written by vae.py, not by flow.py" in done.stderr, done.stderr[-2000:]
    done = run("gan.py", "--epochs", "1", "--resume", "--out", str(out), env=no_data)
    assert done.returncode == 1 and "written by vae.py, not by gan.py" in done.stderr, done.stderr[-2000:]


@pytest.mark.parametrize("script", ["vae.py", "gan.py", "flow.py"])
def test_resume_from_a_corrupt_checkpoint_is_an_error_that_names_the_file(tmp_path, script):
    (tmp_path / "checkpoint.npz").write_bytes(b"PK\x03\x04 truncated")
    done = run(script, "--resume", "--out", str(tmp_path), env=without_data(tmp_path / "no_data"))
    assert done.returncode == 1 and "not a readable npgen checkpoint" in done.stderr and "Traceback" not in done.stderr


def test_an_unknown_backend_is_a_flag_error():
    done = run("vae.py", "--backend", "tpu")
    assert done.returncode == 2 and "argument --backend: invalid choice: 'tpu'" in done.stderr


def test_a_model_too_large_for_the_machine_is_a_message_not_a_traceback(tmp_path):
    done = run("mnist_classifier.py", "--hidden", "100000000000", "--out", str(tmp_path))
    assert done.returncode == 1 and "out of memory" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("script", ["vae.py", "gan.py", "flow.py", "mnist_classifier.py"])
def test_missing_mnist_files_are_a_message_that_names_the_file_not_a_traceback(tmp_path, script):
    done = run(script, "--epochs", "1", "--out", str(tmp_path / "run"), env=without_data(tmp_path / "empty"))
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    looked_in = (tmp_path / "empty").resolve()
    assert f"MNIST file not found: looked for {looked_in}" in done.stderr and "NPGEN_DATA" in done.stderr


def test_the_metrics_command_without_mnist_files_names_the_file_not_a_traceback(tmp_path):
    np.save(tmp_path / "samples.npy", np.zeros((4, 784), np.float32))
    env = {**without_data(tmp_path / "empty"), "NPGEN_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-m", "npgen.metrics", str(tmp_path / "samples.npy")], capture_output=True, text=True, env=env
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "MNIST file not found" in done.stderr


def test_resume_without_a_checkpoint_says_where_it_looked(tmp_path):
    done = run("vae.py", *VAE_QUICK, "--resume", "--out", str(tmp_path))
    assert done.returncode == 1 and f"no checkpoint at {tmp_path / 'checkpoint.npz'}" in done.stderr


def test_resume_refuses_flags_that_change_the_run_or_fewer_epochs_and_allows_more(tmp_path, vae_run):
    out = copy_of(vae_run, tmp_path)
    no_data = without_data(tmp_path / "no_data")  # refusals come before the data is read
    for flag, value, saved in [("--lr", "0.5", "0.001"), ("--seed", "1", "0"), ("--batch-size", "64", "128")]:
        done = run("vae.py", *VAE_QUICK, "--epochs", "2", flag, value, "--resume", "--out", str(out), env=no_data)
        assert done.returncode == 1 and f"{flag} was {saved}, now {value}" in done.stderr, done.stderr[-2000:]
    binarize = ["--binarize", "dynamic"]
    done = run("vae.py", *VAE_QUICK, *binarize, "--epochs", "2", "--resume", "--out", str(out), env=no_data)
    assert "--binarize was 'static', now 'dynamic'" in done.stderr
    assert len(checkpoint.read_metadata(out / "checkpoint.npz")["history"]) == 1  # nothing was trained
    done = run("vae.py", *VAE_QUICK, "--epochs", "2", "--iw-samples", "3", "--resume", "--out", str(out))
    assert done.returncode == 0 and "resumed" in done.stdout, done.stderr[-2000:]
    recorded = json.loads((out / "metrics.json").read_text())["args"]
    assert recorded["lr"] == 0.001 and recorded["epochs"] == 2 and recorded["iw_samples"] == 3  # typed, not text
    done = run("vae.py", *VAE_QUICK, "--epochs", "1", "--resume", "--out", str(out), env=no_data)
    assert done.returncode == 1 and "--epochs 1: the run in" in done.stderr and "has done 2 epochs" in done.stderr


def test_a_flow_run_stopped_between_its_two_checkpoint_writes_reports_the_true_best(tmp_path):
    straight, one_epoch, stopped = tmp_path / "straight", tmp_path / "one_epoch", tmp_path / "stopped"
    constant = [*FLOW_QUICK, "--lr-schedule", "constant"]  # so one_epoch's epoch 1 is straight's epoch 1
    two_epochs = start("flow.py", *constant, "--epochs", "2", "--out", str(straight))
    assert run("flow.py", *constant, "--epochs", "1", "--out", str(one_epoch)).returncode == 0
    finish(two_epochs)
    expected = json.loads((straight / "metrics.json").read_text())
    assert expected["best_epoch"] == 2  # the second epoch improved: it wrote checkpoint.npz, then best.npz
    # The state of a run killed after epoch 2's checkpoint.npz and before its best.npz:
    stopped.mkdir()
    shutil.copy(straight / "checkpoint.npz", stopped / "checkpoint.npz")
    shutil.copy(one_epoch / "best.npz", stopped / "best.npz")
    done = run("flow.py", *constant, "--epochs", "2", "--resume", "--out", str(stopped))
    assert done.returncode == 0 and "one save behind" in done.stdout, done.stderr[-2000:]
    assert json.loads((stopped / "metrics.json").read_text())["best_test_bpd"] == expected["best_test_bpd"]


def test_a_cosine_flow_run_refuses_other_epochs_on_resume(tmp_path):
    """The schedule is laid over the run's epochs: more of them would change the rates already used."""
    assert run("flow.py", *FLOW_QUICK, "--epochs", "1", "--out", str(tmp_path)).returncode == 0
    done = run(
        "flow.py", *FLOW_QUICK, "--epochs", "2", "--resume", "--out", str(tmp_path), env=without_data(tmp_path / "x")
    )
    assert done.returncode == 1 and "--epochs was 1, now 2" in done.stderr, done.stderr[-2000:]
    assert "anneals the learning rate to 0 over its 1 epochs" in done.stderr and "--lr-schedule constant" in done.stderr
    samples = np.load(tmp_path / "samples.npy")  # like every model's: scored by python -m npgen.metrics
    assert samples.shape == (10_000, 784) and samples.dtype == np.float32 and 0 <= samples.min() <= samples.max() <= 1


def test_a_flow_run_killed_mid_schedule_resumes_to_the_uninterrupted_numbers(tmp_path):
    """Killed after its first epoch's checkpoint, a cosine run resumes at the rate the schedule had reached."""
    args = ["--hidden", "16", "--n-flows", "1", "--train-size", "10000", "--batch-size", "50", "--epochs", "2"]
    uninterrupted = start("flow.py", *args, "--out", str(tmp_path / "straight"))
    out = tmp_path / "killed"
    process = subprocess.Popen(
        command("flow.py", *args, "--out", str(out)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while not (out / "checkpoint.npz").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    process.kill()
    process.wait()
    assert len(checkpoint.read_metadata(out / "checkpoint.npz")["history"]) == 1, "killed too late to test a resume"
    done = run("flow.py", *args, "--resume", "--out", str(out))
    assert done.returncode == 0 and "resumed" in done.stdout, done.stderr[-2000:]
    finish(uninterrupted)

    assert run_numbers(out, "test_bpd") == run_numbers(tmp_path / "straight", "test_bpd")  # last_lr included
    assert run_numbers(out, "test_bpd")["epochs"][-1]["last_lr"] < 1e-6  # the schedule ran down to (almost) 0


@pytest.mark.slow
def test_a_run_killed_at_random_moments_resumes_to_the_uninterrupted_numbers(tmp_path):
    """Kill a short VAE run again and again (many kills land in a save), resume each time, compare at the end."""
    args = [*VAE_QUICK, "--epochs", "20", "--iw-samples", "0"]  # ~6 s: ~1.5 s of imports, then 0.2 s epochs
    straight = run("vae.py", *args, "--out", str(tmp_path / "straight"))
    assert straight.returncode == 0
    out, rng, kills = tmp_path / "killed", np.random.default_rng(0), 0
    for _launch in range(100):
        if (out / "metrics.json").exists():
            break
        resume = ["--resume"] if (out / "checkpoint.npz").exists() else []
        process = subprocess.Popen(
            command("vae.py", *args, "--out", str(out), *resume), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            _, stderr = process.communicate(timeout=rng.uniform(1.0, 3.0))
            assert process.returncode == 0, stderr.decode()[-2000:]  # a run that ends by itself must succeed
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            kills += 1
    assert (out / "metrics.json").exists(), f"not finished after 100 launches ({kills} killed)"
    assert kills >= 5 and not list(out.glob(".*.tmp"))
    assert run_numbers(out, "test") == run_numbers(tmp_path / "straight", "test")


def test_a_checkpoint_from_before_a_flag_existed_resumes_under_the_value_it_was_made_with(tmp_path):
    path = tmp_path / "checkpoint.npz"
    checkpoint.save(path, model=nn.Linear(2, 2), history=[], config={"script": "flow.py", "lr": 0.1})
    added = {"lr_schedule": "constant"}
    config = {"script": "flow.py", "lr": 0.1, "lr_schedule": "constant"}
    assert runs.resume(path, config, 1, added, model=nn.Linear(2, 2))["history"] == []
    with pytest.raises(SystemExit, match="--lr-schedule was 'constant', now 'cosine'"):
        runs.resume(path, {**config, "lr_schedule": "cosine"}, 1, added, model=nn.Linear(2, 2))


def test_the_run_helpers_refuse_a_checkpoint_without_a_configuration(tmp_path):
    checkpoint.save(tmp_path / "checkpoint.npz", model=nn.Linear(2, 2), history=[])
    with pytest.raises(SystemExit, match="records no configuration"):
        runs.resume(tmp_path / "checkpoint.npz", {"script": "x.py", "lr": 0.1}, 1, model=nn.Linear(2, 2))
    assert os.path.exists(tmp_path / "checkpoint.npz")


def test_a_refused_batch_leaves_batch_norm_statistics_untouched():
    layer = nn.BatchNorm1d(3)
    with pytest.raises(ValueError, match="more than one sample"):
        layer(npgen.randn(1, 3))
    assert int(layer.num_batches_tracked) == 0 and layer.running_mean.tolist() == [0, 0, 0]


def test_binary_cross_entropy_takes_a_number_as_target():
    loss = npgen.F.binary_cross_entropy_with_logits(npgen.zeros(2, 3), 1.0)
    assert loss.item() == pytest.approx(np.log(2))


def test_progress_bars_stay_out_of_logs_but_keep_their_interface(capsys):
    """Output to a file or pipe gets no bar (kilobytes of redraws in a log); set_postfix still works."""
    batches = runs.progress(range(3), "epoch 1/1")
    assert list(batches) == [0, 1, 2] and len(batches) == 3
    batches.set_postfix(loss="0.1")
    assert capsys.readouterr().err == ""


def test_threads_flag_sets_the_blas_threads_and_zero_leaves_them(monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_threads() -> int:
        return max(i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas")

    before = blas_threads()
    try:
        runs.use_threads(1)
        assert blas_threads() == 1
        runs.use_threads(0)
        assert blas_threads() == 1  # 0 leaves the setting as it is
    finally:
        threadpoolctl.threadpool_limits(before, user_api="blas")


def test_load_run_leaves_the_random_stream_and_names_what_is_wrong(tmp_path, vae_run):
    npgen.manual_seed(5)
    expected = npgen.randn(4).numpy()
    npgen.manual_seed(5)
    loaded = npgen.load_run(vae_run)
    assert np.array_equal(npgen.randn(4).numpy(), expected)  # building the VAE drew nothing the caller sees
    assert loaded.flags["zdim"] == 2 and loaded.flags["train_size"] == 2000 and not loaded.model.training
    assert loaded.metrics["args"]["iw_samples"] == 2 and len(loaded.history) == 1
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        npgen.load_run(tmp_path / "nothing")


def test_flags_keep_lists_as_lists():
    args = argparse.Namespace(settings=["a", "b"], out=Path("x"), lr=0.1)
    assert runs.flags(args) == {"settings": ["a", "b"], "out": "x", "lr": 0.1}
