"""How many samples does a Monte Carlo estimate of a VAE's log p(x) need? The prior against q(z|x).

The marginal likelihood p(x) = ∫ p(x|z) p(z) dz has no closed form. Two unbiased estimates of it
average K weights w_k:

    prior sampling:       p(x) ≈ (1/K) Σ_k p(x|z_k),                      z_k ~ p(z) = N(0, I)
    importance sampling:  p(x) ≈ (1/K) Σ_k p(x|z_k) p(z_k) / q(z_k|x),    z_k ~ q(z|x)

and log p̂(x) = logsumexp_k log w_k − log K (biased low by Jensen's inequality, less so as K grows).
How many of the K samples really count is the effective sample size ESS = (Σ_k w_k)² / Σ_k w_k²:
K when all weights are equal, 1 when one weight carries the whole sum.

Why the prior needs so many samples: p(x|z) is large only where the posterior p(z|x) is, and the
posterior fills a tiny part of the prior. Prior sampling's weight is w = p(x|z) = p(x) p(z|x)/p(z),
so it needs E_p[w²]/E_p[w]² = ∫ p(z|x)²/p(z) dz samples per effective sample. For a Gaussian
posterior N(m, diag s²) (the encoder's q(z|x) stands in for it) that is a product over the latent
dimensions d,

    ∫ p(z|x)²/p(z) dz = Π_d exp(m_d² / (2 − s_d²)) / (s_d √(2 − s_d²)),

one factor > 1 per dimension the posterior narrows (s_d < 1) or moves (m_d ≠ 0): the cost grows
exponentially with the dimension of z. Importance sampling draws where the posterior is, and its
weights stay nearly equal.

    python examples/vae_log_likelihood.py                  # trains a VAE for --epochs 3 first
    python examples/vae_log_likelihood.py --run runs/vae   # studies a run of examples/vae.py

This file also holds what the VAE studies share (vae_bounds.py and vae_gradient_variance.py
import it): the flags, the VAE to study, the test images, and log p(x|z).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
from scipy.special import logsumexp

import npgen
from npgen import F, backend, runs
from npgen.data import DataLoader, binarize, load_mnist
from npgen.models import VAE
from npgen.plot import pyplot, save_figure

TRAIN = 50_000  # examples/vae.py keeps the last 10,000 training images for validation
TEST = 10_000
LOG_2PI = math.log(2 * math.pi)
ROWS_PER_PASS = 20_000  # decoded rows at a time: bounds the memory of K × N samples


# --- shared by the VAE studies -------------------------------------------------------------


def add_vae_flags(parser: argparse.ArgumentParser, out: str, epochs: int, images: int) -> None:
    """The flags of a study of a trained VAE: --run, or the sizes of the VAE trained in its place."""
    parser.add_argument(
        "--run", type=Path, default=None, help="study this run of examples/vae.py (its --out) instead of training"
    )
    parser.add_argument("--epochs", type=runs.positive_int, default=epochs, help="epochs of the VAE trained here")
    parser.add_argument("--zdim", type=runs.positive_int, default=20, help="latent size of the VAE trained here")
    parser.add_argument("--hidden", type=runs.positive_int, default=500, help="hidden units of the VAE trained here")
    parser.add_argument("--images", type=runs.positive_int, default=images, help=f"test images to study (≤ {TEST:,})")
    runs.add_run_flags(parser, out, TRAIN, resume=False)


def parse_vae_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The flags, those of add_vae_flags checked (a script checks its own, then calls set_up)."""
    args = runs.parse_run_args(parser)
    if args.images > TEST:
        parser.error(f"--images {args.images}: the test set has {TEST:,} images")
    if args.run is not None and not (args.run / "checkpoint.npz").is_file():
        parser.error(f"--run {args.run}: no checkpoint.npz there (give the --out of a run of examples/vae.py)")
    return args


def set_up(args: argparse.Namespace) -> None:
    """Once every flag is checked: the backend, the seed, and a writable, locked --out."""
    runs.use_backend(args.backend)
    npgen.manual_seed(args.seed)
    runs.prepare_out(args.out)


def binarized_test_images(n: int, seed: int) -> npgen.Tensor:
    """The first ``n`` test images, binarized as examples/vae.py does with the same --seed."""
    # static binarization draws its noise row by row: the first n rows equal those of the whole set's
    return npgen.Tensor(binarize(backend.on_device(load_mnist("test")[0][:n]), "static", seed=seed + 1))


