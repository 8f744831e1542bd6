"""The benchmark script's tables are well formed (its numbers are for benchmarks/RESULTS.md, not for tests)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import npgen
from npgen.core import Function

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # as when the script runs: its sibling files import directly
spec = importlib.util.spec_from_file_location("bench", BENCHMARKS / "run.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
import adam_chunks  # noqa: E402
import breakdown  # noqa: E402
import npgen_models  # noqa: E402


def test_overhead_rows_name_the_backend_op_and_a_positive_time():
    rows = bench.overhead_rows("numpy", repeats=1)
    assert len(rows) == 5
    for row in rows:
        match = re.fullmatch(r"\| numpy \| (\w+) \| ([0-9.]+) \|", row)
        assert match and float(match.group(2)) > 0


def test_the_machine_line_names_numpy_and_the_backends_say_why_cupy_is_missing(monkeypatch):
    assert "numpy" in bench.machine()
    names, note = bench.available_backends()
    assert names == ["numpy", "cupy"] and note == ""  # cupy: the real one on a GPU, else the test double

    def no_cupy(name=None):
        raise RuntimeError("the cupy backend needs a CUDA device, and none is usable")

    monkeypatch.setattr(bench.backend, "get_backend", no_cupy)
    names, note = bench.available_backends()
    assert names == ["numpy"] and "cupy rows missing: the cupy backend needs a CUDA device" in note


def test_the_blas_floor_is_positive_and_the_flow_lists_eight_hidden_products():
    one = bench.blas_floor_seconds("numpy", [(8, 8, 8)], repeats=3)
    assert one > 0
    assert npgen_models.FORWARD_MATMULS["flow (batch 128)"].count((128, 1024, 1024)) == 8


def test_a_table_has_a_header_a_rule_and_one_line_per_row():
    text = bench.table(["a", "b"], ["| 1 | 2 |"])
    assert text.splitlines() == ["| a | b |", "| --- | --- |", "| 1 | 2 |"]


def test_the_step_breakdown_splits_the_whole_step_and_restores_the_ops():
    npgen.use_backend("numpy")
    model = npgen.nn.Sequential(npgen.nn.Linear(64, 256), npgen.nn.ReLU(), npgen.nn.Linear(256, 8))
    opt = npgen.optim.Adam(model.parameters())
    x = npgen.Tensor(np.random.default_rng(0).standard_normal((32, 64), np.float32))
    before = {cls: vars(cls).get("forward") for cls in breakdown._subclasses(Function)}

    def step() -> None:
        loss = (model(x) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    parts = breakdown.step_breakdown(step, repeats=3)
    assert all(parts[p] > 0 for p in ("matmul", "elementwise", "optimizer", "total"))
    assert parts["engine"] > 0  # building the graph and routing gradients is never free
    assert {cls: vars(cls).get("forward") for cls in breakdown._subclasses(Function)} == before


def test_the_op_breakdown_names_each_op_and_the_optimizer_largest_first():
    npgen.use_backend("numpy")
    model = npgen.nn.Sequential(npgen.nn.Linear(64, 256), npgen.nn.ReLU(), npgen.nn.Linear(256, 8))
    opt = npgen.optim.Adam(model.parameters())
    x = npgen.Tensor(np.random.default_rng(0).standard_normal((32, 64), np.float32))

    def step() -> None:
        loss = model(x).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()

    parts, total = breakdown.op_breakdown(step, repeats=3)
    assert {"Linear forward", "Linear backward", "ReLU forward", "Adam step"} <= set(parts)
    assert list(parts.values()) == sorted(parts.values(), reverse=True) and min(parts.values()) > 0
    assert sum(parts.values()) < total  # the engine's own time is in the total, in no op


def test_peak_memory_is_the_child_process_own_not_the_parent_peak():
    ballast = np.ones(300 * 2**20, np.uint8)  # 300 MiB resident in this, the parent, process
    peak, after_import = bench.peak_memory_mib("npgen", "VAE (batch 128)")
    assert bench.own_rss_mib("VmHWM") > 300 and ballast[-1] == 1
    assert 10 < after_import < peak < 250  # the VAE's child needs about 60 MiB


def test_the_pytorch_models_have_exactly_npgen_parameter_shapes():
    torch = pytest.importorskip("torch")
    from npgen.models import VAE, Discriminator, Flow, Generator, MaskedCoupling

    import torch_models

    pairs = [
        (VAE(), torch_models.VAE()),
        (Generator(), torch_models.generator()),
        (Discriminator(), torch_models.discriminator()),
        (Flow(n_hidden=32), torch_models.SplitFlow(n_hidden=32)),
        (MaskedCoupling(np.ones(784), n_hidden=32), torch_models.Coupling(torch.ones(784), n_hidden=32)),
    ]
    for ours, theirs in pairs:  # both store a Linear weight as (out, in), in the order the layers run
        assert [tuple(p.shape) for p in ours.parameters()] == [tuple(p.shape) for p in theirs.parameters()]


def test_transfer_rows_time_both_directions_on_a_device_backend(device):
    if device == "numpy":
        pytest.skip("transfers exist only between the host and a device")
    rows = bench.transfer_rows(device, repeats=1)
    assert len(rows) == 2
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[0] == device and float(cells[3]) > 0 and float(cells[4]) > 0


def test_the_floor_ratio_is_the_median_of_ratios_of_alternating_rounds(monkeypatch):
    # Rounds of (step, floor): (1, 1), (10, 2), (4, 8) → ratios 1, 5, 0.5, median 1; the ratio of
    # the medians (4 / 2) would be 2, and a drift of the machine between the two would bias it.
    steps, floors = iter([1.0, 10.0, 4.0]), iter([1.0, 2.0, 8.0])
    monkeypatch.setattr(npgen_models, "STEPS", {"tiny": lambda rng: lambda: None})
    monkeypatch.setattr(npgen_models, "STEPS_PER_EPOCH", {"tiny": 100})
    monkeypatch.setattr(npgen_models, "FORWARD_MATMULS", {"tiny": [(2, 2, 2)]})
    monkeypatch.setattr(bench, "median_seconds", lambda fn, xp, repeats: next(steps))
    monkeypatch.setattr(bench, "blas_floor_seconds", lambda name, shapes, repeats: next(floors))
    [row] = bench.model_rows("numpy", repeats=3)
    assert row == "| numpy | tiny | 4000.0 | 400.0 | 2000.0 | 1.00 | — |"


def test_the_pytorch_gemm_rows_give_both_rates_for_each_product_of_every_model_layer(monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setattr(
        bench, "MODEL_SHAPES", [("small", 32, 64, 64), ("wide", 16, 256, 32)]
    )  # rates print as 0.0 below ~1e5 flops on a busy machine
    rows = bench.torch_gemm_rows(rounds=1)
    assert len(rows) == 3 * len(bench.MODEL_SHAPES)
    products = ["forward x·Wᵀ", "input grad g·W", "weight grad gᵀ·x"]
    for i, row in enumerate(rows):
        label, m, k, n = bench.MODEL_SHAPES[i // 3]
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[:3] == [label, products[i % 3], f"{m}×{k}→{n}"] and all(float(c) > 0 for c in cells[3:])


def test_the_layer_products_have_the_shapes_of_the_layer_and_its_gradients():
    x, w, g = np.ones((4, 3)), np.ones((5, 3)), np.ones((4, 5))
    shapes = {name: product().shape for name, product in bench.layer_products(x, w, g).items()}
    assert shapes == {"forward x·Wᵀ": (4, 5), "input grad g·W": (4, 3), "weight grad gᵀ·x": (5, 3)}


def test_alternating_medians_take_turns_and_give_one_median_per_function(monkeypatch):
    calls = []
    monkeypatch.setattr(bench.time, "sleep", lambda seconds: calls.append("pause"))
    fns = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    medians = bench.alternating_medians(fns, rounds=2, repeats=1)
    assert calls == ["pause", "a", "a", "pause", "b", "b"] * 2  # each turn: a pause, a warm-up, one timed run
    assert set(medians) == {"a", "b"} and all(seconds >= 0 for seconds in medians.values())


def test_a_gpu_measurement_runs_many_calls_per_synchronisation():
    cupy = npgen.backend.get_backend("cupy").xp
    if not hasattr(cupy, "transfers"):
        pytest.skip("counting synchronisations needs the cupy test double")
    calls = []
    before = cupy.transfers["synchronize"]
    bench.median_seconds(lambda: calls.append(1), cupy, repeats=3)
    assert len(calls) == 1 + 3 * bench.calls_per_sync(cupy) and bench.calls_per_sync(cupy) > 1
    assert cupy.transfers["synchronize"] - before == 1 + 3  # after the warm-up, then once per measurement
    host_calls = []
    bench.median_seconds(lambda: host_calls.append(1), np, repeats=3)
    assert len(host_calls) == 4


def test_gpu_model_rows_report_the_memory_pool(monkeypatch):
    monkeypatch.setattr(npgen_models, "STEPS", {"tiny": lambda rng: lambda: None})
    monkeypatch.setattr(npgen_models, "STEPS_PER_EPOCH", {"tiny": 100})
    monkeypatch.setattr(npgen_models, "FORWARD_MATMULS", {"tiny": [(2, 2, 2)]})
    previous = npgen.backend.get_backend().name
    try:
        [row] = bench.model_rows("cupy", repeats=1)
    finally:
        npgen.use_backend(previous)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:2] == ["cupy", "tiny"] and float(cells[-1]) >= 0


def test_the_peer_table_times_npgen_and_each_installed_peer_or_says_why_not(monkeypatch):
    pytest.importorskip("torch")  # the benchmark's extras; the peers themselves may be missing
    import peer_models

    def missing(rng):
        raise ImportError("No module named 'nothere'")

    monkeypatch.setattr(peer_models, "STEPS", {"present": lambda rng: lambda: None, "absent": missing})
    monkeypatch.setattr(npgen_models, "STEPS", {"VAE (batch 128)": lambda rng: lambda: None})
    monkeypatch.setattr(bench, "alternating_medians", lambda fns, rounds, repeats: {name: 0.01 for name in fns})
    rows = bench.peer_rows(rounds=1)
    assert rows == [
        "| npgen | 10.0 | 1.00 |",
        "| present | 10.0 | 1.00 |",
        "| absent | skipped: No module named 'nothere' | |",
    ]


def test_the_peer_vae_steps_run_where_the_peers_are_installed():
    import peer_models

    ran = 0
    for make in peer_models.STEPS.values():
        try:
            step = make(np.random.default_rng(0))
        except ImportError:
            continue  # the benchmark reports the reason in its table
        losses = [step() for _ in range(3)]  # the loss of each step, as the step computed it
        assert all(np.isfinite(losses)) and 300 < losses[0] < 1000  # a fresh VAE: about 784 ln 2 + KL nats per image
        ran += 1
    if not ran:
        pytest.skip("neither HIPS autograd nor DeZero is installed")


def test_adam_chunk_timing_times_every_chunk_size_and_restores_the_default(monkeypatch):
    model = npgen.nn.Linear(600, 500)  # 300,500 weights: more than one chunk at every size timed
    x = npgen.Tensor(np.ones((4, 600), np.float32))
    sizes, adam_chunk = set(), npgen.optim._adam_chunk
    monkeypatch.setattr(npgen.optim, "_adam_chunk", lambda p, *rest: sizes.add(p.size) or adam_chunk(p, *rest))

    default = npgen.optim.CHUNK
    ms = adam_chunks.adam_ms_per_chunk((lambda: model(x).sum(), npgen.optim.Adam(model.parameters())), rounds=3)
    assert sorted(ms) == adam_chunks.CHUNKS and all(t > 0 for t in ms.values())
    assert set(adam_chunks.CHUNKS) <= sizes  # each size was the one Adam's steps ran with
    assert npgen.optim.CHUNK == default
