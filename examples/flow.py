"""Train npgen's Real NVP flow on MNIST pixels and report exact bits per dimension.

    python examples/flow.py --epochs 40

Trains on the first 50,000 training images, validates on the last 10,000, and scores the
official 10,000 test images at the end (integer pixels 0..255, no rescaling). Written to --out:

    metrics.json         train/validation bits/dim, learning rate, seconds, peak memory per epoch; test bits/dim
    checkpoint.npz       after every epoch; --resume continues from it
    best.npz             the epoch with the lowest validation bits/dim (also scored on the test set)
    bpd.png              train and validation bits/dim per epoch
    samples_*.png        5×5 samples after epoch 1, halfway and at the end (temperature 1 and 0.7)
    samples.npy          --n-samples samples of the best epoch, temperature 1, in [0, 1] (python -m npgen.metrics)
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np

import npgen
from npgen import backend, checkpoint, runs
from npgen.data import DataLoader, load_mnist
from npgen.models import Flow
from npgen.optim import cosine_annealing
from npgen.plot import save_curves, save_grid

VALIDATION = 10_000
TRAIN = 60_000 - VALIDATION


def parse_args() -> argparse.Namespace:
    """Command-line flags (those of the original assignment, plus run management)."""
    parser = argparse.ArgumentParser(
        description="Train a Real NVP flow on MNIST.", formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--epochs", type=runs.positive_int, default=40, help="passes over the training images")
    parser.add_argument("--batch-size", type=runs.positive_int, default=128, help="images per Adam step")
    parser.add_argument(
        "--lr", type=runs.positive_float, default=1e-3, help="Adam's learning rate (the peak under cosine)"
    )
    parser.add_argument(
        "--lr-schedule",
        choices=("cosine", "constant"),
        default="cosine",
        help="cosine: anneal the rate from --lr to 0 over the run's steps; constant: --lr throughout",
    )
    parser.add_argument("--n-flows", type=runs.positive_int, default=4, help="pairs of couplings (8 couplings for 4)")
    parser.add_argument(
        "--hidden", type=runs.positive_int, default=1024, help="units of each coupling network's hidden layers"
    )
    parser.add_argument(
        "--clip-grad",
        type=runs.nonnegative_float,
        default=10.0,
        help="clip the global gradient norm to this (0: off); typical norms are about 1",
    )
    parser.add_argument(
        "--n-samples", type=runs.nonnegative_int, default=10_000, help="samples written to samples.npy (0: none)"
    )
    runs.add_run_flags(parser, "runs/flow", TRAIN)
    return runs.parse_run_args(parser)


def memory_mib() -> dict[str, float | None]:
    """Peak resident host memory (Linux reports kilobytes) and, on a GPU, cupy's pool (its high-water mark)."""
    on_gpu = backend.get_backend().name == "cupy"
    return {
        "peak_memory_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "device_memory_mib": backend.device_memory_mib() if on_gpu else None,
    }


def memory_report(memory: dict[str, float | None]) -> str:
    """``memory_mib``'s numbers as one line."""
    device = memory["device_memory_mib"]
    return f"peak {memory['peak_memory_mib']:.0f} MiB" + ("" if device is None else f", GPU pool {device:.0f} MiB")


def mean_bpd(flow: Flow, images: object, batch_size: int = 500) -> float:
    """Mean bits/dim over ``images`` (one dequantization sample each)."""
    with npgen.no_grad():
        total = sum(flow.bpd(x).sum().item() for x in DataLoader(images, batch_size=batch_size, shuffle=False))
    return total / len(images)


def best_epoch(history: list[dict]) -> int:
    """The epoch with the lowest validation bits/dim (the last of equals, as best.npz is written)."""
    return min(reversed(history), key=lambda h: h["val_bpd"])["epoch"]


def repair_best(best_path: Path, flow: Flow, history: list[dict]) -> None:
    """Make best.npz hold the best epoch's weights after a run stopped between the two saves of an epoch.

    checkpoint.npz is written first, then best.npz when the epoch is the best so far. If best.npz
    is behind, the epoch it misses must be the checkpoint's last one, and the weights just
    loaded are that epoch's: they are written to best.npz. Any other mismatch is an error.
    """
    if not history:
        return
    best = best_epoch(history)
    try:
        saved = checkpoint.read_metadata(best_path).get("history") or []
    except (FileNotFoundError, checkpoint.CheckpointError):
        saved = []  # missing or unreadable: it is rewritten below if it can be
    if saved and all("val_bpd" in h for h in saved) and best_epoch(saved) == best:
        return
    if best != history[-1]["epoch"]:
        raise SystemExit(f"{best_path} does not hold the best epoch ({best}) of {best_path.parent / 'checkpoint.npz'}")
    print(f"{best_path} was one save behind the checkpoint; writing epoch {best} to it")
    checkpoint.save(best_path, flow=flow, history=history)


