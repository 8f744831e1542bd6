"""The ELBO and the importance-weighted bounds L_k: how far below log p(x) does each stay?

For any q(z|x), log p(x) splits into the bound the VAE maximises and a divergence:

    log p(x) = ELBO(x) + KL(q(z|x) ‖ p(z|x)),    ELBO(x) = E_q[log p(x|z)] − KL(q(z|x) ‖ p(z)).

A KL divergence is ≥ 0, so ELBO ≤ log p(x), with equality only where q(z|x) is the true
posterior. The importance-weighted bound (Burda, Grosse & Salakhutdinov, 2016)

    L_k(x) = E[ log (1/k) Σ_i w_i ],   w_i = p(x|z_i) p(z_i) / q(z_i|x),   z_1 … z_k ~ q(z|x)

starts at L_1 = ELBO, never decreases with k (the mean of k + 1 weights is the average of the
means of its k + 1 subsets of k; log is concave, so Jensen's inequality gives L_{k+1} ≥ L_k) and
reaches log p(x) as k → ∞. So L_k − ELBO ≤ KL(q(z|x) ‖ p(z|x)) for every k, and with large k it
estimates that KL: how much the encoder's Gaussian misses the posterior.

Estimation: k_max weights per image, drawn once; L_k is the mean over the k_max/k disjoint groups
of k of log (1/k) Σ_group w_i (so L_1 averages all k_max one-sample bounds). The ELBO is computed
as the VAE trains it: the KL to the prior in closed form, E_q[log p(x|z)] from the same samples.
When the script trains its own VAE it also follows both terms of log p(x) = ELBO + KL over training.

    python examples/vae_bounds.py                  # trains a VAE for --epochs 3 first
    python examples/vae_bounds.py --run runs/vae   # studies a run of examples/vae.py
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import logsumexp
from vae_log_likelihood import (  # the VAE studies share their flags, the model and the weights
    add_vae_flags,
    binarized_test_images,
    describe,
    importance_terms,
    parse_vae_args,
    set_up,
    trained_vae,
)

import npgen
from npgen import F, backend, runs
from npgen.models import VAE
from npgen.plot import pyplot, save_figure


def bound_sizes(k_max: int) -> list[int]:
    """1, 2, 5, 10, 20, 50, … up to ``k_max``: those that divide k_max (disjoint groups), and k_max."""
    sizes = [m * 10**e for e in range(int(math.log10(k_max)) + 1) for m in (1, 2, 5)]
    return sorted({k for k in sizes if k <= k_max and k_max % k == 0} | {k_max})


def bounds(model: VAE, x: npgen.Tensor, k_max: int) -> dict[str, Any]:
    """Per image: the ELBO (closed-form KL) and L_k for every k of bound_sizes(k_max)."""
    log_px_given_z, log_prior_over_q = importance_terms(model, x, k_max)
    log_w = log_px_given_z + log_prior_over_q
    with npgen.no_grad():
        kl_to_prior = backend.to_numpy(F.gaussian_kl(*model.encode(x)).data).astype(np.float64)
    bound = {}
    for k in bound_sizes(k_max):
        groups = log_w.reshape(k_max // k, k, -1)  # disjoint groups of k samples
        bound[k] = (logsumexp(groups, axis=1) - math.log(k)).mean(axis=0)  # (N,)
    reconstruction = log_px_given_z.mean(axis=0)
    return {
        "elbo": reconstruction - kl_to_prior,
        "reconstruction": reconstruction,
        "kl_to_prior": kl_to_prior,
        "L": bound,
    }


def summary(per_image: dict[str, Any]) -> dict[str, Any]:
    """Means over images (with their standard errors) of the ELBO, each L_k and the gap L_kmax − ELBO."""
    n = len(per_image["elbo"])
    k_max = max(per_image["L"])
    gap = per_image["L"][k_max] - per_image["elbo"]
    return {
        "elbo": float(per_image["elbo"].mean()),
        "reconstruction": float(per_image["reconstruction"].mean()),
        "kl_to_prior": float(per_image["kl_to_prior"].mean()),
        "k": list(per_image["L"]),
        "L_k": [float(v.mean()) for v in per_image["L"].values()],
        "L_k_minus_elbo": [float((v - per_image["elbo"]).mean()) for v in per_image["L"].values()],
        "L_k_minus_elbo_stderr": [
            float((v - per_image["elbo"]).std(ddof=1) / math.sqrt(n)) for v in per_image["L"].values()
        ],
        "kl_q_posterior_estimate": float(gap.mean()),
        "kl_q_posterior_per_image": {"min": float(gap.min()), "median": float(np.median(gap)), "max": float(gap.max())},
    }


def plot(per_image: dict[str, Any], result: dict[str, Any], history: list[dict[str, Any]], path: Path) -> None:
    """L_k against k; the per-image KL estimates; over training (if any), log p(x) = ELBO + KL(q ‖ p(z|x))."""
    plt = pyplot()
    fig, axes = plt.subplots(2 if history else 1, 2, figsize=(12, 8.5 if history else 4.2))
    axes = axes.ravel()
    k = result["k"]
    axes[0].errorbar(k, result["L_k_minus_elbo"], yerr=result["L_k_minus_elbo_stderr"], fmt="o-", capsize=3)
    axes[0].axhline(0, color="k", lw=0.8)
    axes[0].set(
        xscale="log",
        xlabel="k (importance samples)",
        ylabel="L_k − ELBO (nats), mean over images",
        title=f"L_k rises from the ELBO ({result['elbo']:.2f}) toward log p(x)",
    )
    gap = per_image["L"][max(k)] - per_image["elbo"]
    axes[1].hist(gap, bins=30, color="tab:purple", alpha=0.8)
    axes[1].axvline(gap.mean(), color="k", ls="--", label=f"mean {gap.mean():.2f}")
    axes[1].set(
        xlabel=f"L_{max(k)} − ELBO (nats)", ylabel="test images", title="KL(q(z|x) ‖ p(z|x)), estimated per image"
    )
    axes[1].legend()
    if history:
        trained = [h for h in history if h["epoch"] > 0]  # the untrained model's −550 would flatten the curves
        epochs = [h["epoch"] for h in trained]
        axes[2].plot(epochs, [h["L_kmax"] for h in trained], "o-", label=f"log p(x) ≈ L_{max(k)}")
        axes[2].plot(epochs, [h["elbo"] for h in trained], "s-", label="ELBO")
        axes[2].set(xlabel="epoch", ylabel="nats, mean over images", title="during training: the bound and log p(x)")
        axes[2].legend()
        axes[3].plot([h["epoch"] for h in history], [h["kl_q_posterior"] for h in history], "^-", color="tab:purple")
        axes[3].set(
            xlabel="epoch",
            ylabel=f"L_{max(k)} − ELBO (nats)",
            title="during training: KL(q(z|x) ‖ p(z|x)) = log p(x) − ELBO",
        )
        for ax in axes[2:]:
            ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, tight=False)


def parse_args() -> argparse.Namespace:
    """Flags: the VAE to study, the images, the largest k."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    add_vae_flags(parser, "runs/vae_bounds", epochs=3, images=200)
    parser.add_argument("--k-max", type=runs.positive_int, default=1000, help="importance samples per image")
    args = parse_vae_args(parser)
    if args.k_max > 100_000:
        parser.error(f"--k-max {args.k_max}: at most 100,000")
    set_up(args)
    return args


