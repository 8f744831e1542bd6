"""Sample-quality metrics: known values for known distributions, and the scoring command."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from scipy import linalg

import npgen
from npgen import metrics


def test_inception_score_is_ten_for_confident_balanced_labels_and_one_for_identical_ones():
    confident = np.eye(10)[np.arange(1000) % 10]
    assert metrics.inception_score(confident) == pytest.approx(10.0, rel=1e-6)
    assert metrics.inception_score(np.full((1000, 10), 0.1)) == pytest.approx(1.0)
    collapsed = np.eye(10)[np.zeros(1000, int)]  # every sample the same confident digit
    assert metrics.inception_score(collapsed) == pytest.approx(1.0)


def test_frechet_distance_matches_the_closed_form_and_scipy_sqrtm():
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 1.0, (200_000, 1))
    b = rng.normal(3.0, 2.0, (200_000, 1))
    assert metrics.frechet_distance(a, b) == pytest.approx(3.0**2 + (1.0 - 2.0) ** 2, rel=0.01)
    x, y = rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6)), rng.normal(size=(500, 6))
    cov_x, cov_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    expected = ((x.mean(0) - y.mean(0)) ** 2).sum() + np.trace(cov_x + cov_y - 2 * linalg.sqrtm(cov_x @ cov_y).real)
    assert metrics.frechet_distance(x, y) == pytest.approx(expected, rel=1e-6)
    assert abs(metrics.frechet_distance(x, x)) < 1e-8


def test_frechet_distance_stays_finite_with_dead_features():
    features = np.random.default_rng(0).normal(size=(100, 5))
    features[:, 2] = 0.0  # a ReLU unit that never fires
    assert np.isfinite(metrics.frechet_distance(features, features[::-1] + 0.1))


@pytest.fixture
def small_classifier(monkeypatch) -> npgen.nn.Sequential:
    npgen.manual_seed(0)
    model = metrics.make_classifier(hidden=32)
    monkeypatch.setattr(metrics, "load_classifier", lambda progress=True: model)
    return model


def test_score_reports_coverage_inception_score_distance_and_confidence(small_classifier):
    images = np.random.default_rng(0).uniform(size=(300, 784)).astype(np.float32)
    reference, _ = metrics.features_and_probabilities(small_classifier, images[::-1])
    row = metrics.score(images, small_classifier, reference)
    assert row["n"] == 300 and len(row["class_fractions"]) == 10
    assert sum(row["class_fractions"]) == pytest.approx(1.0, abs=1e-3)
    assert 1.0 <= row["inception_score"] <= 10.0 and 0.1 <= row["confidence"] <= 1.0


def test_the_reference_rows_score_real_images_as_score_does(small_classifier):
    """reference_scores runs the classifier once over the test set; its row equals score's of the same images."""
    reference, rows = metrics.reference_scores(small_classifier, n=500)
    test_images, _ = metrics.load_mnist("test")
    assert rows["mnist_test"] == metrics.score(test_images, small_classifier, reference)
    assert rows["mnist_train"] == metrics.score(metrics.load_mnist("train")[0][:500], small_classifier, reference)


def test_the_scoring_command_reads_samples_and_prints_every_row(small_classifier, tmp_path, monkeypatch, capsys):
    path = tmp_path / "samples.npy"
    np.save(path, np.random.default_rng(0).uniform(-1, 1, (200, 784)).astype(np.float32))
    monkeypatch.setattr(sys, "argv", ["npgen.metrics", str(path), "--tanh-range"])
    metrics.main()
    rows = json.loads(capsys.readouterr().out)
    assert set(rows) == {"samples", "mnist_test", "mnist_train"}
    assert rows["mnist_test"]["frechet_distance"] == pytest.approx(0.0, abs=1e-6)


def test_the_scoring_command_refuses_a_wrong_shape_by_name(small_classifier, tmp_path, monkeypatch):
    path = tmp_path / "bad.npy"
    np.save(path, np.zeros((5, 28, 28)))
    monkeypatch.setattr(sys, "argv", ["npgen.metrics", str(path)])
    with pytest.raises(
        SystemExit, match=r"bad.npy: expected an array of shape \(N, 784\) with N ≥ 2, got \(5, 28, 28\)"
    ):
        metrics.main()


def test_the_first_use_of_the_classifier_says_what_it_does_and_how_long_it_takes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NPGEN_CACHE", str(tmp_path))
    monkeypatch.setitem(metrics.CLASSIFIER, "hidden", 8)
    monkeypatch.setitem(metrics.CLASSIFIER, "epochs", 2)
    monkeypatch.setitem(metrics.CLASSIFIER, "batch_size", 1000)
    metrics.load_classifier()
    lines = capsys.readouterr().out.splitlines()
    assert "training it once now" in lines[0] and "about a minute" in lines[0] and str(tmp_path) in lines[0]
    assert "epoch 1/2" in lines[1] and "s left" in lines[1] and "test accuracy" in lines[-1]
    metrics.load_classifier()
    assert capsys.readouterr().out == ""  # cached: loaded without a word
