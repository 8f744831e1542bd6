"""The three npgen models written in PyTorch: the reference a user would pick instead.

Same layer sizes, losses, optimizers and batch sizes as npgen's models and examples, in the
plain PyTorch a user would write (default Adam, default zero_grad). Only the benchmark
imports this file; PyTorch is never a dependency of npgen.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ALPHA = 1e-5


class VAE(nn.Module):
    """Encoder 784 → 500 → (μ, log σ²) of size 20; decoder 20 → 500 → 784 Bernoulli logits."""

    def __init__(self, x_dim: int = 784, hidden: int = 500, z_dim: int = 20):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(x_dim, hidden), nn.ReLU())
        self.mu_head, self.logvar_head = nn.Linear(hidden, z_dim), nn.Linear(hidden, z_dim)
        self.decoder = nn.Sequential(nn.Linear(z_dim, hidden), nn.ReLU(), nn.Linear(hidden, x_dim))

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Negative ELBO per image, averaged over the batch (one reparametrized sample)."""
        h = self.encoder(x)
        mu, logvar = self.mu_head(h), self.logvar_head(h)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        reconstruction = F.binary_cross_entropy_with_logits(self.decoder(z), x, reduction="none").sum(1)
        kl = 0.5 * (mu * mu + torch.exp(logvar) - 1 - logvar).sum(1)
        return (reconstruction + kl).mean()


def generator() -> nn.Sequential:
    """100 → 128 → 256 → 512 → 1024 → 784, LeakyReLU(0.2), BatchNorm on the middle blocks, tanh."""
    layers: list[nn.Module] = [nn.Linear(100, 128), nn.LeakyReLU(0.2)]
    for n_in, n_out in ((128, 256), (256, 512), (512, 1024)):
        layers += [nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out), nn.LeakyReLU(0.2)]
    return nn.Sequential(*layers, nn.Linear(1024, 784), nn.Tanh())


def discriminator() -> nn.Sequential:
    """784 → 512 → 256 → 1 logit, LeakyReLU(0.2)."""
    return nn.Sequential(
        nn.Linear(784, 512), nn.LeakyReLU(0.2), nn.Linear(512, 256), nn.LeakyReLU(0.2), nn.Linear(256, 1)
    )


