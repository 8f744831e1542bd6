"""README's "What to expect": one strip of sample grids per model, cut from real runs, with each run's numbers.

    python examples/vae.py --epochs 40 --out runs/vae_z20
    python examples/gan.py --epochs 50 --out runs/gan50_ema0.999
    python examples/flow.py --epochs 10 --out runs/flow_e10
    python docs/make_expectations.py        # docs/expect/: vae, gan, flow, gan_averaged, gan_coverage .png

Each strip puts side by side the grids a run drew from fixed noise before training, after its
first epoch, halfway and at the end, each captioned with the number the run measured then: the
validation −ELBO (VAE), the classifier's inception score and Fréchet distance (GAN), the
validation bits/dim (flow). Nothing is drawn here but from a run: every strip image is the run's
own file, and the GAN's pair of grids (the live generator beside the averaged one) is drawn by
the run's own two generators, loaded with ``npgen.load_run``, from the latent points of its grids.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import npgen
from npgen.plot import image_grid, pyplot, save_figure

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import gan  # noqa: E402  (examples/gan.py: its coverage figure)

HERE = Path(__file__).resolve().parent


def epoch_grids(out: Path, pattern: str) -> list[tuple[int, Path]]:
    """(epoch, file) of a run's sample grids matching ``pattern`` (e.g. 'samples_epoch_*.png'), by epoch."""
    grids = []
    for path in out.glob(pattern):
        epoch = int(path.stem.split("epoch_")[1].split("_")[0])
        grids.append((epoch, path))
    return sorted(grids)


def strip(panels: list[tuple[Path, str]], title: str, path: Path) -> None:
    """The grids side by side, each with its caption below, and a title above."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 3.1))
    for ax, (image, caption) in zip(axes, panels):
        ax.imshow(plt.imread(image))
        ax.set_axis_off()
        ax.set_title(caption, fontsize=8, y=-0.14)
    fig.suptitle(title, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=100)


def history(out: Path) -> dict[int, dict]:
    """A finished run's per-epoch entries of metrics.json, by epoch."""
    return {h["epoch"]: h for h in json.loads((out / "metrics.json").read_text())["epochs"]}


def vae_strip(out: Path, path: Path) -> None:
    """Bernoulli samples of the VAE with the validation −ELBO after each epoch shown."""
    epochs = history(out)
    panels = [
        (image, "untrained" if e == 0 else f"epoch {e}: −ELBO {epochs[e]['val_neg_elbo']:.1f}")
        for e, image in epoch_grids(out, "samples_epoch_*.png")
    ]
    strip(panels, f"VAE (z_dim 20), Bernoulli samples: {out}", path)


def gan_strip(out: Path, path: Path) -> None:
    """The GAN's samples from fixed noise, with the classifier's scores of that epoch."""
    epochs = history(out)

    def caption(e: int) -> str:
        if e == 0:
            return "untrained"
        scores = epochs[e].get("coverage")
        return f"epoch {e}: IS {scores['inception_score']:.2f}, FD {scores['frechet_distance']:.1f}" if scores else ""

    panels = [(image, caption(e)) for e, image in epoch_grids(out, "samples_epoch_*.png")]
    strip(panels, f"GAN, samples from fixed noise: {out}", path)


def gan_pair(out: Path, path: Path) -> bool:
    """The run's live and averaged generators on the 25 latent points of its grids, if it has both."""
    plt = pyplot()
    run = npgen.load_run(out) if (out / "checkpoint.npz").is_file() else None
    if run is None or "generator_ema" not in run.modules:
        return False
    quality = (run.metrics or {}).get("quality", {})
    z = np.random.default_rng(run.flags["seed"] + 2).standard_normal((25, run.flags["latent_dim"]), np.float32)
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.6))
    for ax, (name, row) in zip(axes, (("generator", "gan_samples_live"), ("generator_ema", "gan_samples"))):
        with npgen.no_grad():
            images = (run.modules[name](npgen.Tensor(z)).numpy() + 1) / 2
        ax.imshow(image_grid(images, nrow=5), cmap="gray", vmin=0, vmax=1)
        ax.set_axis_off()
        scores = quality.get(row)
        numbers = f": IS {scores['inception_score']:.2f}, FD {scores['frechet_distance']:.2f}" if scores else ""
        title = "the last step's weights" if name == "generator" else f"their average (β {run.flags['ema']})"
        ax.set_title(title + numbers, fontsize=8)
    fig.suptitle(f"GAN after {len(run.history)} epochs, the same latent points: {out}", fontsize=9)
    save_figure(fig, path, dpi=100)
    return True


def flow_strip(out: Path, path: Path) -> None:
    """The flow's samples at temperature 1 with the validation bits/dim of that epoch."""
    epochs = history(out)
    panels = [(image, f"epoch {e}: {epochs[e]['val_bpd']:.3f} bits/dim") for e, image in epoch_grids(out, "*_T1.0.png")]
    strip(panels, f"Real NVP, samples at temperature 1: {out}", path)


def main() -> None:
    """Draw the three strips from the runs named by the flags."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vae", type=Path, default=Path("runs/vae_z20"))
    parser.add_argument("--gan", type=Path, default=Path("runs/gan50_ema0.999"))
    parser.add_argument("--flow", type=Path, default=Path("runs/flow_e10"))
    parser.add_argument("--to", type=Path, default=HERE / "expect")
    args = parser.parse_args()
    strips = (("vae", vae_strip, args.vae), ("gan", gan_strip, args.gan), ("flow", flow_strip, args.flow))
    for name, draw, out in strips:
        if not (out / "metrics.json").is_file():
            raise SystemExit(f"{out}: no finished run there (metrics.json); run the command in this file's docstring")
        draw(out, args.to / f"{name}.png")
        print(f"wrote {args.to / name}.png from {out}")
    if gan_pair(args.gan, args.to / "gan_averaged.png"):
        print(f"wrote {args.to / 'gan_averaged.png'} from {args.gan}")
    gan.coverage_figure(list(history(args.gan).values()), args.to / "gan_coverage.png")  # the run's own figure
    print(f"wrote {args.to / 'gan_coverage.png'} from {args.gan}")


if __name__ == "__main__":
    main()
