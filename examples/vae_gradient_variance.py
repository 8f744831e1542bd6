"""Two Monte Carlo gradients of a VAE's reconstruction term: the reparametrization trick against REINFORCE.

The encoder outputs φ = (μ, log σ²) of q(z|x) = N(μ, diag σ²). Training needs the gradient of
E_q[f(z)], f(z) = log p(x|z), with respect to φ, and the expectation cannot be written down. Two
unbiased estimates from S samples:

    reparametrization:  z_s = μ + σ ⊙ ε_s, ε_s ~ N(0, I):   ∇_φ E_q[f] ≈ (1/S) Σ_s ∇_φ f(μ + σ ⊙ ε_s)
    score function:     ∇_φ E_q[f] = E_q[f(z) ∇_φ log q(z)] ≈ (1/S) Σ_s f(z_s) ∇_φ log q(z_s)

The first differentiates through the sample (npgen's autograd, through the decoder): it knows
in which direction f changes. The second only weighs each sample's log-density gradient by how
good the sample was; for a diagonal Gaussian that gradient is, with ε = (z − μ)/σ,

    ∂ log q(z)/∂μ = ε / σ,        ∂ log q(z)/∂ log σ² = ½ (ε² − 1).

Both have the same mean, but f(z) ≈ −80 nats for every sample, so the score function's terms are
large numbers that mostly cancel: its variance is orders of magnitude larger. A baseline helps
(E_q[∇ log q] = 0, so any constant b may be subtracted from f): here the mean of f over the other
S − 1 samples ("leave one out"), which keeps the estimate unbiased. The same ε_s serve all three
estimators. Their variance is measured by splitting M draws per image into M/S groups of S.
(The KL term of the ELBO is differentiated in closed form and adds no noise; the encoder's weights
receive these gradients through the same linear map Jᵀ whichever estimator made them.)

    python examples/vae_gradient_variance.py                  # trains a VAE for --epochs 3 first
    python examples/vae_gradient_variance.py --run runs/vae   # studies a run of examples/vae.py
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from vae_log_likelihood import (  # the VAE studies share their flags and the model
    add_vae_flags,
    binarized_test_images,
    describe,
    parse_vae_args,
    passes,
    set_up,
    trained_vae,
)

import npgen
from npgen import F, backend, runs
from npgen.models import VAE
from npgen.plot import pyplot, save_figure

ESTIMATORS = ("reparametrization", "score function", "score function, leave-one-out baseline")


def gaussian_score(eps: Any, std: Any) -> tuple[Any, Any]:
    """∇ log q(z) of q = N(μ, diag σ²) at z = μ + σ ⊙ ε, with respect to μ and to log σ².

    log q(z) = −½ Σ_d [(z_d − μ_d)²/σ_d² + log σ_d² + log 2π], so ∂/∂μ = (z − μ)/σ² = ε/σ and
    ∂/∂log σ² = ½ ((z − μ)²/σ² − 1) = ½ (ε² − 1).
    """
    return eps / std, 0.5 * (eps * eps - 1)


def per_sample_gradients(model: VAE, x: npgen.Tensor, draws: int) -> dict[str, np.ndarray]:
    """For ``draws`` samples per image: f(z) (draws, N); each sample's reparametrized gradient ∇_φ f(μ + σ ⊙ ε)
    (autograd) and its ∇_φ log q(z) (closed form), for φ = μ and φ = log σ², each (draws, N, z_dim)."""
    with npgen.no_grad():
        mu, logvar = (t.data for t in model.encode(x))
    xp, rng = backend.get_array_module(mu), backend.backend_of(mu).rng
    std = xp.exp(0.5 * logvar)
    parts: dict[str, list] = {key: [] for key in ("f", "reparam_mu", "reparam_logvar", "dlogq_mu", "dlogq_logvar")}
    for n in runs.progress(passes(draws, len(x)), "gradients"):
        # one copy of (μ, log σ²) per sample, each a leaf: backward then leaves each sample's own gradient
        mu_s = npgen.Tensor(xp.broadcast_to(mu, (n, *mu.shape)).copy(), requires_grad=True)
        logvar_s = npgen.Tensor(xp.broadcast_to(logvar, (n, *mu.shape)).copy(), requires_grad=True)
        eps = rng.normal((n, *mu.shape), mu.dtype)
        z = model.reparameterize(mu_s, logvar_s, eps)
        logits = model.decode(z.reshape(-1, model.z_dim)).reshape(n, len(x), -1)
        f = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(axis=2)  # log p(x|z), (n, N)
        f.sum().backward()
        for key, value in (
            ("f", f.data),
            ("reparam_mu", mu_s.grad),
            ("reparam_logvar", logvar_s.grad),
            *zip(("dlogq_mu", "dlogq_logvar"), gaussian_score(eps, std)),
        ):
            parts[key].append(backend.to_numpy(value).astype(np.float64))
    return {key: np.concatenate(chunks) for key, chunks in parts.items()}


def estimates(grads: dict[str, np.ndarray], output: str, s: int) -> dict[str, np.ndarray]:
    """Each estimator's S-sample estimates of ∇ E_q[f] with respect to ``output`` ("mu", "logvar"): (groups, N, d)."""
    groups = len(grads["f"]) // s
    used = groups * s

    def grouped(a: np.ndarray) -> np.ndarray:
        return a[:used].reshape(groups, s, *a.shape[1:])

    f, dlogq = grouped(grads["f"])[..., None], grouped(grads[f"dlogq_{output}"])  # (groups, s, N, 1), (…, d)
    out = {
        ESTIMATORS[0]: grouped(grads[f"reparam_{output}"]).mean(axis=1),
        ESTIMATORS[1]: (f * dlogq).mean(axis=1),
    }
    if s > 1:
        baseline = (f.sum(axis=1, keepdims=True) - f) / (s - 1)  # the mean of f over the other samples
        out[ESTIMATORS[2]] = ((f - baseline) * dlogq).mean(axis=1)
    return out


