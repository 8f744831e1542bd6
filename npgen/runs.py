"""Run management for the training scripts: checked flags, a configuration that --resume enforces, a NaN guard.

A script validates every flag before any work (the argparse types below name the flag's bad
value), proves ``--out`` writable, saves its configuration in each checkpoint and, on
``--resume``, refuses flags that would change the run: the learning rate, the seed, the data,
the batch size, the model's sizes. Flags that only extend or relocate a run (``--epochs``,
``--out``, evaluation sizes) may change. The first loss or gradient norm that is not finite
stops the run, naming the epoch and step; ``checkpoint.save`` refuses non-finite weights, so
the last good checkpoint is never overwritten.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

from . import backend, checkpoint
from .data import MNISTError
from .optim import ExponentialMovingAverage

_T = TypeVar("_T")


def _number(kind: Callable[[str], Any], test: Callable[[Any], bool], wanted: str) -> Callable[[str], Any]:
    """An argparse type: ``kind`` of the text, refused with the value and what was wanted unless ``test`` holds."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {wanted}") from None
        if not test(value):
            raise argparse.ArgumentTypeError(f"{text} is not {wanted}")
        return value

    parse.__name__ = wanted  # argparse names the type in its messages
    return parse


positive_int = _number(int, lambda v: v > 0, "a positive integer")
nonnegative_int = _number(int, lambda v: v >= 0, "an integer ≥ 0")
positive_float = _number(float, lambda v: math.isfinite(v) and v > 0, "a positive number")
nonnegative_float = _number(float, lambda v: math.isfinite(v) and v >= 0, "a number ≥ 0")
unit_interval = _number(float, lambda v: 0 <= v < 1, "a number in [0, 1)")


def add_run_flags(parser: argparse.ArgumentParser, out: str, available: int, resume: bool = True) -> None:
    """Add the flags every training script shares: --train-size (at most ``available``), --backend, --seed,
    --threads, --out and, for scripts that checkpoint, --resume."""
    parser.add_argument(
        "--train-size", type=positive_int, default=available, help="train on the first N images only (quick runs)"
    )
    parser.add_argument("--backend", choices=["numpy", "cupy"], default="numpy", help="numpy or cupy (a GPU)")
    add_common_flags(parser, out, "metrics, checkpoints and figures" if resume else "metrics and figures")
    if resume:
        parser.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.npz (same flags)")


def add_common_flags(parser: argparse.ArgumentParser, out: str, written: str = "results.json and figures") -> None:
    """Add --seed, --threads and --out: the flags of every script, a training run or a study of a formula."""
    parser.add_argument("--seed", type=nonnegative_int, default=0, help="seed of every random draw")
    parser.add_argument(
        "--threads",
        type=nonnegative_int,
        default=1,
        help="BLAS threads for numpy's matrix products (0: the BLAS's own default, all cores); see README",
    )
    parser.add_argument("--out", type=Path, default=Path(out), help=f"directory for {written}")


def parse_run_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The parsed flags, with --train-size checked against the images there are (add_run_flags' default)."""
    args = parser.parse_args()
    available = parser.get_default("train_size")
    if args.train_size > available:
        parser.error(f"--train-size {args.train_size}: there are only {available:,} training images")
    use_threads(args.threads)
    return args


def use_threads(threads: int) -> None:
    """Let numpy's BLAS use ``threads`` threads from now on (0 leaves the BLAS's own setting: all cores).

    One thread is the scripts' default: on 2 cores it costs up to a third on a quiet machine and is 2–3×
    faster while another run shares the machine, where BLAS threads spin against each other
    (``benchmarks/threads.py``). The thread count changes how a matrix product splits its sums,
    so the last bits of a run's numbers depend on it.
    """
    if threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads, user_api="blas")


def progress(iterable: Iterable[_T], description: str) -> Any:
    """``iterable`` with a tqdm progress bar on a terminal, and without one when output goes to a file or pipe.

    A bar redraws itself several times a second: in a log file that is kilobytes of carriage
    returns. Disabled, tqdm still iterates and still takes ``set_postfix``, doing nothing.
    """
    from tqdm import tqdm

    return tqdm(iterable, desc=description, leave=False, disable=not sys.stderr.isatty())


