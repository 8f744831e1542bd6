"""The averaged model: PyTorch's EMA semantics, BatchNorm statistics measured for the averaged weights."""

from __future__ import annotations

import numpy as np
import pytest

import npgen
from npgen import nn
from npgen.optim import ExponentialMovingAverage, update_batch_norm


def _net() -> nn.Sequential:
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))


def _perturb(model: nn.Module, rng: np.random.Generator) -> None:
    """A stand-in for an optimizer step: every parameter moves, the BatchNorm statistics too."""
    with npgen.no_grad():
        for p in model.parameters():
            p += rng.normal(size=p.shape).astype(np.float32)
        model(npgen.tensor(rng.normal(size=(8, 3)).astype(np.float32)))


def test_the_average_is_the_closed_form_of_the_exponential_moving_average():
    npgen.manual_seed(0)
    model, rng, decay = _net(), np.random.default_rng(0), 0.8
    average = ExponentialMovingAverage(model, decay)
    seen = []
    for _ in range(4):
        _perturb(model, rng)
        average.update(model)
        seen.append(model[0].weight.numpy().copy())
    # θ_avg = β³θ₁ + (1 − β)(β²θ₂ + βθ₃ + θ₄): the first update copies, each later one mixes
    expected = decay**3 * seen[0] + (1 - decay) * (decay**2 * seen[1] + decay * seen[2] + seen[3])
    assert np.allclose(average.module[0].weight.numpy(), expected, atol=1e-6)
    assert int(average.n_averaged) == 4
    assert np.array_equal(average.module[1].running_mean, model[1].running_mean)  # buffers: copied, not averaged


def test_the_average_never_shares_arrays_with_the_model():
    model = _net()
    average = ExponentialMovingAverage(model, 0.5)
    average.update(model)
    with npgen.no_grad():
        model[0].weight += 1.0
    assert not np.array_equal(average.module[0].weight.numpy(), model[0].weight.numpy())


def test_update_batch_norm_gives_the_plain_average_of_the_batches_statistics():
    model, rng = _net(), np.random.default_rng(1)
    batches = [npgen.tensor(rng.normal(size=(16, 3)).astype(np.float32)) for _ in range(3)]
    model.eval()
    update_batch_norm(model, batches)
    with npgen.no_grad():
        hidden = [model[0](x).numpy() for x in batches]
    assert np.allclose(model[1].running_mean, np.mean([h.mean(axis=0) for h in hidden], axis=0), atol=1e-6)
    assert np.allclose(model[1].running_var, np.mean([h.var(axis=0, ddof=1) for h in hidden], axis=0), atol=1e-5)
    assert int(model[1].num_batches_tracked) == 3 and model[1].momentum == 0.1 and not model.training


def test_the_decay_is_checked_by_name():
    with pytest.raises(ValueError, match="decay"):
        ExponentialMovingAverage(_net(), 1.5)


def test_the_average_and_its_statistics_match_pytorch():
    torch = pytest.importorskip("torch")
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn

    npgen.manual_seed(0)
    model, rng = _net(), np.random.default_rng(2)
    reference = torch.nn.Sequential(
        torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.ReLU(), torch.nn.Linear(4, 2)
    )
    reference.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in model.state_dict().items()})
    average = ExponentialMovingAverage(model, 0.9)
    torch_average = AveragedModel(reference, multi_avg_fn=get_ema_multi_avg_fn(0.9))
    for _ in range(5):
        _perturb(model, rng)
        reference.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in model.state_dict().items()})
        average.update(model)
        torch_average.update_parameters(reference)
    ours, theirs = average.state_dict(), torch_average.state_dict()
    assert list(ours) == list(theirs)
    for name in ours:
        assert np.allclose(np.asarray(ours[name]), theirs[name].numpy(), atol=1e-6), name
    batches = [rng.normal(size=(16, 3)).astype(np.float32) for _ in range(3)]
    update_batch_norm(average, [npgen.tensor(b) for b in batches])
    update_bn([torch.tensor(b) for b in batches], torch_average)
    for name in ("module.1.running_mean", "module.1.running_var", "module.1.num_batches_tracked"):
        assert np.allclose(np.asarray(average.state_dict()[name]), torch_average.state_dict()[name].numpy(), atol=1e-5)


def test_update_refuses_a_model_that_is_not_the_one_averaged():
    average = ExponentialMovingAverage(_net(), 0.9)
    other = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2))
    with pytest.raises(ValueError, match=r"not the one averaged \(\('0.weight', \(4, 3\)\) against"):
        average.update(other)