def refuse_extending_a_cosine_run(path: Path, args: argparse.Namespace) -> None:
    """Stop a --resume that changes --epochs of a cosine-schedule run, saying why it cannot be done."""
    try:
        saved = checkpoint.read_metadata(path).get("config") or {}
    except (FileNotFoundError, checkpoint.CheckpointError):
        return  # no readable checkpoint: runs.check_resume names the file and what is wrong
    if saved.get("lr_schedule") == "cosine" and args.lr_schedule == "cosine" and saved.get("epochs") != args.epochs:
        raise SystemExit(
            f"--resume: --epochs was {saved.get('epochs')}, now {args.epochs}: this run's cosine schedule anneals"
            f" the learning rate to 0 over its {saved.get('epochs')} epochs, and each step's rate depends on that"
            " length, so other epochs would change the rates of the steps already taken (at the end it has"
            f" reached 0 and would jump back up). Resume with --epochs {saved.get('epochs')}, or start a new run;"
            " a --lr-schedule constant run can be extended."
        )


def save_sample_file(flow: Flow, n: int, seed: int, out: Path) -> None:
    """``n`` samples at temperature 1 as samples.npy, pixels in [0, 1] like the other models' (for npgen.metrics)."""
    rng = np.random.default_rng(seed + 3)  # a stream of its own: the file does not depend on anything else drawn
    batches = []
    with npgen.no_grad():
        for start in range(0, n, 1000):
            z = rng.standard_normal((min(1000, n - start), flow.dim), np.float32)
            batches.append(flow.sample(len(z), 1.0, z=backend.on_device(z)).numpy() / 255)
    np.save(out / "samples.npy", np.concatenate(batches).astype(np.float32))


def save_samples(flow: Flow, z: np.ndarray, out: Path, tag: str) -> None:
    """5×5 samples from fixed noise at temperature 1 and 0.7 (lower temperature: cleaner, less varied)."""
    for temperature in (1.0, 0.7):
        images = flow.sample(25, temperature, z=backend.on_device(z))
        title = f"samples, {tag.replace('_', ' ')}, T = {temperature}"
        save_grid(images.numpy() / 255, out / f"samples_{tag}_T{temperature}.png", nrow=5, title=title)


