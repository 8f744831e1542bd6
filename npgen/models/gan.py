"""Generative adversarial network (Goodfellow et al., 2014) with MLPs for MNIST.

The discriminator D(x) = σ(ℓ(x)) estimates the probability that x is real; the generator
G(z) maps noise z ~ N(0, I) to images in [−1, 1]. With logits ℓ, every log-probability is
a softplus (never the log of a sigmoid):

    −log D(x) = softplus(−ℓ),    −log(1 − D(x)) = softplus(ℓ).

D minimises  L_D = −mean[log D(x) + log(1 − D(G(z)))].
G minimises  L_G = −mean log D(G(z))          (non-saturating, the default), or
             L_G =  mean log(1 − D(G(z)))     (the saturating minimax form: its gradient
                                               vanishes while D rejects the samples easily).
At equilibrium D = ½ everywhere: L_D = 2 ln 2, and the non-saturating L_G = ln 2.
"""

from __future__ import annotations

from .. import backend
from .. import functional as F
from ..core import Tensor, no_grad
from ..nn import BatchNorm1d, LeakyReLU, Linear, Module, Sequential, Tanh
from ..optim import Optimizer


class Generator(Module):
    """z (latent_dim) → 128 → 256 → 512 → 1024 → 784, LeakyReLU(0.2), BatchNorm on the middle blocks, tanh."""

    def __init__(self, latent_dim: int = 100, hidden: tuple[int, ...] = (128, 256, 512, 1024), x_dim: int = 784):
        super().__init__()
        self.latent_dim = latent_dim
        layers: list[Module] = [Linear(latent_dim, hidden[0]), LeakyReLU(0.2)]
        for n_in, n_out in zip(hidden[:-1], hidden[1:]):
            layers += [Linear(n_in, n_out), BatchNorm1d(n_out), LeakyReLU(0.2)]
        layers += [Linear(hidden[-1], x_dim), Tanh()]
        self.net = Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)

    def sample_latent(self, n: int) -> Tensor:
        """n draws of z ~ N(0, I) from npgen's generator, on this model's device."""
        weight = self.net[0].weight
        return Tensor(backend.get_backend(weight.device).rng.normal((n, self.latent_dim), weight.dtype))


class Discriminator(Module):
    """x (784) → 512 → 256 → 1 with LeakyReLU(0.2); ``forward`` returns the logit ℓ, D(x) = σ(ℓ)."""

    def __init__(self, x_dim: int = 784, hidden: tuple[int, ...] = (512, 256)):
        super().__init__()
        layers: list[Module] = []
        for n_in, n_out in zip((x_dim, *hidden[:-1]), hidden):
            layers += [Linear(n_in, n_out), LeakyReLU(0.2)]
        self.net = Sequential(*layers, Linear(hidden[-1], 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def probability(self, x: Tensor) -> Tensor:
        """D(x) = σ(ℓ(x)), the estimated probability that x is real."""
        return F.sigmoid(self(x))


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """L_D = mean softplus(−ℓ_real) + mean softplus(ℓ_fake) = −mean[log D(x) + log(1 − D(G(z)))]."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits: Tensor, saturating: bool = False) -> Tensor:
    """Non-saturating L_G = mean softplus(−ℓ) = −mean log D(G(z)); saturating L_G = −mean softplus(ℓ)."""
    return -F.softplus(fake_logits).mean() if saturating else F.softplus(-fake_logits).mean()


def discriminator_step(discriminator: Discriminator, opt_d: Optimizer, real: Tensor, fake: Tensor) -> dict[str, Tensor]:
    """Update D on real images and a fake batch; the fake batch is detached, so no gradient reaches G.

    D has no batch statistics, so one pass over the stacked batch [real; fake] gives the same
    logits as two passes, with matrix products twice as tall, which BLAS runs faster. Returns the
    loss and the mean D(x), D(G(z)) as 0-d tensors on the device: the caller decides when to read
    them (each read waits for the GPU).
    """
    logits = discriminator(F.concatenate([real, fake.detach()], axis=0))
    real_logits, fake_logits = F.split(logits, [len(real)], axis=0)
    loss_d = discriminator_loss(real_logits, fake_logits)
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()
    with no_grad():
        d_real, d_fake = F.sigmoid(real_logits).mean(), F.sigmoid(fake_logits).mean()
    return {"loss_d": loss_d.detach(), "d_real": d_real, "d_fake": d_fake}


def generator_step(discriminator: Discriminator, opt_g: Optimizer, fake: Tensor, saturating: bool = False) -> Tensor:
    """Update G through a frozen D: D's parameters get no gradient and are not stepped; returns the loss (0-d)."""
    discriminator.requires_grad_(False)
    try:
        loss_g = generator_loss(discriminator(fake), saturating)
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
    finally:
        discriminator.requires_grad_(True)
    return loss_g.detach()


def train_step(
    generator: Generator,
    discriminator: Discriminator,
    opt_g: Optimizer,
    opt_d: Optimizer,
    real: Tensor,
    saturating: bool = False,
) -> dict[str, Tensor]:
    """One discriminator update, then one generator update, on a batch of real images in [−1, 1].

    The fake batch is generated once and serves both steps (as in PyTorch's DCGAN example).
    Integer pixels (0..255) are refused, and so are host pixels outside [−1, 1]; on a GPU the range
    is not read back, which would stall every step.
    """
    if real.dtype.kind != "f":
        raise TypeError(f"the GAN trains on pixels scaled to [-1, 1], got {real.dtype} pixels: use x / 127.5 - 1")
    if (
        backend.backend_of(real.data).name == "numpy"
        and len(real)
        and not -1 <= real.data.min() <= real.data.max() <= 1
    ):
        raise ValueError(
            f"the GAN trains on pixels in [-1, 1] (its generator ends in tanh), got values in "
            f"[{real.data.min()}, {real.data.max()}]: use x * 2 - 1 for pixels in [0, 1]"
        )
    fake = generator(generator.sample_latent(len(real)))
    stats = discriminator_step(discriminator, opt_d, real, fake)
    stats["loss_g"] = generator_step(discriminator, opt_g, fake, saturating)
    return stats
