"""Checkpoints: round trips, atomic writes, clear errors, and all-or-nothing loading."""

from __future__ import annotations

import numpy as np
import pytest

import npgen
from npgen import checkpoint, nn, optim
from npgen.checkpoint import CheckpointError


def _setup(seed: int = 0):
    npgen.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    return model, optim.Adam(model.parameters(), lr=1e-2)


def _train(model, opt, steps: int) -> list[float]:
    losses = []
    for _ in range(steps):
        loss = (model(npgen.randn(8, 3)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_resuming_from_a_checkpoint_continues_exactly_like_an_uninterrupted_run(tmp_path):
    model, opt = _setup()
    straight = _train(model, opt, 6)

    model, opt = _setup()
    first = _train(model, opt, 3)
    checkpoint.save(tmp_path / "ck.npz", model=model, optimizer=opt, epoch=3, history=first)
    model, opt = _setup(seed=99)  # a different start: everything must come from the file
    meta = checkpoint.load(tmp_path / "ck.npz", restore_rng=True, model=model, optimizer=opt)
    assert meta == {"epoch": 3, "history": first}
    assert first + _train(model, opt, 3) == straight


def test_loading_leaves_the_random_stream_alone_unless_asked(tmp_path):
    model, opt = _setup()
    checkpoint.save(tmp_path / "ck.npz", model=model, optimizer=opt)
    saved_draw = npgen.randn(3).numpy()
    npgen.manual_seed(123)
    expected = npgen.randn(3).numpy()
    npgen.manual_seed(123)
    checkpoint.load(tmp_path / "ck.npz", model=model)
    assert np.array_equal(npgen.randn(3).numpy(), expected)
    checkpoint.load(tmp_path / "ck.npz", restore_rng=True, model=model)
    assert np.array_equal(npgen.randn(3).numpy(), saved_draw)


def test_saving_leaves_no_temporary_file_and_replaces_the_old_one(tmp_path):
    model, opt = _setup()
    path = tmp_path / "ck.npz"
    checkpoint.save(path, model=model, step=1)
    checkpoint.save(path, model=model, step=2)
    assert [p.name for p in tmp_path.iterdir()] == ["ck.npz"]
    assert checkpoint.load(path, model=model) == {"step": 2}


def test_a_save_interrupted_midway_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model, _ = _setup()
    path = tmp_path / "ck.npz"
    checkpoint.save(path, model=model, step=1)

    def write_half_then_fail(f, **arrays):
        f.write(b"PK half a zip file")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", write_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(path, model=model, step=2)
    monkeypatch.undo()
    assert checkpoint.load(path, model=model) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["ck.npz"]


def test_a_corrupt_file_gives_a_clear_error(tmp_path):
    path = tmp_path / "ck.npz"
    model, _ = _setup()
    checkpoint.save(path, model=model)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="ck.npz is not a readable npgen checkpoint"):
        checkpoint.load(path, model=model)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.npz"):
        checkpoint.load(tmp_path / "nothing.npz", model=_setup()[0])


def test_a_mismatched_checkpoint_leaves_every_object_untouched(tmp_path):
    small = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    checkpoint.save(tmp_path / "ck.npz", model=small)
    model, opt = _setup()
    _train(model, opt, 1)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    opt_before = opt.state_dict()
    with pytest.raises(CheckpointError, match=r"does not fit 'model'.*2.weight: expected \(1, 4\), got \(2, 4\)"):
        checkpoint.load(tmp_path / "ck.npz", model=model, optimizer=opt)
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())
    assert opt.state_dict()["state"][0]["step"] == opt_before["state"][0]["step"]


def test_asking_for_an_object_the_file_does_not_hold_is_named(tmp_path):
    model, opt = _setup()
    checkpoint.save(tmp_path / "ck.npz", model=model)
    with pytest.raises(CheckpointError, match="no optimizer named 'optimizer'"):
        checkpoint.load(tmp_path / "ck.npz", model=model, optimizer=opt)


def test_loading_puts_state_on_the_model_current_device(tmp_path, device):
    model, opt = _setup()
    _train(model, opt, 1)
    checkpoint.save(tmp_path / "ck.npz", model=model, optimizer=opt)
    model.to("numpy")
    checkpoint.load(tmp_path / "ck.npz", model=model, optimizer=opt)
    assert all(isinstance(v, np.ndarray) for v in model.state_dict().values())
    assert isinstance(opt.state[0]["exp_avg"], np.ndarray)