def flags(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed flags as JSON values of their own types (numbers stay numbers, lists lists; paths become text)."""
    return {k: _json_value(v) for k, v in vars(args).items()}


def _json_value(value: Any) -> Any:
    """A flag's value as JSON keeps it: plain values as they are, lists element by element, the rest as text."""
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    return value if isinstance(value, (int, float, str, bool, type(None))) else str(value)


def prepare_out(out: Path, resume: bool = False) -> None:
    """Create the output directory, prove it writable and lock it for this run: now, not after hours of training.

    A directory that holds a run's checkpoint is refused unless ``resume``: a new run there would
    overwrite the old one's checkpoint, metrics and figures. A directory that another running
    process holds is refused in any case (``lock_out``).
    """
    if out.exists() and not out.is_dir():
        raise SystemExit(f"--out {out} is a file, not a directory")
    _refuse_checkpoint_state(out, resume)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".npgen-write-test-{os.getpid()}"  # its own name: two runs starting at once must not collide
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise SystemExit(f"--out {out} is not writable: {error}") from None
    lock_out(out)
    _refuse_checkpoint_state(out, resume)  # again: a run that held the lock until now may have left a checkpoint


def _refuse_checkpoint_state(out: Path, resume: bool) -> None:
    """Stop unless --resume finds a checkpoint to continue, or a new run finds none to overwrite."""
    checkpoint_path = out / "checkpoint.npz"
    if resume and not checkpoint_path.is_file():
        raise SystemExit(
            f"--resume: there is no checkpoint at {checkpoint_path}; start without --resume, or give the run's --out"
        )
    if not resume and checkpoint_path.exists():
        raise SystemExit(
            f"--out {out} holds a run already ({checkpoint_path}): add --resume to continue it, or choose another --out"
        )


_held_locks: dict[Path, Any] = {}  # open lock files: a lock lasts as long as its file stays open


def lock_out(out: Path) -> None:
    """Hold ``out``/.npgen-lock for the life of this process, or stop naming the process that holds it.

    An OS file lock (flock; msvcrt on Windows), not a marker file: the OS releases it when the
    process ends in any way, so a run killed with SIGKILL leaves no stale lock behind.
    """
    path = (out / ".npgen-lock").resolve()
    if path in _held_locks:
        return
    handle = open(path, "a+", encoding="utf-8")  # kept open: closing it releases the lock
    if not _try_lock(handle):
        handle.seek(0)
        holder = handle.read().strip() or "a process that has not yet said who it is"
        handle.close()
        raise SystemExit(
            f"--out {out} is in use by another run ({holder}); wait for it to end, or choose another --out"
        )
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(sys.argv)}")
    handle.flush()
    _held_locks[path] = handle


def _try_lock(handle: Any) -> bool:
    """Take an exclusive lock on the open file without waiting; False if another process holds it."""
    try:
        if os.name == "nt":
            import msvcrt

            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def use_backend(name: str) -> None:
    """Switch to the backend of ``--backend``, or stop with what is missing (no CuPy, no GPU, a library)."""
    try:
        backend.use_backend(name)
    except (RuntimeError, ValueError) as error:
        raise SystemExit(f"--backend {name}: {error}") from None


def configuration(args: argparse.Namespace, may_change: set[str]) -> dict[str, Any]:
    """The flags that define the run (all but ``may_change``, --out and --resume) and the script, JSON-ready."""
    skip = may_change | {"resume", "out", "threads"}  # threads: a speed setting, free to change on --resume
    return {"script": Path(sys.argv[0]).name, **{k: v for k, v in flags(args).items() if k not in skip}}


def check_resume(path: Path, config: dict[str, Any], epochs: int, added_flags: dict[str, Any] | None = None) -> None:
    """Stop unless the checkpoint at ``path`` was made with the same ``config``: cheap, so scripts call it first.

    Every flag that differs is named with its old and new value. ``epochs`` may grow (the run goes
    on) but not shrink below the epochs already done. ``added_flags``: flags newer than some
    checkpoints, with the value that an older checkpoint's run had in effect.
    """
    try:
        metadata = checkpoint.read_metadata(path)
    except (FileNotFoundError, checkpoint.CheckpointError) as error:
        raise SystemExit(f"--resume: {error}") from None
    saved = metadata.get("config")
    if saved is None:
        raise SystemExit(f"--resume: {path} records no configuration to check the flags against; start a new run")
    saved = {**(added_flags or {}), **saved}
    if saved.get("script") != config["script"]:
        raise SystemExit(f"--resume: {path} was written by {saved.get('script')}, not by {config['script']}")
    changed = [
        f"--{k.replace('_', '-')} was {saved.get(k, 'not set')!r}, now {config[k]!r}"
        for k in config
        if saved.get(k) != config[k]
    ]
    if changed:
        raise SystemExit(
            f"--resume refuses flags that change the run saved in {path}: "
            + "; ".join(changed)
            + ". Give the saved values, or start a new run in another --out."
        )
    done = len(metadata.get("history", []))
    if epochs < done:
        raise SystemExit(f"--resume --epochs {epochs}: the run in {path} has done {done} epochs already")


def resume(
    path: Path, config: dict[str, Any], epochs: int, added_flags: dict[str, Any] | None = None, **objects: Any
) -> dict[str, Any]:
    """Load the checkpoint at ``path`` into ``objects`` if ``check_resume`` passes (else nothing); its metadata."""
    check_resume(path, config, epochs, added_flags)
    try:
        return checkpoint.load(path, restore_rng=True, **objects)
    except checkpoint.CheckpointError as error:
        raise SystemExit(f"--resume: {error}") from None


