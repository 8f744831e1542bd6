"""Adam's host path inside real training steps, for several chunk sizes: how npgen.optim.CHUNK was chosen.

    python benchmarks/adam_chunks.py            # VAE, GAN and flow; prints a markdown table

Timing Adam alone, step after step, flatters it: its arrays stay in cache and no BLAS threads are
left spinning from the backward pass. Here every optimizer step follows its model's own forward
and backward pass, and the chunk sizes take turns step by step, so drift hits all of them alike.
With PyTorch installed, torch.optim.Adam on the same model written in PyTorch takes its turn too.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import npgen
from npgen import optim

import npgen_models  # a sibling file: benchmarks/ is on the path when this script runs

HAVE_TORCH = importlib.util.find_spec("torch") is not None
CHUNKS = [1 << 14, 1 << 15, 1 << 16, 1 << 17, 1 << 18]


# Per model: its loss and Adam in npgen and in PyTorch (the split flow, as npgen's), and the rounds timed.
MODELS = {
    "VAE": (npgen_models.vae_loss, "vae_loss", 60),
    "GAN": (npgen_models.gan_discriminator_loss, "gan_discriminator_loss", 40),
    "flow": (npgen_models.flow_loss, "flow_loss", 6),
}


def torch_loss(name: str) -> tuple[Callable[[], Any], Any] | None:
    """The PyTorch model's loss and Adam (torch_models.py), or None where PyTorch is not installed."""
    if not HAVE_TORCH:
        return None
    import torch_models

    make = getattr(torch_models, MODELS[name][1])
    rng = np.random.default_rng(0)
    return make(rng, torch_models.SplitFlow) if name == "flow" else make(rng)


def adam_ms_per_chunk(
    npgen_pass: tuple[Callable[[], Any], optim.Optimizer], rounds: int, torch_pass: tuple | None = None
) -> dict[Any, float]:
    """Median ms of Adam's step right after its loss's backward pass, for each chunk size (and PyTorch's Adam) in turn.

    ``npgen_pass`` and ``torch_pass``: (the loss, as a function of nothing, and its optimizer).
    """
    turns: dict[Any, tuple] = {chunk: npgen_pass for chunk in CHUNKS}
    if torch_pass is not None:
        turns["PyTorch"] = torch_pass
    times: dict[Any, list[float]] = {turn: [] for turn in turns}
    default = optim.CHUNK
    try:
        for _ in range(rounds):
            for turn, (loss, opt) in turns.items():
                optim.CHUNK = turn if turn in CHUNKS else default
                time.sleep(0.02)  # lets the other library's worker threads stop spin-waiting first
                opt.zero_grad()
                loss().backward()
                start = time.perf_counter()
                opt.step()
                times[turn].append(time.perf_counter() - start)
    finally:
        optim.CHUNK = default
    return {turn: statistics.median(t[1:]) * 1e3 for turn, t in times.items()}


def main() -> None:
    """Print one row per model: Adam's ms per step at each chunk size."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    args = parser.parse_args()
    npgen.manual_seed(0)
    columns = [f"chunk 2^{c.bit_length() - 1}, ms" for c in CHUNKS] + (["PyTorch's Adam, ms"] if HAVE_TORCH else [])
    print("| model | " + " | ".join(columns) + " |")
    print("| --- " * (len(columns) + 1) + "|")
    for name in args.models:
        make, _, rounds = MODELS[name]
        ms = adam_ms_per_chunk(make(np.random.default_rng(0)), rounds, torch_loss(name))
        print(f"| {name} | " + " | ".join(f"{ms[turn]:.2f}" for turn in ms) + " |")


if __name__ == "__main__":
    main()
