"""npgen's VAE training step written with the numpy peers a user might pick instead: HIPS autograd and DeZero.

The same architecture and loss as npgen's (784 → 500 → (μ, log σ²) of 20 → 500 → 784 Bernoulli logits, ReLU,
batch 128, one reparametrized sample, softplus-form BCE, closed-form KL, Adam lr 1e-3), in the
plain style of each library's own examples (DeZero initialises its layers its own way). Only the
benchmark imports this file; a library that is not installed gives its row a reason instead of a time.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

SIZES = [(784, 500), (500, 20), (500, 20), (20, 500), (500, 784)]  # encoder, μ head, log σ² head, decoder


def _uniform_layers(rng: np.random.Generator) -> list[list[np.ndarray]]:
    """[weight (in, out), bias] per layer, U(±1/√in) as PyTorch and npgen initialise, float32."""
    layers = []
    for n_in, n_out in SIZES:
        bound = 1 / np.sqrt(n_in)
        layers.append([rng.uniform(-bound, bound, s).astype(np.float32) for s in ((n_in, n_out), (n_out,))])
    return layers


def autograd_vae_step(rng: np.random.Generator) -> Callable[[], float]:
    """HIPS autograd: the loss as a function of nested parameter lists, ``grad`` of it, Adam written in numpy."""
    import autograd.numpy as anp
    from autograd import value_and_grad

    params = _uniform_layers(rng)
    x = (rng.uniform(size=(128, 784)) < 0.3).astype(np.float32)

    def loss(params: list, eps: np.ndarray) -> float:
        (w1, b1), (wm, bm), (wv, bv), (w2, b2), (w3, b3) = params
        h = anp.maximum(anp.dot(x, w1) + b1, 0.0)
        mu, logvar = anp.dot(h, wm) + bm, anp.dot(h, wv) + bv
        z = mu + anp.exp(0.5 * logvar) * eps
        logits = anp.dot(anp.maximum(anp.dot(z, w2) + b2, 0.0), w3) + b3
        bce = anp.maximum(logits, 0.0) - logits * x + anp.log1p(anp.exp(-anp.abs(logits)))
        kl = 0.5 * anp.sum(mu * mu + anp.exp(logvar) - 1.0 - logvar, axis=1)
        return anp.mean(anp.sum(bce, axis=1) + kl)

    gradient = value_and_grad(loss)
    moments = [[[np.zeros_like(p), np.zeros_like(p)] for p in layer] for layer in params]
    t = [0]

    def step() -> float:
        t[0] += 1
        value, grads = gradient(params, rng.standard_normal((128, 20)).astype(np.float32))
        for layer, layer_grads, layer_moments in zip(params, grads, moments):
            for p, g, (m, v) in zip(layer, layer_grads, layer_moments):
                m *= 0.9
                m += 0.1 * g
                v *= 0.999
                v += 0.001 * g * g
                p -= 1e-3 / (1 - 0.9 ** t[0]) * m / (np.sqrt(v / (1 - 0.999 ** t[0])) + 1e-8)
        return float(value)

    return step


def dezero_vae_step(rng: np.random.Generator) -> Callable[[], float]:
    """DeZero: a Model of Linear layers, functions from dezero.functions, its Adam optimizer."""
    restore = not hasattr(np, "int")
    if restore:  # DeZero 0.0.13 (the latest release) names np.int, an alias numpy 1.24 removed, at import time
        np.int = int
    try:
        import dezero.functions as F
        import dezero.layers as L
        from dezero import Model, optimizers
    finally:
        if restore:
            del np.int

    class VAE(Model):
        def __init__(self) -> None:
            super().__init__()
            self.encoder, self.mu, self.logvar = (
                L.Linear(500, in_size=784),
                L.Linear(20, in_size=500),
                L.Linear(20, in_size=500),
            )
            self.decoder1, self.decoder2 = L.Linear(500, in_size=20), L.Linear(784, in_size=500)

        def loss(self, x: np.ndarray, eps: np.ndarray):  # noqa: ANN201 (a DeZero Variable)
            h = F.relu(self.encoder(x))
            mu, logvar = self.mu(h), self.logvar(h)
            z = mu + F.exp(0.5 * logvar) * eps
            logits = self.decoder2(F.relu(self.decoder1(z)))
            magnitude = F.relu(logits) + F.relu(-logits)  # |logits|: DeZero has no abs
            bce = F.relu(logits) - logits * x + F.log(1 + F.exp(-magnitude))
            kl = 0.5 * F.sum(mu * mu + F.exp(logvar) - 1 - logvar, axis=1)
            return F.sum(F.sum(bce, axis=1) + kl) / len(x)

    model = VAE()
    opt = optimizers.Adam(alpha=1e-3).setup(model)
    x = (rng.uniform(size=(128, 784)) < 0.3).astype(np.float32)

    def step() -> float:
        loss = model.loss(x, rng.standard_normal((128, 20)).astype(np.float32))
        model.cleargrads()
        loss.backward()
        opt.update()
        return float(loss.data)

    return step


STEPS = {"HIPS autograd": autograd_vae_step, "DeZero": dezero_vae_step}
