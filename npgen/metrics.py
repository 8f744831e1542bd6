"""Sample quality without a likelihood: scores from an MNIST classifier that npgen trains itself.

For images x with class probabilities p(y|x) from the classifier and its penultimate
features f(x):

- coverage: the histogram of predicted classes (a collapsed GAN leaves classes empty);
- classifier "inception score": exp(E_x KL(p(y|x) ‖ p(y))), between 1 and 10 on MNIST;
  high when each image is confidently one digit and all digits are equally frequent;
- Fréchet distance between Gaussians fitted to f(samples) and f(test images):
  ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½);
- confidence: the mean of max_y p(y|x).

Score a file of samples:  python -m npgen.metrics samples.npy
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import linalg

from . import backend, checkpoint, runs
from . import functional as F
from .core import no_grad
from .data import DataLoader, load_mnist
from .nn import Linear, Module, ReLU, Sequential
from .optim import Adam

CLASSIFIER = {"hidden": 512, "epochs": 12, "lr": 1e-3, "batch_size": 128, "seed": 0}


def make_classifier(hidden: int = CLASSIFIER["hidden"]) -> Sequential:
    """MLP 784 → hidden → hidden → 10 with ReLU; its input is pixels in [0, 1]."""
    return Sequential(Linear(784, hidden), ReLU(), Linear(hidden, hidden), ReLU(), Linear(hidden, 10))


def train_classifier(
    epochs: int, hidden: int, lr: float, batch_size: int, seed: int, progress: bool = True
) -> Sequential:
    """Train the evaluation classifier on the 60,000 training images (deterministic for a seed)."""
    backend.manual_seed(seed)
    images, labels = load_mnist("train")
    on_device = backend.on_device
    x, y = on_device(images.astype(np.float32) / 255), on_device(labels.astype(np.int64))
    model = make_classifier(hidden)
    opt = Adam(model.parameters(), lr=lr)
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        for x_batch, y_batch in DataLoader(x, y, batch_size=batch_size):
            loss = F.cross_entropy(model(x_batch), y_batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
        if progress:
            elapsed = time.perf_counter() - start
            left = elapsed / epoch * (epochs - epoch)
            print(
                f"evaluation classifier: epoch {epoch}/{epochs}, last batch loss {loss.item():.4f},"
                f" {elapsed:.0f} s so far, about {left:.0f} s left",
                flush=True,
            )
    return model


def accuracy(model: Module, images: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of ``images`` (uint8 or [0, 1] floats) that ``model`` labels correctly."""
    _, probabilities = features_and_probabilities(model, images)
    return float((probabilities.argmax(axis=1) == labels).mean())


def cache_dir() -> Path:
    """Where trained weights are kept: $NPGEN_CACHE, else ~/.cache/npgen."""
    return Path(os.environ.get("NPGEN_CACHE") or Path.home() / ".cache" / "npgen")


def load_classifier(progress: bool = True) -> Sequential:
    """The evaluation classifier: loaded from the cache, or trained once and cached.

    Training it takes 12 epochs over the 60,000 training images: 56 s on a quiet 2-core machine
    with one BLAS thread (``runs.use_threads``), several minutes on a busy one. It says so, and
    reports each epoch with the time left, before it starts.

    Building (and training) it draws from npgen's generators; the caller gets their streams back
    as they were, so a run's numbers do not depend on whether the classifier was cached.
    """
    states = [(b.rng, b.rng.get_state()) for b in backend.registered_backends()]
    try:
        return _load_or_train_classifier(progress)
    finally:
        for rng, state in states:
            rng.set_state(state)


def classifier_path() -> Path:
    """Where the evaluation classifier is cached: its file name spells out its settings."""
    return cache_dir() / ("mnist-classifier-" + "-".join(f"{k}{v}" for k, v in CLASSIFIER.items()) + ".npz")


def _load_or_train_classifier(progress: bool) -> Sequential:
    path = classifier_path()
    if path.exists():
        model = make_classifier(CLASSIFIER["hidden"])
        checkpoint.load(path, classifier=model)
        return model
    if progress:
        print(
            f"npgen.metrics: no evaluation classifier cached at {path}; training it once now (MLP 784-"
            f"{CLASSIFIER['hidden']}-{CLASSIFIER['hidden']}-10, {CLASSIFIER['epochs']} epochs on the 60,000 training"
            " images: about a minute on a quiet 2-core machine, several on a busy one); later runs load it",
            flush=True,
        )
    model = train_classifier(**CLASSIFIER, progress=progress)
    test_images, test_labels = load_mnist("test")
    test_accuracy = accuracy(model, test_images, test_labels)
    checkpoint.save(path, classifier=model, test_accuracy=test_accuracy)
    if progress:
        print(f"evaluation classifier: test accuracy {test_accuracy:.4f}, cached at {path}", flush=True)
    return model


