"""What value does the GAN objective take when the discriminator is optimal, and does a trained one reach it?

For a fixed generator with density p_g, the discriminator maximises

    V(D, G) = E_{x~p_data} log D(x) + E_{x~p_g} log(1 − D(x))
            = ∫ [p_data(x) log D(x) + p_g(x) log(1 − D(x))] dx.

Pointwise, a log y + b log(1 − y) is largest at y = a / (a + b), so the best discriminator is

    D*(x) = p_data(x) / (p_data(x) + p_g(x)),

and with the mixture m = ½(p_data + p_g) its value is

    V(D*, G) = KL(p_data ‖ m) + KL(p_g ‖ m) − log 4 = −log 4 + 2·JSD(p_data ‖ p_g).

JSD lies in [0, log 2], so V(D*, G) runs from −log 4 (p_g = p_data, D* = ½ everywhere: 2·log ½,
not ¼) up to 0 (disjoint supports). Here both densities are known in 1-D: p_data is a mixture of
two Gaussians and p_g is one of several Gaussians (the last one is p_data itself). For each p_g a
small MLP discriminator learns from samples alone, by minimising the binary cross-entropy
−V(D, G) (real label 1, generated label 0). Every integral is a sum on a fine grid, so the value of
the trained D is exact for that D, and V(D, G) ≤ V(D*, G) must hold.

    python examples/gan_optimal_discriminator.py
    python examples/gan_optimal_discriminator.py --steps 400 --out runs/gan_optimal_discriminator_quick

Written to --out: discriminators.png (D and D* against x for each p_g, over the two densities)
and results.json.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

import npgen
from npgen import F, nn, runs
from npgen.optim import cosine_annealing
from npgen.plot import pyplot, save_figure

# p_data = ½ N(−2, 0.6²) + ½ N(2, 0.6²): two bumps, so that D* is not a plain sigmoid of x.
DATA_MEANS, DATA_STD = (-2.0, 2.0), 0.6
# The generators: (label, mean, std). None stands for p_g = p_data, the equilibrium.
GENERATORS: list[tuple[str, float | None, float | None]] = [
    ("far: N(5, 0.6²)", 5.0, 0.6),
    ("between: N(0, 1²)", 0.0, 1.0),
    ("one side: N(1.5, 1.5²)", 1.5, 1.5),
    ("equilibrium: p_g = p_data", None, None),
]
GRID = np.linspace(-12.0, 12.0, 24_001)  # spacing 0.001: the quadrature error is far below the numbers shown


def parse_args() -> argparse.Namespace:
    """Command-line flags: the training length and sizes of each discriminator."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=runs.positive_int, default=1500, help="Adam steps per discriminator")
    parser.add_argument("--batch-size", type=runs.positive_int, default=512, help="samples of each density per step")
    parser.add_argument("--hidden", type=runs.positive_int, default=64, help="width of D's two hidden layers")
    parser.add_argument("--lr", type=runs.positive_float, default=3e-3, help="peak learning rate (cosine annealed)")
    runs.add_common_flags(parser, "runs/gan_optimal_discriminator")
    args = parser.parse_args()
    runs.use_threads(args.threads)
    return args