def variance_study(grads: dict[str, np.ndarray], sizes: list[int]) -> dict[str, Any]:
    """Per estimator, output and S: the variance of the estimate (mean over coordinates) and the median
    signal-to-noise ratio |E g| / std g, E g taken from the reparametrized mean over all draws."""
    table: dict[str, Any] = {"S": sizes}
    for output in ("mu", "logvar"):
        truth = np.abs(grads[f"reparam_{output}"].mean(axis=0))
        for s in sizes:
            for name, values in estimates(grads, output, s).items():
                variance = values.var(axis=0, ddof=1)  # over groups: (N, d)
                row = table.setdefault(name, {}).setdefault(output, {"variance": [], "snr": [], "S": []})
                row["S"].append(s)
                row["variance"].append(float(variance.mean()))
                row["snr"].append(float(np.median(truth / np.sqrt(variance))))
    return table


def agreement(grads: dict[str, np.ndarray]) -> dict[str, Any]:
    """The mean of each score-function estimator minus the reparametrized mean over all draws, in standard
    errors of that difference (paired: the same ε for both), per coordinate of μ and log σ²."""
    m = len(grads["f"])
    result = {}
    for output in ("mu", "logvar"):
        reparam, dlogq, f = grads[f"reparam_{output}"], grads[f"dlogq_{output}"], grads["f"][..., None]
        plain = f * dlogq
        with_baseline = (f - (f.sum(axis=0) - f) / (m - 1)) * dlogq  # leave-one-out over all m draws
        for name, score in ((ESTIMATORS[1], plain), (ESTIMATORS[2], with_baseline)):
            difference = score - reparam
            z = difference.mean(axis=0) / (difference.std(axis=0, ddof=1) / math.sqrt(m))
            result.setdefault(name, {})[output] = {
                "reparametrized_mean": reparam.mean(axis=0).ravel().tolist(),
                "score_mean": score.mean(axis=0).ravel().tolist(),
                "score_stderr": (score.std(axis=0, ddof=1) / math.sqrt(m)).ravel().tolist(),
                "z": z.ravel().tolist(),
                "mean_z_squared": float(np.mean(z**2)),
                "share_within_3_stderr": float(np.mean(np.abs(z) < 3)),
            }
    return result