def trained_vae(args: argparse.Namespace, after_epoch: Callable[[int, VAE], None] | None = None) -> VAE:
    """The VAE to study: the run in --run, or one trained here (the assignment's settings, --epochs).

    ``after_epoch(epoch, model)`` is called before training (epoch 0) and after every epoch.
    """
    if args.run is not None:
        try:
            run = npgen.load_run(args.run)
        except (OSError, ValueError, npgen.checkpoint.CheckpointError) as error:
            raise SystemExit(f"--run {args.run}: {error}") from None
        if run.flags["script"] != "vae.py":
            raise SystemExit(f"--run {args.run}: a run of {run.flags['script']}, not of examples/vae.py")
        model = run.model
        print(f"loaded the VAE of {args.run} (z_dim {model.z_dim}, hidden {model.hidden})")
        return model
    images = binarize(backend.on_device(load_mnist("train")[0][: args.train_size]), "static", seed=args.seed)
    model = VAE(hidden=args.hidden, z_dim=args.zdim)
    opt = npgen.optim.Adam(model.parameters(), lr=1e-3)
    if after_epoch:
        after_epoch(0, model)
    for epoch in range(1, args.epochs + 1):
        losses = []
        batches = runs.progress(DataLoader(images, batch_size=128), f"training, epoch {epoch}/{args.epochs}")
        for step, x in enumerate(batches, 1):
            loss = model.loss(x)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            runs.stop_if_not_finite(losses[-1], "loss", epoch, step, None)
        print(f"epoch {epoch}: train −ELBO {np.mean(losses):.2f} nats")
        if after_epoch:
            after_epoch(epoch, model)
    model.eval()
    return model


def describe(args: argparse.Namespace, model: VAE) -> dict[str, Any]:
    """Where the studied VAE came from, for results.json."""
    if args.run is not None:
        return {"run": str(args.run), "z_dim": model.z_dim, "hidden": model.hidden}
    return {"trained_here_epochs": args.epochs, "train_size": args.train_size, "z_dim": model.z_dim}


def decoder_log_likelihood(model: VAE, x: npgen.Tensor, z: Any) -> Any:
    """log p(x|z) = Σ_m x_m ℓ_m − softplus(ℓ_m), ℓ = decode(z), for z of shape (n, N, z_dim): (n, N)."""
    n, batch, z_dim = z.shape
    logits = model.decode(npgen.Tensor(z.reshape(n * batch, z_dim))).reshape(n, batch, -1)
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").data.sum(axis=2)


