"""Layers: gradients, PyTorch's shapes, defaults and numbers, modes, state_dict and devices."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make

import npgen
from npgen import backend, nn


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.LeakyReLU(0.2), nn.Linear(6, 3), nn.Tanh())


@pytest.mark.parametrize(
    "layer",
    [
        lambda: nn.Linear(4, 3),
        lambda: nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2), nn.Sigmoid()),
        lambda: nn.Sequential(nn.Linear(4, 5), nn.LeakyReLU(0.2), nn.Tanh()),
        lambda: nn.BatchNorm1d(4),
    ],
    ids=["linear", "relu_sigmoid_mlp", "leaky_tanh", "batchnorm"],
)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_layer_gradients_with_respect_to_input_and_every_parameter(device, layer, mode):
    module = layer().double()
    module.train(mode == "train")
    if mode == "eval" and isinstance(module, nn.BatchNorm1d):  # non-trivial running statistics
        module.running_mean[...] = backend.move(np.array([0.1, -0.2, 0.3, 0.0]), device)
        module.running_var[...] = backend.move(np.array([0.5, 2.0, 1.5, 1.0]), device)
    x = make(device, (6, 4), seed=3)
    params = module.parameters()
    assert npgen.gradcheck(lambda x, *ps: module(x), [x, *params])


def test_linear_follows_pytorch_shapes_and_init_bounds():
    layer = nn.Linear(400, 30)
    assert layer.weight.shape == (30, 400) and layer.bias.shape == (30,)
    bound = 1 / np.sqrt(400)
    for p in (layer.weight, layer.bias):
        assert p.dtype == np.float32
        assert np.abs(p.data).max() <= bound and np.abs(p.data).max() > 0.9 * bound
    assert np.allclose(
        layer(npgen.tensor(np.eye(400, dtype=np.float32)[:2])).numpy(), layer.weight.data[:, :2].T + layer.bias.data
    )


def test_parameters_come_in_registration_order_with_pytorch_names():
    names = [name for name, _ in _mlp().named_parameters()]
    assert names == ["0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias"]
    buffers = ["1.running_mean", "1.running_var", "1.num_batches_tracked"]
    assert list(_mlp().state_dict()) == names[:4] + buffers + names[4:]  # module by module, as PyTorch lists them


def test_same_seed_same_initialisation():
    npgen.manual_seed(7)
    a = _mlp().state_dict()
    npgen.manual_seed(7)
    b = _mlp().state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_batchnorm_training_statistics_follow_pytorch_conventions():
    bn = nn.BatchNorm1d(3)
    x = np.random.default_rng(0).normal(2.0, 3.0, (16, 3)).astype(np.float32)
    y = bn(npgen.tensor(x)).numpy()
    biased = x.var(axis=0)
    assert np.allclose(y, (x - x.mean(0)) / np.sqrt(biased + 1e-5), atol=1e-5)
    assert np.allclose(bn.running_mean, 0.1 * x.mean(0), atol=1e-6)
    assert np.allclose(bn.running_var, 0.9 + 0.1 * x.var(axis=0, ddof=1), atol=1e-5)
    assert int(bn.num_batches_tracked) == 1


def test_batchnorm_eval_uses_running_statistics_and_builds_no_graph_into_them():
    bn = nn.BatchNorm1d(2)
    bn.running_mean[...] = [1.0, -1.0]
    bn.running_var[...] = [4.0, 0.25]
    bn.eval()
    y = bn(npgen.tensor([[3.0, 0.0]])).numpy()
    assert np.allclose(y, [[2 / np.sqrt(4 + 1e-5), 1 / np.sqrt(0.25 + 1e-5)]])
    assert isinstance(bn.running_mean, np.ndarray)  # a plain buffer, never a graph node
    assert [name for name, _ in bn.named_parameters()] == ["weight", "bias"]


def test_batchnorm_refuses_a_wrong_shape_by_name():
    with pytest.raises(ValueError, match=r"BatchNorm1d\(3\) expects input \(N, 3\), got \(4, 2\)"):
        nn.BatchNorm1d(3)(npgen.randn(4, 2))


def test_train_and_eval_are_per_module():
    generator, discriminator = _mlp(), _mlp()
    generator.eval()
    assert all(not m.training for _, m in generator.named_modules())
    assert all(m.training for _, m in discriminator.named_modules())


def test_state_dict_round_trip_gives_identical_outputs():
    a, b = _mlp(), _mlp()
    a(npgen.randn(8, 4))  # moves BatchNorm running stats away from their start
    b.load_state_dict({k: v.copy() for k, v in a.state_dict().items()})
    a.eval(), b.eval()
    x = npgen.randn(5, 4)
    assert np.array_equal(a(x).numpy(), b(x).numpy())


def test_load_state_dict_names_missing_and_unexpected_keys_and_changes_nothing():
    model = _mlp()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    state = {k: np.zeros_like(v) for k, v in before.items()}
    del state["0.bias"]
    state["extra.weight"] = np.zeros(1)
    with pytest.raises(KeyError, match=r"missing keys \['0.bias'\], unexpected keys \['extra.weight'\]"):
        model.load_state_dict(state)
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())


def test_load_state_dict_names_shape_mismatches():
    model = _mlp()
    state = {k: v.copy() for k, v in model.state_dict().items()}
    state["3.weight"] = np.zeros((3, 7), np.float32)
    with pytest.raises(ValueError, match=r"3.weight: expected \(3, 6\), got \(3, 7\)"):
        model.load_state_dict(state)


def test_module_to_device_moves_parameters_and_buffers_in_place(device):
    backend.use_backend("numpy")
    model = _mlp()
    params = model.parameters()
    model.to(device)
    assert model.parameters()[0] is params[0]  # optimizers keep their references
    assert all(backend.backend_of(a).name == device for a in model.state_dict().values())
    y = model(npgen.randn(4, 4, device=device))
    assert y.device == backend.get_backend(device).device


def test_double_converts_floating_state_only():
    model = _mlp().double()
    state = model.state_dict()
    assert state["0.weight"].dtype == np.float64 and state["1.running_var"].dtype == np.float64
    assert state["1.num_batches_tracked"].dtype == np.int64


def test_an_mlp_trains_on_every_backend(device):
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 1))
    opt = npgen.optim.Adam(model.parameters(), lr=1e-2)
    x = npgen.randn(64, 2)
    target = npgen.Tensor((x.data[:, :1] * x.data[:, 1:] > 0).astype(np.float32))
    losses = []
    for _ in range(100):
        loss = npgen.F.binary_cross_entropy_with_logits(model(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_a_pytorch_state_dict_gives_the_same_outputs_and_gradients():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    reference = torch.nn.Sequential(
        torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6), torch.nn.LeakyReLU(0.2), torch.nn.Linear(6, 3), torch.nn.Tanh()
    ).double()
    model = _mlp().double()
    model.load_state_dict({k: v.detach().numpy() for k, v in reference.state_dict().items()})
    x = np.random.default_rng(0).normal(size=(8, 4))
    for train in (True, False):
        reference.train(train), model.train(train)
        reference.zero_grad(), model.zero_grad()
        expected = reference(torch.tensor(x))
        expected.pow(2).sum().backward()
        got = model(npgen.tensor(x))
        (got**2).sum().backward()
        assert np.allclose(got.numpy(), expected.detach().numpy(), atol=1e-10)
        for (name, p), (_, q) in zip(model.named_parameters(), reference.named_parameters()):
            assert np.allclose(p.grad, q.grad.numpy(), atol=1e-10), name
        for name, buffer in model.named_buffers():
            assert np.allclose(buffer, reference.state_dict()[name].numpy()), name


def test_named_modules_use_pytorch_names():
    model = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU(), nn.Linear(2, 1)))
    assert [name for name, _ in model.named_modules()] == ["", "0", "1", "1.0", "1.1"]
    assert [name for name, _ in model.named_parameters()] == ["0.weight", "0.bias", "1.1.weight", "1.1.bias"]
