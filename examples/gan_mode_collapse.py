"""When does a GAN's generator collapse onto a few modes, and when does it cover them all?

The data is the classic toy for mode collapse: 8 Gaussians N(c_k, σ²I) with equal weights, their
centres c_k = 2·(cos 2πk/8, sin 2πk/8) on a ring of radius 2, σ = 0.05. A generator that matches it
puts ⅛ of its samples near each centre; a collapsed one puts them all near one or a few, often
hopping from mode to mode as the discriminator catches up with it.

Both networks are small MLPs (ReLU, 2 hidden layers); each step is one discriminator update and one
generator update on a fresh batch (npgen.models.gan's discriminator_step and generator_step), with

    L_D = −mean[log D(x) + log(1 − D(G(z)))],
    L_G = −mean log D(G(z))   (non-saturating)   or   mean log(1 − D(G(z)))   (saturating).

Every --eval-every steps a fixed set of noise vectors is mapped through G and scored:

    high quality    a sample within 3σ of its nearest centre
    covered mode    a centre that holds ≥ 2% of all samples as high-quality ones (uniform: 12.5%)
    largest share   the fraction of samples whose nearest centre is the most popular one
                    (⅛ for a balanced generator, 1 for one that sits on a single mode)

The settings (--settings picks them; each runs once per seed):

    balanced           non-saturating L_G, Adam lr 1e-3 for both networks, β1 = 0.5
    weak-discriminator the same, but D learns 10× slower (lr 1e-4): G outruns D
    beta1-0.9          the balanced setting with Adam's default β1 = 0.9
    saturating         the balanced setting with the saturating L_G

    python examples/gan_mode_collapse.py
    python examples/gan_mode_collapse.py --settings balanced beta1-0.9 saturating --out runs/gan_mode_collapse_more

Written to --out: coverage.png (covered modes, high-quality fraction and largest share against
steps; the final samples of the first seed of each setting over the ring) and results.json.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

import npgen
from npgen import nn, runs
from npgen.models.gan import discriminator_step, generator_step
from npgen.plot import pyplot, save_figure

N_MODES, RADIUS, SIGMA = 8, 2.0, 0.05
QUALITY_RADIUS = 3 * SIGMA  # a sample this close to a centre looks like a real one
COVERED_SHARE = 0.02  # a mode counts as covered when it holds this share of all samples as high-quality ones
SETTINGS = {
    "balanced": {"saturating": False, "lr_g": 1e-3, "lr_d": 1e-3, "beta1": 0.5},
    "weak-discriminator": {"saturating": False, "lr_g": 1e-3, "lr_d": 1e-4, "beta1": 0.5},
    "beta1-0.9": {"saturating": False, "lr_g": 1e-3, "lr_d": 1e-3, "beta1": 0.9},
    "saturating": {"saturating": True, "lr_g": 1e-3, "lr_d": 1e-3, "beta1": 0.5},
}


def parse_args() -> argparse.Namespace:
    """Command-line flags: which settings, how many seeds, how long, and the networks' sizes."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--settings",
        nargs="+",
        choices=list(SETTINGS),
        default=["balanced", "weak-discriminator"],
        help="training settings to compare",
    )
    parser.add_argument("--seeds", type=runs.positive_int, default=3, help="runs per setting (seeds seed, seed+1, …)")
    parser.add_argument("--steps", type=runs.positive_int, default=2000, help="training steps per run")
    parser.add_argument("--eval-every", type=runs.positive_int, default=100, help="steps between coverage counts")
    parser.add_argument("--n-eval", type=runs.positive_int, default=2000, help="generated samples per count")
    parser.add_argument("--batch-size", type=runs.positive_int, default=256, help="real (and as many fake) per step")
    parser.add_argument("--hidden", type=runs.positive_int, default=128, help="width of every hidden layer")
    parser.add_argument("--latent-dim", type=runs.positive_int, default=2, help="size of the generator's noise z")
    runs.add_common_flags(parser, "runs/gan_mode_collapse")
    args = parser.parse_args()
    if len(set(args.settings)) != len(args.settings):
        parser.error(f"--settings {' '.join(args.settings)}: each setting once")
    runs.use_threads(args.threads)
    return args