def passes(k: int, batch: int) -> list[int]:
    """Sample counts per pass that add up to ``k``, each pass decoding about ROWS_PER_PASS rows."""
    per_pass = max(1, ROWS_PER_PASS // batch)
    return [min(per_pass, k - start) for start in range(0, k, per_pass)]


def importance_terms(model: VAE, x: npgen.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """For k draws z ~ q(z|x) per image: log p(x|z) and log p(z) − log q(z|x), each (k, N), float64."""
    with npgen.no_grad():
        mu, logvar = (t.data for t in model.encode(x))
        xp, rng = backend.get_array_module(mu), backend.backend_of(mu).rng
        std = xp.exp(0.5 * logvar)
        decoded, prior_over_q = [], []
        for n in passes(k, len(x)):
            eps = rng.normal((n, *mu.shape), mu.dtype)
            z = mu + std * eps
            log_pz = -0.5 * (z * z + LOG_2PI).sum(axis=2)
            log_qz = -0.5 * (eps * eps + logvar + LOG_2PI).sum(axis=2)  # (z − μ)/σ = ε
            decoded.append(backend.to_numpy(decoder_log_likelihood(model, x, z)))
            prior_over_q.append(backend.to_numpy(log_pz - log_qz))
    return np.concatenate(decoded).astype(np.float64), np.concatenate(prior_over_q).astype(np.float64)


def importance_log_weights(model: VAE, x: npgen.Tensor, k: int) -> np.ndarray:
    """log w = log p(x|z) + log p(z) − log q(z|x) for k draws z ~ q(z|x) per image: (k, N), float64."""
    log_px_given_z, log_prior_over_q = importance_terms(model, x, k)
    return log_px_given_z + log_prior_over_q


# --- this study ------------------------------------------------------------------------------


def prior_log_weights(model: VAE, x: npgen.Tensor, k: int) -> np.ndarray:
    """log w = log p(x|z_k) for k draws z_k ~ N(0, I): (k, N), float64.

    Prior samples do not depend on x, so one batch of z serves every image, and
    log p(x|z) = x·ℓ − Σ_m softplus(ℓ_m) becomes one matrix product over images and samples.
    """
    rng = backend.backend_of(x.data).rng
    chunks = []
    with npgen.no_grad():
        for n in passes(k, 1):
            logits = model.decode(npgen.Tensor(rng.normal((n, model.z_dim), x.dtype)))  # (n, 784)
            log_px = (logits @ x.transpose(0, 1)) - F.softplus(logits).sum(axis=1, keepdims=True)  # (n, N)
            chunks.append(backend.to_numpy(log_px.data))
    return np.concatenate(chunks).astype(np.float64)


def estimate(log_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image: log p̂(x) = logsumexp log w − log K, and ESS = (Σ w)² / Σ w² (computed in logs)."""
    log_sum = logsumexp(log_w, axis=0)
    return log_sum - math.log(len(log_w)), np.exp(2 * log_sum - logsumexp(2 * log_w, axis=0))


def sample_counts(largest: int) -> list[int]:
    """1, 10, 100, … up to ``largest`` (and ``largest`` itself)."""
    counts = [10**i for i in range(int(math.log10(largest)) + 1) if 10**i < largest]
    return [*counts, largest]


def study(draw: Callable[[int], np.ndarray], counts: list[int], repeats: int, name: str) -> dict[str, Any]:
    """Estimate and ESS, ``repeats`` times for each K in ``counts``: their mean and spread over repeats."""
    rows = {"k": counts, "mean_estimate": [], "spread": [], "mean_ess": [], "estimates": []}
    for k in counts:
        runs_k = [estimate(draw(k)) for _ in runs.progress(range(repeats), f"{name}, K={k}")]
        log_px = np.stack([r[0] for r in runs_k])  # (repeats, N)
        rows["estimates"].append(log_px)
        rows["mean_estimate"].append(float(log_px.mean()))
        rows["spread"].append(float(log_px.std(axis=0, ddof=1).mean()))  # over repeats, then averaged over images
        rows["mean_ess"].append(float(np.mean([r[1] for r in runs_k])))
    return rows


def prior_cost_per_dimension(model: VAE, x: npgen.Tensor) -> np.ndarray:
    """log10 of ∫ q(z|x)²/p(z) dz per image and latent dimension: (N, z_dim); their sum is log10 of the
    prior samples per effective sample if the posterior were q(z|x). Infinite where s_d² ≥ 2."""
    with npgen.no_grad():
        mu, logvar = (backend.to_numpy(t.data).astype(np.float64) for t in model.encode(x))
    var = np.exp(logvar)
    with np.errstate(invalid="ignore", divide="ignore"):
        nats = mu**2 / (2 - var) - 0.5 * logvar - 0.5 * np.log(2 - var)
    return np.where(var < 2, nats, np.inf) / math.log(10)


def finite_or_none(value: float) -> float | None:
    """A number for results.json: JSON has no ∞ (a posterior wider than √2 makes the prior's cost infinite)."""
    return float(value) if np.isfinite(value) else None


def plot(prior: dict, importance: dict, reference: float, cost: np.ndarray, path: Path) -> None:
    """Estimate, spread and ESS against K for both samplers, and the prior's cost against the latent size."""
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    axes = axes.ravel()
    for rows, label, color in ((prior, "prior p(z)", "tab:red"), (importance, "importance, q(z|x)", "tab:blue")):
        axes[0].errorbar(rows["k"], rows["mean_estimate"], yerr=rows["spread"], label=label, color=color, capsize=3)
        axes[1].plot(rows["k"], rows["spread"], "o-", label=label, color=color)
        axes[2].plot(rows["k"], rows["mean_ess"], "o-", label=label, color=color)
    axes[0].axhline(reference, color="k", ls=":", label="reference (pooled importance samples)")
    axes[0].set(xscale="log", xlabel="samples K", ylabel="log p̂(x), mean over images (nats)", title="estimate ± spread")
    axes[1].set(xscale="log", yscale="log", xlabel="samples K", ylabel="std over repeats (nats)", title="spread")
    k = np.array(importance["k"] + prior["k"])
    axes[2].plot(np.sort(k), np.sort(k), color="gray", ls=":", label="ESS = K")
    axes[2].set(xscale="log", yscale="log", xlabel="samples K", ylabel="(Σw)²/Σw²", title="effective sample size")
    # the dimensions in the order of their mean cost: the curve is log10 of the samples needed by a
    # posterior that narrows in only the first d of them
    order = np.argsort(-cost.mean(axis=0))
    cumulative = np.cumsum(cost[:, order], axis=1)
    dims = np.arange(1, cost.shape[1] + 1)
    low, median, high = np.percentile(cumulative, [10, 50, 90], axis=0, method="nearest")  # no ∞ − ∞
    axes[3].plot(dims, median, "o-", color="tab:red", label="median image")
    axes[3].fill_between(dims, low, high, color="tab:red", alpha=0.2, label="10–90% of images")
    axes[3].set(
        xlabel="latent dimensions counted",
        ylabel="log10 prior samples per effective sample",
        title="if p(z|x) were q(z|x): ∫q²/p dz",
    )
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, tight=False)


def parse_args() -> argparse.Namespace:
    """Flags: the VAE to study, the images, the sample counts and repeats."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    add_vae_flags(parser, "runs/vae_log_likelihood", epochs=3, images=100)
    parser.add_argument("--prior-k", type=runs.positive_int, default=10_000, help="the most prior samples per estimate")
    parser.add_argument("--importance-k", type=runs.positive_int, default=1000, help="the most samples from q(z|x)")
    parser.add_argument("--repeats", type=runs.positive_int, default=10, help="estimates per K and image (≥ 2)")
    args = parse_vae_args(parser)
    if args.repeats < 2:
        parser.error("--repeats: at least 2, to measure a spread")
    if max(args.prior_k, args.importance_k) > 1_000_000:
        parser.error("--prior-k and --importance-k: at most 1,000,000")
    set_up(args)
    return args


def main() -> None:
    """Estimate log p(x) both ways against K, and write results.json and log_likelihood.png."""
    args = parse_args()
    model = trained_vae(args)
    x = binarized_test_images(args.images, args.seed)
    prior = study(lambda k: prior_log_weights(model, x, k), sample_counts(args.prior_k), args.repeats, "prior")
    importance = study(
        lambda k: importance_log_weights(model, x, k), sample_counts(args.importance_k), args.repeats, "importance"
    )
    # every repeat of the largest K pooled: repeats × K samples from q, the best estimate at hand
    largest = importance["estimates"][-1]
    reference_per_image = logsumexp(largest, axis=0) - math.log(len(largest))
    reference = float(reference_per_image.mean())
    cost = prior_cost_per_dimension(model, x)
    samples_needed = cost.sum(axis=1)

    for rows in (prior, importance):
        rows.pop("estimates")
    results = {
        "args": runs.flags(args),
        "model": describe(args, model),
        "images": args.images,
        "repeats": args.repeats,
        "prior": prior,
        "importance": importance,
        "reference_log_px": reference,
        "prior_samples_per_effective_sample_log10": {
            "median": finite_or_none(np.percentile(samples_needed, 50, method="nearest")),
            "min": finite_or_none(samples_needed.min()),
            "max": finite_or_none(samples_needed.max()),
            "mean_per_dimension_sorted": [finite_or_none(c) for c in np.sort(cost.mean(axis=0))[::-1]],
        },
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    plot(prior, importance, reference, cost, args.out / "log_likelihood.png")

    print(f"log p(x), mean over {args.images} test images (reference, pooled importance samples: {reference:.2f} nats)")
    for rows, name in ((prior, "prior     "), (importance, "importance")):
        for k, m, s, e in zip(rows["k"], rows["mean_estimate"], rows["spread"], rows["mean_ess"]):
            print(f"  {name} K={k:<7d} estimate {m:9.2f}  spread {s:7.3f}  ESS {e:9.1f}")
    needed = results["prior_samples_per_effective_sample_log10"]["median"]
    needed = "∞" if needed is None else f"{needed:.1f}"
    print(f"if the posterior were q(z|x), the prior would need 10^{needed} samples per effective sample (median)")
    print(f"wrote {args.out}/results.json and log_likelihood.png")


if __name__ == "__main__":
    with runs.clear_errors():
        main()
