"""Figures: image grids and training curves, written as PNG files (matplotlib, no display needed)."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from . import backend
from .core import Tensor


def pyplot() -> ModuleType:
    """matplotlib.pyplot, imported when the first figure is drawn: the import takes ~0.7 s of a start.

    A run refused at a bad flag, or ``--help``, answers without it. Figures go to files (the Agg
    backend, no screen needed) unless the caller imported pyplot with a backend of their own first.
    """
    if "matplotlib.pyplot" not in sys.modules:
        import matplotlib

        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def image_grid(images: Any, nrow: int, pad: int = 2, side: int = 28) -> np.ndarray:
    """Tile (N, side·side) images, values in [0, 1], into one 2-D array with ``nrow`` rows (white gaps)."""
    images = backend.to_numpy(images.data if isinstance(images, Tensor) else images).reshape(-1, side, side)
    ncol = -(-len(images) // nrow)
    grid = np.ones((nrow * (side + pad) + pad, ncol * (side + pad) + pad), np.float32)
    for i, image in enumerate(images):
        r, c = divmod(i, ncol)
        grid[pad + r * (side + pad) : (r + 1) * (side + pad), pad + c * (side + pad) : (c + 1) * (side + pad)] = image
    return grid


def save_grid(
    images: Any, path: str | Path, nrow: int, title: str = "", labels: Sequence[str] | None = None, pad: int = 2
) -> None:
    """Save images (N, 784) with values in [0, 1] as a grid PNG; ``labels`` caption each tile."""
    grid = image_grid(images, nrow, pad)
    fig, ax = pyplot().subplots(figsize=(grid.shape[1] / 40 + 0.5, grid.shape[0] / 40 + 0.6))
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ncol = -(-len(labels or []) // nrow)
    for i, label in enumerate(labels or []):
        r, c = divmod(i, ncol)
        ax.text(pad + c * (28 + pad) + 1, pad + r * (28 + pad) + 1, label, color="yellow", fontsize=7, va="top")
    ax.set_axis_off()
    ax.set_title(title, fontsize=9)
    save_figure(fig, path)


def save_curves(
    series: Mapping[str, Sequence[float]], path: str | Path, xlabel: str, ylabel: str, title: str = "", x: Any = None
) -> None:
    """Save one line per named series (e.g. train and validation loss per epoch) as a PNG."""
    fig, ax = pyplot().subplots(figsize=(6, 4))
    for name, values in series.items():
        xs = x if x is not None else np.arange(1, len(values) + 1)
        ax.plot(xs[: len(values)], values, label=name, marker="o" if len(values) < 60 else None, markersize=3)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)


def save_figure(fig: Any, path: str | Path, dpi: int = 120, tight: bool = True) -> None:
    """Write ``fig`` as a PNG (its folder made if needed) and close it; ``tight`` crops the margins to what is drawn."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight" if tight else None)
    pyplot().close(fig)
