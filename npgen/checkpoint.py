"""Checkpoints: modules, optimizers, random generators and metadata in one .npz file.

Writing goes to a temporary file that is renamed over the target only when complete,
so an interrupted save never leaves half a checkpoint (and the next save removes what an
interrupted one left behind). A save refuses parameters or optimizer state that are not
finite, so a diverged run can never overwrite a good checkpoint. Loading checks every
object against the file before changing any of them: a mismatch changes nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from . import backend
from .nn import Module
from .optim import Optimizer

FORMAT = "npgen-checkpoint-1"


class CheckpointError(RuntimeError):
    """A checkpoint file is unreadable or does not fit the objects it is loaded into."""


def save(path: str | Path, **objects: Any) -> None:
    """Save named Modules, Optimizers and JSON-serialisable metadata (plus the RNG state) to ``path``."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {"format": FORMAT, "modules": [], "optimizers": {}, "metadata": {}, "rng": {}}
    for name, obj in objects.items():
        if isinstance(obj, Module):
            meta["modules"].append(name)
            arrays.update({f"{name}/{k}": backend.to_numpy(v) for k, v in obj.state_dict().items()})
        elif isinstance(obj, Optimizer):
            state = obj.state_dict()
            meta["optimizers"][name] = {
                "param_groups": state["param_groups"],
                "steps": {str(i): s["step"] for i, s in state["state"].items()},
            }
            for i, entries in state["state"].items():
                arrays.update({f"{name}/{i}/{k}": backend.to_numpy(v) for k, v in entries.items() if k != "step"})
        else:
            try:
                json.dumps(obj)
            except TypeError as error:
                raise TypeError(
                    f"checkpoint.save: {name!r} is neither a Module, an Optimizer nor JSON data: {error}"
                ) from None
            meta["metadata"][name] = obj
    for b in backend.registered_backends():
        meta["rng"][b.name] = b.rng.get_state()
    broken = [key for key, a in arrays.items() if a.dtype.kind == "f" and not np.isfinite(a).all()]
    if broken:
        raise CheckpointError(
            f"refusing to save {path}: {', '.join(broken[:5])} hold NaN or infinite values; the file on disk is kept"
        )
    arrays["__meta__"] = np.array(json.dumps(meta))

    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)  # atomic: readers see the old file or the new one
    finally:
        temporary.unlink(missing_ok=True)


def _remove_stale_temporaries(path: Path) -> None:
    """Delete the temporary files of saves to ``path`` that were killed (their process is gone)."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        pid = stale.name[len(path.name) + 2 : -len(".tmp")]
        if pid.isdigit() and not _process_alive(int(pid)):
            stale.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata saved in ``path`` (history, configuration…), without loading anything into anything."""
    meta, _ = _read(Path(path), arrays=False)
    return meta["metadata"]


def _read(path: Path, arrays: bool = True) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The checked metadata of ``path`` and (if ``arrays``) its arrays, or a CheckpointError saying what is wrong."""
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    with path.open("rb") as f:
        if f.read(2) != b"PK":  # np.savez writes a zip archive
            raise CheckpointError(f"{path} is not an npgen checkpoint (not a .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as f:
            contents = {k: f[k] for k in f.files} if arrays else {"__meta__": f["__meta__"]}
        meta = json.loads(str(contents.pop("__meta__")))
    except Exception as error:  # zip, zlib, json and numpy each raise their own kinds
        raise CheckpointError(f"{path} is not a readable npgen checkpoint: {error!r}") from error
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{path}: unknown checkpoint format {found!r}, expected {FORMAT!r}")
    return meta, contents


def load(path: str | Path, restore_rng: bool = False, **objects: Any) -> dict[str, Any]:
    """Load into the named Modules and Optimizers (on their current devices); returns the metadata.

    With ``restore_rng`` npgen's random generators go back to their saved states too, so a
    resumed run draws what the uninterrupted run would have drawn (``runs.resume`` asks for it);
    without it, loading weights to look at them leaves the caller's random stream alone.
    Everything is checked first; on any mismatch a CheckpointError names it and no object
    (nor the random generators) has been changed.
    """
    path = Path(path)
    meta, arrays = _read(path)
    plans = []
    for name, obj in objects.items():
        prefix = f"{name}/"
        entries = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
        try:
            if isinstance(obj, Module):
                if name not in meta["modules"]:
                    raise KeyError(f"it holds no module named {name!r} (it has {meta['modules']})")
                state = entries
            elif isinstance(obj, Optimizer):
                if name not in meta["optimizers"]:
                    raise KeyError(f"it holds no optimizer named {name!r} (it has {list(meta['optimizers'])})")
                state = _optimizer_state(meta["optimizers"][name], entries)
            else:
                raise TypeError(f"{name!r} is a {type(obj).__name__}; load takes Modules and Optimizers")
            obj.check_state_dict(state)
        except (KeyError, ValueError, TypeError) as error:
            raise CheckpointError(f"{path} does not fit {name!r}: {error}") from error
        plans.append((obj, state))
    for obj, state in plans:
        obj.load_state_dict(state)
    for b in backend.registered_backends() if restore_rng else []:
        if b.name in meta["rng"]:
            b.rng.set_state(meta["rng"][b.name])
    return meta["metadata"]


def _optimizer_state(meta: dict[str, Any], entries: dict[str, np.ndarray]) -> dict[str, Any]:
    """Rebuild an optimizer state_dict from its flat '<index>/<name>' arrays and its steps."""
    state: dict[int, dict[str, Any]] = {int(i): {"step": step} for i, step in meta["steps"].items()}
    for key, value in entries.items():
        index, name = key.split("/", 1)
        state[int(index)][name] = value
    return {"state": state, "param_groups": meta["param_groups"]}
