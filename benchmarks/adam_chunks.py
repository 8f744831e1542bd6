"""Adam's host path inside real training steps, for several chunk sizes: how npgen.optim.CHUNK was chosen.

    python benchmarks/adam_chunks.py            # VAE, GAN and flow; prints a markdown table

Timing Adam alone, step after step, flatters it: its arrays stay in cache and no BLAS threads are
left spinning from the backward pass. Here every optimizer step follows its model's own forward
and backward pass, and the chunk sizes take turns step by step, so drift hits all of them alike.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

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


def adam_ms_per_chunk(make: Callable[[], tuple[Callable[[], None], optim.Adam]], rounds: int) -> dict[int, float]:
    """Median ms of Adam's step right after a backward pass, for each chunk size in turn."""
    backward, opt = make()
    times: dict[int, list[float]] = {chunk: [] for chunk in CHUNKS}
    default = optim.CHUNK
    try:
        for _ in range(rounds):
            for chunk in CHUNKS:
                optim.CHUNK = chunk
                opt.zero_grad()
                backward()
                start = time.perf_counter()
                opt.step()
                times[chunk].append(time.perf_counter() - start)
    finally:
        optim.CHUNK = default
    return {chunk: statistics.median(t[1:]) * 1e3 for chunk, t in times.items()}


def main() -> None:
    """Print one row per model: Adam's ms per step at each chunk size."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    args = parser.parse_args()
    npgen.manual_seed(0)
    print("| model | " + " | ".join(f"chunk 2^{c.bit_length() - 1}, ms" for c in CHUNKS) + " |")
    print("| --- " * (len(CHUNKS) + 1) + "|")
    for name in args.models:
        make, rounds = MODELS[name]
        ms = adam_ms_per_chunk(make, rounds)
        print(f"| {name} | " + " | ".join(f"{ms[c]:.2f}" for c in CHUNKS) + " |")


if __name__ == "__main__":
    main()
