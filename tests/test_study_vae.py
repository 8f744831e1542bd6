"""The VAE's study scripts: each runs at a tiny size, writes its figure and numbers, and they say what it claims.

The scripts run in this process (``main()`` with its command line in ``sys.argv``), as a user would run them,
without a new interpreter's start-up for each.
"""

from __future__ import annotations

import importlib
import json
import math
import sys

import numpy as np
import pytest

import npgen
from npgen.models import VAE

from example_runs import EXAMPLES

sys.path.insert(0, str(EXAMPLES))  # as when a script runs: the VAE studies import their shared part directly
vae_log_likelihood = importlib.import_module("vae_log_likelihood")
vae_bounds = importlib.import_module("vae_bounds")
vae_gradient_variance = importlib.import_module("vae_gradient_variance")
gaussian_kl = importlib.import_module("gaussian_kl")
vae_example = importlib.import_module("vae")

TINY_VAE = ["--epochs", "1", "--train-size", "10000", "--hidden", "64", "--zdim", "10", "--seed", "0"]


def run_main(monkeypatch, script, *argv: str) -> None:
    """Run ``script``'s main() with ``argv`` as its command line."""
    monkeypatch.setattr(sys, "argv", [script.__file__, *argv])
    script.main()


def refused(monkeypatch, capsys, script, *argv: str) -> str:
    """The error message of a command line that ``script`` must refuse (exit status 2, argparse's)."""
    monkeypatch.setattr(sys, "argv", [script.__file__, *argv])
    with pytest.raises(SystemExit) as stopped:
        script.parse_args()
    assert stopped.value.code == 2
    return capsys.readouterr().err


def results(out) -> dict:
    return json.loads((out / "results.json").read_text())


def test_importance_sampling_estimates_log_px_with_less_spread_and_more_effective_samples(tmp_path, monkeypatch):
    out = tmp_path / "ll"
    run_main(
        monkeypatch,
        vae_log_likelihood,
        *TINY_VAE,
        *("--images", "10", "--prior-k", "1000", "--importance-k", "100", "--repeats", "4", "--out", str(out)),
    )
    assert (out / "log_likelihood.png").stat().st_size > 10_000
    r = results(out)
    prior, importance = r["prior"], r["importance"]
    assert prior["k"] == [1, 10, 100, 1000] and importance["k"] == [1, 10, 100]
    for k, spread, ess in zip(importance["k"], importance["spread"], importance["mean_ess"]):
        at = prior["k"].index(k)
        assert spread < prior["spread"][at]
        assert 1 <= prior["mean_ess"][at] <= k and 1 <= ess <= k
        assert ess >= prior["mean_ess"][at]
    assert importance["mean_ess"][-1] > 2 * prior["mean_ess"][2]  # K = 100 from q beats K = 100 from the prior
    # log p̂ is biased low (Jensen): the prior's estimates climb toward the reference and stay below it
    assert prior["mean_estimate"][0] < prior["mean_estimate"][-1] < r["reference_log_px"] + 1
    assert importance["mean_estimate"][0] < importance["mean_estimate"][-1] <= r["reference_log_px"] + 1e-9
    cost = r["prior_samples_per_effective_sample_log10"]
    assert cost["median"] > 0 and len(cost["mean_per_dimension_sorted"]) == 10


def test_importance_log_weights_give_the_models_own_log_likelihood():
    model = VAE(hidden=16, z_dim=3)
    x = npgen.Tensor((np.random.default_rng(0).random((5, 784)) < 0.3).astype(np.float32))
    npgen.manual_seed(7)
    log_w = vae_log_likelihood.importance_log_weights(model, x, 50)
    npgen.manual_seed(7)  # the same draws: both decode 50 samples of each image in one pass
    expected = model.log_likelihood(x, k=50).numpy()
    estimate, ess = vae_log_likelihood.estimate(log_w)
    np.testing.assert_allclose(estimate, expected, rtol=1e-5)
    assert np.all((ess >= 1) & (ess <= 50))


