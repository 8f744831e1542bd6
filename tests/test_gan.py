"""The GAN: stable losses, which network each step may touch, per-network modes, gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import make

import npgen
from npgen import F, optim
from npgen.data import load_mnist
from npgen.models import Discriminator, Generator
from npgen.models.gan import discriminator_loss, discriminator_step, generator_loss, generator_step, train_step


def _pair(**sizes):
    generator = Generator(**sizes.get("g", {}))
    discriminator = Discriminator(**sizes.get("d", {}))
    return (
        generator,
        discriminator,
        optim.Adam(generator.parameters(), 2e-4, (0.5, 0.999)),
        optim.Adam(discriminator.parameters(), 2e-4, (0.5, 0.999)),
    )


def _snapshot(module) -> list[np.ndarray]:
    return [p.data.copy() for p in module.parameters()]


@pytest.fixture(scope="module")
def real_batch() -> np.ndarray:
    images, _ = load_mnist("train")
    return images[:64].astype(np.float32) / 127.5 - 1


def test_losses_match_their_log_probability_definitions():
    real, fake = np.array([[-2.0], [0.3], [1.5]]), np.array([[0.8], [-1.0], [0.1]])
    d = lambda logits: 1 / (1 + np.exp(-logits))  # noqa: E731
    expected_d = -np.mean(np.log(d(real))) - np.mean(np.log(1 - d(fake)))
    assert np.isclose(discriminator_loss(npgen.tensor(real), npgen.tensor(fake)).item(), expected_d)
    assert np.isclose(generator_loss(npgen.tensor(fake)).item(), -np.mean(np.log(d(fake))))
    assert np.isclose(generator_loss(npgen.tensor(fake), saturating=True).item(), np.mean(np.log(1 - d(fake))))


def test_losses_stay_finite_for_a_discriminator_that_is_certain():
    extreme = npgen.tensor(np.array([[-1e4], [1e4]], np.float32), requires_grad=True)
    for loss in (
        discriminator_loss(extreme, extreme),
        generator_loss(extreme),
        generator_loss(extreme, saturating=True),
    ):
        loss.backward()
        assert math.isfinite(loss.item()) and np.all(np.isfinite(extreme.grad))
        extreme.grad = None


def test_losses_at_initialisation_are_near_the_equilibrium_values(real_batch):
    generator, discriminator, _, _ = _pair()
    fake = generator(generator.sample_latent(64))
    loss_d = discriminator_loss(discriminator(npgen.tensor(real_batch)), discriminator(fake)).item()
    loss_g = generator_loss(discriminator(fake)).item()
    assert abs(loss_d - 2 * math.log(2)) < 0.1 and abs(loss_g - math.log(2)) < 0.1, (loss_d, loss_g)


def test_the_discriminator_step_does_not_backpropagate_into_the_generator(real_batch):
    generator, discriminator, _, opt_d = _pair()
    before_g, before_d = _snapshot(generator), _snapshot(discriminator)
    fake = generator(generator.sample_latent(64))
    discriminator_step(discriminator, opt_d, npgen.tensor(real_batch), fake)
    assert all(p.grad is None for p in generator.parameters())
    assert all(np.array_equal(a, p.data) for a, p in zip(before_g, generator.parameters()))
    assert not all(np.array_equal(a, p.data) for a, p in zip(before_d, discriminator.parameters()))


def test_the_discriminator_step_on_the_stacked_batch_gives_the_two_pass_gradients(real_batch):
    _, discriminator, _, opt_d = _pair()
    fake = npgen.tensor(np.random.default_rng(0).uniform(-1, 1, (64, 784)).astype(np.float32))
    real = npgen.tensor(real_batch)
    discriminator_loss(discriminator(real), discriminator(fake)).backward()
    two_pass = [p.grad.copy() for p in discriminator.parameters()]
    stats = discriminator_step(discriminator, opt_d, real, fake)  # zero_grad, then one stacked pass
    for p, expected in zip(discriminator.parameters(), two_pass):
        assert np.allclose(p.grad, expected, rtol=1e-4, atol=1e-6)
    assert stats["d_real"] > 0 and stats["d_fake"] > 0


def test_the_generator_step_leaves_the_discriminator_untouched():
    generator, discriminator, opt_g, _ = _pair()
    before_g, before_d = _snapshot(generator), _snapshot(discriminator)
    generator_step(discriminator, opt_g, generator(generator.sample_latent(64)))
    assert all(np.array_equal(a, p.data) for a, p in zip(before_d, discriminator.parameters()))
    assert all(p.grad is None and p.requires_grad for p in discriminator.parameters())
    assert not all(np.array_equal(a, p.data) for a, p in zip(before_g, generator.parameters()))


def test_the_generator_keeps_its_own_mode_and_samples_with_running_statistics():
    generator, discriminator, _, _ = _pair()
    for _ in range(3):
        generator(generator.sample_latent(32))  # training mode: running statistics move
    generator.eval()
    assert discriminator.training
    z = generator.sample_latent(5)
    running = generator.net[3].running_mean.copy()
    first, second = generator(z).numpy(), generator(z[:1]).numpy()
    assert np.array_equal(generator.net[3].running_mean, running)  # eval mode leaves them alone
    assert np.allclose(first[:1], second, atol=1e-6)  # each sample independent of its batch


def test_generator_output_is_in_tanh_range_and_shaped_like_mnist():
    generator, _, _, _ = _pair()
    x = generator(generator.sample_latent(8)).numpy()
    assert x.shape == (8, 784) and x.min() >= -1 and x.max() <= 1


def test_generator_and_discriminator_gradients(device):
    generator = Generator(latent_dim=3, hidden=(4, 5, 6), x_dim=7).double()
    discriminator = Discriminator(x_dim=7, hidden=(5, 4)).double()
    z = make(device, (6, 3), seed=1)
    params = generator.parameters() + discriminator.parameters()
    assert npgen.gradcheck(lambda z, *ps: generator_loss(discriminator(generator(z))), [z, *params])
    x = make(device, (6, 7), seed=2)
    assert npgen.gradcheck(
        lambda x, *ps: discriminator_loss(discriminator(x), discriminator(generator(z))), [x, *params]
    )


def test_a_few_training_steps_run_on_every_backend(device):
    generator, discriminator, opt_g, opt_d = _pair(g={"hidden": (16, 32, 32, 64)}, d={"hidden": (32, 16)})
    real = npgen.Tensor(F.tanh(npgen.randn(32, 784)).data)
    stats = [train_step(generator, discriminator, opt_g, opt_d, real) for _ in range(3)]
    assert all(math.isfinite(s["loss_d"]) and 0 < s["d_real"] < 1 for s in stats)
