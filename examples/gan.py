"""Train npgen's GAN on MNIST and measure its samples with npgen's own evaluation classifier.

    python examples/gan.py --epochs 50
    python examples/gan.py --epochs 50 --beta1 0.9 --g-loss saturating --out runs/gan_saturating

Images are scaled to [−1, 1] (the generator ends in tanh). With --ema β (default 0.999; 0 turns
it off) the samples, figures and scores come from an exponential moving average of the
generator's weights (``npgen.optim.ExponentialMovingAverage``), its BatchNorm statistics measured
afresh for the averaged weights before each use. Written to --out:

    metrics.json         per-epoch L_D, L_G, D(x), D(G(z)), seconds, coverage; final sample-quality scores
    checkpoint.npz       after every epoch (both generators); --resume continues from it
    losses.png           L_D and L_G per epoch, with their equilibrium values 2 ln 2 and ln 2
    coverage.png         each digit's share of the samples, IS and FD, every --coverage-every epochs
    samples_epoch_*.png  5×5 samples from fixed noise: before training, after epoch 1, halfway, at the end
    grids/step_*.png     the same grid every --save-interval steps
    interpolation.png    9 images on the line between two latent points of different digits (when --n-eval > 0)
    saturation.png       the generator's gradient norm at the start, for both loss forms
    samples.npy          10,000 samples in [0, 1] (score them: python -m npgen.metrics)
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

import npgen
from npgen import backend, checkpoint, metrics, runs
from npgen.data import DataLoader, load_mnist
from npgen.models import Discriminator, Generator
from npgen.models.gan import discriminator_step, generator_loss, train_step
from npgen.optim import ExponentialMovingAverage, update_batch_norm
from npgen.plot import pyplot, save_curves, save_figure, save_grid

TRAIN = 60_000
# they extend a run or only shape its figures and scores
MAY_CHANGE_ON_RESUME = {"epochs", "n_eval", "save_interval", "coverage_every", "coverage_samples"}
ADDED_FLAGS = {"ema": 0.0}  # checkpoints from before --ema existed trained no averaged generator
STATISTICS_BATCHES = 20  # batches of 256 latent points that measure the averaged generator's BatchNorm statistics


def parse_args() -> argparse.Namespace:
    """Command-line flags (those of the original assignment, plus run management)."""
    parser = argparse.ArgumentParser(
        description="Train a GAN on MNIST.", formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--latent-dim", type=runs.positive_int, default=100, help="size of the generator's noise input z"
    )
    parser.add_argument(
        "--batch-size", type=runs.positive_int, default=64, help="real images per step (and as many fakes)"
    )
    parser.add_argument("--lr", type=runs.positive_float, default=2e-4, help="Adam's learning rate, both networks")
    parser.add_argument("--epochs", type=runs.positive_int, default=200, help="passes over the training images")
    parser.add_argument("--save-interval", type=runs.positive_int, default=500, help="steps between sample grids")
    parser.add_argument("--beta1", type=runs.unit_interval, default=0.5, help="Adam β1 (the assignment's used 0.9)")
    parser.add_argument(
        "--g-loss",
        choices=["non-saturating", "saturating"],
        default="non-saturating",
        help="the generator's loss: −log D(G(z)), or log(1 − D(G(z)))",
    )
    parser.add_argument(
        "--n-eval", type=runs.nonnegative_int, default=10_000, help="samples scored at the end (0 skips; else ≥ 2)"
    )
    parser.add_argument(
        "--ema",
        type=runs.unit_interval,
        default=0.999,
        help="sample from an average of G's weights, decay β (0: off, the assignment's recipe)",
    )
    parser.add_argument(
        "--coverage-every", type=runs.nonnegative_int, default=1, help="epochs between coverage scores (0: never)"
    )
    parser.add_argument(
        "--coverage-samples", type=runs.positive_int, default=2000, help="samples scored for coverage (≥ 2)"
    )
    runs.add_run_flags(parser, "runs/gan", TRAIN)
    args = runs.parse_run_args(parser)
    if args.train_size < args.batch_size:  # every batch is full (a partial one would skew BatchNorm's statistics)
        parser.error(
            f"--train-size {args.train_size} is smaller than --batch-size {args.batch_size}: not one full batch"
        )
    if args.batch_size < 2:
        parser.error("--batch-size 1: the generator's batch normalisation needs at least 2 images per batch")
    if args.n_eval == 1:
        parser.error("--n-eval 1: scoring needs at least 2 samples (a covariance), or 0 to skip it")
    if args.coverage_samples < 2:
        parser.error(f"--coverage-samples {args.coverage_samples}: scoring needs at least 2 samples (a covariance)")
    return args


def generate(generator: Generator, z: np.ndarray) -> np.ndarray:
    """Images in [0, 1] (host array) from latent points z, with the generator in evaluation mode."""
    generator.eval()
    with npgen.no_grad():
        images = generator(npgen.Tensor(backend.on_device(z))).numpy()
    generator.train()
    return (images + 1) / 2


def gradient_norm(module: npgen.nn.Module) -> float:
    """‖∇θ‖ over all parameters of ``module`` that have a gradient."""
    return math.sqrt(
        sum(float((backend.to_numpy(p.grad) ** 2).sum()) for p in module.parameters() if p.grad is not None)
    )


def saturation_figure(generator: Generator, discriminator: Discriminator, real: npgen.Tensor, path: Path) -> dict:
    """‖∇θ L_G‖ for both loss forms while a copy of D learns to reject G's initial samples.

    Early in training D separates real from fake easily (D(G(z)) → 0). The saturating loss
    log(1 − D(G(z))) is flat there, so its gradient vanishes; −log D(G(z)) is steep there.
    """
    plt = pyplot()
    critic = Discriminator()
    critic.load_state_dict(discriminator.state_dict())
    opt = npgen.optim.Adam(critic.parameters(), lr=2e-4, betas=(0.5, 0.999))
    generator_state = {k: v.copy() for k, v in generator.state_dict().items()}  # its BatchNorm statistics move
    z = generator.sample_latent(len(real))
    with npgen.no_grad():
        fake = generator(z)  # G stays fixed here: only the critic learns
    norms: dict[str, list[float]] = {"non-saturating": [], "saturating": []}
    d_fake, checkpoints = [], [0, 10, 25, 50, 100, 200]
    for step in range(checkpoints[-1] + 1):
        if step in checkpoints:
            for form in norms:
                generator.zero_grad()
                generator_loss(critic(generator(z)), saturating=form == "saturating").backward()
                norms[form].append(gradient_norm(generator))
            d_fake.append(critic.probability(fake).mean().item())
        discriminator_step(critic, opt, real, fake)
    generator.zero_grad()
    generator.load_state_dict(generator_state)
    fig, ax = plt.subplots(figsize=(6, 4))
    positions = range(len(checkpoints))  # evenly spaced: 0, 10 and 25 steps would crowd on a linear axis
    for form, values in norms.items():
        ax.semilogy(positions, values, marker="o", label=f"{form} L_G")
    ax.set_xticks(positions, [f"{s}\n{p:.2g}" for s, p in zip(checkpoints, d_fake)])
    ax.set(xlabel="discriminator-only steps from initialisation (below: D(G(z)) there)")
    ax.set(ylabel="generator gradient norm ‖∇θ L_G‖")
    ax.set_title("The saturating loss loses its gradient once D rejects the fakes", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)
    return {"d_steps": checkpoints, "d_of_g_z": d_fake, **{f"grad_norm_{k}": v for k, v in norms.items()}}


def interpolation_figure(generator: Generator, classifier: npgen.nn.Sequential, z: np.ndarray, path: Path) -> None:
    """9 images on the straight line between two latent points whose samples are different digits."""
    _, probabilities = metrics.features_and_probabilities(classifier, generate(generator, z[:100]))
    labels = probabilities.argmax(axis=1)
    a, others = 0, np.flatnonzero(labels != labels[0])
    b = int(others[0]) if len(others) else 1  # a collapsed generator may offer no second digit
    t = np.linspace(0, 1, 9, dtype=np.float32)[:, None]
    images = generate(generator, (1 - t) * z[a] + t * z[b])
    _, path_probabilities = metrics.features_and_probabilities(classifier, images)
    captions = [str(k) for k in path_probabilities.argmax(axis=1)]
    save_grid(images, path, nrow=1, title=f"latent interpolation from a {labels[a]} to a {labels[b]}", labels=captions)


def measure_statistics(average: ExponentialMovingAverage, seed: int) -> Generator:
    """The averaged generator, its BatchNorm statistics measured for its own weights; ready to sample.

    Its buffers hold the live generator's statistics (copied at each update), which the averaged
    weights did not produce; a few batches of latent points, from a stream of their own (the same
    on every call, so a figure does not depend on when it was drawn), measure them afresh.
    """
    rng = np.random.default_rng(seed + 4)
    generator = average.module
    batches = [
        npgen.Tensor(backend.on_device(rng.standard_normal((256, generator.latent_dim), np.float32)))
        for _ in range(STATISTICS_BATCHES)
    ]
    update_batch_norm(generator, batches)
    return generator


class Coverage:
    """Each epoch's look at mode collapse: the classifier's scores of samples from fixed latent points."""

    def __init__(self, z: np.ndarray):
        self.z = z
        self.classifier = metrics.load_classifier()
        self.reference, _ = metrics.features_and_probabilities(self.classifier, load_mnist("test")[0])

    def score(self, generator: Generator) -> dict:
        """Class fractions, inception score and Fréchet distance of the generator's samples at ``z``."""
        row = metrics.score(generate(generator, self.z), self.classifier, self.reference)
        return {k: row[k] for k in ("class_fractions", "inception_score", "frechet_distance")}