def plot(table: dict[str, Any], agree: dict[str, Any], path: Path) -> None:
    """Variance and signal-to-noise against S for the three estimators; their means against each other."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.6))
    colors = dict(zip(ESTIMATORS, ("tab:blue", "tab:red", "tab:orange")))
    for name in ESTIMATORS:
        for output, style in (("mu", "o-"), ("logvar", "s--")):
            row = table[name][output]
            label = f"{name}, {'μ' if output == 'mu' else 'log σ²'}"
            axes[0].plot(row["S"], row["variance"], style, color=colors[name], label=label, markersize=4)
            axes[1].plot(row["S"], row["snr"], style, color=colors[name], label=label, markersize=4)
    axes[0].set(xscale="log", yscale="log", xlabel="samples S", ylabel="variance, mean over coordinates")
    axes[0].set_title("variance of the S-sample gradient")
    axes[1].set(xscale="log", yscale="log", xlabel="samples S", ylabel="median |E g| / std g")
    axes[1].set_title("signal-to-noise ratio")
    for name in ESTIMATORS[1:]:
        mu = agree[name]["mu"]
        axes[2].errorbar(
            mu["reparametrized_mean"],
            mu["score_mean"],
            yerr=2 * np.array(mu["score_stderr"]),
            fmt="o",
            color=colors[name],
            markersize=3,
            alpha=0.6,
            label=f"{name} (±2 s.e.)",
        )
    lims = np.array(agree[ESTIMATORS[1]]["mu"]["reparametrized_mean"])
    axes[2].plot([lims.min(), lims.max()], [lims.min(), lims.max()], "k:", label="equal")
    axes[2].set(xlabel="reparametrized mean ∂/∂μ", ylabel="score-function mean ∂/∂μ", title="same mean, all draws")
    axes[2].legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=8)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    save_figure(fig, path, tight=False)


def sample_sizes(draws: int) -> list[int]:
    """S = 1, 2, 5, 10, 20, … while M/S leaves at least 20 groups to measure a variance from."""
    sizes = [m * 10**e for e in range(7) for m in (1, 2, 5)]
    return [s for s in sizes if draws // s >= 20]


def parse_args() -> argparse.Namespace:
    """Flags: the VAE to study, the images, the draws per image."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    add_vae_flags(parser, "runs/vae_gradient_variance", epochs=3, images=10)
    parser.add_argument("--draws", type=runs.positive_int, default=20_000, help="samples of ε per image (M)")
    args = parse_vae_args(parser)
    if not 100 <= args.draws <= 1_000_000:
        parser.error(f"--draws {args.draws}: between 100 and 1,000,000")
    set_up(args)
    return args


def main() -> None:
    """Measure both estimators on test images, and write results.json and gradient_variance.png."""
    args = parse_args()
    model = trained_vae(args)
    model.requires_grad_(False)  # only the encoder's outputs need gradients here
    x = binarized_test_images(args.images, args.seed)
    grads = per_sample_gradients(model, x, args.draws)
    table = variance_study(grads, sample_sizes(args.draws))
    agree = agreement(grads)
    results = {"args": runs.flags(args), "model": describe(args, model), "variance": table, "agreement": agree}
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    plot(table, agree, args.out / "gradient_variance.png")

    print(f"gradient of E_q[log p(x|z)] on {args.images} test images, {args.draws} draws each:")
    for name in ESTIMATORS:
        for output in ("mu", "logvar"):
            row = table[name][output]
            first, last = row["S"][0], row["S"][-1]
            print(
                f"  {name:40s} {output:6s} variance at S={first}: {row['variance'][0]:10.3g},"
                f" at S={last}: {row['variance'][-1]:10.3g};  median SNR at S={last}: {row['snr'][-1]:.2f}"
            )
    for name in ESTIMATORS[1:]:
        for output in ("mu", "logvar"):
            a = agree[name][output]
            print(
                f"  mean of {name} − reparametrized, {output}: mean z² {a['mean_z_squared']:.2f},"
                f" {100 * a['share_within_3_stderr']:.1f}% within 3 s.e."
            )
    print(f"wrote {args.out}/results.json and gradient_variance.png")


if __name__ == "__main__":
    with runs.clear_errors():
        main()