class Coupling(nn.Module):
    """Affine coupling y = b⊙x + (1−b)⊙(x⊙e^s + t) with (s, t) from an MLP of b⊙x, last layer zero."""

    def __init__(self, mask: torch.Tensor, n_hidden: int = 1024):
        super().__init__()
        d = len(mask)
        self.register_buffer("mask", mask)
        self.net = nn.Sequential(
            nn.Linear(d, n_hidden), nn.ReLU(), nn.Linear(n_hidden, n_hidden), nn.ReLU(), nn.Linear(n_hidden, 2 * d)
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(y, log|det| per row)."""
        scale, shift = self.net(x * self.mask).chunk(2, dim=1)
        keep = 1 - self.mask
        s, t = torch.tanh(scale) * keep, shift * keep
        return x * torch.exp(s) + t, s.sum(1)


class Flow(nn.Module):
    """8 couplings alternating the 28×28 checkerboard and its complement; bits/dim of integer pixels."""

    def __init__(self, n_flows: int = 4, n_hidden: int = 1024):
        super().__init__()
        i, j = np.indices((28, 28))
        masks = [torch.tensor(((i + j) % 2 == k % 2).reshape(-1), dtype=torch.float32) for k in range(2 * n_flows)]
        self.couplings = nn.ModuleList(Coupling(mask, n_hidden) for mask in masks)

    def bpd(self, x: torch.Tensor) -> torch.Tensor:
        """−log p(x̃)/(784 ln 2) per image: dequantize, squash, logit, couplings, standard normal."""
        d = x.shape[1]
        p = ALPHA / 2 + (1 - ALPHA) * (x + torch.rand_like(x)) / 256
        y = torch.log(p) - torch.log1p(-p)
        logdet = -d * math.log(256) + d * math.log(1 - ALPHA) - (torch.log(p) + torch.log1p(-p)).sum(1)
        for coupling in self.couplings:
            y, ld = coupling(y)
            logdet = logdet + ld
        log_pz = -0.5 * (y * y + math.log(2 * math.pi)).sum(1)
        return -(log_pz + logdet) / (d * math.log(2))


class SplitCoupling(nn.Module):
    """The same coupling in npgen's split form: y₂ = x₂⊙e^s(x₁) + t(x₁) on the checkerboard's two halves."""

    def __init__(self, kept: int, changed: int, n_hidden: int = 1024, full_dim: int = 784):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(kept, n_hidden),
            nn.ReLU(),
            nn.Linear(n_hidden, n_hidden),
            nn.ReLU(),
            nn.Linear(n_hidden, 2 * changed),
        )
        with torch.no_grad():  # the masked form's first-layer bound, 1/√full_dim, as npgen initialises it
            self.net[0].weight.mul_(math.sqrt(kept / full_dim))
            self.net[0].bias.mul_(math.sqrt(kept / full_dim))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(y₂, log|det| per row)."""
        scale, shift = self.net(x1).chunk(2, dim=1)
        s = torch.tanh(scale)
        return x2 * torch.exp(s) + shift, s.sum(1)


class SplitFlow(nn.Module):
    """npgen's flow: pixels sorted once into checkerboard order, couplings alternating which half they change."""

    def __init__(self, n_flows: int = 4, n_hidden: int = 1024):
        super().__init__()
        i, j = np.indices((28, 28))
        black = ((i + j) % 2 == 0).reshape(-1)
        self.register_buffer("order", torch.tensor(np.concatenate([np.flatnonzero(black), np.flatnonzero(~black)])))
        self.couplings = nn.ModuleList(SplitCoupling(392, 392, n_hidden) for _ in range(2 * n_flows))

    def bpd(self, x: torch.Tensor) -> torch.Tensor:
        """As Flow.bpd, with the couplings on the two halves of the checkerboard order."""
        d = x.shape[1]
        p = ALPHA / 2 + (1 - ALPHA) * (x + torch.rand_like(x)) / 256
        logdet = -d * math.log(256) + d * math.log(1 - ALPHA) - (torch.log(p) + torch.log1p(-p)).sum(1)
        halves = list((torch.log(p) - torch.log1p(-p))[:, self.order].chunk(2, dim=1))
        for k, coupling in enumerate(self.couplings):
            kept, changed = k % 2, 1 - k % 2
            halves[changed], ld = coupling(halves[kept], halves[changed])
            logdet = logdet + ld
        log_pz = -0.5 * sum((h * h + math.log(2 * math.pi)).sum(1) for h in halves)
        return -(log_pz + logdet) / (d * math.log(2))


Loss = Callable[[], torch.Tensor]


def training_step(loss: Loss, opt: torch.optim.Optimizer) -> Callable[[], None]:
    """One step: the loss, zero_grad, backward, and the optimizer's update."""

    def step() -> None:
        value = loss()
        opt.zero_grad()
        value.backward()
        opt.step()

    return step


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """L_D = mean softplus(−ℓ_real) + mean softplus(ℓ_fake), as npgen's."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def vae_loss(rng: np.random.Generator) -> tuple[Loss, torch.optim.Adam]:
    """A VAE's loss on a fixed random binary batch of 128, and its Adam (lr 1e-3)."""
    vae = VAE()
    x = torch.tensor((rng.uniform(size=(128, 784)) < 0.3).astype(np.float32))
    return lambda: vae.loss(x), torch.optim.Adam(vae.parameters(), lr=1e-3)


def gan_discriminator_loss(rng: np.random.Generator) -> tuple[Loss, torch.optim.Adam]:
    """L_D on [real; G(z)] (64 each), not detached: backward reaches both networks, one Adam steps all of them."""
    g, d = generator(), discriminator()
    real = torch.tensor(rng.uniform(-1, 1, (64, 784)).astype(np.float32))

    def loss() -> torch.Tensor:
        return discriminator_loss(*d(torch.cat([real, g(torch.randn(64, 100))])).split(64))

    return loss, torch.optim.Adam([*g.parameters(), *d.parameters()], lr=2e-4, betas=(0.5, 0.999))


def flow_loss(rng: np.random.Generator, form: type = Flow) -> tuple[Loss, torch.optim.Adam]:
    """The flow's mean bits/dim on a fixed batch of 128 random integer images, and its Adam (lr 1e-3)."""
    flow = form()
    x = torch.tensor(rng.integers(0, 256, (128, 784)).astype(np.float32))
    return lambda: flow.bpd(x).mean(), torch.optim.Adam(flow.parameters(), lr=1e-3)


def vae_step(rng: np.random.Generator) -> Callable[[], None]:
    """One VAE training step (Adam lr 1e-3) on a fixed random binary batch of 128."""
    return training_step(*vae_loss(rng))


def gan_step(rng: np.random.Generator) -> Callable[[], None]:
    """One discriminator then one generator update (Adam 2e-4, β₁ 0.5) on a fixed batch of 64 in [−1, 1]."""
    g, d = generator(), discriminator()
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    real = torch.tensor(rng.uniform(-1, 1, (64, 784)).astype(np.float32))

    def step() -> None:
        fake = g(torch.randn(64, 100))
        loss_d = discriminator_loss(*d(torch.cat([real, fake.detach()])).split(64))  # one pass, as npgen's
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        d.requires_grad_(False)  # as npgen's generator_step: D is frozen while G learns
        loss_g = F.softplus(-d(fake)).mean()
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        d.requires_grad_(True)

    return step


def flow_step(rng: np.random.Generator, form: type = Flow) -> Callable[[], None]:
    """One Real NVP training step (Adam lr 1e-3) on a fixed batch of 128 random integer images."""
    return training_step(*flow_loss(rng, form))


STEPS = {
    "VAE (batch 128)": vae_step,
    "GAN (batch 64)": gan_step,
    "flow, masked template (batch 128)": flow_step,  # what a user writes from the assignment's template
    "flow, split form (batch 128)": lambda rng: flow_step(rng, SplitFlow),  # what npgen runs
}
