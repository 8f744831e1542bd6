"""Real NVP normalizing flow (Dinh et al., 2017) with MLP affine couplings, for MNIST pixels.

A flow is an invertible map f from images to z with a tractable Jacobian, so the change
of variables gives an exact log-likelihood:

    log p(x) = log N(f(x); 0, I) + log |det ∂f/∂x|,  the log-det summed over every stage.

Stages, for integer pixels x ∈ {0..255}^D (D = 784):
1. dequantize   x̃ = x + u, u ~ U[0, 1)^D, and scale v = x̃/256        log-det −D ln 256
2. squash       p = α/2 + (1 − α) v  (keeps p off 0 and 1, α = 1e-5)  log-det  D ln(1 − α)
3. logit        y = ln p − ln(1 − p)                                 log-det  Σ −ln p − ln(1 − p)
4. couplings    with a binary mask b: y' = b⊙y + (1−b)⊙(y⊙e^s + t), where (s, t) come from
                an MLP that sees only b⊙y, so the Jacobian is triangular:  log-det Σ (1−b)⊙s
Bits per dimension: −log p(x̃) / (D ln 2); the −D ln 256 of stage 1 is what puts the
likelihood of x̃ ∈ [0, 256)^D on the scale of a discrete model of x.

``MaskedCoupling`` is stage 4 as written above. The flow runs ``Coupling``, the same function
in the split form of the paper (eqs. 4–5): y₁ = x₁, y₂ = x₂⊙e^s(x₁) + t(x₁), with the
checkerboard's two squares as x₁ and x₂. The masked MLP reads 784 inputs of which the mask
zeroes half and writes 2 × 784 outputs of which the mask drops half; the weights on those
never get a gradient. The split MLP (392 → hidden → hidden → 2 × 392) has exactly the live
weights: 35% fewer parameters and multiply-adds, the same training (a test proves the two
equal). The flow sorts the pixels once, black squares then white, so that each coupling's
halves are the two halves of that order; the Gaussian density of z does not care about order.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import backend, checks
from .. import functional as F
from ..core import Tensor, no_grad
from ..nn import Linear, Module, ReLU, Sequential

ALPHA = 1e-5
LOG_2PI = math.log(2 * math.pi)


def checkerboard(side: int = 28, parity: int = 0) -> np.ndarray:
    """Flattened side×side mask with b_ij = 1 where (i + j) % 2 == parity."""
    i, j = np.indices((side, side))
    return ((i + j) % 2 == parity).astype(np.float32).reshape(-1)


def preprocess(x: Any, u: Any) -> tuple[Any, Any]:
    """Integer pixels and dequantization noise → logit-space y and the log-det of stages 1–3 per image."""
    d = x.shape[1]
    xp = backend.get_array_module(x)
    p = ALPHA / 2 + (1 - ALPHA) * (x + u) / 256
    log_p, log_1mp = xp.log(p), xp.log1p(-p)
    logdet = -d * math.log(256) + d * math.log(1 - ALPHA) - (log_p + log_1mp).sum(axis=1)
    return log_p - log_1mp, logdet


def postprocess(y: Any) -> Any:
    """The inverse of ``preprocess`` without the noise: logit-space y → x̃ in [0, 256)."""
    p = 0.5 * (1 + backend.get_array_module(y).tanh(0.5 * y))  # σ(y), without overflow
    return (p - ALPHA / 2) / (1 - ALPHA) * 256


class MaskedCoupling(Module):
    """Affine coupling y = b⊙x + (1−b)⊙(x⊙e^s + t), with s = tanh(·) and t from an MLP of b⊙x.

    The MLP's last layer starts at zero, so a new coupling is exactly the identity.
    """

    def __init__(self, mask: np.ndarray, n_hidden: int = 1024):
        super().__init__()
        d = len(mask)
        self.register_buffer("mask", backend.on_device(np.asarray(mask, np.float32)))
        self.net = Sequential(Linear(d, n_hidden), ReLU(), Linear(n_hidden, n_hidden), ReLU(), Linear(n_hidden, 2 * d))
        last = self.net[-1]
        last.weight.data[...] = 0
        last.bias.data[...] = 0

    def _scale_and_shift(self, x_masked: Tensor) -> tuple[Tensor, Tensor]:
        """(s, t) on the positions that change: (1−b)⊙tanh(first half), (1−b)⊙(second half)."""
        scale, shift = F.split(self.net(x_masked), 2, axis=1)
        keep = 1 - self.mask
        return F.tanh(scale) * keep, shift * keep

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(y, log|det ∂y/∂x| per row)."""
        s, t = self._scale_and_shift(x * self.mask)
        return x * F.exp(s) + t, s.sum(axis=1)  # where b = 1, s = t = 0 leave x unchanged

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """(x, log|det ∂x/∂y| per row): b⊙y = b⊙x, so s and t are recomputed exactly."""
        s, t = self._scale_and_shift(y * self.mask)
        return (y - t) * F.exp(-s), -s.sum(axis=1)