def centres() -> np.ndarray:
    """The 8 mode centres on the ring, shape (8, 2)."""
    angles = 2 * np.pi * np.arange(N_MODES) / N_MODES
    return RADIUS * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def sample_ring(rng: np.random.Generator, n: int) -> np.ndarray:
    """n draws from the mixture: a uniformly chosen centre plus N(0, σ²I) noise."""
    return (centres()[rng.integers(0, N_MODES, n)] + SIGMA * rng.standard_normal((n, 2))).astype(np.float32)


def mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    """n_in → hidden → hidden → n_out with ReLU: the generator (z → x) and the discriminator (x → logit) alike."""
    return nn.Sequential(
        nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, n_out)
    )


def coverage(samples: np.ndarray) -> dict:
    """Covered modes, high-quality fraction and the largest mode's share of ``samples`` (N, 2)."""
    distances = np.linalg.norm(samples[:, None, :] - centres()[None], axis=2)
    nearest, good = distances.argmin(axis=1), distances.min(axis=1) < QUALITY_RADIUS
    good_counts, counts = np.bincount(nearest[good], minlength=N_MODES), np.bincount(nearest, minlength=N_MODES)
    return {
        "covered_modes": int((good_counts >= COVERED_SHARE * len(samples)).sum()),
        "high_quality": float(good.mean()),
        "largest_share": float(counts.max() / len(samples)),
        "most_popular_mode": int(counts.argmax()),
        "high_quality_per_mode": good_counts.tolist(),
    }


def generate(generator: nn.Module, z: np.ndarray) -> np.ndarray:
    """G(z) as a host array, without a graph."""
    with npgen.no_grad():
        return generator(npgen.tensor(z)).numpy()


def train(args: argparse.Namespace, name: str, seed: int) -> tuple[list[dict], np.ndarray]:
    """One run of setting ``name``: its coverage every --eval-every steps and its final samples."""
    setting = SETTINGS[name]
    npgen.manual_seed(seed)  # initial weights and the generator's training noise
    rng = np.random.default_rng(seed)  # the real batches
    # The same noise at every count, drawn from a stream of its own: counting must not change training.
    eval_z = np.random.default_rng(seed + 10_000).standard_normal((args.n_eval, args.latent_dim)).astype(np.float32)
    generator, discriminator = mlp(args.latent_dim, args.hidden, 2), mlp(2, args.hidden, 1)
    betas = (setting["beta1"], 0.999)
    opt_g = npgen.optim.Adam(generator.parameters(), lr=setting["lr_g"], betas=betas)
    opt_d = npgen.optim.Adam(discriminator.parameters(), lr=setting["lr_d"], betas=betas)
    history = []
    for step in runs.progress(range(args.steps + 1), f"{name}, seed {seed}"):
        if step % args.eval_every == 0 or step == args.steps:
            history.append({"step": step, **coverage(generate(generator, eval_z))})
        if step == args.steps:
            break
        real = npgen.tensor(sample_ring(rng, args.batch_size))
        fake = generator(npgen.randn(args.batch_size, args.latent_dim))
        stats = discriminator_step(discriminator, opt_d, real, fake)  # D sees the fakes detached
        loss_g = generator_step(discriminator, opt_g, fake, saturating=setting["saturating"])
        if not math.isfinite(float(stats["loss_d"] + loss_g)):
            raise SystemExit(f"{name}, seed {seed}: the losses stopped being finite at step {step}")
    return history, generate(generator, eval_z)