def main() -> None:
    """Compute the ELBO and every L_k on test images (and over training), and write results.json and bounds.png."""
    args = parse_args()
    x = binarized_test_images(args.images, args.seed)
    history: list[dict[str, Any]] = []
    latest: dict[str, Any] = {}

    def follow(epoch: int, model: VAE) -> None:
        """Both terms of log p(x) = ELBO + KL(q ‖ p(z|x)) after ``epoch`` epochs."""
        latest["per_image"] = bounds(model, x, args.k_max)
        result = summary(latest["per_image"])
        history.append(
            {
                "epoch": epoch,
                "elbo": result["elbo"],
                "L_kmax": result["L_k"][-1],
                "kl_q_posterior": result["kl_q_posterior_estimate"],
            }
        )
        print(f"  epoch {epoch}: ELBO {result['elbo']:.2f}, L_{args.k_max} {result['L_k'][-1]:.2f}")

    model = trained_vae(args, after_epoch=None if args.run else follow)
    per_image = latest.get("per_image") or bounds(model, x, args.k_max)  # the last epoch's, if it was followed
    result = summary(per_image)
    results = {
        "args": runs.flags(args),
        "model": describe(args, model),
        "images": args.images,
        **result,
        "training": history,
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    plot(per_image, result, history, args.out / "bounds.png")

    print(f"on {args.images} test images (nats, mean over images):")
    print(
        f"  ELBO {result['elbo']:.2f} = E_q[log p(x|z)] {result['reconstruction']:.2f}"
        f" − KL(q(z|x) ‖ p(z)) {result['kl_to_prior']:.2f}"
    )
    for k, value, gap in zip(result["k"], result["L_k"], result["L_k_minus_elbo"]):
        print(f"  L_{k:<6d} {value:9.2f}   L_k − ELBO {gap:6.3f}")
    print(f"KL(q(z|x) ‖ p(z|x)) ≈ L_{args.k_max} − ELBO = {result['kl_q_posterior_estimate']:.2f} nats")
    print(f"wrote {args.out}/results.json and bounds.png")


if __name__ == "__main__":
    with runs.clear_errors():
        main()
