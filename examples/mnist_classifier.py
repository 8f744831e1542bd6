"""Train an MLP classifier on MNIST with npgen: the smallest end-to-end use of the engine.

    python examples/mnist_classifier.py --epochs 1

Writes to --out: metrics.json, loss.png (training loss per step) and mistakes.png
(test digits the model got wrong, captioned true→predicted).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import npgen
from npgen import F, backend, nn, runs
from npgen.data import DataLoader, load_mnist
from npgen.plot import save_curves, save_grid


def parse_args() -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--epochs", type=runs.positive_int, default=1, help="passes over the training images")
    parser.add_argument("--batch-size", type=runs.positive_int, default=128, help="images per Adam step")
    parser.add_argument("--lr", type=runs.positive_float, default=1e-3, help="Adam's learning rate")
    parser.add_argument("--hidden", type=runs.positive_int, default=256, help="units of each of the two hidden layers")
    runs.add_run_flags(parser, "runs/classifier", 60_000, resume=False)
    return runs.parse_run_args(parser)


def accuracy(model: nn.Module, images: object, labels: np.ndarray, batch_size: int = 1000) -> tuple[float, np.ndarray]:
    """Fraction of correct predictions, and the predictions themselves."""
    model.eval()
    with npgen.no_grad():
        predictions = np.concatenate(
            [
                backend.to_numpy(model(x).data.argmax(axis=1))
                for x in DataLoader(images, batch_size=batch_size, shuffle=False)
            ]
        )
    model.train()
    return float((predictions == labels).mean()), predictions


def main() -> None:
    """Train, evaluate on the official test set, and leave numbers and figures behind."""
    args = parse_args()
    runs.use_backend(args.backend)
    npgen.manual_seed(args.seed)
    runs.prepare_out(args.out)
    train_x, train_y = load_mnist("train")
    test_x, test_y = load_mnist("test")
    on_device = backend.on_device
    train_x = on_device(train_x[: args.train_size].astype(np.float32) / 255)
    train_y = on_device(train_y[: args.train_size].astype(np.int64))
    test_images = on_device(test_x.astype(np.float32) / 255)

    model = nn.Sequential(
        nn.Linear(784, args.hidden),
        nn.ReLU(),
        nn.Linear(args.hidden, args.hidden),
        nn.ReLU(),
        nn.Linear(args.hidden, 10),
    )
    opt = npgen.optim.Adam(model.parameters(), lr=args.lr)
    losses, epochs = [], []
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        batches = runs.progress(DataLoader(train_x, train_y, batch_size=args.batch_size), f"epoch {epoch}")
        for step, (x, y) in enumerate(batches, 1):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())  # read after the step was queued: on a GPU the read waits for it all
            runs.stop_if_not_finite(losses[-1], "loss", epoch, step, None)
        seconds = time.perf_counter() - start
        test_accuracy, predictions = accuracy(model, test_images, test_y)
        epochs.append(
            {
                "epoch": epoch,
                "train_loss": float(np.mean(losses[-len(batches) :])),
                "test_accuracy": test_accuracy,
                "seconds": seconds,
            }
        )
        train_loss = epochs[-1]["train_loss"]
        print(f"epoch {epoch}: train loss {train_loss:.4f}  test accuracy {test_accuracy:.4f}  {seconds:.1f} s")

    metrics = {
        "args": runs.flags(args),
        "epochs": epochs,
        "test_accuracy": epochs[-1]["test_accuracy"],
    }
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    save_curves({"train": losses}, args.out / "loss.png", "step", "cross-entropy (nats)", "MLP classifier on MNIST")
    wrong = np.flatnonzero(predictions != test_y)[:25]
    save_grid(
        test_x[wrong] / 255,
        args.out / "mistakes.png",
        nrow=5,
        title="test mistakes (true→predicted)",
        labels=[f"{test_y[i]}→{predictions[i]}" for i in wrong],
    )
    print(f"wrote {args.out}/metrics.json, loss.png, mistakes.png")


if __name__ == "__main__":
    with runs.clear_errors():
        main()