def coverage_figure(history: list[dict], path: Path) -> None:
    """Each digit's share of the samples over training (a collapsing GAN drops some to 0), then IS and FD."""
    plt = pyplot()
    scored = [h for h in history if "coverage" in h]
    if not scored:
        return
    epochs = [h["epoch"] for h in scored]
    fractions = np.array([h["coverage"]["class_fractions"] for h in scored])
    fig, (ax, ax_is, ax_fd) = plt.subplots(1, 3, figsize=(14, 4), layout="constrained")
    colors = plt.get_cmap("tab10")
    for digit in range(10):
        ax.plot(epochs, fractions[:, digit], color=colors(digit), label=str(digit))
        ax.annotate(
            str(digit),
            (epochs[-1], fractions[-1, digit]),
            color=colors(digit),
            fontsize=8,
            xytext=(3, -3),
            textcoords="offset points",
        )
    ax.axhline(0.1, color="black", linestyle=":", linewidth=1)
    title = "each digit's share (1/10: dotted)" + (", averaged generator" if "coverage_live" in scored[0] else "")
    ax.set(xlabel="epoch", ylabel="share of the samples", title=title, ylim=(0, None))
    ax.legend(ncol=5, fontsize=7, loc="upper right")
    averaged = "coverage_live" in scored[0]  # then the shares above are the averaged generator's
    for key, label, style in (("coverage", "averaged" if averaged else None, "-"), ("coverage_live", "live", "--")):
        if key in scored[0]:
            ax_is.plot(epochs, [h[key]["inception_score"] for h in scored], style, marker=".", label=label)
            ax_fd.plot(epochs, [h[key]["frechet_distance"] for h in scored], style, marker=".", label=label)
    ax_is.set(xlabel="epoch", title="inception score (10 at best)")
    ax_fd.set(xlabel="epoch", title="Fréchet distance to the test set (0 at best)")
    ax_fd.set_yscale("log")
    if averaged:
        ax_is.legend(title="generator", fontsize=8)
        ax_fd.legend(title="generator", fontsize=8)
    for a in (ax, ax_is, ax_fd):
        a.grid(alpha=0.3)
    fig.suptitle("Coverage over training: samples from fixed latent points, scored by npgen's classifier", fontsize=9)
    save_figure(fig, path, dpi=110)


