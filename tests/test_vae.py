"""The VAE: gradients, the reparametrization trick (statistically), ELBO sanity, importance weighting."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import make

import npgen
from npgen import F, backend
from npgen.data import binarize, load_mnist
from npgen.models import VAE


def _binary(device: str, shape: tuple, seed: int = 0) -> npgen.Tensor:
    values = (np.random.default_rng(seed).uniform(size=shape) < 0.5).astype(np.float64)
    return npgen.Tensor(backend.move(values, device))


def test_whole_loss_gradients_with_respect_to_every_parameter(device):
    model = VAE(x_dim=6, hidden=5, z_dim=3).double()
    x = _binary(device, (4, 6))
    eps = backend.move(np.random.default_rng(1).standard_normal((4, 3)), device)
    assert npgen.gradcheck(lambda *params: model.loss(x, eps), model.parameters())


def test_loss_gradients_at_full_size_in_fast_mode():
    model = VAE(hidden=50).double()
    x = _binary("numpy", (3, 784))
    eps = np.random.default_rng(1).standard_normal((3, 20))
    assert npgen.gradcheck(lambda *params: model.loss(x, eps), model.parameters(), mode="fast")


def test_reparametrization_gradients_with_respect_to_mu_and_logvar(device):
    model = VAE(x_dim=6, hidden=5, z_dim=3).double()
    mu, logvar = make(device, (4, 3), seed=1), make(device, (4, 3), seed=2)
    eps = backend.move(np.random.default_rng(3).standard_normal((4, 3)), device)
    assert npgen.gradcheck(lambda m, lv: model.reparameterize(m, lv, eps), [mu, logvar])
    x = _binary(device, (4, 6))
    decoded_loss = lambda m, lv: F.binary_cross_entropy_with_logits(model.decode(model.reparameterize(m, lv, eps)), x)  # noqa: E731
    assert npgen.gradcheck(decoded_loss, [mu, logvar])


def test_reparametrized_samples_have_mean_mu_and_variance_exp_logvar():
    # The classic bug scales ε by exp(logvar) (the variance) instead of exp(½ logvar): with
    # logvar far from 0 the two differ by far more than the sampling tolerance below.
    n = 200_000
    mu_values, logvar_values = np.array([0.5, -1.0, 2.0]), np.array([1.0, -1.5, 0.7])
    model = VAE(x_dim=2, hidden=2, z_dim=3).double()
    mu = npgen.tensor(np.tile(mu_values, (n, 1)))
    logvar = npgen.tensor(np.tile(logvar_values, (n, 1)))
    z = model.reparameterize(mu, logvar).numpy()
    var = np.exp(logvar_values)
    assert np.all(np.abs(z.mean(axis=0) - mu_values) < 5 * np.sqrt(var / n))
    assert np.all(np.abs(z.var(axis=0) - var) < 5 * var * np.sqrt(2 / n))  # sd of a sample variance: σ²√(2/n)


def test_monte_carlo_gradient_of_e_z_squared_matches_the_closed_form():
    # E[z²] = μ² + σ², so ∂/∂μ = 2μ and ∂/∂logvar = σ² = exp(logvar).
    n = 200_000
    model = VAE(x_dim=2, hidden=2, z_dim=1).double()
    mu = npgen.tensor(np.full((n, 1), 0.7), requires_grad=True)
    logvar = npgen.tensor(np.full((n, 1), 0.4), requires_grad=True)
    z = model.reparameterize(mu, logvar)
    (z * z).sum().backward()  # per-sample gradients land in mu.grad and logvar.grad
    for grad, expected in ((mu.grad, 2 * 0.7), (logvar.grad, math.exp(0.4))):
        assert abs(grad.mean() - expected) < 5 * grad.std() / math.sqrt(n)


@pytest.fixture(scope="module")
def mnist_test_batch() -> np.ndarray:
    images, _ = load_mnist("test")
    return binarize(images[:1000], "static")


def test_an_untrained_model_scores_about_784_ln2_nats(mnist_test_batch):
    npgen.manual_seed(0)
    loss = VAE().loss(npgen.tensor(mnist_test_batch)).item()
    assert abs(loss - 784 * math.log(2)) < 15, loss


def test_kl_term_matches_the_closed_form_of_the_encoder_outputs():
    model = VAE(x_dim=6, hidden=5, z_dim=3).double()
    x = _binary("numpy", (4, 6))
    _, kl = model.loss_terms(x)
    mu, logvar = (t.numpy() for t in model.encode(x))
    assert np.allclose(kl.numpy(), 0.5 * (mu**2 + np.exp(logvar) - 1 - logvar).sum(axis=1))


def _trained_a_little(x: npgen.Tensor, steps: int = 50) -> VAE:
    npgen.manual_seed(0)
    model = VAE(hidden=64, z_dim=5)
    opt = npgen.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        loss = model.loss(x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def test_importance_weighting_with_one_sample_is_the_one_sample_elbo(device, mnist_test_batch):
    x = npgen.Tensor(backend.move(mnist_test_batch[:50], device))
    model = VAE(hidden=64, z_dim=5)
    eps = backend.get_backend(device).rng.normal((1, 50, 5))
    iw = backend.to_numpy(model.log_likelihood(x, k=1, eps=eps).data)
    mu, logvar = model.encode(x)
    z = model.reparameterize(mu, logvar, eps[0])
    reconstruction = F.binary_cross_entropy_with_logits(model.decode(z), x, reduction="none").sum(axis=1).numpy()
    mu, logvar, z, e = (backend.to_numpy(a) for a in (mu.data, logvar.data, z.data, eps[0]))
    log_q = -0.5 * (e**2 + logvar + np.log(2 * np.pi)).sum(axis=1)
    log_p = -0.5 * (z**2 + np.log(2 * np.pi)).sum(axis=1)
    assert np.allclose(iw, -reconstruction + log_p - log_q, atol=1e-3)


def test_importance_weighted_bound_is_above_the_elbo_on_average(mnist_test_batch):
    x = npgen.tensor(mnist_test_batch[:200])
    model = _trained_a_little(x)
    elbo = -np.mean([model.loss(x).item() for _ in range(20)])
    iw_100 = model.log_likelihood(x, k=100, rows_per_pass=5000).numpy().mean()
    assert iw_100 > elbo
    one_sample = np.mean([model.log_likelihood(x, k=1).numpy().mean() for _ in range(20)])
    assert abs(one_sample - elbo) < 1.0  # k = 1 is an unbiased estimate of the ELBO


def test_samples_are_pixel_means_and_their_bernoulli_draws(device):
    means, samples = VAE(hidden=16, z_dim=2).sample(9)
    m, s = means.numpy(), samples.numpy()
    assert m.shape == s.shape == (9, 784)
    assert m.min() >= 0 and m.max() <= 1 and set(np.unique(s)) <= {0.0, 1.0}
