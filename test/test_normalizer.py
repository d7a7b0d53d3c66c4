import numpy as np
import torch

from diffusion_policy_ros.model.normalizer import Normalizer


def test_limits_maps_range_to_minus_one_one_and_inverts():
    rng = np.random.default_rng(0)
    x = rng.uniform([-5, 0, 10], [5, 1, 30], size=(1000, 3)).astype(np.float32)
    x[:, 1] = 0.25  # constant channel
    n = Normalizer({"a": 3}, {"a": "limits"})
    n.fit("a", x)
    y = n.normalize("a", torch.from_numpy(x))
    assert torch.allclose(y[:, [0, 2]].min(0).values, torch.tensor([-1.0, -1.0]), atol=1e-5)
    assert torch.allclose(y[:, [0, 2]].max(0).values, torch.tensor([1.0, 1.0]), atol=1e-5)
    assert torch.all(y[:, 1] == 0)  # constant → 0, never divided by ~0
    assert torch.allclose(n.unnormalize("a", y), torch.from_numpy(x), atol=1e-5)


def test_gain_shrinks_a_discrete_channel_and_still_inverts():
    x = np.stack([np.linspace(-2, 2, 50), np.repeat([0.0, 1.0], 25)], axis=1)  # position, gripper
    n = Normalizer({"action": 2}, {"action": "limits"})
    n.fit("action", x, gain={1: 0.25})
    y = n.normalize("action", torch.from_numpy(x).float())
    assert torch.allclose(y[:, 0].min(), torch.tensor(-1.0)) and torch.allclose(y[:, 0].max(), torch.tensor(1.0))
    assert set(np.round(y[:, 1].numpy(), 5)) == {-0.25, 0.25}
    assert torch.allclose(n.unnormalize("action", y).double(), torch.from_numpy(x), atol=1e-5)


def test_gaussian_and_identity():
    x = np.random.default_rng(1).normal(3.0, 2.0, size=(5000, 2, 6))
    n = Normalizer({"g": 6, "i": 6}, {"g": "gaussian", "i": "identity"})
    n.fit("g", x)
    n.fit("i", x)
    y = n.normalize("g", torch.from_numpy(x).float()).reshape(-1, 6)
    assert torch.allclose(y.mean(0), torch.zeros(6), atol=1e-3)
    assert torch.allclose(y.std(0), torch.ones(6), atol=1e-3)
    z = torch.from_numpy(x).float()
    assert torch.equal(n.normalize("i", z), z)


def test_shared_keeps_a_barely_moving_channel_small():
    """A wrench whose sideways force and torques hardly moved in the demonstrations (a centred press):
    per-channel stds make a 1 N side force at evaluation tens of stds; one shared scale keeps it below 1."""
    rng = np.random.default_rng(2)
    x = np.zeros((2000, 6))
    x[:, 2] = rng.uniform(-1, 15, 2000)  # fz: the press
    x[:, [0, 1, 3, 4, 5]] = rng.normal(0, 0.01, (2000, 5))
    side = torch.tensor([[1.0, 0.0, 5.0, 0.0, 0.1, 0.0]])
    per_channel, shared = (Normalizer({"w": 6}, {"w": m}) for m in ("gaussian", "shared"))
    per_channel.fit("w", x)
    shared.fit("w", x)
    assert per_channel.normalize("w", side)[0, 0] > 50
    y = shared.normalize("w", side)[0]
    assert y.abs().max() < 1 and abs(float(y[0]) - 1.0 / x[:, 2].std()) < 2e-3  # the press's scale
    assert torch.allclose(shared.unnormalize("w", shared.normalize("w", side)), side, atol=1e-5)


def test_statistics_travel_in_the_state_dict():
    a = Normalizer({"k": 2}, {"k": "limits"})
    a.fit("k", np.array([[0.0, 10.0], [2.0, 20.0]]))
    b = Normalizer({"k": 2}, {"k": "limits"})
    b.load_state_dict(a.state_dict())
    t = torch.tensor([[1.0, 15.0]])
    assert torch.equal(a.normalize("k", t), b.normalize("k", t))
    assert torch.allclose(b.normalize("k", t), torch.zeros(1, 2))