class Coupling(Module):
    """The masked coupling in split form: y₁ = x₁, y₂ = x₂⊙e^s + t with (s, t) = MLP(x₁).

    x₁ (``kept`` values) passes unchanged; x₂ (``changed`` values) is scaled and shifted, with
    s = tanh(first half) and t = second half of the MLP's 2·changed outputs. The Jacobian is
    triangular with diagonal (1, e^s): log|det| = Σ s. The first layer is initialised with the
    bound 1/√full_dim of the masked form's layer, which reads all ``full_dim`` inputs, so both
    forms start from the same distribution; the last layer starts at zero (the identity).
    """

    def __init__(self, kept: int, changed: int, n_hidden: int = 1024, full_dim: int | None = None):
        super().__init__()
        self.net = Sequential(
            Linear(kept, n_hidden), ReLU(), Linear(n_hidden, n_hidden), ReLU(), Linear(n_hidden, 2 * changed)
        )
        first, last = self.net[0], self.net[-1]
        narrower = math.sqrt(kept / (full_dim or kept))  # U(±1/√kept) scaled to U(±1/√full_dim)
        first.weight.data *= narrower
        first.bias.data *= narrower
        last.weight.data[...] = 0
        last.bias.data[...] = 0

    def _scale_and_shift(self, x1: Tensor) -> tuple[Tensor, Tensor]:
        scale, shift = F.split(self.net(x1), 2, axis=1)
        return F.tanh(scale), shift

    def forward(self, x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor]:
        """(y₂, log|det ∂y/∂x| per row); y₁ is x₁ itself."""
        s, t = self._scale_and_shift(x1)
        return x2 * F.exp(s) + t, s.sum(axis=1)

    def inverse(self, y1: Tensor, y2: Tensor) -> tuple[Tensor, Tensor]:
        """(x₂, log|det ∂x/∂y| per row): x₁ = y₁, so s and t are recomputed exactly."""
        s, t = self._scale_and_shift(y1)
        return (y2 - t) * F.exp(-s), -s.sum(axis=1)


class Flow(Module):
    """2·n_flows couplings alternating the checkerboard's two squares, on side×side images.

    ``forward`` and ``inverse`` take pixels in checkerboard order (``order``): the black squares,
    then the white ones. Coupling k keeps the black half and changes the white one for even k,
    and the other way round for odd k, as the masked form alternates the mask and its complement.
    """

    def __init__(self, n_flows: int = 4, n_hidden: int = 1024, side: int = 28):
        super().__init__()
        if n_flows < 1 or side < 2:
            raise ValueError(f"a Flow needs n_flows ≥ 1 and side ≥ 2, got n_flows={n_flows}, side={side}")
        self.side, self.dim = side, side * side
        black = checkerboard(side, 0)
        order = np.concatenate([np.flatnonzero(black), np.flatnonzero(1 - black)])
        to_device = backend.on_device
        self.register_buffer("order", to_device(order))  # image position of each value in checkerboard order
        self.register_buffer("image_order", to_device(np.argsort(order)))  # and back
        self.halves = (int(black.sum()), self.dim - int(black.sum()))
        couplings = []
        for k in range(2 * n_flows):
            kept, changed = self.halves[k % 2], self.halves[1 - k % 2]  # even k keeps the black half
            couplings.append(Coupling(kept, changed, n_hidden, full_dim=self.dim))
        self.couplings = Sequential(*couplings)

    def forward(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """Logit-space y in checkerboard order → (z, Σ coupling log-dets per row)."""
        halves = list(F.split(y, [self.halves[0]], axis=1))
        logdet = 0.0
        for k, coupling in enumerate(self.couplings):
            kept, changed = k % 2, 1 - k % 2
            halves[changed], ld = coupling(halves[kept], halves[changed])
            logdet = ld + logdet
        return F.concatenate(halves, axis=1), logdet

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """z → (logit-space y in checkerboard order, Σ inverse log-dets per row), the couplings reversed."""
        halves = list(F.split(z, [self.halves[0]], axis=1))
        logdet = 0.0
        for k in reversed(range(len(self.couplings))):
            kept, changed = k % 2, 1 - k % 2
            halves[changed], ld = self.couplings[k].inverse(halves[kept], halves[changed])
            logdet = ld + logdet
        return F.concatenate(halves, axis=1), logdet

    def log_prob(self, x: Any, u: Any = None) -> Tensor:
        """log p(x̃) in nats per image for integer pixels x (N, D), dequantized with u (default U[0,1) noise)."""
        x = checks.integer_pixels("Flow.log_prob", x.data if isinstance(x, Tensor) else x, self.dim)
        dtype = self.couplings[0].net[0].weight.dtype
        if u is None:
            u = backend.backend_of(x).rng.uniform(x.shape, dtype=dtype)
        y, preprocess_logdet = preprocess(x.astype(dtype), u)
        z, coupling_logdet = self(Tensor(y[:, self.order]))
        log_pz = -0.5 * (z * z + LOG_2PI).sum(axis=1)
        return log_pz + coupling_logdet + preprocess_logdet

    def bpd(self, x: Any, u: Any = None) -> Tensor:
        """Bits per dimension −log p(x̃)/(D ln 2), per image."""
        return self.log_prob(x, u) * (-1 / (self.dim * math.log(2)))

    def sample(self, n: int, temperature: float = 1.0, z: Any = None) -> Tensor:
        """n images with integer pixel values 0..255 (float32): z ~ N(0, T²I) through the inverse flow.

        ``z`` (n, D) standard normal noise may be given; it is scaled by the temperature.
        """
        checks.number("Flow.sample", "temperature", temperature, checks.NONNEGATIVE)
        weight = self.couplings[0].net[0].weight
        if z is not None and tuple(z.shape) != (n, self.dim):
            raise ValueError(f"Flow.sample: z must have shape (n, D) = {(n, self.dim)}, got {tuple(z.shape)}")
        z = (
            backend.backend_of(weight.data).rng.normal((n, self.dim), weight.dtype)
            if z is None
            else z.data
            if isinstance(z, Tensor)
            else z
        )
        z = z * temperature
        with no_grad():
            y, _ = self.inverse(Tensor(z))
        xp = backend.get_array_module(weight.data)
        return Tensor(xp.clip(xp.floor(postprocess(y.data[:, self.image_order])), 0, 255))
