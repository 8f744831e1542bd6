"""docs/make_expectations.py: README's strips are cut from a run's own grids, captioned with its numbers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from npgen.plot import save_grid

SCRIPT = Path(__file__).parents[1] / "docs" / "make_expectations.py"


def _fake_run(out: Path, grids: list[str], entry: dict) -> None:
    """A run directory with the grids a script draws and a metrics.json of two epochs."""
    out.mkdir()
    for name in grids:
        save_grid(np.random.default_rng(0).uniform(size=(25, 784)), out / name, nrow=5)
    epochs = [{"epoch": e, **entry} for e in (1, 2)]
    (out / "metrics.json").write_text(json.dumps({"epochs": epochs}))


def test_the_strips_are_drawn_from_each_runs_grids_and_numbers(tmp_path):
    vae, gan, flow = tmp_path / "vae", tmp_path / "gan", tmp_path / "flow"
    tags = ["epoch_0_untrained", "epoch_1", "epoch_2_end"]
    _fake_run(vae, [f"samples_{t}.png" for t in tags], {"val_neg_elbo": 101.5})
    coverage = {"inception_score": 9.1, "frechet_distance": 8, "class_fractions": [0.1] * 10}
    _fake_run(gan, [f"samples_{t}.png" for t in tags], {"coverage": coverage})
    _fake_run(flow, [f"samples_{t}_T1.0.png" for t in tags[1:]], {"val_bpd": 1.8})
    command = [sys.executable, str(SCRIPT), "--vae", str(vae), "--gan", str(gan), "--flow", str(flow)]
    done = subprocess.run([*command, "--to", str(tmp_path / "expect")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert {p.name for p in (tmp_path / "expect").glob("*.png")} == {
        "vae.png",
        "gan.png",
        "flow.png",
        "gan_coverage.png",
    }
    (gan / "metrics.json").unlink()  # an unfinished run is named, not drawn
    done = subprocess.run([*command, "--to", str(tmp_path / "again")], capture_output=True, text=True)
    assert done.returncode == 1 and f"{gan}: no finished run there" in done.stderr
