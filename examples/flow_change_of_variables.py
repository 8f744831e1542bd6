"""Change of variables in a Real NVP flow: coupling log-dets against brute force, and what a dense one costs.

Question. For an invertible, differentiable map z = f(x) of ℝᴰ onto ℝᴰ the density of x is

    p(x) = p_Z(f(x)) · |det ∂f/∂x|,   so   log p(x) = log p_Z(z) + Σ_k log |det J_k|

for f = f_K ∘ … ∘ f_1 (the chain rule multiplies the Jacobians, J = J_K ⋯ J_1, and the
determinant of a product is the product of determinants). A dense D×D determinant costs O(D³)
(an LU factorisation); why is a flow's log-det cheap, and is it the right number?

An affine coupling keeps one half x₁ and changes the other: y₂ = x₂ ⊙ e^{s(x₁)} + t(x₁). Its
Jacobian, in the order (x₁, x₂), is block triangular,

    J = [ I          0         ]
        [ ∂y₂/∂x₁    diag(e^s) ]

so det J = Π e^{s_i} and log |det J| = Σ_i s_i: a sum of D/2 numbers, O(D), and the network
that makes s and t can be as complicated as we like: its own Jacobian never enters the
determinant.

Part (a) takes a small npgen flow (``npgen.models.Flow`` on 4×4 images, D = 16, float64, random
weights so that no coupling is the identity) and compares, at a few random points, each
coupling's log-det as the model computes it (Σ s) with log |det J_k| from the brute-force
Jacobian (``npgen.jacobian``: one backward pass per output) and ``np.linalg.slogdet``, and the
flow's summed log-det with log |det| of the whole map's Jacobian. It draws the Jacobians of the
first two couplings and of the whole flow (figure ``jacobians.png``).

Part (b) times ``np.linalg.slogdet`` of a D×D matrix for D = 16 … 4096 against the sum of D/2
values of s, both per image, fits the slope of log time against log D for D ≥ 256 (about 3 for
an LU factorisation once the matrix is large), and extrapolates to one training step of the flow
on a batch of 128 MNIST images (D = 784), next to a measured forward and backward pass of
``Flow(n_flows=4, n_hidden=1024)`` on that batch (figure ``cost.png``).

    python examples/flow_change_of_variables.py            # about half a minute on one core
    python examples/flow_change_of_variables.py --max-dim 2048 --points 1   # quicker
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

import npgen
from npgen import F, runs
from npgen.models import Flow
from npgen.plot import pyplot, save_figure

MNIST_DIM = 784
MNIST_BATCH = 128
SLOPE_FROM = 256  # smaller matrices are dominated by the call's fixed overhead, not by the O(D³) work


def parse_args() -> argparse.Namespace:
    """Command-line flags, each checked for type and range."""
    parser = argparse.ArgumentParser(
        description="Flow log-dets against brute-force Jacobians, and the cost of a dense determinant.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--side", type=runs.positive_int, default=4, help="images of side×side pixels (2 to 8)")
    parser.add_argument("--n-flows", type=runs.positive_int, default=2, help="pairs of couplings of the small flow")
    parser.add_argument("--hidden", type=runs.positive_int, default=8, help="hidden units of each coupling's MLP")
    parser.add_argument(
        "--weight-scale", type=runs.positive_float, default=0.5, help="std of the random weights (0 init is identity)"
    )
    parser.add_argument("--points", type=runs.positive_int, default=4, help="random inputs at which to compare")
    parser.add_argument("--min-dim", type=runs.positive_int, default=16, help="smallest D timed (a power of 2)")
    parser.add_argument("--max-dim", type=runs.positive_int, default=4096, help="largest D timed")
    parser.add_argument(
        "--step-hidden",
        type=runs.positive_int,
        default=1024,
        help="hidden units of the MNIST flow whose training step is timed for comparison",
    )
    runs.add_common_flags(parser, "runs/flow_change_of_variables")
    args = parser.parse_args()
    if not 2 <= args.side <= 8:
        parser.error(f"--side {args.side}: choose 2 to 8 (the brute-force Jacobian costs side² backward passes)")
    if args.min_dim > args.max_dim:
        parser.error(f"--min-dim {args.min_dim} is above --max-dim {args.max_dim}")
    runs.use_threads(args.threads)
    return args


def randomize(module: npgen.nn.Module, scale: float, rng: np.random.Generator) -> None:
    """Replace every weight by N(0, scale²) draws: a fresh coupling's last layer is zero, the identity map."""
    for p in module.parameters():
        p.data[...] = rng.normal(0.0, scale, p.shape).astype(p.dtype)


