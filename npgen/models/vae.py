"""Variational autoencoder (Kingma & Welling, 2014) for binarized MNIST.

The encoder q(z|x) = N(μ(x), diag σ²(x)) and the decoder p(x|z) = Bernoulli(σ(logits(z)))
are MLPs; the prior is p(z) = N(0, I). Training minimises the negative evidence lower
bound per image, in nats:

    −ELBO(x) = E_q[−log p(x|z)] + KL(q(z|x) ‖ p(z))
             ≈ Σ_m softplus(ℓ_m) − x_m ℓ_m  +  ½ Σ_d (μ_d² + σ_d² − 1 − log σ_d²)

with one sample z = μ + σ ⊙ ε, ε ~ N(0, I) (the reparametrization trick: the noise ε does
not depend on the encoder, so gradients flow through μ and σ = exp(½ log σ²)).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import backend
from .. import functional as F
from ..core import Tensor, no_grad
from ..nn import Linear, Module, ReLU, Sequential

LOG_2PI = math.log(2 * math.pi)


class VAE(Module):
    """Encoder 784 → hidden → (μ, log σ²) of size z_dim; decoder z_dim → hidden → 784 Bernoulli logits."""

    def __init__(self, x_dim: int = 784, hidden: int = 500, z_dim: int = 20):
        super().__init__()
        self.x_dim, self.hidden, self.z_dim = x_dim, hidden, z_dim
        self.encoder = Sequential(Linear(x_dim, hidden), ReLU())
        self.mu_head = Linear(hidden, z_dim)
        self.logvar_head = Linear(hidden, z_dim)
        self.decoder = Sequential(Linear(z_dim, hidden), ReLU(), Linear(hidden, x_dim))

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The parameters (μ, log σ²) of q(z|x)."""
        h = self.encoder(x)
        return self.mu_head(h), self.logvar_head(h)

    def decode(self, z: Tensor) -> Tensor:
        """The Bernoulli logits of p(x|z) (apply sigmoid for the pixel means)."""
        return self.decoder(z)

    def reparameterize(self, mu: Tensor, logvar: Tensor, eps: Any = None) -> Tensor:
        """z = μ + exp(½ log σ²) ⊙ ε: the standard deviation, not the variance, scales ε.

        ``eps`` defaults to a fresh N(0, I) draw from npgen's generator; pass it to make
        the computation deterministic (gradient checks, paired comparisons).
        """
        if eps is None:
            eps = backend.backend_of(mu.data).rng.normal(mu.shape, mu.dtype)
        return mu + F.exp(0.5 * logvar) * eps

    def loss_terms(self, x: Tensor, eps: Any = None) -> tuple[Tensor, Tensor]:
        """Per-image reconstruction loss −log p(x|z) (one sample) and KL(q(z|x) ‖ p(z)), in nats."""
        if x.dtype.kind != "f":  # raw uint8 pixels would be read as Bernoulli targets of 0..255
            raise TypeError(f"the VAE models binary images (0/1 floats), got {x.dtype} pixels: use npgen.data.binarize")
        if x.ndim != 2 or x.shape[1] != self.x_dim:
            raise ValueError(f"the VAE takes a batch of shape (N, {self.x_dim}), got {x.shape} (one image: x[None])")
        mu, logvar = self.encode(x)
        logits = self.decode(self.reparameterize(mu, logvar, eps))
        reconstruction = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(axis=1)
        return reconstruction, F.gaussian_kl(mu, logvar)

    def loss(self, x: Tensor, eps: Any = None) -> Tensor:
        """The negative ELBO averaged over the batch (nats per image)."""
        reconstruction, kl = self.loss_terms(x, eps)
        return (reconstruction + kl).mean()

    def reconstruct(self, x: Tensor) -> Tensor:
        """Pixel means σ(decode(μ(x))): the decoder's picture of the encoder's best guess."""
        with no_grad():
            return F.sigmoid(self.decode(self.encode(x)[0]))

    def sample(self, n: int, z: Any = None, u: Any = None) -> tuple[Tensor, Tensor]:
        """``n`` images from the model: (Bernoulli means, Bernoulli samples), each (n, 784).

        z ~ N(0, I) and the uniform noise u of the Bernoulli draws (samples = u < means)
        come from npgen's generator unless given.
        """
        rng = backend.get_backend(self.mu_head.weight.device).rng
        dtype = self.mu_head.weight.dtype
        z = rng.normal((n, self.z_dim), dtype) if z is None else z
        with no_grad():
            means = F.sigmoid(self.decode(Tensor(z)))
        u = rng.uniform(means.shape, dtype=dtype) if u is None else u
        return means, Tensor((u < means.data).astype(dtype))

    def log_likelihood(self, x: Tensor, k: int = 1000, eps: Any = None, rows_per_pass: int = 20000) -> Tensor:
        """Importance-weighted estimate of log p(x) per image (nats), with k samples from q(z|x):

            log p(x) ≈ logsumexp_i [log p(x|z_i) + log p(z_i) − log q(z_i|x)] − log k.

        It is a lower bound that tightens as k grows (k = 1 gives a one-sample ELBO).
        Samples are decoded in passes of about ``rows_per_pass`` rows, so k = 1000 over
        the whole test set fits in memory. ``eps`` (k, N, z_dim) fixes the noise.
        """
        if k < 1:
            raise ValueError(f"log_likelihood needs k ≥ 1 importance samples, got {k}")
        with no_grad():
            mu, logvar = self.encode(x)
            xp, rng = backend.get_array_module(mu.data), backend.backend_of(mu.data).rng
            std = xp.exp(0.5 * logvar.data)
            per_pass = max(1, rows_per_pass // len(x))
            log_weights = []
            for start in range(0, k, per_pass):
                n = min(per_pass, k - start)
                e = rng.normal((n, *mu.shape), mu.dtype) if eps is None else eps[start : start + n]
                z = mu.data + std * e  # (n, N, z_dim)
                logits = self.decode(Tensor(z.reshape(-1, self.z_dim))).reshape(n, len(x), self.x_dim)
                log_px = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").data.sum(axis=2)
                log_pz = -0.5 * (z * z + LOG_2PI).sum(axis=2)
                log_qz = -0.5 * (e * e + logvar.data + LOG_2PI).sum(axis=2)
                log_weights.append(log_px + log_pz - log_qz)
            log_w = xp.concatenate(log_weights, axis=0).astype(np.float64)  # (k, N)
            return F.logsumexp(Tensor(log_w), axis=0) - math.log(k)