def normal_pdf(x: np.ndarray, mean: float, std: float) -> np.ndarray:
    """The density of N(mean, std²) at x."""
    return np.exp(-0.5 * ((x - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))


def data_pdf(x: np.ndarray) -> np.ndarray:
    """p_data(x): the equal mixture of the two Gaussians."""
    return 0.5 * sum(normal_pdf(x, m, DATA_STD) for m in DATA_MEANS)


def data_sample(rng: np.random.Generator, n: int) -> np.ndarray:
    """n draws from p_data: pick a component, then add its Gaussian noise."""
    return rng.choice(DATA_MEANS, size=n) + DATA_STD * rng.standard_normal(n)


def generator_pdf(x: np.ndarray, mean: float | None, std: float | None) -> np.ndarray:
    """p_g(x) for a Gaussian generator, or p_data(x) at the equilibrium (mean None)."""
    return data_pdf(x) if mean is None else normal_pdf(x, mean, std)


def generator_sample(rng: np.random.Generator, n: int, mean: float | None, std: float | None) -> np.ndarray:
    """n draws from p_g."""
    return data_sample(rng, n) if mean is None else mean + std * rng.standard_normal(n)


def integrate(values: np.ndarray) -> float:
    """∫ values dx on GRID by the trapezoid rule."""
    return float(np.sum(0.5 * (values[1:] + values[:-1]) * np.diff(GRID)))


def jsd(p: np.ndarray, q: np.ndarray) -> float:
    """JSD(p ‖ q) = ½ KL(p ‖ m) + ½ KL(q ‖ m), m = ½(p + q), in nats; 0·log 0 counts as 0."""
    m = 0.5 * (p + q)
    kl = lambda a: np.where(a > 0, a * np.log(np.where(a > 0, a, 1.0) / np.maximum(m, 1e-300)), 0.0)  # noqa: E731
    return 0.5 * integrate(kl(p)) + 0.5 * integrate(kl(q))


def value_from_logits(logits: np.ndarray, p_data: np.ndarray, p_g: np.ndarray) -> float:
    """V(D, G) = ∫ p_data log D + p_g log(1 − D), with log D = −softplus(−ℓ) and log(1 − D) = −softplus(ℓ)."""
    softplus = lambda t: np.logaddexp(0.0, t)  # noqa: E731
    return integrate(-p_data * softplus(-logits) - p_g * softplus(logits))


def make_discriminator(hidden: int) -> nn.Module:
    """x (1) → hidden → hidden → logit ℓ(x), D(x) = σ(ℓ(x))."""
    return nn.Sequential(nn.Linear(1, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1))


def train_discriminator(
    args: argparse.Namespace, rng: np.random.Generator, mean: float | None, std: float | None
) -> nn.Module:
    """Minimise −V(D, G) = BCE(D(x_data), 1) + BCE(D(x_g), 0) on fresh samples each step; the trained D."""
    d = make_discriminator(args.hidden)
    opt = npgen.optim.Adam(d.parameters(), lr=args.lr)
    n = args.batch_size
    targets = np.concatenate([np.ones((n, 1)), np.zeros((n, 1))]).astype(np.float32)
    for step in runs.progress(range(args.steps), f"D against p_g mean {mean}"):
        # Fresh samples every step: D sees the densities, not one finite sample it could memorise.
        x = np.concatenate([data_sample(rng, n), generator_sample(rng, n, mean, std)])
        # The mean over the stacked batch is ½·(BCE on data + BCE on fakes): the same minimiser as −V.
        loss = F.binary_cross_entropy_with_logits(d(npgen.tensor(x[:, None].astype(np.float32))), targets)
        opt.zero_grad()
        loss.backward()
        for group in opt.param_groups:  # a shrinking rate: the last steps settle instead of jittering
            group["lr"] = cosine_annealing(args.lr, step, args.steps)
        opt.step()
    return d


def logits_on_grid(d: nn.Module) -> np.ndarray:
    """ℓ(x) of the trained D at every grid point, in float64 for the quadrature."""
    with npgen.no_grad():
        return d(npgen.tensor(GRID[:, None].astype(np.float32))).numpy()[:, 0].astype(np.float64)


def study(
    args: argparse.Namespace, rng: np.random.Generator, label: str, mean: float | None, std: float | None
) -> tuple[dict, dict]:
    """Train D for one p_g; its value against V(D*) computed directly and as −log 4 + 2·JSD, and D(x) on the grid."""
    p_data, p_g = data_pdf(GRID), generator_pdf(GRID, mean, std)
    d_star = p_data / np.maximum(p_data + p_g, 1e-300)
    logits = logits_on_grid(train_discriminator(args, rng, mean, std))
    d_trained = 1 / (1 + np.exp(-logits))
    divergence = jsd(p_data, p_g)
    # V(D*) straight from its definition, with log D* and log(1 − D*) as ratios of densities (no 0·log 0 issue).
    safe = lambda a: np.where(a > 0, a, 1.0)  # noqa: E731
    v_star_direct = integrate(
        np.where(p_data > 0, p_data * np.log(safe(d_star)), 0.0)
        + np.where(p_g > 0, p_g * np.log(safe(1 - d_star)), 0.0)
    )
    v_trained = value_from_logits(logits, p_data, p_g)
    # How far D is from D*, weighted by where the samples are: ∫ ½(p_data + p_g)|D − D*|.
    mean_abs_error = integrate(0.5 * (p_data + p_g) * np.abs(d_trained - d_star))
    row = {
        "p_g": label,
        "mean": mean,
        "std": std,
        "jsd": divergence,
        "v_optimal_formula": -math.log(4) + 2 * divergence,
        "v_optimal_direct": v_star_direct,
        "v_trained": v_trained,
        "gap": v_star_direct - v_trained,
        "mean_abs_error_d": mean_abs_error,
    }
    return row, {"p_data": p_data, "p_g": p_g, "d_star": d_star, "d_trained": d_trained}


def figure(rows: list[dict], curves: list[dict], path: Path) -> None:
    """One panel per p_g: the two densities (shaded) and D*(x) against the trained D(x)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(rows), figsize=(4 * len(rows), 3.4), sharey=True)
    keep = (GRID >= -7) & (GRID <= 8)  # the interesting stretch; the integrals use the whole grid
    x = GRID[keep]
    for ax, row, c in zip(np.atleast_1d(axes), rows, curves):
        top = max(c["p_data"].max(), c["p_g"].max())
        ax.fill_between(x, c["p_data"][keep] / top, color="tab:blue", alpha=0.2, label="p_data (scaled)")
        ax.fill_between(x, c["p_g"][keep] / top, color="tab:orange", alpha=0.2, label="p_g (scaled)")
        ax.plot(x, c["d_star"][keep], color="black", lw=2, label="D*(x) = p_data/(p_data+p_g)")
        ax.plot(x, c["d_trained"][keep], color="tab:red", ls="--", lw=1.5, label="trained D(x)")
        ax.axhline(0.5, color="gray", lw=0.5)
        ax.set_title(f"{row['p_g']}\nV(D*) = {row['v_optimal_direct']:.4f}, V(D) = {row['v_trained']:.4f}", fontsize=9)
        ax.set_xlabel("x")
        ax.set_ylim(-0.02, 1.02)
    np.atleast_1d(axes)[0].set_ylabel("D(x)")
    np.atleast_1d(axes)[0].legend(fontsize=7, loc="center left")
    fig.suptitle(f"Trained discriminators against D*; −log 4 = {-math.log(4):.4f}", fontsize=10, y=1.08)
    save_figure(fig, path)


def main() -> None:
    """Train one discriminator per p_g, compare it with D*, write the figure and results.json."""
    args = parse_args()
    runs.prepare_out(args.out)
    npgen.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    rows, curves = [], []
    for label, mean, std in GENERATORS:
        row, c = study(args, rng, label, mean, std)
        rows.append(row)
        curves.append(c)
    figure(rows, curves, args.out / "discriminators.png")
    results = {"args": runs.flags(args), "minus_log_4": -math.log(4), "log_2": math.log(2), "generators": rows}
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"{'p_g':28s} {'JSD':>7s} {'−log4+2JSD':>11s} {'V(D*)':>8s} {'V(D)':>8s} {'gap':>7s} {'∫|D−D*|':>8s}")
    for r in rows:
        print(
            f"{r['p_g']:28s} {r['jsd']:7.4f} {r['v_optimal_formula']:11.4f} {r['v_optimal_direct']:8.4f}"
            f" {r['v_trained']:8.4f} {r['gap']:7.4f} {r['mean_abs_error_d']:8.4f}"
        )
    print(f"wrote {args.out}/")


if __name__ == "__main__":
    main()