def coupling_map(flow: Flow, k: int) -> Callable[[npgen.Tensor], tuple[npgen.Tensor, npgen.Tensor]]:
    """Coupling k as a map of the whole vector (1, D) in checkerboard order → (output (1, D), its log-det)."""
    kept, changed = k % 2, 1 - k % 2  # as Flow.forward alternates the halves

    def apply(v: npgen.Tensor) -> tuple[npgen.Tensor, npgen.Tensor]:
        halves = list(F.split(v, [flow.halves[0]], axis=1))
        halves[changed], logdet = flow.couplings[k](halves[kept], halves[changed])
        return F.concatenate(halves, axis=1), logdet

    return apply


def log_abs_det(jacobian: np.ndarray) -> float:
    """log |det J| by LU (slogdet), refusing a singular J."""
    sign, value = np.linalg.slogdet(jacobian)
    if sign == 0:
        raise ArithmeticError("the Jacobian is singular: the map is not invertible there")
    return float(value)


def compare_at(flow: Flow, x: np.ndarray) -> dict[str, Any]:
    """At one input x (D,): each coupling's log-det (model and brute force) and the whole flow's, plus the Jacobians."""
    v = x[None, :]
    couplings, jacobians = [], []
    for k in range(len(flow.couplings)):
        apply = coupling_map(flow, k)
        y, model_logdet = apply(npgen.tensor(v))
        jacobian = npgen.jacobian(lambda t, f=apply: f(t)[0], v)[0, :, 0, :]
        couplings.append({"model": model_logdet.item(), "brute_force": log_abs_det(jacobian)})
        jacobians.append(jacobian)
        v = y.numpy()  # the next coupling's input
    _, flow_logdet = flow(npgen.tensor(x[None, :]))
    whole = npgen.jacobian(lambda t: flow(t)[0], x[None, :])[0, :, 0, :]
    chain = np.linalg.multi_dot(jacobians[::-1]) if len(jacobians) > 1 else jacobians[0]  # J = J_K ⋯ J_1
    return {
        "couplings": couplings,
        "flow_model": flow_logdet.item(),
        "flow_brute_force": log_abs_det(whole),
        "sum_of_couplings": sum(c["model"] for c in couplings),
        "chain_rule_max_error": float(np.abs(chain - whole).max()),
        "jacobians": jacobians,
        "whole": whole,
    }


def triangular_structure(jacobian: np.ndarray, kept: slice, changed: slice) -> dict[str, float]:
    """How exactly a coupling's Jacobian has the block form [[I, 0], [∂y₂/∂x₁, diag(e^s)]] (0.0: exactly)."""
    diagonal_block = jacobian[changed, changed]
    return {
        "identity_block_error": float(np.abs(jacobian[kept, kept] - np.eye(jacobian[kept, kept].shape[0])).max()),
        "zero_block_max": float(np.abs(jacobian[kept, changed]).max()),
        "diagonal_block_off_diagonal_max": float(np.abs(diagonal_block - np.diag(np.diag(diagonal_block))).max()),
        "mixing_block_max": float(np.abs(jacobian[changed, kept]).max()),  # ∂y₂/∂x₁: anything at all
        "sum_log_diagonal": float(np.log(np.abs(np.diag(diagonal_block))).sum()),  # = Σ s
    }


