"""The GAN study scripts: the optimal discriminator's value, and mode coverage on the ring of 8 Gaussians."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

from example_runs import EXAMPLES, finish, start


@pytest.fixture(scope="module")
def studies(tmp_path_factory) -> dict[str, Path]:
    """Both studies run at small size, started together (independent, they share the cores); their --out."""
    out = {name: tmp_path_factory.mktemp(name) for name in ("gan_optimal_discriminator", "gan_mode_collapse")}
    started = [
        start(
            "gan_optimal_discriminator.py",
            "--steps",
            "300",
            "--batch-size",
            "256",
            "--out",
            str(out["gan_optimal_discriminator"]),
        ),
        start(
            "gan_mode_collapse.py",
            "--steps",
            "500",
            "--seeds",
            "1",
            "--n-eval",
            "500",
            "--out",
            str(out["gan_mode_collapse"]),
        ),
    ]
    for run in started:
        finish(run)
    return out


@pytest.fixture(scope="module")
def optimal_discriminator(studies) -> dict:
    out = studies["gan_optimal_discriminator"]
    assert (out / "discriminators.png").stat().st_size > 0
    return {row["p_g"]: row for row in json.loads((out / "results.json").read_text())["generators"]}


@pytest.fixture(scope="module")
def mode_collapse(studies) -> dict:
    out = studies["gan_mode_collapse"]
    assert (out / "coverage.png").stat().st_size > 0
    return json.loads((out / "results.json").read_text())["settings"]


def test_optimal_value_is_minus_log_4_plus_twice_the_jensen_shannon_divergence(optimal_discriminator):
    for row in optimal_discriminator.values():
        # two independent quadratures: ∫ p log D* + p_g log(1 − D*), and the JSD of the densities
        assert row["v_optimal_direct"] == pytest.approx(row["v_optimal_formula"], abs=1e-6)
        assert 0 <= row["jsd"] <= math.log(2)


def test_at_equilibrium_the_value_is_minus_log_4_not_a_quarter(optimal_discriminator):
    row = optimal_discriminator["equilibrium: p_g = p_data"]
    assert row["jsd"] == pytest.approx(0, abs=1e-12)
    assert row["v_optimal_direct"] == pytest.approx(-math.log(4), abs=1e-9)
    assert row["v_trained"] == pytest.approx(-math.log(4), abs=1e-3)  # the trained D stays near ½


def test_a_trained_discriminator_stays_below_the_optimal_value_and_close_to_it(optimal_discriminator):
    for row in optimal_discriminator.values():
        assert 0 <= row["gap"] < 0.02, row
        assert row["mean_abs_error_d"] < 0.05, row


def test_the_optimal_value_grows_as_the_generator_moves_away_from_the_data(optimal_discriminator):
    order = ["equilibrium: p_g = p_data", "one side: N(1.5, 1.5²)", "between: N(0, 1²)", "far: N(5, 0.6²)"]
    values = [optimal_discriminator[name]["v_optimal_direct"] for name in order]
    assert values == sorted(values) and values[-1] < 0


def _mode_collapse_module():
    spec = importlib.util.spec_from_file_location("gan_mode_collapse", EXAMPLES / "gan_mode_collapse.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_coverage_counts_all_modes_of_real_data_and_one_of_a_collapsed_sample():
    study = _mode_collapse_module()
    real = study.sample_ring(np.random.default_rng(0), 4000)
    scores = study.coverage(real)
    # a 2-D Gaussian puts 1 − exp(−3²/2) of its mass within 3σ of its centre
    assert scores["covered_modes"] == 8 and scores["high_quality"] == pytest.approx(1 - math.exp(-4.5), abs=0.01)
    assert scores["largest_share"] == pytest.approx(1 / 8, abs=0.03)
    one_mode = study.centres()[3] + 0.01 * np.random.default_rng(1).standard_normal((500, 2))
    collapsed = study.coverage(one_mode)
    assert collapsed["covered_modes"] == 1 and collapsed["largest_share"] == 1 and collapsed["most_popular_mode"] == 3


def test_a_generator_that_outruns_its_discriminator_collapses_while_the_balanced_one_spreads(mode_collapse):
    balanced, weak = mode_collapse["balanced"]["runs"][0], mode_collapse["weak-discriminator"]["runs"][0]
    assert balanced["history"][-1]["covered_modes"] >= 4
    assert balanced["history"][-1]["largest_share"] < 0.3
    assert weak["history"][-1]["covered_modes"] <= 1
    assert weak["history"][-1]["largest_share"] > 0.9
    # it does not sit still: the mode it crowds changes during the second half
    assert len(mode_collapse["weak-discriminator"]["collapsed_onto_modes_second_half"][0]) >= 2
