"""The flow's study experiments at tiny sizes: what each one claims, pinned by its own numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from example_runs import run, run_ok


@pytest.fixture(scope="module")
def change_of_variables(tmp_path_factory) -> Path:
    """One tiny run of flow_change_of_variables.py (two random inputs, D = 256 and 512 timed); its --out."""
    out = tmp_path_factory.mktemp("flow_change_of_variables")
    sizes = ["--points", "2", "--min-dim", "256", "--max-dim", "512", "--step-hidden", "8"]
    run_ok("flow_change_of_variables.py", *sizes, "--out", str(out))
    return out


def test_each_coupling_log_det_and_their_sum_equal_the_brute_force_log_determinants(change_of_variables):
    """Σ s of every coupling = log|det J_k|, their sum = log|det J| of the flow, and J is block triangular."""
    out = change_of_variables
    results = json.loads((out / "results.json").read_text())
    assert (out / "jacobians.png").stat().st_size > 0 and (out / "cost.png").stat().st_size > 0

    assert results["max_coupling_log_det_error"] < 1e-10 and results["max_flow_log_det_error"] < 1e-10
    assert results["max_sum_of_couplings_error"] < 1e-10 and results["max_chain_rule_error"] < 1e-10
    for point in results["points"]:
        assert len(point["couplings"]) == 4
        assert all(abs(c["model"]) > 1e-3 for c in point["couplings"])  # random weights: not the identity
    for block in results["structure_first_point"]:  # couplings 1 and 2: [[I, 0], [M, diag(eˢ)]] exactly
        assert block["identity_block_error"] == 0 and block["zero_block_max"] == 0
        assert block["diagonal_block_off_diagonal_max"] == 0 and block["mixing_block_max"] > 0.1
    first = results["points"][0]["couplings"]
    assert abs(results["structure_first_point"][0]["sum_log_diagonal"] - first[0]["model"]) < 1e-10


def test_a_dense_log_determinant_grows_much_faster_than_a_couplings_sum(change_of_variables):
    """The timings: slogdet's log-log slope is well above linear and it costs far more than Σ s."""
    timing = json.loads((change_of_variables / "results.json").read_text())["timing"]
    assert timing["dims"] == [256, 512]
    assert timing["fitted_slope"] > 1.5  # O(D³) in theory; a linear cost would give 1
    assert all(
        d > 100 * c for d, c in zip(timing["dense_slogdet_seconds"], timing["coupling_log_det_seconds_per_image"])
    )
    assert timing["mnist_dense_seconds_per_batch"] == 128 * timing["mnist_dense_seconds_per_image"]


def test_the_change_of_variables_script_refuses_sizes_out_of_range(tmp_path):
    done = run("flow_change_of_variables.py", "--side", "9", "--out", str(tmp_path))
    assert done.returncode == 2 and "--side 9" in done.stderr


def test_without_dequantization_the_loss_falls_below_zero_while_the_discrete_bound_does_not_improve(tmp_path):
    """u = 0: the 'bits/dim' goes negative (a density's height); with noise it bounds −log₂ P(x)/D, always ≥ 0."""
    sizes = ["--epochs", "4", "--train-size", "1000", "--test-size", "200", "--hidden", "32", "--n-flows", "2"]
    run_ok(
        "flow_dequantization.py", *sizes, "--batch-size", "50", "--lr", "3e-3", "--draws", "4", "--out", str(tmp_path)
    )
    results = json.loads((tmp_path / "results.json").read_text())
    assert (tmp_path / "bpd.png").stat().st_size > 0 and (tmp_path / "samples.png").stat().st_size > 0
    dequantized, integer = results["epochs"]["dequantized"], results["epochs"]["integer"]
    assert len(dequantized) == len(integer) == 5  # epoch 0 (untrained) and four epochs
    assert dequantized[0]["test_bpd_no_noise"] == integer[0]["test_bpd_no_noise"]  # the same initial weights

    last_d, last_i = dequantized[-1], integer[-1]
    assert last_i["train_bpd"] < 0 and last_i["train_bpd"] < last_d["train_bpd"] - 3  # what u = 0 training reports
    assert last_i["test_bpd_uniform_noise"] > last_i["test_bpd_no_noise"] + 3  # but its discrete bound is positive
    assert last_d["test_bpd_uniform_noise"] < last_i["test_bpd_uniform_noise"]  # and worse than the dequantized model's
    assert all(h["test_bpd_uniform_noise"] > 0 for h in dequantized + integer)
    assert all(h["test_bpd_no_noise"] > results["no_noise_floor_bpd"] for h in dequantized + integer)
    for bound in results["final_test_bound"].values():  # Jensen: log mean p ≥ mean log p, image by image
        assert 0 < bound["k_draws"] < bound["one_draw"]