def seconds_per_call(fn: Callable[[], Any], budget: float = 0.2, rounds: int = 3) -> float:
    """Best of ``rounds`` timings of fn(), each a loop long enough to take about ``budget`` seconds."""
    start = time.perf_counter()
    fn()  # warm up, and a first estimate of the cost
    once = max(time.perf_counter() - start, 1e-7)
    loops = max(1, int(budget / once))
    best = math.inf
    for _ in range(rounds if once < 1.0 else 1):  # one round of a slow call is timing enough
        start = time.perf_counter()
        for _ in range(loops):
            fn()
        best = min(best, (time.perf_counter() - start) / loops)
    return best


def dims_to_time(min_dim: int, max_dim: int) -> list[int]:
    """Powers of two from min_dim to max_dim, and MNIST's D = 784 if it lies between."""
    dims = [2**e for e in range(max(0, math.ceil(math.log2(min_dim))), int(math.log2(max_dim)) + 1)]
    return sorted(set(dims + ([MNIST_DIM] if min_dim <= MNIST_DIM <= max_dim else [])))


def time_dense_log_det(dims: list[int], rng: np.random.Generator) -> list[float]:
    """Seconds for one slogdet of a random D×D matrix (a Jacobian with no structure), per D."""
    seconds = []
    for d in runs.progress(dims, "slogdet"):
        matrix = rng.normal(size=(d, d)) / math.sqrt(d) + np.eye(d)
        seconds.append(seconds_per_call(lambda m=matrix: np.linalg.slogdet(m)))
    return seconds