def main() -> None:
    """Train, save grids along the way, score coverage each epoch, and score 10,000 samples at the end."""
    args = parse_args()
    runs.use_backend(args.backend)
    npgen.manual_seed(args.seed)
    runs.prepare_out(args.out, args.resume)
    (args.out / "grids").mkdir(exist_ok=True)
    config = runs.configuration(args, MAY_CHANGE_ON_RESUME)
    path, tags = args.out / "checkpoint.npz", runs.figure_epochs(args.epochs)
    if args.resume:  # flags that would change the run are refused now, before the data is read
        runs.check_resume(path, config, args.epochs, ADDED_FLAGS)
    images, _ = load_mnist("train")
    real_images = backend.on_device(images[: args.train_size].astype(np.float32) / 127.5 - 1)

    generator, discriminator = Generator(args.latent_dim), Discriminator()
    betas = (args.beta1, 0.999)
    opt_g = npgen.optim.Adam(generator.parameters(), lr=args.lr, betas=betas)
    opt_d = npgen.optim.Adam(discriminator.parameters(), lr=args.lr, betas=betas)
    average = ExponentialMovingAverage(generator, args.ema) if args.ema else None
    averaged = {"generator_ema": average} if average else {}

    def sampler() -> Generator:
        """The generator that samples: the averaged one (statistics measured) when --ema is on."""
        return measure_statistics(average, args.seed) if average else generator

    # Figures draw their noise from a stream of their own: making them must not change training.
    figure_rng = np.random.default_rng(args.seed + 2)
    grid_z = figure_rng.standard_normal((25, args.latent_dim), np.float32)
    coverage_z = np.random.default_rng(args.seed + 3).standard_normal((args.coverage_samples, args.latent_dim))
    coverage = Coverage(coverage_z.astype(np.float32)) if args.coverage_every else None

    state = {"history": [], "step": 0}
    if args.resume:
        objects = dict(generator=generator, discriminator=discriminator, opt_g=opt_g, opt_d=opt_d, **averaged)
        state = runs.resume(path, config, args.epochs, ADDED_FLAGS, **objects)
        print(f"resumed from {path} after epoch {len(state['history'])}")
    else:
        tag = tags[0]
        save_grid(generate(generator, grid_z), args.out / f"samples_{tag}.png", nrow=5, title=tag.replace("_", " "))
        first_batch = npgen.Tensor(real_images[: args.batch_size])
        state["saturation"] = saturation_figure(generator, discriminator, first_batch, args.out / "saturation.png")
    history, step = state["history"], state["step"]

    for epoch in range(len(history) + 1, args.epochs + 1):
        start, sums = time.perf_counter(), {}
        batches = runs.progress(
            DataLoader(real_images, batch_size=args.batch_size, drop_last=True), f"epoch {epoch}/{args.epochs}"
        )
        for real in batches:
            stats = train_step(generator, discriminator, opt_g, opt_d, real, saturating=args.g_loss == "saturating")
            if average:
                average.update(generator)
            sums = {k: sums.get(k, 0.0) + v for k, v in stats.items()}  # 0-d tensors: summed on the device
            step += 1
            # the guard's one read per step, after both updates were queued: it names the step that diverged
            runs.stop_if_not_finite(float(stats["loss_d"] + stats["loss_g"]), "loss", epoch, step, path)
            if step % args.save_interval == 0:
                grid = generate(sampler(), grid_z)
                save_grid(grid, args.out / "grids" / f"step_{step:06d}.png", nrow=5, title=f"step {step}")
        means = {k: v.item() / len(batches) for k, v in sums.items()}  # the epoch's means: one read each
        history.append({"epoch": epoch, **means, "seconds": time.perf_counter() - start})
        line = (
            f"epoch {epoch:3d}  L_D {means['loss_d']:.3f}  L_G {means['loss_g']:.3f}  D(x) {means['d_real']:.3f}"
            f"  D(G(z)) {means['d_fake']:.3f}  {history[-1]['seconds']:5.1f} s"
        )
        model = sampler()  # the averaged generator's statistics, measured once: for the scores, figures and save
        if coverage and epoch % args.coverage_every == 0:  # by the epoch alone: an extended run scores as a longer one
            history[-1]["coverage"] = scores = coverage.score(model)
            if average:  # the live generator too: what the averaging changes, epoch by epoch
                history[-1]["coverage_live"] = coverage.score(generator)
            fractions = scores["class_fractions"]
            line += f"  IS {scores['inception_score']:.2f}  FD {scores['frechet_distance']:.1f}"
            line += f"  classes {min(fractions):.3f}–{max(fractions):.3f}"
        print(line, flush=True)
        if epoch in tags:
            tag = tags[epoch]
            save_grid(generate(model, grid_z), args.out / f"samples_{tag}.png", nrow=5, title=tag.replace("_", " "))
        checkpoint.save(
            path,
            generator=generator,
            discriminator=discriminator,
            opt_g=opt_g,
            opt_d=opt_d,
            **averaged,
            history=history,
            step=step,
            saturation=state.get("saturation"),
            config=config,
        )

    curves = {"L_D": [h["loss_d"] for h in history], "L_G": [h["loss_g"] for h in history]}
    curves.update({"2 ln 2": [2 * math.log(2)] * len(history), "ln 2": [math.log(2)] * len(history)})
    save_curves(curves, args.out / "losses.png", "epoch", "loss (nats)", f"GAN losses ({args.g_loss} L_G)")
    coverage_figure(history, args.out / "coverage.png")
    results = {"args": runs.flags(args), "epochs": history, "saturation": state.get("saturation")}
    # the median, which one epoch that shared the machine does not move
    results["seconds_per_epoch"] = float(np.median([h["seconds"] for h in history])) if history else None
    if args.n_eval:
        eval_z = figure_rng.standard_normal((args.n_eval, args.latent_dim), np.float32)
        model = sampler()
        samples = generate(model, eval_z)
        np.save(args.out / "samples.npy", samples)
        classifier = coverage.classifier if coverage else metrics.load_classifier()
        reference, rows = metrics.reference_scores(classifier)
        results["quality"] = {"gan_samples": metrics.score(samples, classifier, reference)}
        if average:
            results["quality"]["gan_samples_live"] = metrics.score(generate(generator, eval_z), classifier, reference)
        results["quality"].update(rows)
        interpolation_figure(
            model,
            classifier,
            figure_rng.standard_normal((100, args.latent_dim), np.float32),
            args.out / "interpolation.png",
        )
        for name, row in results["quality"].items():
            scores = f"IS {row['inception_score']:.2f}  FD {row['frechet_distance']:8.2f}"
            scores += f"  confidence {row['confidence']:.3f}"
            print(f"{name:16s} {scores}  class fractions {row['class_fractions']}")
    (args.out / "metrics.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}/")


if __name__ == "__main__":
    with runs.clear_errors():
        main()