def main() -> None:
    """Train, validate every epoch, score the test set, write metrics, checkpoints and figures."""
    args = parse_args()
    runs.use_backend(args.backend)
    npgen.manual_seed(args.seed)
    runs.prepare_out(args.out, args.resume)
    # --epochs may grow on --resume under a constant rate; a cosine schedule is laid over the run's epochs
    config = runs.configuration(args, {"epochs", "n_samples"} if args.lr_schedule == "constant" else {"n_samples"})
    path, best_path = args.out / "checkpoint.npz", args.out / "best.npz"
    added = {"lr_schedule": "constant"}  # checkpoints from before --lr-schedule existed trained at a constant rate
    if args.resume:  # flags that would change the run are refused now, before the data is read
        refuse_extending_a_cosine_run(path, args)
        runs.check_resume(path, config, args.epochs, added)
    train_images, _ = load_mnist("train")
    test_images, _ = load_mnist("test")
    on_device = backend.on_device
    train = on_device(train_images[:-VALIDATION][: args.train_size])
    validation, test = on_device(train_images[-VALIDATION:]), on_device(test_images)

    flow = Flow(n_flows=args.n_flows, n_hidden=args.hidden)
    opt = npgen.optim.Adam(flow.parameters(), lr=args.lr)
    sample_z = np.random.default_rng(args.seed + 2).standard_normal((25, flow.dim), np.float32)
    tags = runs.figure_epochs(args.epochs)
    n_params = sum(p.size for p in flow.parameters())
    print(f"Real NVP with {2 * args.n_flows} couplings, {n_params / 1e6:.1f}M parameters")

    history: list[dict] = []
    if args.resume:
        history = runs.resume(path, config, args.epochs, added, flow=flow, optimizer=opt)["history"]
        print(f"resumed from {path} after epoch {len(history)}")
        repair_best(best_path, flow, history)

    loader = DataLoader(train, batch_size=args.batch_size)  # reshuffled on every pass
    steps_per_epoch = len(loader)
    for epoch in range(len(history) + 1, args.epochs + 1):
        start, losses, grad_norms = time.perf_counter(), [], []
        batches = runs.progress(loader, f"epoch {epoch}/{args.epochs}")
        for step, x in enumerate(batches, 1):
            if args.lr_schedule == "cosine":  # set from the step's index alone, so a resumed run continues it
                lr = cosine_annealing(args.lr, (epoch - 1) * steps_per_epoch + step - 1, args.epochs * steps_per_epoch)
                for group in opt.param_groups:
                    group["lr"] = lr
            loss = flow.bpd(x).mean()
            opt.zero_grad()
            loss.backward()
            if args.clip_grad:  # rare batches have gradients ~100x the usual; unclipped they derailed a run
                grad_norms.append(npgen.optim.clip_grad_norm(flow.parameters(), args.clip_grad))
                runs.stop_if_not_finite(grad_norms[-1], "gradient norm", epoch, step, path)
            opt.step()
            losses.append(loss.item())  # read after the step was queued: on a GPU the read waits for it all
            runs.stop_if_not_finite(losses[-1], "loss", epoch, step, path)
            if step % 20 == 0:
                batches.set_postfix(bpd=f"{np.mean(losses[-20:]):.3f}")
        seconds = time.perf_counter() - start
        val = mean_bpd(flow, validation)
        history.append(
            {
                "epoch": epoch,
                "train_bpd": float(np.mean(losses)),
                "val_bpd": val,
                "last_lr": opt.param_groups[0]["lr"],
                "seconds": seconds,
                **memory_mib(),
                "grad_norm_median": float(np.median(grad_norms)) if grad_norms else None,
                "grad_norm_max": float(np.max(grad_norms)) if grad_norms else None,
                "clipped_steps": int(np.sum(np.array(grad_norms) > args.clip_grad)),
            }
        )
        train_bpd, clipped = history[-1]["train_bpd"], history[-1]["clipped_steps"]
        print(
            f"epoch {epoch:3d}  train {train_bpd:.4f} bits/dim  val {val:.4f}  {seconds:6.1f} s  "
            f"{memory_report(history[-1])}  clipped steps {clipped}"
        )
        if epoch in tags:
            save_samples(flow, sample_z, args.out, tags[epoch])
        # First the checkpoint, then best.npz: a run stopped in between resumes with repair_best.
        checkpoint.save(path, flow=flow, optimizer=opt, history=history, config=config)
        if val <= min(h["val_bpd"] for h in history):
            checkpoint.save(best_path, flow=flow, history=history)

    results = {"args": runs.flags(args), "parameters": n_params, "epochs": history}
    results["test_bpd"] = mean_bpd(flow, test)
    print(f"test {results['test_bpd']:.4f} bits/dim after epoch {len(history)}")
    if history:
        best = best_epoch(history)
        checkpoint.load(best_path, flow=flow)
        results["best_epoch"], results["best_test_bpd"] = best, mean_bpd(flow, test)
        print(f"lowest validation bits/dim at epoch {best}: test {results['best_test_bpd']:.4f} bits/dim")
    if args.n_samples:
        save_sample_file(flow, args.n_samples, args.seed, args.out)
    # the median, which one epoch that shared the machine does not move
    results["seconds_per_epoch"] = float(np.median([h["seconds"] for h in history])) if history else None
    results.update(memory_mib())
    print(f"memory: {memory_report(results)}")
    (args.out / "metrics.json").write_text(json.dumps(results, indent=2))
    # the training number averages the epoch's steps, made while the model improved: at epoch 1 it sits
    # above validation, which is measured once, after the epoch
    curves = {
        "train (mean over the epoch's steps)": [h["train_bpd"] for h in history],
        "validation (after the epoch)": [h["val_bpd"] for h in history],
    }
    save_curves(curves, args.out / "bpd.png", "epoch", "bits per dimension", "Real NVP on MNIST")
    print(f"wrote {args.out}/")


if __name__ == "__main__":
    with runs.clear_errors():
        main()
