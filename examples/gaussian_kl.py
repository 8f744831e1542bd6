"""The KL divergence of two univariate Gaussians: the closed form against a Monte Carlo estimate.

    KL(q ‖ p) = E_q[log q(z) − log p(z)]
              = log(σ₂/σ₁) + (σ₁² + (μ₁ − μ₂)²) / (2σ₂²) − ½    for q = N(μ₁, σ₁²), p = N(μ₂, σ₂²),

and with p = N(0, 1), the VAE's prior: KL = ½ (μ₁² + σ₁² − 1 − log σ₁²). It is 0 only for q = p,
small for nearby Gaussians (N(0.1, 1) ‖ N(0, 1): 0.005 nats) and large where q puts its mass
where p has almost none (N(0, 1) ‖ N(0, 0.1²): 47 nats). It is not symmetric:
KL(N(0, 0.1²) ‖ N(0, 1)) is only 1.8 nats, since a narrow q inside a wide p costs little.

npgen's `F.gaussian_kl(mu_q, logvar_q, mu_p=0, logvar_p=0)` computes it per row (summed over the
last axis, for diagonal Gaussians) from log-variances, as the VAE's encoder outputs them. The
Monte Carlo estimate averages log q(z_i) − log p(z_i) over z_i ~ q; its standard error
std/√n shrinks as 1/√n and the closed form must lie within a few of them.

    python examples/gaussian_kl.py
    python examples/gaussian_kl.py --pair 0 1 3 0.5 --pair 2 0.3 2 3   # your own μ₁ σ₁ μ₂ σ₂
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

import npgen
from npgen import F, runs
from npgen.plot import pyplot, save_figure

# (μ₁, σ₁, μ₂, σ₂): from identical to far apart; p = N(0, 1) first, then other p
PAIRS = [
    (0.0, 1.0, 0.0, 1.0),
    (0.1, 1.0, 0.0, 1.0),
    (1.0, 1.0, 0.0, 1.0),
    (0.0, 0.5, 0.0, 1.0),
    (0.0, 2.0, 0.0, 1.0),
    (0.0, 0.1, 0.0, 1.0),
    (3.0, 0.5, 0.0, 1.0),
    (5.0, 1.0, 0.0, 1.0),
    (0.0, 1.0, 0.0, 0.1),
    (2.0, 1.0, -2.0, 2.0),
]
SHOWN = [1, 2, 7, 5, 8]  # the pairs drawn: small, moderate, far apart, a narrow q in a wide p and its reverse


def closed_form(pairs: list[tuple[float, float, float, float]]) -> np.ndarray:
    """KL(N(μ₁, σ₁²) ‖ N(μ₂, σ₂²)) for each pair by npgen.F.gaussian_kl (its default p = N(0, 1) where it fits)."""
    values = []
    for mu1, sigma1, mu2, sigma2 in pairs:
        mu_q = npgen.tensor(np.array([[mu1]]))
        logvar_q = npgen.tensor(np.array([[2 * math.log(sigma1)]]))
        if (mu2, sigma2) == (0.0, 1.0):
            kl = F.gaussian_kl(mu_q, logvar_q)  # the VAE's prior: the fused ½(μ² + σ² − 1 − log σ²)
        else:
            kl = F.gaussian_kl(mu_q, logvar_q, mu2, 2 * math.log(sigma2))
        values.append(kl.item())
    return np.array(values)


def textbook_formula(mu1: float, sigma1: float, mu2: float, sigma2: float) -> float:
    """log(σ₂/σ₁) + (σ₁² + (μ₁ − μ₂)²)/(2σ₂²) − ½, written out to check npgen against."""
    return math.log(sigma2 / sigma1) + (sigma1**2 + (mu1 - mu2) ** 2) / (2 * sigma2**2) - 0.5


def log_density(z: np.ndarray, mu: float, sigma: float) -> np.ndarray:
    """log N(z; μ, σ²)."""
    return -0.5 * ((z - mu) / sigma) ** 2 - math.log(sigma) - 0.5 * math.log(2 * math.pi)


def monte_carlo_terms(pair: tuple[float, float, float, float], n: int, rng: np.random.Generator) -> np.ndarray:
    """log q(z_i) − log p(z_i) for n draws z_i ~ q: their mean estimates KL(q ‖ p)."""
    mu1, sigma1, mu2, sigma2 = pair
    z = mu1 + sigma1 * rng.standard_normal(n)
    return log_density(z, mu1, sigma1) - log_density(z, mu2, sigma2)


def running_estimate(terms: np.ndarray, checkpoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean of the first n terms and its standard error, for each n in ``checkpoints``."""
    total, squares = np.cumsum(terms)[checkpoints - 1], np.cumsum(terms**2)[checkpoints - 1]
    mean = total / checkpoints
    variance = np.maximum(squares / checkpoints - mean**2, 0) * checkpoints / np.maximum(checkpoints - 1, 1)
    return mean, np.sqrt(variance / checkpoints)


