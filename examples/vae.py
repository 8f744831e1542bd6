"""Train npgen's VAE on binarized MNIST and leave numbers and figures behind.

    python examples/vae.py --epochs 40               # z_dim 20, static binarization
    python examples/vae.py --zdim 2 --epochs 40      # also draws the 20×20 latent manifold

Validation is the last 10,000 of the 60,000 training images; the official 10,000 test
images are scored once, at the end (negative ELBO and the importance-weighted
log-likelihood with --iw-samples samples). Written to --out:

    metrics.json         every number, per epoch and final
    checkpoint.npz       after every epoch; --resume continues from it
    elbo.png             train and validation negative ELBO per epoch
    samples.npy          pixel means of 10,000 samples (score them: python -m npgen.metrics)
    samples_*.png        5×5 Bernoulli samples (and means_*.png, their pixel means) before
                         training, after epoch 1, halfway and at the end
    manifold.png         decoder means over the inverse-CDF grid of a 2-D latent space
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

import npgen
from npgen import backend, checkpoint, runs
from npgen.data import DataLoader, binarize, load_mnist
from npgen.models import VAE
from npgen.plot import image_grid, pyplot, save_curves, save_figure, save_grid

VALIDATION = 10_000
TRAIN = 60_000 - VALIDATION
MAY_CHANGE_ON_RESUME = {"epochs", "iw_samples"}  # they extend a run or only size its final evaluation


def parse_args() -> argparse.Namespace:
    """Command-line flags (those of the original assignment, plus run management)."""
    parser = argparse.ArgumentParser(
        description="Train a VAE on binarized MNIST.", formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--zdim", type=runs.positive_int, default=20, help="size of the latent code z")
    parser.add_argument("--epochs", type=runs.positive_int, default=40, help="passes over the training images")
    parser.add_argument("--batch-size", type=runs.positive_int, default=128, help="images per Adam step")
    parser.add_argument("--lr", type=runs.positive_float, default=1e-3, help="Adam's learning rate")
    parser.add_argument(
        "--hidden", type=runs.positive_int, default=500, help="units of the encoder's and decoder's hidden layer"
    )
    parser.add_argument(
        "--binarize",
        choices=["static", "dynamic", "threshold"],
        default="static",
        help="how pixels become 0/1: sampled once, every epoch, or > 127",
    )
    parser.add_argument(
        "--iw-samples", type=runs.nonnegative_int, default=1000, help="k of the test log-likelihood (0 skips it)"
    )
    runs.add_run_flags(parser, "runs/vae", TRAIN)
    args = runs.parse_run_args(parser)
    if args.iw_samples > 100_000:  # k = 1000 takes minutes; k = 10⁹ would run for months
        parser.error(f"--iw-samples {args.iw_samples}: at most 100,000")
    return args


def load_data(method: str, seed: int) -> tuple[object, object, object, object]:
    """(train images to binarize each epoch, or None; fixed train set; validation set; test set) on the device."""
    train_raw, _ = load_mnist("train")
    test_raw, _ = load_mnist("test")
    on_device = backend.on_device
    fixed = "static" if method == "dynamic" else method  # dynamic runs still score fixed validation/test sets
    train_all = binarize(on_device(train_raw), fixed, seed=seed)
    test = binarize(on_device(test_raw), fixed, seed=seed + 1)
    dynamic_source = on_device(train_raw[:-VALIDATION]) if method == "dynamic" else None
    return dynamic_source, train_all[:-VALIDATION], train_all[-VALIDATION:], test


def evaluate(model: VAE, images: object, batch_size: int = 1000) -> dict[str, float]:
    """Mean negative ELBO, reconstruction and KL (nats per image) over ``images``, one sample each."""
    model.eval()
    totals = np.zeros(2)
    with npgen.no_grad():
        for x in DataLoader(images, batch_size=batch_size, shuffle=False):
            reconstruction, kl = model.loss_terms(x)
            totals += [reconstruction.sum().item(), kl.sum().item()]
    model.train()
    reconstruction, kl = totals / len(images)
    return {"neg_elbo": reconstruction + kl, "reconstruction": reconstruction, "kl": kl}


def test_log_likelihood(model: VAE, images: object, k: int, batch_size: int = 100) -> float:
    """Mean importance-weighted log p(x) over ``images`` (nats), with k samples per image."""
    total = 0.0
    for x in runs.progress(DataLoader(images, batch_size=batch_size, shuffle=False), f"test log-likelihood, k={k}"):
        total += model.log_likelihood(x, k=k).sum().item()
    return total / len(images)


def save_sample_grids(model: VAE, noise: tuple[np.ndarray, np.ndarray], out: Path, tag: str) -> None:
    """5×5 Bernoulli samples and their pixel means from fixed noise, so grids compare across epochs."""
    z, u = (backend.on_device(a) for a in noise)
    means, samples = model.sample(25, z=z, u=u)
    save_grid(samples, out / f"samples_{tag}.png", nrow=5, title=f"Bernoulli samples, {tag.replace('_', ' ')}")
    save_grid(means, out / f"means_{tag}.png", nrow=5, title=f"pixel means, {tag.replace('_', ' ')}")


def save_manifold(model: VAE, out: Path, n: int = 20) -> None:
    """Decoder means over z = (Φ⁻¹(u₁), Φ⁻¹(u₂)) with u = (i + 0.5)/n: no grid point at ±∞; axes in z."""
    plt = pyplot()
    u = (np.arange(n) + 0.5) / n
    quantiles = np.array([statistics.NormalDist().inv_cdf(p) for p in u])  # Φ⁻¹, without scipy.stats' 1 s import
    z1, z2 = np.meshgrid(quantiles, quantiles[::-1])  # z₂ grows upwards, as on a plot
    z = np.stack([z1.ravel(), z2.ravel()], axis=1).astype(np.float32)
    with npgen.no_grad():
        means = npgen.F.sigmoid(model.decode(npgen.Tensor(backend.on_device(z))))
    fig, ax = plt.subplots(figsize=(7.5, 7.5))
    ax.imshow(image_grid(means, nrow=n, pad=0), cmap="gray", vmin=0, vmax=1)
    ticks = np.arange(0, n, 3)
    centres = 28 * ticks + 13.5  # the middle of each tile, in pixels
    ax.set_xticks(centres, [f"{v:.2f}" for v in quantiles[ticks]], fontsize=8)
    ax.set_yticks(centres, [f"{v:.2f}" for v in quantiles[::-1][ticks]], fontsize=8)
    ax.set(xlabel="z₁ = Φ⁻¹(u₁)", ylabel="z₂ = Φ⁻¹(u₂)")
    ax.set_title(f"decoder means on a {n}×{n} inverse-CDF grid of the 2-D latent space (u = (i + ½)/{n})", fontsize=9)
    save_figure(fig, out / "manifold.png", dpi=100)


def main() -> None:
    """Train, validate every epoch, score the test set, and write metrics, checkpoints and figures."""
    args = parse_args()
    runs.use_backend(args.backend)
    npgen.manual_seed(args.seed)
    runs.prepare_out(args.out, args.resume)
    config = runs.configuration(args, MAY_CHANGE_ON_RESUME)
    path = args.out / "checkpoint.npz"
    if args.resume:  # flags that would change the run are refused now, before the data is read
        runs.check_resume(path, config, args.epochs)
    dynamic_source, train, validation, test = load_data(args.binarize, args.seed)
    train = train[: args.train_size]
    dynamic_source = None if dynamic_source is None else dynamic_source[: args.train_size]
    model = VAE(hidden=args.hidden, z_dim=args.zdim)
    opt = npgen.optim.Adam(model.parameters(), lr=args.lr)
    # The figures draw their noise from a stream of their own: making them must not change training.
    figure_rng = np.random.default_rng(args.seed + 2)
    grid_noise = (figure_rng.standard_normal((25, args.zdim), np.float32), figure_rng.random((25, 784), np.float32))
    grid_epochs = runs.figure_epochs(args.epochs)

    history: list[dict] = []
    if args.resume:
        history = runs.resume(path, config, args.epochs, model=model, optimizer=opt)["history"]
        print(f"resumed from {path} after epoch {len(history)}")
    else:
        save_sample_grids(model, grid_noise, args.out, grid_epochs[0])

    for epoch in range(len(history) + 1, args.epochs + 1):
        start = time.perf_counter()
        images = train if dynamic_source is None else binarize(dynamic_source, "dynamic")
        losses = []
        batches = runs.progress(DataLoader(images, batch_size=args.batch_size), f"epoch {epoch}/{args.epochs}")
        for step, x in enumerate(batches, 1):
            loss = model.loss(x)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())  # read after the step was queued: on a GPU the read waits for it all
            runs.stop_if_not_finite(losses[-1], "loss", epoch, step, path)
            if len(losses) % 50 == 0:
                batches.set_postfix(neg_elbo=f"{np.mean(losses[-50:]):.2f}")
        seconds = time.perf_counter() - start
        val = evaluate(model, validation)
        history.append(
            {
                "epoch": epoch,
                "train_neg_elbo": float(np.mean(losses)),
                "seconds": seconds,
                **{f"val_{k}": v for k, v in val.items()},
            }
        )
        print(
            f"epoch {epoch:3d}  train −ELBO {history[-1]['train_neg_elbo']:7.2f}  val −ELBO {val['neg_elbo']:7.2f}"
            f"  (recon {val['reconstruction']:6.2f}, KL {val['kl']:5.2f})  {seconds:5.1f} s"
        )
        if epoch in grid_epochs:
            save_sample_grids(model, grid_noise, args.out, grid_epochs[epoch])
        checkpoint.save(path, model=model, optimizer=opt, history=history, config=config)

    results = {"args": runs.flags(args), "epochs": history}
    results["test"] = scores = evaluate(model, test)
    print(f"test −ELBO {scores['neg_elbo']:.2f} nats (recon {scores['reconstruction']:.2f}, KL {scores['kl']:.2f})")
    if args.iw_samples:
        results["test"][f"log_likelihood_iw{args.iw_samples}"] = ll = test_log_likelihood(model, test, args.iw_samples)
        print(f"test log-likelihood (importance-weighted, k={args.iw_samples}) {ll:.2f} nats")
    # the median, which one epoch that shared the machine does not move
    results["seconds_per_epoch"] = float(np.median([h["seconds"] for h in history]))
    z = backend.on_device(figure_rng.standard_normal((10_000, args.zdim), np.float32))
    np.save(args.out / "samples.npy", model.sample(10_000, z=z)[0].numpy())  # pixel means, for npgen.metrics
    (args.out / "metrics.json").write_text(json.dumps(results, indent=2))
    # the training number averages the epoch's steps, made while the model improved: at epoch 1 it sits
    # above validation, which is measured once, after the epoch
    curves = {
        "train (mean over the epoch's steps)": [h["train_neg_elbo"] for h in history],
        "validation (after the epoch)": [h["val_neg_elbo"] for h in history],
    }
    save_curves(curves, args.out / "elbo.png", "epoch", "negative ELBO (nats per image)", f"VAE, z_dim {args.zdim}")
    if args.zdim == 2:
        save_manifold(model, args.out)
    print(
        f"wrote {args.out}/: metrics.json, elbo.png, samples_*.png, means_*.png"
        + (", manifold.png" if args.zdim == 2 else "")
    )


if __name__ == "__main__":
    with runs.clear_errors():
        main()