def features_and_probabilities(model: Sequential, images: Any, batch_size: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Penultimate-layer features and class probabilities (host arrays) for images (N, 784).

    uint8 images are scaled to [0, 1]; float images must already be in [0, 1].
    """
    images = backend.to_numpy(images)
    if images.dtype == np.uint8:
        images = images.astype(np.float32) / 255
    *body, head = list(model)
    model.eval()
    features, probabilities = [], []
    with no_grad():
        for x in DataLoader(
            backend.move(images.astype(np.float32), model[0].weight.device), batch_size=batch_size, shuffle=False
        ):
            for layer in body:
                x = layer(x)
            features.append(backend.to_numpy(x.data).astype(np.float64))
            probabilities.append(np.exp(backend.to_numpy(F.log_softmax(head(x)).data).astype(np.float64)))
    return np.concatenate(features), np.concatenate(probabilities)


def inception_score(probabilities: np.ndarray) -> float:
    """exp(E_x KL(p(y|x) ‖ p(y))) with p(y) the mean of p(y|x) over the images."""
    marginal = probabilities.mean(axis=0)
    kl = (probabilities * (np.log(probabilities + 1e-12) - np.log(marginal + 1e-12))).sum(axis=1)
    return float(np.exp(kl.mean()))


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """‖μ_a − μ_b‖² + Tr(Σ_a + Σ_b − 2(Σ_a Σ_b)^½) between Gaussians fitted to two feature sets.

    Tr (Σ_a Σ_b)^½ is computed as Σ √λ over the eigenvalues λ of the symmetric matrix
    Σ_a^½ Σ_b Σ_a^½ (the same eigenvalues as Σ_a Σ_b), which stays real and finite even
    when dead ReLU features make the covariances singular.
    """
    mu_a, mu_b = features_a.mean(axis=0), features_b.mean(axis=0)
    cov_a, cov_b = (np.atleast_2d(np.cov(f, rowvar=False)) for f in (features_a, features_b))
    root_a = _psd_sqrt(cov_a)
    eigenvalues = linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_root = np.sqrt(np.clip(eigenvalues, 0, None)).sum()
    distance = ((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root
    return float(max(distance, 0.0))  # a distance: round-off must not make it negative


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """The symmetric square root of a positive semi-definite matrix (round-off negatives clipped)."""
    eigenvalues, vectors = linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(eigenvalues, 0, None))) @ vectors.T


def score(images: Any, classifier: Sequential, reference_features: np.ndarray) -> dict[str, Any]:
    """Coverage, inception score, Fréchet distance to ``reference_features`` and confidence of ``images``."""
    return _scores(*features_and_probabilities(classifier, images), reference_features)


def _scores(features: np.ndarray, probabilities: np.ndarray, reference_features: np.ndarray) -> dict[str, Any]:
    """``score``'s numbers from the classifier's outputs for the images."""
    counts = np.bincount(probabilities.argmax(axis=1), minlength=10)
    return {
        "n": len(features),
        "class_fractions": (counts / counts.sum()).round(4).tolist(),
        "inception_score": inception_score(probabilities),
        "frechet_distance": frechet_distance(features, reference_features),
        "confidence": float(probabilities.max(axis=1).mean()),
    }


def reference_scores(classifier: Sequential, n: int = 10_000) -> tuple[np.ndarray, dict[str, Any]]:
    """Test-set features (the reference) and the scores of real images: the test set and n training images."""
    test_images, _ = load_mnist("test")
    train_images, _ = load_mnist("train")
    test_features, test_probabilities = features_and_probabilities(classifier, test_images)
    rows = {
        "mnist_test": _scores(test_features, test_probabilities, test_features),  # the classifier runs once
        "mnist_train": score(train_images[:n], classifier, test_features),
    }
    return test_features, rows


def load_samples(path: Path, tanh_range: bool = False) -> np.ndarray:
    """Samples (N ≥ 2, 784) in [0, 1] from a .npy file, or a SystemExit that names the file and what is wrong."""
    if not path.is_file():
        raise SystemExit(f"{path}: {'a directory, not a file' if path.is_dir() else 'no such file'}")
    with path.open("rb") as f:
        magic = f.read(6)
    if magic[:2] == b"PK":  # a zip: np.savez's archive
        raise SystemExit(f"{path}: a .npz archive; save the samples alone with np.save(path, samples)")
    if magic != b"\x93NUMPY":
        raise SystemExit(f"{path}: not a .npy file (write the samples with np.save(path, samples))")
    try:
        samples = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise SystemExit(f"{path}: unreadable .npy file ({error})") from None
    if samples.dtype.kind not in "biuf":
        raise SystemExit(f"{path}: expected numbers, got dtype {samples.dtype}")
    if samples.ndim != 2 or samples.shape[1] != 784 or len(samples) < 2:
        raise SystemExit(f"{path}: expected an array of shape (N, 784) with N ≥ 2, got {samples.shape}")
    samples = samples.astype(np.float32)  # by value: integer 0/1 samples are [0, 1] samples, not pixel levels
    if not np.isfinite(samples).all():
        raise SystemExit(f"{path}: {np.size(samples) - np.isfinite(samples).sum()} values are NaN or infinite")
    if tanh_range and samples.min() >= 0:  # a tanh output always has some background near −1
        raise SystemExit(f"{path}: --tanh-range, but no value is negative: are these [0, 1] samples?")
    samples = (samples + 1) / 2 if tanh_range else samples
    if samples.min() < -1e-3 or samples.max() > 1 + 1e-3:
        expected = "[-1, 1] (--tanh-range)" if tanh_range else "[0, 1] (or [-1, 1] with --tanh-range)"
        raise SystemExit(f"{path}: values span [{samples.min():.3g}, {samples.max():.3g}], expected {expected}")
    return samples


def main() -> None:
    """Score a .npy file of samples (N, 784) in [0, 1] (or in [−1, 1] with --tanh-range) and print JSON."""
    parser = argparse.ArgumentParser(description="Score MNIST-like samples with npgen's evaluation classifier.")
    parser.add_argument("samples", type=Path, help=".npy array of shape (N, 784)")
    parser.add_argument("--tanh-range", action="store_true", help="samples are in [-1, 1] (a GAN's tanh output)")
    parser.add_argument("--threads", type=runs.nonnegative_int, default=1, help="BLAS threads (0: all cores)")
    args = parser.parse_args()
    runs.use_threads(args.threads)
    samples = load_samples(args.samples, args.tanh_range)
    classifier = load_classifier()
    reference, rows = reference_scores(classifier)
    rows = {"samples": score(np.clip(samples, 0, 1), classifier, reference), **rows}
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    with runs.clear_errors():
        main()
