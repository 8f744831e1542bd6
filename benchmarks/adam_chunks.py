"""Adam's host path inside real training steps, for several chunk sizes: how npgen.optim.CHUNK was chosen.

    python benchmarks/adam_chunks.py            # VAE, GAN and flow; prints a markdown table

Timing Adam alone, step after step, flatters it: its arrays stay in cache and no BLAS threads are
left spinning from the backward pass. Here every optimizer step follows its model's own forward
and backward pass, and the chunk sizes take turns step by step, so drift hits all of them alike.
With PyTorch installed, torch.optim.Adam on the same model written in PyTorch takes its turn too.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import npgen
from npgen import optim
from npgen.models import VAE, Discriminator, Flow, Generator
from npgen.models.gan import discriminator_loss

CHUNKS = [1 << 14, 1 << 15, 1 << 16, 1 << 17, 1 << 18]


def vae_backward() -> tuple[Callable[[], None], optim.Adam]:
    """A VAE's forward and backward pass on a fixed binary batch of 128, and its Adam."""
    vae = VAE()
    x = npgen.Tensor((np.random.default_rng(0).uniform(size=(128, 784)) < 0.3).astype(np.float32))
    return lambda: vae.loss(x).backward(), optim.Adam(vae.parameters())


def gan_backward() -> tuple[Callable[[], None], optim.Adam]:
    """The GAN's discriminator pass on [real; fake] (64 each) and backward into both networks, and one Adam."""
    generator, discriminator = Generator(), Discriminator()
    real = npgen.Tensor(np.random.default_rng(0).uniform(-1, 1, (64, 784)).astype(np.float32))

    def backward() -> None:
        logits = discriminator(npgen.F.concatenate([real, generator(generator.sample_latent(64))]))
        real_logits, fake_logits = npgen.F.split(logits, [64])
        discriminator_loss(real_logits, fake_logits).backward()

    return backward, optim.Adam(generator.parameters() + discriminator.parameters(), 2e-4, (0.5, 0.999))


def flow_backward() -> tuple[Callable[[], None], optim.Adam]:
    """The flow's forward and backward pass on a fixed batch of 128 integer images, and its Adam."""
    flow = Flow()
    x = np.random.default_rng(0).integers(0, 256, (128, 784)).astype(np.uint8)
    return lambda: flow.bpd(x).mean().backward(), optim.Adam(flow.parameters())


MODELS = {"VAE": (vae_backward, 60), "GAN": (gan_backward, 40), "flow": (flow_backward, 6)}


def torch_backward(name: str) -> tuple[Callable[[], None], Any] | None:
    """The model's forward and backward pass in PyTorch (torch_models.py) and its Adam; None without torch."""
    try:
        import torch

        import torch_models
    except ImportError:
        return None
    rng = np.random.default_rng(0)
    if name == "VAE":
        vae, x = torch_models.VAE(), torch.tensor((rng.uniform(size=(128, 784)) < 0.3).astype(np.float32))
        return lambda: vae.loss(x).backward(), torch.optim.Adam(vae.parameters())
    if name == "GAN":
        g, d = torch_models.generator(), torch_models.discriminator()
        real = torch.tensor(rng.uniform(-1, 1, (64, 784)).astype(np.float32))

        def backward() -> None:
            real_logits, fake_logits = d(torch.cat([real, g(torch.randn(64, 100))])).split(64)
            (
                torch.nn.functional.softplus(-real_logits).mean() + torch.nn.functional.softplus(fake_logits).mean()
            ).backward()

        return backward, torch.optim.Adam([*g.parameters(), *d.parameters()], 2e-4, (0.5, 0.999))
    flow, x = torch_models.SplitFlow(), torch.tensor(rng.integers(0, 256, (128, 784)).astype(np.float32))
    return lambda: flow.bpd(x).mean().backward(), torch.optim.Adam(flow.parameters())


def adam_ms_per_chunk(
    make: Callable[[], tuple[Callable[[], None], optim.Adam]], rounds: int, torch_pass: tuple | None = None
) -> dict[Any, float]:
    """Median ms of Adam's step right after a backward pass, for each chunk size (and PyTorch's Adam) in turn."""
    backward, opt = make()
    turns: dict[Any, tuple] = {chunk: (backward, opt) for chunk in CHUNKS}
    if torch_pass is not None:
        turns["PyTorch"] = torch_pass
    times: dict[Any, list[float]] = {turn: [] for turn in turns}
    default = optim.CHUNK
    try:
        for _ in range(rounds):
            for turn, (backward, opt) in turns.items():
                optim.CHUNK = turn if turn in CHUNKS else default
                time.sleep(0.02)  # lets the other library's worker threads stop spin-waiting first
                opt.zero_grad()
                backward()
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
    with_torch = torch_backward("VAE") is not None
    columns = [f"chunk 2^{c.bit_length() - 1}, ms" for c in CHUNKS] + (["PyTorch's Adam, ms"] if with_torch else [])
    print("| model | " + " | ".join(columns) + " |")
    print("| --- " * (len(columns) + 1) + "|")
    for name in args.models:
        make, rounds = MODELS[name]
        ms = adam_ms_per_chunk(make, rounds, torch_backward(name))
        print(f"| {name} | " + " | ".join(f"{ms[turn]:.2f}" for turn in ms) + " |")


if __name__ == "__main__":
    main()