def test_prior_log_weights_are_log_p_x_given_z_of_shared_prior_draws():
    model = VAE(hidden=16, z_dim=3)
    x = npgen.Tensor((np.random.default_rng(1).random((4, 784)) < 0.3).astype(np.float32))
    npgen.manual_seed(3)
    log_w = vae_log_likelihood.prior_log_weights(model, x, 6)
    npgen.manual_seed(3)
    z = npgen.backend.get_backend().rng.normal((6, 3), np.float32)  # the draws prior_log_weights made
    paired = np.broadcast_to(z[:, None, :], (6, 4, 3)).copy()  # every image with every draw
    np.testing.assert_allclose(log_w, vae_log_likelihood.decoder_log_likelihood(model, x, paired), rtol=1e-5)


def test_prior_cost_formula_is_the_integral_of_q_squared_over_the_prior():
    m, s = np.array([[0.7, -1.5, 0.0]]), np.array([[0.3, 0.8, 1.0]])

    class GivenPosterior:  # stands in for a VAE's encoder
        def encode(self, x):
            return npgen.tensor(m), npgen.tensor(np.log(s**2))

    cost = vae_log_likelihood.prior_cost_per_dimension(GivenPosterior(), None)
    z = np.linspace(-12, 12, 200_001)
    for d in range(3):
        q = np.exp(-0.5 * ((z - m[0, d]) / s[0, d]) ** 2) / (s[0, d] * math.sqrt(2 * math.pi))
        p = np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
        integral = np.sum(q**2 / p) * (z[1] - z[0])
        assert cost[0, d] == pytest.approx(math.log10(integral), abs=1e-6)
    assert cost[0, 2] == pytest.approx(0.0, abs=1e-12)  # q = p costs nothing


def test_importance_weighted_bounds_rise_from_the_elbo_and_the_gap_estimates_the_kl(tmp_path, monkeypatch):
    out = tmp_path / "bounds"
    run_main(monkeypatch, vae_bounds, *TINY_VAE, "--images", "20", "--k-max", "200", "--out", str(out))
    assert (out / "bounds.png").stat().st_size > 10_000
    r = results(out)
    assert r["k"] == [1, 2, 5, 10, 20, 50, 100, 200]
    L, gap, stderr = r["L_k"], r["L_k_minus_elbo"], r["L_k_minus_elbo_stderr"]
    # L_1 is the ELBO with a sampled KL instead of the closed form: equal up to sampling error
    assert abs(gap[0]) < 3 * stderr[0] + 0.05
    nested = [r["k"].index(k) for k in (1, 2, 10, 20, 100, 200)]  # each divides the next: Jensen orders them exactly
    assert all(L[a] <= L[b] for a, b in zip(nested, nested[1:]))
    assert L[-1] - r["elbo"] == pytest.approx(r["kl_q_posterior_estimate"]) and r["kl_q_posterior_estimate"] > 0.5
    assert r["elbo"] == pytest.approx(r["reconstruction"] - r["kl_to_prior"])
    epochs = r["training"]
    assert [e["epoch"] for e in epochs] == [0, 1]
    assert epochs[1]["elbo"] > epochs[0]["elbo"] + 50  # trained: the bound rose
    assert all(e["L_kmax"] >= e["elbo"] for e in epochs)


def test_bounds_study_a_run_of_the_vae_example(tmp_path, monkeypatch):
    vae_run = tmp_path / "vae"
    quick = ("--epochs", "1", "--train-size", "1000", "--hidden", "32", "--zdim", "4", "--iw-samples", "0")
    run_main(monkeypatch, vae_example, *quick, "--out", str(vae_run))
    out = tmp_path / "bounds"
    run_main(monkeypatch, vae_bounds, "--run", str(vae_run), "--images", "10", "--k-max", "20", "--out", str(out))
    r = results(out)
    assert r["model"] == {"run": str(vae_run), "z_dim": 4, "hidden": 32}
    assert r["training"] == [] and r["L_k"][-1] >= r["L_k"][0]


def test_score_function_of_a_gaussian_is_the_gradient_of_its_log_density():
    rng = np.random.default_rng(0)
    mu = npgen.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    logvar = npgen.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    eps = rng.standard_normal((3, 4))
    std = np.exp(0.5 * logvar.numpy())
    z = mu.numpy() + std * eps  # a fixed sample: only the density's parameters move
    log_q = -0.5 * (((npgen.tensor(z) - mu) ** 2) / npgen.F.exp(logvar) + logvar + math.log(2 * math.pi))
    log_q.sum().backward()
    d_mu, d_logvar = vae_gradient_variance.gaussian_score(eps, std)
    np.testing.assert_allclose(d_mu, mu.grad, rtol=1e-10)
    np.testing.assert_allclose(d_logvar, logvar.grad, rtol=1e-10)