def figure(results: dict, finals: dict[str, np.ndarray], path: Path) -> None:
    """Top: the three scores against steps, one thin line per seed; bottom: each setting's final samples."""
    plt = pyplot()
    names = list(results)
    metrics = [("covered_modes", "covered modes (of 8)"), ("high_quality", "high-quality fraction")]
    metrics.append(("largest_share", "largest mode's share"))
    columns = max(len(metrics), len(names))
    fig, axes = plt.subplots(2, columns, figsize=(4 * columns, 7.6), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (key, label) in zip(axes[0], metrics):
        for colour, name in zip(colours, names):
            for i, run in enumerate(results[name]["runs"]):
                steps = [h["step"] for h in run["history"]]
                ax.plot(steps, [h[key] for h in run["history"]], color=colour, lw=1, alpha=0.8,
                        label=name if i == 0 else None)  # fmt: skip
        ax.set(xlabel="training step", ylabel=label)
        ax.grid(alpha=0.3)
    axes[0][0].axhline(N_MODES, color="gray", lw=0.5)
    axes[0][2].axhline(1 / N_MODES, color="gray", lw=0.5, ls=":")
    axes[0][0].legend(fontsize=8)
    ring = centres()
    for ax, colour, name in zip(axes[1], colours, names):
        x = finals[name]
        ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.3, color=colour)
        ax.scatter(ring[:, 0], ring[:, 1], marker="x", color="black", s=30)
        last = results[name]["runs"][0]["history"][-1]
        ax.set_title(
            f"{name}, seed {results[name]['runs'][0]['seed']}: {last['covered_modes']} modes covered", fontsize=9
        )
        lim = min(max(3.0, 1.05 * float(np.abs(x).max())), 6.0)  # a collapsed cloud may sit off the ring
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal")
    for ax in [*axes[0][len(metrics) :], *axes[1][len(names) :]]:
        ax.set_axis_off()
    fig.tight_layout()
    save_figure(fig, path)


def main() -> None:
    """Train every setting for every seed, count the modes, write the figure and results.json."""
    args = parse_args()
    runs.prepare_out(args.out)
    results, finals = {}, {}
    for name in args.settings:
        results[name] = {**SETTINGS[name], "runs": []}
        for seed in range(args.seed, args.seed + args.seeds):
            start = time.perf_counter()
            history, samples = train(args, name, seed)
            results[name]["runs"].append({"seed": seed, "history": history, "seconds": time.perf_counter() - start})
            finals.setdefault(name, samples)  # the first seed's samples go into the figure
        last = [r["history"][-1] for r in results[name]["runs"]]
        results[name]["final_covered_modes"] = [h["covered_modes"] for h in last]
        results[name]["final_high_quality"] = [h["high_quality"] for h in last]
        results[name]["final_largest_share"] = [h["largest_share"] for h in last]
        # the fewest modes a run covered over its second half: a run that hops between modes shows it here
        results[name]["min_covered_second_half"] = [
            min(h["covered_modes"] for h in r["history"] if h["step"] >= args.steps / 2) for r in results[name]["runs"]
        ]
        # in the second half, whenever most samples sat by one mode (share ≥ ½), which mode was it?
        # more than one: the generator hops from mode to mode instead of spreading over them
        results[name]["collapsed_onto_modes_second_half"] = [
            sorted(
                {
                    h["most_popular_mode"]
                    for h in r["history"]
                    if h["step"] >= args.steps / 2 and h["largest_share"] >= 0.5
                }
            )
            for r in results[name]["runs"]
        ]
    figure(results, finals, args.out / "coverage.png")
    summary = {"args": runs.flags(args), "sigma": SIGMA, "radius": RADIUS, "covered_share": COVERED_SHARE}
    (args.out / "results.json").write_text(json.dumps({**summary, "settings": results}, indent=2))
    print(f"after {args.steps} steps, per seed ({args.seed}…{args.seed + args.seeds - 1}):")
    for name, r in results.items():
        print(
            f"{name:20s} covered modes {r['final_covered_modes']}  high quality "
            f"{[round(q, 2) for q in r['final_high_quality']]}  largest share "
            f"{[round(s, 2) for s in r['final_largest_share']]}  fewest covered in the second half "
            f"{r['min_covered_second_half']}  collapsed onto modes {r['collapsed_onto_modes_second_half']}"
        )
    print(f"wrote {args.out}/")


if __name__ == "__main__":
    main()