def figure_epochs(epochs: int) -> dict[int, str]:
    """The epochs after which a script draws its sample figures, and their tags in the file names.

    The tags: ``epoch_0_untrained`` before training (for scripts whose untrained model is worth a
    look), ``epoch_1`` after the first epoch, ``epoch_<E>_halfway`` (E = max(epochs // 2, 1)) and
    ``epoch_<E>_end``; a script names its figures ``<kind>_<tag>``.
    """
    halfway = max(epochs // 2, 1)
    return {0: "epoch_0_untrained", 1: "epoch_1", halfway: f"epoch_{halfway}_halfway", epochs: f"epoch_{epochs}_end"}


@contextlib.contextmanager
def clear_errors() -> Iterator[None]:
    """Turn the user's problems into a message, not a traceback: out of memory, MNIST files missing or damaged."""
    try:
        yield
    except MemoryError as error:
        raise SystemExit(f"out of memory ({error}): lower the model's sizes or --batch-size") from None
    except MNISTError as error:  # the message names the file, and what was expected of it
        raise SystemExit(f"{error} (the data comes from $NPGEN_DATA, else the copy bundled with npgen)") from None


def stop_if_not_finite(value: float, what: str, epoch: int, step: int, kept: Path | None) -> None:
    """End the run (exit status 1) if ``value`` is NaN or infinite, naming the epoch, the step and what is kept."""
    if not math.isfinite(value):
        saved = f"the last good checkpoint is kept at {kept}" if kept and kept.exists() else "no checkpoint was written"
        raise SystemExit(f"non-finite {what} ({value}) at epoch {epoch}, step {step}: stopping; {saved}")


@dataclass
class Run:
    """A training run read back from its ``--out``: flags, per-epoch history, final metrics, trained modules."""

    out: Path
    flags: dict[str, Any]  # the flags that define the run, typed (as its checkpoint records them)
    history: list[dict[str, Any]]  # one entry per finished epoch
    metrics: dict[str, Any] | None  # metrics.json, or None for a run that was stopped before writing it
    modules: dict[str, Any] = field(default_factory=dict)  # by checkpoint name, in evaluation mode

    @property
    def model(self) -> Any:
        """The model to study: the VAE, the GAN's generator (the averaged one if the run kept it), the flow."""
        return next(iter(self.modules.values()))


def load_run(out: str | Path, best: bool = False) -> Run:
    """Load the run in ``out`` (finished or interrupted) for analysis, without its optimizers.

    The modules are rebuilt from the flags the checkpoint records and loaded from
    ``checkpoint.npz`` (``best``: the flow's ``best.npz``), on the current backend; npgen's random
    stream is left alone. ``load_run("runs/vae").model`` is the trained VAE. A missing checkpoint
    is a FileNotFoundError, a damaged one a ``checkpoint.CheckpointError``, a run of another
    script a ValueError, each naming the file.
    """
    out = Path(out)
    path = out / ("best.npz" if best else "checkpoint.npz")
    flags = checkpoint.read_metadata(out / "checkpoint.npz").get("config")  # FileNotFoundError, CheckpointError
    metadata = checkpoint.read_metadata(path)
    if not flags or flags.get("script") not in _MODULE_BUILDERS:
        raise ValueError(f"load_run: {out} holds no run of vae.py, gan.py or flow.py (its flags: {flags})")
    states = [(b.rng, b.rng.get_state()) for b in backend.registered_backends()]
    try:
        modules = _MODULE_BUILDERS[flags["script"]](flags)  # their initial weights draw from npgen's generators…
    finally:
        for rng, state in states:  # …which go back to where the caller left them
            rng.set_state(state)
    checkpoint.load(path, **modules)
    modules = {name: m.module if isinstance(m, ExponentialMovingAverage) else m for name, m in modules.items()}
    for module in modules.values():
        module.eval()
    metrics_path = out / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else None
    return Run(out, flags, metadata.get("history", []), metrics, modules)


def _vae_modules(flags: dict[str, Any]) -> dict[str, Any]:
    from .models import VAE

    return {"model": VAE(hidden=flags["hidden"], z_dim=flags["zdim"])}


def _gan_modules(flags: dict[str, Any]) -> dict[str, Any]:
    from .models import Discriminator, Generator

    averaged = {"generator_ema": ExponentialMovingAverage(Generator(flags["latent_dim"]))} if flags.get("ema") else {}
    return {**averaged, "generator": Generator(flags["latent_dim"]), "discriminator": Discriminator()}


def _flow_modules(flags: dict[str, Any]) -> dict[str, Any]:
    from .models import Flow

    return {"flow": Flow(n_flows=flags["n_flows"], n_hidden=flags["hidden"])}


_MODULE_BUILDERS = {"vae.py": _vae_modules, "gan.py": _gan_modules, "flow.py": _flow_modules}
