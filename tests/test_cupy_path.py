"""npgen's own cupy code, run on the cupy test double (tests/cupy_double) where there is no GPU.

The examples run end to end with ``--backend cupy`` in a subprocess that imports the double as
``cupy``; interrupted-then-resumed runs end with their uninterrupted twins' numbers, which needs
the cupy generator's stream to be saved and restored like numpy's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import CUPY, CUPY_DOUBLE

import npgen
from npgen import backend, metrics

from example_runs import FLOW_QUICK, VAE_QUICK, Started, finish, run_numbers, run_ok, start


def _cupy_env(cache: Path | None = None) -> dict[str, str]:
    """The environment of a run on cupy (NPGEN_BACKEND=cupy): real cupy on a GPU, else the double."""
    env = dict(os.environ, NPGEN_BACKEND="cupy")
    if not CUPY:
        env["PYTHONPATH"] = os.pathsep.join([str(CUPY_DOUBLE), str(CUPY_DOUBLE.parent), env.get("PYTHONPATH", "")])
    if cache is not None:
        env["NPGEN_CACHE"] = str(cache)
    return env


def _start_on_cupy(script: str, *args: str, cache: Path | None = None) -> Started:
    """Start an example with --backend cupy in the background (``finish`` waits for it)."""
    return start(script, "--backend", "cupy", *args, env=_cupy_env(cache))


def _run_on_cupy(script: str, *args: str, cache: Path | None = None) -> str:
    """Run an example with --backend cupy (or a module with NPGEN_BACKEND=cupy); its standard output."""
    env = _cupy_env(cache)
    if not script.startswith("-m"):
        return run_ok(script, "--backend", "cupy", *args, env=env)
    done = subprocess.run(
        [sys.executable, *script.split(), *args], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_cupy_backend_is_npgens_own_loader_on_real_cupy_or_its_double():
    cupy = backend.get_backend("cupy")
    assert cupy.xp.__name__ == "cupy" and isinstance(cupy.rng, backend.CupyRandomStream)
    assert CUPY or cupy.xp.__version__.endswith("(test double)")


def test_every_backends_generator_saves_and_restores_its_stream(device):
    rng = backend.get_backend(device).rng
    rng.normal((3,))
    state = rng.get_state()
    first = [
        backend.to_numpy(rng.normal((4,))),
        backend.to_numpy(rng.uniform((2,), -1, 1)),
        backend.to_numpy(rng.permutation(5)),
    ]
    rng.set_state(state)
    again = [
        backend.to_numpy(rng.normal((4,))),
        backend.to_numpy(rng.uniform((2,), -1, 1)),
        backend.to_numpy(rng.permutation(5)),
    ]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


def test_the_evaluation_classifier_trains_on_cupy_and_gives_the_callers_stream_back(tmp_path, monkeypatch):
    monkeypatch.setenv("NPGEN_CACHE", str(tmp_path))
    monkeypatch.setitem(metrics.CLASSIFIER, "hidden", 16)
    monkeypatch.setitem(metrics.CLASSIFIER, "epochs", 1)
    previous = backend.get_backend().name
    try:
        npgen.use_backend("cupy")
        npgen.manual_seed(5)
        expected = backend.to_numpy(npgen.randn(3).data)
        npgen.manual_seed(5)
        model = metrics.load_classifier(progress=False)
        assert backend.to_numpy(npgen.randn(3).data).tolist() == expected.tolist()
        assert metrics.accuracy(model, *metrics.load_mnist("test")) > 0.8
    finally:
        npgen.use_backend(previous)


GAN_QUICK = ["--train-size", "640", "--batch-size", "64", "--save-interval", "10", "--n-eval", "200"]
GAN_QUICK += ["--coverage-every", "0"]  # coverage is backend-agnostic bookkeeping, tested on numpy (test_gan_run.py)


def test_an_interrupted_vae_run_on_cupy_resumes_to_the_same_numbers(tmp_path):
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    uninterrupted = _start_on_cupy("vae.py", *VAE_QUICK, "--epochs", "2", "--out", str(straight))
    _run_on_cupy("vae.py", *VAE_QUICK, "--epochs", "1", "--out", str(interrupted))
    _run_on_cupy("vae.py", *VAE_QUICK, "--epochs", "2", "--resume", "--out", str(interrupted))
    finish(uninterrupted)
    assert run_numbers(straight) == run_numbers(interrupted)
    test = [json.loads((p / "metrics.json").read_text())["test"] for p in (straight, interrupted)]
    assert test[0] == test[1]


def test_an_interrupted_flow_run_on_cupy_resumes_to_the_same_numbers(tmp_path):
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    constant = [*FLOW_QUICK, "--lr-schedule", "constant"]  # under a constant rate more epochs extend a run
    uninterrupted = _start_on_cupy("flow.py", *constant, "--epochs", "2", "--out", str(straight))
    _run_on_cupy("flow.py", *constant, "--epochs", "1", "--out", str(interrupted))
    _run_on_cupy("flow.py", *constant, "--epochs", "2", "--resume", "--out", str(interrupted))
    assert "GPU pool" in finish(uninterrupted)  # the peak-memory line reports the device's memory too
    assert json.loads((straight / "metrics.json").read_text())["device_memory_mib"] is not None
    assert run_numbers(straight) == run_numbers(interrupted)


def _cached_classifier(cache: Path) -> Path:
    """An (untrained) evaluation classifier in the cache, so scoring runs without a long training."""
    cache.mkdir()
    metrics.checkpoint.save(
        cache / metrics.classifier_path().name, classifier=metrics.make_classifier(), test_accuracy=0.0
    )
    return cache


def test_the_metrics_command_scores_samples_on_cupy(tmp_path):
    samples = tmp_path / "samples.npy"
    np.save(samples, np.random.default_rng(0).uniform(0, 1, (100, 784)).astype(np.float32))
    out = _run_on_cupy("-m npgen.metrics", str(samples), cache=_cached_classifier(tmp_path / "cache"))
    assert "inception" in out.lower(), out


def test_an_interrupted_gan_run_on_cupy_resumes_and_scores_its_samples(tmp_path):
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    cache = _cached_classifier(tmp_path / "cache")
    uninterrupted = _start_on_cupy("gan.py", *GAN_QUICK, "--epochs", "2", "--out", str(straight), cache=cache)
    _run_on_cupy("gan.py", *GAN_QUICK, "--epochs", "1", "--out", str(interrupted), cache=cache)
    _run_on_cupy("gan.py", *GAN_QUICK, "--epochs", "2", "--resume", "--out", str(interrupted), cache=cache)
    finish(uninterrupted)
    assert run_numbers(straight) == run_numbers(interrupted)
    scores = json.loads((straight / "metrics.json").read_text())
    assert any("inception" in key for key in json.dumps(scores).split('"')), scores


def test_clip_grad_norm_reads_one_number_back_from_the_device_however_many_parameters():
    if CUPY:
        pytest.skip("counting transfers needs the cupy test double")
    cupy = backend.get_backend("cupy")
    params = [npgen.Tensor(cupy.rng.normal((5, 5))) for _ in range(12)]
    for p in params:
        p.grad = cupy.rng.normal((5, 5))
    expected = np.sqrt(sum((backend.to_numpy(p.grad).astype(np.float64) ** 2).sum() for p in params))
    before = cupy.xp.transfers["to_host"]
    norm = npgen.optim.clip_grad_norm(params, 0.5)
    assert cupy.xp.transfers["to_host"] - before == 1
    assert norm == pytest.approx(expected, rel=1e-5)


def _model_steps(rng: np.random.Generator) -> dict:
    """One training step of each model at small sizes, on the current backend, as the examples run them."""
    from npgen.models import VAE, Discriminator, Flow, Generator
    from npgen.models.gan import train_step

    on_device = backend.get_backend().from_host
    vae, generator, discriminator, flow = VAE(hidden=32), Generator(), Discriminator(), Flow(n_hidden=16)
    opts = {
        name: npgen.optim.Adam(m.parameters()) for name, m in [("vae", vae), ("g", generator), ("d", discriminator)]
    }
    opts["flow"] = npgen.optim.Adam(flow.parameters())
    binary = npgen.Tensor(on_device((rng.uniform(size=(16, 784)) < 0.3).astype(np.float32)))
    real = npgen.Tensor(on_device(rng.uniform(-1, 1, (16, 784)).astype(np.float32)))
    pixels = on_device(rng.integers(0, 256, (16, 784)).astype(np.uint8))

    def vae_step() -> None:
        loss = vae.loss(binary)
        opts["vae"].zero_grad()
        loss.backward()
        opts["vae"].step()

    def flow_step() -> None:
        loss = flow.bpd(pixels).mean()
        opts["flow"].zero_grad()
        loss.backward()
        npgen.optim.clip_grad_norm(flow.parameters(), 10.0)
        opts["flow"].step()

    return {
        "VAE": (vae_step, 0),
        "GAN": (lambda: train_step(generator, discriminator, opts["g"], opts["d"], real), 0),
        "flow": (flow_step, 1),  # the global gradient norm, read once to decide on clipping
    }


def test_a_training_step_of_each_model_makes_no_hidden_copies_or_synchronisations():
    if CUPY:
        pytest.skip("counting transfers needs the cupy test double")
    previous = backend.get_backend().name
    try:
        npgen.use_backend("cupy")
        transfers = backend.get_backend().xp.transfers
        for name, (step, reads_allowed) in _model_steps(np.random.default_rng(0)).items():
            step()  # the first step creates the optimizer state
            before = dict(transfers)
            step()
            counts = {k: transfers[k] - before[k] for k in transfers}
            assert counts == {"to_host": reads_allowed, "to_device": 0, "synchronize": 0}, (name, counts)
    finally:
        npgen.use_backend(previous)


def test_adam_on_cupy_runs_the_fused_kernel_and_matches_the_host_update():
    cupy = backend.get_backend("cupy")
    start = np.random.default_rng(0).normal(size=(4, 3))
    host, device = (
        npgen.Tensor(start.copy(), requires_grad=True),
        npgen.Tensor(cupy.from_host(start), requires_grad=True),
    )
    opts = [npgen.optim.Adam([p], lr=0.1, betas=(0.8, 0.9), weight_decay=0.01) for p in (host, device)]
    for t in range(3):
        g = np.random.default_rng(t).normal(size=(4, 3))
        host.grad, device.grad = g.copy(), cupy.from_host(g)
        for opt in opts:
            opt.step()
    assert npgen.optim.fused_adam(device.data) is not None and npgen.optim.fused_adam(host.data) is None
    np.testing.assert_allclose(backend.to_numpy(device.data), host.data, rtol=1e-12)


def test_the_classifier_example_trains_on_cupy(tmp_path):
    _run_on_cupy("mnist_classifier.py", "--epochs", "1", "--train-size", "3000", "--out", str(tmp_path))
    assert json.loads((tmp_path / "metrics.json").read_text())["test_accuracy"] > 0.7


def test_the_gpu_extra_brings_the_cuda_libraries_cupy_loads():
    setup = (Path(__file__).parents[1] / "setup.py").read_text()
    assert '"gpu": ["cupy-cuda12x[ctk]>=14"]' in setup  # 14 is the first with the ctk extra's libraries
