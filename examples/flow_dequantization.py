"""Dequantization: a flow trained on integer pixels plus uniform noise, and one trained on the integers themselves.

Question. A flow is a density p on ℝᴰ, but MNIST pixels are integers x ∈ {0, …, 255}ᴰ. Why is
fitting p to the integer points ill-posed, and what does adding noise fix?

A density can be made as tall as we like on a finite set of points: squeeze the mass around each
integer image and p(x) → ∞, so −log p(x) → −∞. Its "bits/dim" −log p(x)/(D ln 2) can fall below 0
(a density is not a probability) and says nothing about how well the model predicts images.

Uniform dequantization trains on x̃ = x + u, u ~ U[0, 1)ᴰ, instead. The density then defines a
discrete model, the mass of the unit cube above each image,

    P(x) = ∫_[0,1)ᴰ p(x + u) du,   a probability: Σ_x P(x) = ∫ p = 1,

and by Jensen's inequality (log is concave)

    log P(x) = log E_u p(x + u) ≥ E_u log p(x + u),

so the dequantized bits/dim −E_u log p(x + u)/(D ln 2), the training loss, is an upper bound on
the discrete model's −log P(x)/(D ln 2): a true code length, comparable across models. With K
noise draws the bound tightens, log P(x) ≥ E log (1/K) Σ_k p(x + u_k) ≥ E log p(x + u), towards
log P(x) as K grows (the importance-weighted bound, with the uniform proposal).

This script trains the same npgen ``Flow`` twice from the same initial weights: (a) with
uniform noise, as ``Flow.log_prob`` draws it, and (b) with u = 0, passed through the ``u``
argument of ``Flow.bpd``. After every epoch it measures both models on test images both
ways: with uniform noise (the upper bound on the discrete −log P(x) in bits/dim: the number that
means something for either model) and at the integer points (u = 0: the density's height there).
At the end it tightens the bound with K noise draws. npgen's flow cannot make its density
infinitely tall: each scale is s = tanh(·) ∈ (−1, 1) and the logit transform is fixed, so
log p(x) ≤ −(D/2) ln 2π + n_flows·D + (the preprocessing log-det at x). That floor on the
no-noise bits/dim is drawn too; a flow with unbounded scales has none.

    python examples/flow_dequantization.py                 # about two minutes on one core
    python examples/flow_dequantization.py --epochs 40     # longer: (b)'s two numbers drift further apart

Written to --out: bpd.png (bits/dim per epoch), samples.png (samples of both models) and
results.json.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

import numpy as np

import npgen
from npgen import backend, runs
from npgen.data import DataLoader, load_mnist
from npgen.models import Flow
from npgen.models.flow import LOG_2PI, preprocess
from npgen.plot import image_grid, pyplot, save_figure

AVAILABLE = 60_000  # MNIST's training images
DEFAULT_TRAIN = 5_000
VARIANTS = {"dequantized": True, "integer": False}  # name → trained with uniform noise?
EVAL_BATCH = 500


def parse_args() -> argparse.Namespace:
    """Command-line flags, each checked for type and range."""
    parser = argparse.ArgumentParser(
        description="Train a Real NVP flow with and without uniform dequantization.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--epochs", type=runs.positive_int, default=15, help="passes over the training images")
    parser.add_argument("--batch-size", type=runs.positive_int, default=128, help="images per Adam step")
    parser.add_argument("--lr", type=runs.positive_float, default=1e-3, help="Adam's learning rate")
    parser.add_argument("--n-flows", type=runs.positive_int, default=4, help="pairs of couplings")
    parser.add_argument("--hidden", type=runs.positive_int, default=128, help="hidden units of each coupling's MLP")
    parser.add_argument(
        "--clip-grad", type=runs.nonnegative_float, default=10.0, help="clip the global gradient norm (0: off)"
    )
    parser.add_argument("--test-size", type=runs.positive_int, default=1000, help="test images scored every epoch")
    parser.add_argument(
        "--draws", type=runs.positive_int, default=16, help="K, noise draws per image of the final tighter bound"
    )
    runs.add_run_flags(parser, "runs/flow_dequantization", AVAILABLE, resume=False)
    parser.set_defaults(train_size=DEFAULT_TRAIN)  # a few thousand images keep the run to minutes
    args = parser.parse_args()
    if args.train_size > AVAILABLE:
        parser.error(f"--train-size {args.train_size}: there are only {AVAILABLE:,} training images")
    if args.test_size > 10_000:
        parser.error(f"--test-size {args.test_size}: there are only 10,000 test images")
    runs.use_threads(args.threads)
    return args


def noise(x: npgen.Tensor, dequantize: bool) -> Any:
    """The u of x̃ = x + u: None lets Flow.log_prob draw U[0, 1)ᴰ; zeros keep the integer points."""
    return None if dequantize else npgen.get_array_module(x.data).zeros(x.shape, np.float32)


def mean_bpd(flow: Flow, images: Any, dequantize: bool) -> float:
    """Mean bits/dim −log p(x + u)/(D ln 2) over images, u uniform (one draw each) or zero."""
    with npgen.no_grad():
        total = sum(
            flow.bpd(x, noise(x, dequantize)).sum().item()
            for x in DataLoader(images, batch_size=EVAL_BATCH, shuffle=False)
        )
    return total / len(images)


def bounds_with_draws(flow: Flow, images: Any, draws: int) -> dict[str, float]:
    """Bits/dim, mean over images, from K noise draws u_k each: −(1/K) Σ_k log p(x + u_k) (the loss's estimate)
    and −log (1/K) Σ_k p(x + u_k) (tighter: Jensen puts it between the first and −log P(x))."""
    with npgen.no_grad():
        log_p = np.stack([flow.log_prob(images).numpy().astype(np.float64) for _ in range(draws)])  # (K, N), nats
    top = log_p.max(axis=0)
    log_mean_p = top + np.log(np.exp(log_p - top).mean(axis=0))  # log (1/K) Σ_k p, without overflow
    to_bits = -1 / (images.shape[1] * math.log(2))
    return {"one_draw": float(log_p.mean() * to_bits), "k_draws": float(log_mean_p.mean() * to_bits)}


def no_noise_floor(images: np.ndarray, n_flows: int) -> float:
    """The lowest mean u = 0 bits/dim npgen's flow can reach: log N(z) ≤ −½ ln 2π and Σ s < n_flows per pixel."""
    _, preprocess_logdet = preprocess(images.astype(np.float64), np.zeros(images.shape))
    d = images.shape[1]
    highest_log_p = -0.5 * d * LOG_2PI + n_flows * d + preprocess_logdet  # per image, nats
    return float(-highest_log_p.mean() / (d * math.log(2)))


def train_variant(args: argparse.Namespace, train: Any, test: Any, dequantize: bool) -> tuple[Flow, list]:
    """Train one flow (same seed, so the same initial weights for both variants); its per-epoch history."""
    npgen.manual_seed(args.seed)
    flow = Flow(n_flows=args.n_flows, n_hidden=args.hidden)
    opt = npgen.optim.Adam(flow.parameters(), lr=args.lr)

    def scores(epoch: int, train_bpd: float, seconds: float) -> dict[str, float]:
        """One history entry: the training loss and the test set measured both ways."""
        return {
            "epoch": epoch,
            "train_bpd": train_bpd,  # this model's own loss (its noise), the mean over the epoch's steps
            "test_bpd_uniform_noise": mean_bpd(flow, test, dequantize=True),  # a bound on −log₂ P(x) / D
            "test_bpd_no_noise": mean_bpd(flow, test, dequantize=False),  # the density's height at x
            "seconds": seconds,
        }

    history = [scores(0, mean_bpd(flow, train[: len(test)], dequantize), 0.0)]  # before any step
    name = "dequantized" if dequantize else "integer"
    for epoch in range(1, args.epochs + 1):
        start, losses = time.perf_counter(), []
        for step, x in enumerate(runs.progress(DataLoader(train, batch_size=args.batch_size), f"{name} {epoch}"), 1):
            loss = flow.bpd(x, noise(x, dequantize)).mean()
            opt.zero_grad()
            loss.backward()
            if args.clip_grad:
                npgen.optim.clip_grad_norm(flow.parameters(), args.clip_grad)
            opt.step()
            losses.append(loss.item())
            runs.stop_if_not_finite(losses[-1], f"{name} loss", epoch, step, None)
        history.append(scores(epoch, float(np.mean(losses)), time.perf_counter() - start))
        h = history[-1]
        print(
            f"{name:11s} epoch {epoch:2d}  train {h['train_bpd']:7.3f}  test with noise "
            f"{h['test_bpd_uniform_noise']:6.3f}  test at the integers {h['test_bpd_no_noise']:7.3f} bits/dim"
        )
    return flow, history


def plot_bpd(histories: dict[str, list], floor: float, path: Any) -> None:
    """Bits/dim per epoch from epoch 1: each model's training loss and its test score with and without noise.

    The untrained flow (epoch 0, in results.json) scores tens of bits/dim and would flatten the curves.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    colors = {"dequantized": "tab:blue", "integer": "tab:red"}
    for name, history in histories.items():
        trained, c = history[1:], colors[name]
        epochs = [h["epoch"] for h in trained]
        how = "trained with u ~ U[0,1)" if name == "dequantized" else "trained with u = 0"
        ax.plot(epochs, [h["train_bpd"] for h in trained], ":", color=c, label=f"{how}: train loss")
        ax.plot(
            epochs, [h["test_bpd_uniform_noise"] for h in trained], "o-", ms=3, color=c, label=f"{how}: test, u ~ U"
        )
        ax.plot(epochs, [h["test_bpd_no_noise"] for h in trained], "s--", ms=3, color=c, label=f"{how}: test, u = 0")
    ax.axhline(0, color="k", lw=0.6)
    ax.axhline(floor, color="gray", lw=0.8, ls="-.", label="lowest u = 0 value npgen's flow can reach")
    ax.set(xlabel="epoch", ylabel="bits per dimension", title="with and without dequantization (MNIST test images)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center right")
    save_figure(fig, path)


def plot_samples(flows: dict[str, Flow], seed: int, path: Any, n: int = 16) -> None:
    """Samples of both models from the same noise z (temperature 1 and 0.7), one row of images per setting."""
    plt = pyplot()
    z = np.random.default_rng(seed + 1).standard_normal((n, 784)).astype(np.float32)
    z = backend.on_device(z)
    rows = [
        (f"{name}, T = {t}", flow.sample(n, t, z=z).numpy() / 255) for name, flow in flows.items() for t in (1.0, 0.7)
    ]
    fig, axes = plt.subplots(len(rows), 1, figsize=(n * 0.5, len(rows) * 0.8 + 0.3))
    for ax, (title, images) in zip(axes, rows):
        ax.imshow(image_grid(images, nrow=1), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.set_axis_off()
    save_figure(fig, path)


def main() -> None:
    """Train both variants, score them, write the figures and results.json, print the numbers."""
    args = parse_args()
    runs.use_backend(args.backend)
    runs.prepare_out(args.out)
    npgen.manual_seed(args.seed)
    train_images, _ = load_mnist("train")
    test_images, _ = load_mnist("test")
    test_on_host = test_images[: args.test_size]
    train, test = backend.on_device(train_images[: args.train_size]), backend.on_device(test_on_host)

    flows, histories = {}, {}
    for name, dequantize in VARIANTS.items():
        flows[name], histories[name] = train_variant(args, train, test, dequantize)
    npgen.manual_seed(args.seed + 1)  # the final bounds' noise, the same for both models
    final = {name: bounds_with_draws(flow, test, args.draws) for name, flow in flows.items()}
    floor = no_noise_floor(test_on_host, args.n_flows)
    plot_bpd(histories, floor, args.out / "bpd.png")
    plot_samples(flows, args.seed, args.out / "samples.png")

    results = {
        "args": runs.flags(args),
        "epochs": histories,
        "final_test_bound": final,  # bits/dim bounds on −log P(x): the mean of K one-draw values, and the K-draw one
        "no_noise_floor_bpd": floor,
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2))

    d, i = histories["dequantized"][-1], histories["integer"][-1]
    print(f"after {args.epochs} epochs on {args.train_size} images, {args.test_size} test images:")
    print(
        f"  trained with noise: train loss {d['train_bpd']:.3f}, test {d['test_bpd_uniform_noise']:.3f} bits/dim "
        f"(≥ −log₂ P(x)/D); bound from K = {args.draws} draws {final['dequantized']['k_draws']:.3f} "
        f"(their one-draw mean {final['dequantized']['one_draw']:.3f})"
    )
    print(
        f"  trained at the integers: train loss {i['train_bpd']:.3f}, test at the integers "
        f"{i['test_bpd_no_noise']:.3f} (a density, not a probability; npgen's floor {floor:.2f}), "
        f"test with noise {i['test_bpd_uniform_noise']:.3f}; K = {args.draws}: {final['integer']['k_draws']:.3f} "
        f"(one-draw mean {final['integer']['one_draw']:.3f})"
    )
    best = min(h["test_bpd_uniform_noise"] for h in histories["integer"])
    print(
        f"  the integer-trained model's honest test bits/dim: best {best:.3f}, last {i['test_bpd_uniform_noise']:.3f}"
    )
    print(f"wrote {args.out}/")


if __name__ == "__main__":
    with runs.clear_errors():
        main()