def plot(
    pairs: list, shown: list[int], exact: np.ndarray, runs_by_pair: dict, checkpoints: np.ndarray, path: Path
) -> None:
    """Top: each shown pair's two densities; below: its Monte Carlo estimate ± 2 s.e. converging to the closed form."""
    plt = pyplot()
    fig, axes = plt.subplots(2, len(shown), figsize=(3.4 * len(shown), 6.2), squeeze=False)
    for column, i in enumerate(shown):
        mu1, sigma1, mu2, sigma2 = pairs[i]
        low = min(mu1 - 4 * sigma1, mu2 - 4 * sigma2)
        high = max(mu1 + 4 * sigma1, mu2 + 4 * sigma2)
        z = np.linspace(low, high, 600)
        top, bottom = axes[0, column], axes[1, column]
        top.plot(z, np.exp(log_density(z, mu1, sigma1)), label=f"q = N({mu1:g}, {sigma1:g}²)")
        top.plot(z, np.exp(log_density(z, mu2, sigma2)), label=f"p = N({mu2:g}, {sigma2:g}²)")
        top.set_title(f"KL(q ‖ p) = {exact[i]:.3g} nats", fontsize=10)
        top.legend(fontsize=7)
        mean, stderr = runs_by_pair[i]
        bottom.fill_between(checkpoints, mean - 2 * stderr, mean + 2 * stderr, alpha=0.3, label="MC ± 2 s.e.")
        bottom.plot(checkpoints, mean, lw=1)
        bottom.axhline(exact[i], color="k", ls=":", label="closed form")
        bottom.set(xscale="log", xlabel="samples n")
        bottom.legend(fontsize=7)
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
    axes[1, 0].set_ylabel("estimate of KL(q ‖ p), nats")
    fig.tight_layout()
    save_figure(fig, path, tight=False)


def pair_argument(parser: argparse.ArgumentParser, values: list[float]) -> tuple[float, float, float, float]:
    """A --pair μ₁ σ₁ μ₂ σ₂, its standard deviations checked."""
    mu1, sigma1, mu2, sigma2 = values
    if not all(math.isfinite(v) for v in values) or sigma1 <= 0 or sigma2 <= 0:
        parser.error(f"--pair {' '.join(f'{v:g}' for v in values)}: finite numbers, σ₁ > 0 and σ₂ > 0")
    return mu1, sigma1, mu2, sigma2


def parse_args() -> argparse.Namespace:
    """Flags: samples, pairs, seed, output folder, threads."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--samples", type=runs.positive_int, default=100_000, help="Monte Carlo draws per pair")
    parser.add_argument(
        "--pair",
        type=float,
        nargs=4,
        action="append",
        metavar=("MU1", "SIGMA1", "MU2", "SIGMA2"),
        help="KL(N(MU1, SIGMA1²) ‖ N(MU2, SIGMA2²)); repeat for more (default: ten pairs, small to large)",
    )
    runs.add_common_flags(parser, "runs/gaussian_kl")
    args = parser.parse_args()
    if not 2 <= args.samples <= 10_000_000:
        parser.error(f"--samples {args.samples}: between 2 and 10,000,000")
    args.pair = [pair_argument(parser, p) for p in args.pair] if args.pair else PAIRS
    runs.use_threads(args.threads)
    npgen.manual_seed(args.seed)
    runs.prepare_out(args.out)
    return args


def main() -> None:
    """Closed form and Monte Carlo for every pair; results.json and gaussian_kl.png."""
    args = parse_args()
    rng = np.random.default_rng(args.seed)
    exact = closed_form(args.pair)
    checkpoints = np.unique(np.logspace(1, math.log10(args.samples), 40).astype(int).clip(2, args.samples))
    rows, runs_by_pair = [], {}
    for i, pair in enumerate(args.pair):
        terms = monte_carlo_terms(pair, args.samples, rng)
        runs_by_pair[i] = running_estimate(terms, checkpoints)
        estimate, stderr = float(runs_by_pair[i][0][-1]), float(runs_by_pair[i][1][-1])
        rows.append(
            {
                "mu1": pair[0],
                "sigma1": pair[1],
                "mu2": pair[2],
                "sigma2": pair[3],
                "closed_form": float(exact[i]),
                "textbook_formula": textbook_formula(*pair),
                "monte_carlo": estimate,
                "monte_carlo_stderr": stderr,
                "difference_in_stderr": (estimate - float(exact[i])) / stderr if stderr > 0 else 0.0,
            }
        )
    shown = SHOWN if args.pair is PAIRS else list(range(min(len(args.pair), 5)))
    results = {
        "args": runs.flags(args) | {"pair": [list(p) for p in args.pair]},
        "samples": args.samples,
        "pairs": rows,
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    plot(args.pair, shown, exact, runs_by_pair, checkpoints, args.out / "gaussian_kl.png")

    print(f"KL(q ‖ p) in nats: closed form (npgen.F.gaussian_kl) and Monte Carlo with {args.samples:,} samples")
    for row in rows:
        q, p = f"N({row['mu1']:g}, {row['sigma1']:g}²)", f"N({row['mu2']:g}, {row['sigma2']:g}²)"
        print(
            f"  {q:>13s} ‖ {p:<13s} closed {row['closed_form']:9.4f}   MC {row['monte_carlo']:9.4f}"
            f" ± {row['monte_carlo_stderr']:.4f}   ({row['difference_in_stderr']:+.1f} s.e.)"
        )
    print(f"wrote {args.out}/results.json and gaussian_kl.png")


if __name__ == "__main__":
    main()