def test_reparametrized_and_score_function_gradients_agree_in_mean_and_differ_in_variance(tmp_path, monkeypatch):
    out = tmp_path / "grad"
    run_main(monkeypatch, vae_gradient_variance, *TINY_VAE, "--images", "3", "--draws", "2000", "--out", str(out))
    assert (out / "gradient_variance.png").stat().st_size > 10_000
    r = results(out)
    table = r["variance"]
    assert table["S"] == [1, 2, 5, 10, 20, 50, 100]
    reparam, score, baseline = (table[name] for name in vae_gradient_variance.ESTIMATORS)
    for output in ("mu", "logvar"):
        for s, a, b in zip(reparam[output]["S"], reparam[output]["variance"], score[output]["variance"]):
            assert b > 100 * a, (output, s)
        assert reparam[output]["variance"][1] < baseline[output]["variance"][0] < score[output]["variance"][1]
        # independent samples: the variance of a mean of S falls as 1/S
        ratio = reparam[output]["variance"][0] / reparam[output]["variance"][-1]
        assert 50 < ratio < 200
        for name in vae_gradient_variance.ESTIMATORS[1:]:
            agree = r["agreement"][name][output]
            assert 0.4 < agree["mean_z_squared"] < 2.5 and agree["share_within_3_stderr"] > 0.9


def test_gaussian_kl_closed_form_lies_within_the_monte_carlo_error(tmp_path, monkeypatch):
    out = tmp_path / "kl"
    run_main(monkeypatch, gaussian_kl, "--samples", "20000", "--out", str(out))
    assert (out / "gaussian_kl.png").stat().st_size > 10_000
    rows = results(out)["pairs"]
    assert len(rows) == 10
    for row in rows:
        assert row["closed_form"] == pytest.approx(row["textbook_formula"], rel=1e-6, abs=1e-9)
        assert row["closed_form"] >= 0 and abs(row["difference_in_stderr"]) < 4
    by_pair = {(r["mu1"], r["sigma1"], r["mu2"], r["sigma2"]): r["closed_form"] for r in rows}
    assert by_pair[(0.0, 1.0, 0.0, 1.0)] == 0
    assert by_pair[(0.1, 1.0, 0.0, 1.0)] < 0.01 < 40 < by_pair[(0.0, 1.0, 0.0, 0.1)]
    assert by_pair[(0.0, 1.0, 0.0, 0.1)] > 10 * by_pair[(0.0, 0.1, 0.0, 1.0)]  # not symmetric


def test_gaussian_kl_takes_pairs_and_refuses_a_nonpositive_sigma(tmp_path, monkeypatch, capsys):
    out = tmp_path / "kl"
    run_main(monkeypatch, gaussian_kl, "--samples", "1000", "--pair", "1", "2", "-1", "0.5", "--out", str(out))
    (row,) = results(out)["pairs"]
    assert row["closed_form"] == pytest.approx(math.log(0.25) + (4 + 4) / 0.5 - 0.5, rel=1e-6)
    message = refused(monkeypatch, capsys, gaussian_kl, "--pair", "0", "-1", "0", "1", "--out", str(tmp_path / "no"))
    assert "σ₁ > 0" in message


@pytest.mark.parametrize(
    "script, flags, message",
    [
        (vae_log_likelihood, ["--repeats", "1"], "at least 2"),
        (vae_bounds, ["--images", "10001"], "test set has 10,000 images"),
        (vae_gradient_variance, ["--draws", "50"], "between 100"),
        (vae_bounds, ["--run", "nowhere"], "no checkpoint.npz"),
    ],
    ids=["repeats", "images", "draws", "run"],
)
def test_the_studies_refuse_flags_out_of_range(tmp_path, monkeypatch, capsys, script, flags, message):
    assert message in refused(monkeypatch, capsys, script, *flags, "--out", str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()  # refused before any work
