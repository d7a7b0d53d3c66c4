import pytest
import torch

from diffusion_policy_ros.config import DenoiserConfig, config_to_dict, config_from_dict
from diffusion_policy_ros.model.encoders import (DP3PointEncoder, ForceEncoder, MultiStagePointEncoder,
                                                 ObservationEncoder, ResNetImageEncoder)
from diffusion_policy_ros.model.unet1d import ConditionalUnet1D

from .factories import shipped_small


@pytest.mark.parametrize("cls", [DP3PointEncoder, MultiStagePointEncoder])
def test_point_encoders_are_permutation_invariant(cls):
    torch.manual_seed(0)
    enc = cls(6, (16, 32), 24).eval()
    pts = torch.randn(4, 100, 6)
    f, tokens = enc(pts)
    assert f.shape == (4, 24) and tokens.shape == (4, 100, enc.token_dim)
    f2, _ = enc(pts[:, torch.randperm(100)])
    assert torch.allclose(f, f2, atol=1e-5)


def test_image_encoder_uses_groupnorm_and_crops():
    enc = ResNetImageEncoder((64, 64, 3), (56, 56), num_keypoints=8, out_dim=16)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in enc.modules())
    assert any(isinstance(m, torch.nn.GroupNorm) for m in enc.modules())
    img = torch.randint(0, 255, (3, 64, 64, 3), dtype=torch.uint8)
    x = img.permute(0, 3, 1, 2).float()
    enc.eval()
    assert torch.equal(enc.crop(x), x[:, :, 4:60, 4:60])  # centre crop at inference
    enc.train()
    torch.manual_seed(0)
    crops = enc.crop(x.repeat(8, 1, 1, 1))
    assert crops.shape == (24, 3, 56, 56)
    # random windows differ between samples of the same image
    assert len({tuple(c.flatten()[:50].tolist()) for c in crops[::3]}) > 1
    f, tokens = enc.eval()(img)
    assert f.shape == (3, 16) and tokens.shape[-1] == 512


def test_force_query_attends_to_visual_tokens():
    torch.manual_seed(0)
    enc = ForceEncoder([32], d_model=16, num_heads=4, hidden_dims=(16,)).eval()
    w = torch.randn(2, 6)
    tokens = torch.randn(2, 50, 32)
    out1, _ = enc(w, [tokens])
    out2, _ = enc(w, [tokens * 3])
    assert out1.shape == (2, 32)
    assert torch.equal(out1[:, :16], out2[:, :16])  # the wrench embedding itself
    assert not torch.allclose(out1[:, 16:], out2[:, 16:])  # the fused part depends on the scene


@pytest.mark.parametrize("name", ["dp3", "dp3_force", "dp_image"])
def test_observation_encoder_for_each_shipped_config(name):
    cfg = shipped_small(name).policy
    enc = ObservationEncoder(cfg).eval()
    obs = {}
    for k, s in cfg.observations.items():
        obs[k] = (torch.randint(0, 255, (3, cfg.n_obs_steps, *s.shape)).float() if s.type == "rgb"
                  else torch.randn(3, cfg.n_obs_steps, *s.shape))
    out = enc(obs)
    assert out.shape == (3, cfg.n_obs_steps * enc.step_dim)
    assert (enc.force is not None) == (name == "dp3_force")


def test_observation_encoder_any_subset_of_modalities():
    data = config_to_dict(shipped_small("dp3_force"))
    del data["policy"]["observations"]["agent_pos"]
    cfg = config_from_dict(data).policy
    enc = ObservationEncoder(cfg)
    assert set(enc.encoders) == {"point_cloud"} and enc.force_key == "wrench"


def test_state_encoder_layer_norm_can_be_left_out_as_dp3_does():
    data = config_to_dict(shipped_small("dp3"))
    enc = ObservationEncoder(config_from_dict(data).policy).encoders["agent_pos"]
    assert any(isinstance(m, torch.nn.LayerNorm) for m in enc.modules())  # the default keeps it
    data["policy"]["encoders"]["state"]["layer_norm"] = False
    enc = ObservationEncoder(config_from_dict(data).policy).encoders["agent_pos"]
    # DP3's state MLP: Linear → ReLU → Linear, nothing else
    assert [type(m) for m in enc.net.modules() if not isinstance(m, torch.nn.Sequential)] == [
        torch.nn.Linear, torch.nn.ReLU, torch.nn.Linear]
    assert enc(torch.randn(3, 10))[0].shape == (3, 64)


def test_unet_shapes_and_conditioning():
    torch.manual_seed(0)
    net = ConditionalUnet1D(7, 20, DenoiserConfig(down_dims=(16, 32, 64), diffusion_step_embed_dim=16)).eval()
    x = torch.randn(3, 16, 7)
    c = torch.randn(3, 20)
    y = net(x, torch.tensor([1, 5, 9]), c)
    assert y.shape == x.shape
    assert not torch.allclose(y, net(x, torch.tensor([1, 5, 9]), c + 1))  # FiLM uses the observation
    assert not torch.allclose(y, net(x, 50, c))  # and the diffusion step