def time_coupling_log_det(dims: list[int], rng: np.random.Generator) -> list[float]:
    """Seconds per image for a coupling's log-det Σ s over D/2 values, timed on a batch of 128 rows."""
    seconds = []
    for d in dims:
        s = rng.normal(size=(MNIST_BATCH, max(d // 2, 1)))
        seconds.append(seconds_per_call(lambda a=s: a.sum(axis=1)) / MNIST_BATCH)
    return seconds


def time_flow(hidden: int, rng: np.random.Generator) -> tuple[float, float]:
    """Seconds of (one training pass on 128 images, one backward pass of a single image) for an MNIST Flow(n_flows=4).

    The first is what a training step of examples/flow.py costs (without the optimizer's update);
    the second is one row of a brute-force Jacobian, of which an image needs D = 784.
    """
    flow = Flow(n_flows=4, n_hidden=hidden)
    images = rng.integers(0, 256, (MNIST_BATCH, MNIST_DIM)).astype(np.uint8)
    one = npgen.tensor(rng.normal(size=(1, MNIST_DIM)).astype(np.float32))
    upstream = np.zeros((1, MNIST_DIM), np.float32)
    upstream[0, 0] = 1.0

    def step() -> None:
        """The loss of a batch and its gradients."""
        flow.zero_grad()
        flow.bpd(images).mean().backward()

    def jacobian_row() -> None:
        """∂z₀/∂y for one image: one forward and one backward pass, as npgen.jacobian does per output."""
        leaf = npgen.Tensor(one.data.copy(), requires_grad=True)
        flow(leaf)[0].backward(upstream)

    step_seconds = seconds_per_call(step, budget=0.5, rounds=2)
    for p in flow.parameters():
        p.requires_grad = False  # a Jacobian with respect to the input needs no weight gradients
    return step_seconds, seconds_per_call(jacobian_row, budget=0.3, rounds=2)


def slope(dims: list[int], seconds: list[float]) -> float:
    """Least-squares slope of log t against log D over D ≥ SLOPE_FROM (all D if fewer than two are that large)."""
    large = [(d, t) for d, t in zip(dims, seconds) if d >= SLOPE_FROM]
    pairs = large if len(large) >= 2 else list(zip(dims, seconds))
    x, y = np.log([d for d, _ in pairs]), np.log([t for _, t in pairs])
    return float(np.polyfit(x, y, 1)[0])


def plot_jacobians(jacobians: list[np.ndarray], whole: np.ndarray, split: int, path: Path) -> None:
    """The first two couplings' Jacobians (block triangular) and the whole flow's (dense), in checkerboard order."""
    plt = pyplot()
    panels = [(jacobians[0], "coupling 1: x₁ kept, x₂ changed")]
    if len(jacobians) > 1:
        panels.append((jacobians[1], "coupling 2: x₂ kept, x₁ changed"))
    panels.append((whole, f"whole flow ({len(jacobians)} couplings)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels), 4.4), layout="constrained")
    for ax, (matrix, title) in zip(np.atleast_1d(axes), panels):
        limit = np.abs(matrix).max()
        image = ax.imshow(matrix, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        for position in (split - 0.5,):  # the boundary between the black-square and white-square halves
            ax.axhline(position, color="k", lw=0.8)
            ax.axvline(position, color="k", lw=0.8)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("input j (black squares, then white)", fontsize=8)
        ax.set_ylabel("output i", fontsize=8)
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.suptitle("Jacobians ∂yᵢ/∂xⱼ: a coupling's is block triangular with a diagonal block eˢ", fontsize=10)
    save_figure(fig, path, tight=False)


def plot_costs(dims: list[int], dense: list[float], coupling: list[float], fitted: float, path: Path) -> None:
    """Seconds per image of a dense log-det and of a coupling's Σ s against D, with D³ and D guides."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.loglog(dims, dense, "o-", label=f"dense slogdet (D×D), fitted slope {fitted:.2f} for D ≥ {SLOPE_FROM}")
    ax.loglog(dims, coupling, "s-", label="coupling log-det Σ s (D/2 values)")
    d = np.array(dims, float)
    ax.loglog(d, dense[-1] * (d / d[-1]) ** 3, "k--", lw=0.8, label="∝ D³")
    ax.loglog(d, coupling[-1] * (d / d[-1]), "k:", lw=0.8, label="∝ D")
    if MNIST_DIM in dims:
        ax.axvline(MNIST_DIM, color="gray", lw=0.8)
        ax.text(MNIST_DIM * 1.05, dense[-1] * 0.3, "MNIST, D = 784", fontsize=8, color="gray")
    ax.set(xlabel="dimension D", ylabel="seconds per image", title="the cost of a log-determinant")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def main() -> None:
    """Run both parts, write the figures and results.json, print the numbers."""
    args = parse_args()
    runs.prepare_out(args.out)
    npgen.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    # (a) log-dets: the model's Σ s against slogdet of the brute-force Jacobian
    flow = Flow(n_flows=args.n_flows, n_hidden=args.hidden, side=args.side).double()
    randomize(flow, args.weight_scale, rng)
    points = [compare_at(flow, rng.normal(size=flow.dim)) for _ in runs.progress(range(args.points), "Jacobians")]
    first = points[0]
    half = flow.halves[0]
    black, white = slice(0, half), slice(half, flow.dim)
    structure = [triangular_structure(first["jacobians"][0], black, white)]
    if len(first["jacobians"]) > 1:
        structure.append(triangular_structure(first["jacobians"][1], white, black))
    coupling_errors = [abs(c["model"] - c["brute_force"]) for p in points for c in p["couplings"]]
    flow_errors = [abs(p["flow_model"] - p["flow_brute_force"]) for p in points]
    plot_jacobians(first["jacobians"], first["whole"], half, args.out / "jacobians.png")

    # (b) the cost of a dense log-det against D, and what it would mean for MNIST
    dims = dims_to_time(args.min_dim, args.max_dim)
    dense = time_dense_log_det(dims, rng)
    coupling = time_coupling_log_det(dims, rng)
    fitted = slope(dims, dense)
    mnist_dense = dense[dims.index(MNIST_DIM)] if MNIST_DIM in dims else time_dense_log_det([MNIST_DIM], rng)[0]
    step_seconds, row_seconds = time_flow(args.step_hidden, rng)
    plot_costs(dims, dense, coupling, fitted, args.out / "cost.png")

    results = {
        "args": runs.flags(args),
        "dim": flow.dim,
        "couplings": len(flow.couplings),
        "points": [
            {k: v for k, v in p.items() if k not in ("jacobians", "whole")} for p in points
        ],  # per point: each coupling's model and brute-force log-det, the flow's, the chain rule's error
        "max_coupling_log_det_error": max(coupling_errors),
        "max_flow_log_det_error": max(flow_errors),
        "max_sum_of_couplings_error": max(abs(p["sum_of_couplings"] - p["flow_model"]) for p in points),
        "max_chain_rule_error": max(p["chain_rule_max_error"] for p in points),
        "structure_first_point": structure,
        "timing": {
            "dims": dims,
            "dense_slogdet_seconds": dense,
            "coupling_log_det_seconds_per_image": coupling,
            "fitted_slope": fitted,
            "slope_from_dim": SLOPE_FROM,
            "mnist_dense_seconds_per_image": mnist_dense,
            "mnist_dense_seconds_per_batch": MNIST_BATCH * mnist_dense,
            "mnist_flow_step_seconds": step_seconds,
            "mnist_jacobian_row_seconds": row_seconds,  # one backward pass of one image
            "mnist_jacobian_seconds_per_batch": MNIST_BATCH * MNIST_DIM * row_seconds,
            "mnist_flow_step_hidden": args.step_hidden,
            "mnist_batch": MNIST_BATCH,
        },
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2))

    print(
        f"(a) flow on {args.side}×{args.side} images (D = {flow.dim}), {len(flow.couplings)} couplings, "
        f"{args.points} random inputs"
    )
    for k, c in enumerate(first["couplings"], 1):
        print(f"    coupling {k}: model Σ s = {c['model']:+.10f}   slogdet of its Jacobian = {c['brute_force']:+.10f}")
    print(
        f"    whole flow: Σ couplings = {first['sum_of_couplings']:+.10f}   "
        f"slogdet of the whole Jacobian = {first['flow_brute_force']:+.10f}"
    )
    print(
        f"    largest |model − brute force| over all inputs: couplings {max(coupling_errors):.1e}, "
        f"flow {max(flow_errors):.1e}; |J − J_K⋯J_1| ≤ {results['max_chain_rule_error']:.1e}"
    )
    print(
        f"    coupling 1's Jacobian: identity block off by {structure[0]['identity_block_error']:.1e}, "
        f"zero block max {structure[0]['zero_block_max']:.1e}, diagonal block off-diagonal max "
        f"{structure[0]['diagonal_block_off_diagonal_max']:.1e}, ∂y₂/∂x₁ up to {structure[0]['mixing_block_max']:.2f}"
    )
    print(
        f"(b) slogdet of a D×D matrix: slope {fitted:.2f} on log-log for D ≥ {SLOPE_FROM}; "
        + ", ".join(f"D={d}: {t * 1e3:.3g} ms" for d, t in zip(dims, dense))
    )
    print(
        f"    a coupling's Σ s per image: {coupling[0] * 1e9:.0f} ns at D={dims[0]}, "
        f"{coupling[-1] * 1e9:.0f} ns at D={dims[-1]}"
    )
    print(
        f"    MNIST (D = 784), batch of {MNIST_BATCH}: the dense determinants alone {MNIST_BATCH * mnist_dense:.2f} s "
        f"({mnist_dense * 1e3:.1f} ms per image); building the Jacobians by backward passes "
        f"{MNIST_BATCH * MNIST_DIM * row_seconds:.0f} s (784 × {row_seconds * 1e3:.1f} ms per image); "
        f"a whole training pass of Flow(n_flows=4, n_hidden={args.step_hidden}), couplings' Σ s included, "
        f"{step_seconds:.2f} s"
    )
    print(f"wrote {args.out}/")


if __name__ == "__main__":
    main()
