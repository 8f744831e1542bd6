"""One training step of each npgen model at its reference size, and the matrix products it runs."""

from __future__ import annotations

from typing import Callable

import numpy as np

import npgen
from npgen import backend
from npgen.models import VAE, Discriminator, Flow, Generator
from npgen.models.gan import discriminator_loss, train_step

Loss = Callable[[], npgen.Tensor]


def training_step(loss: Loss, opt: npgen.optim.Optimizer) -> Callable[[], None]:
    """One step: the loss, zero_grad, backward, and the optimizer's update."""

    def step() -> None:
        value = loss()
        opt.zero_grad()
        value.backward()
        opt.step()

    return step


def vae_loss(rng: np.random.Generator) -> tuple[Loss, npgen.optim.Adam]:
    """A VAE's loss on a fixed random binary batch of 128, and its Adam (lr 1e-3)."""
    vae = VAE()
    x = npgen.Tensor(backend.on_device((rng.uniform(size=(128, 784)) < 0.3).astype(np.float32)))
    return lambda: vae.loss(x), npgen.optim.Adam(vae.parameters(), lr=1e-3)


def gan_discriminator_loss(rng: np.random.Generator) -> tuple[Loss, npgen.optim.Adam]:
    """L_D on [real; G(z)] (64 each), not detached: backward reaches both networks, one Adam steps all of them."""
    generator, discriminator = Generator(), Discriminator()
    real = npgen.Tensor(backend.on_device(rng.uniform(-1, 1, (64, 784)).astype(np.float32)))

    def loss() -> npgen.Tensor:
        logits = discriminator(npgen.F.concatenate([real, generator(generator.sample_latent(64))]))
        return discriminator_loss(*npgen.F.split(logits, [64]))

    return loss, npgen.optim.Adam(generator.parameters() + discriminator.parameters(), 2e-4, (0.5, 0.999))


def flow_loss(rng: np.random.Generator) -> tuple[Loss, npgen.optim.Adam]:
    """The flow's mean bits/dim on a fixed batch of 128 random integer images, and its Adam (lr 1e-3)."""
    flow = Flow()
    x = backend.on_device(rng.integers(0, 256, (128, 784)).astype(np.uint8))
    return lambda: flow.bpd(x).mean(), npgen.optim.Adam(flow.parameters(), lr=1e-3)


def vae_step(rng: np.random.Generator) -> Callable[[], None]:
    """One VAE training step (Adam lr 1e-3) on a fixed random binary batch of 128."""
    return training_step(*vae_loss(rng))


def gan_step(rng: np.random.Generator) -> Callable[[], None]:
    """One discriminator then one generator update (Adam 2e-4, β₁ 0.5) on a fixed batch of 64 in [−1, 1]."""
    generator, discriminator = Generator(), Discriminator()
    opt_g = npgen.optim.Adam(generator.parameters(), 2e-4, (0.5, 0.999))
    opt_d = npgen.optim.Adam(discriminator.parameters(), 2e-4, (0.5, 0.999))
    real = npgen.Tensor(backend.get_backend().from_host(rng.uniform(-1, 1, (64, 784)).astype(np.float32)))
    return lambda: train_step(generator, discriminator, opt_g, opt_d, real)


def flow_step(rng: np.random.Generator) -> Callable[[], None]:
    """One Real NVP training step (Adam lr 1e-3) on a fixed batch of 128 random integer images."""
    return training_step(*flow_loss(rng))


STEPS = {"VAE (batch 128)": vae_step, "GAN (batch 64)": gan_step, "flow (batch 128)": flow_step}

# Training steps per epoch: the VAE and flow train on 50,000 images, the GAN on all 60,000.
STEPS_PER_EPOCH = {
    "VAE (batch 128)": 50_000 // 128 + 1,
    "GAN (batch 64)": 60_000 // 64,
    "flow (batch 128)": 50_000 // 128 + 1,
}

# The forward matrix products (rows, inner, columns) of one training step of each model.
FORWARD_MATMULS = {
    "VAE (batch 128)": [(128, 784, 500), (128, 500, 20), (128, 500, 20), (128, 20, 500), (128, 500, 784)],
    "GAN (batch 64)": [(64, 100, 128), (64, 128, 256), (64, 256, 512), (64, 512, 1024), (64, 1024, 784)]
    + [(128, 784, 512), (128, 512, 256), (128, 256, 1)]  # D step: real and fake stacked in one batch
    + [(64, 784, 512), (64, 512, 256), (64, 256, 1)],  # G step: D sees the fake batch again
    "flow (batch 128)": [(128, 392, 1024), (128, 1024, 1024), (128, 1024, 784)] * 8,  # split couplings
}
