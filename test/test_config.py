import pytest

from diffusion_policy_ros.config import (Config, apply_override, config_from_dict, config_to_dict, load_config,
                                         shipped_configs)
from diffusion_policy_ros.errors import ConfigError

from .factories import state_only_config


def test_shipped_configs_and_variants_load():
    names = shipped_configs()
    assert {"dp3", "dp3_force", "dp_image"} <= set(names)
    for name in names:
        full = load_config(name)
        small = load_config(name, variant="small")
        assert isinstance(full, Config) and isinstance(small, Config)
        assert small.train.max_steps < full.train.max_steps


def test_round_trip_is_exact():
    for name in shipped_configs():
        cfg = load_config(name, variant="small")
        assert config_from_dict(config_to_dict(cfg)) == cfg


def test_override_sets_nested_values():
    cfg = load_config("dp3", overrides=["train.batch_size=7", "policy.denoiser.down_dims=[32, 64, 128]"])
    assert cfg.train.batch_size == 7
    assert cfg.policy.denoiser.down_dims == (32, 64, 128)
    with pytest.raises(ConfigError, match="key.path=value"):
        apply_override({}, "train.batch_size")


@pytest.mark.parametrize("override, field", [
    ("policy.horizon=10", "policy.horizon"),  # not a multiple of 2^(levels-1) = 4
    ("policy.n_action_steps=20", "policy.n_action_steps"),
    ("policy.inference.solver=euler", "inference.solver"),
    ("policy.noise.prediction_type=v", "noise.prediction_type"),
    ("policy.action.representation=rel_ee", "action.pose_key"),
    ("policy.observations.point_cloud.shape=[1024, 4]", "point_cloud"),
    ("train.lr=-1", "train.lr"),
    ("policy.denoiser.down_dims=[30, 64]", "denoiser.down_dims"),
    ("policy.action.discrete_dims=[10]", "action.discrete_dims"),
    ("policy.action.discrete_scale=0", "action.discrete_scale"),
])
def test_bad_values_name_the_field(override, field):
    with pytest.raises(ConfigError) as e:
        load_config("dp3", overrides=[override])
    assert field in str(e.value)


def test_unknown_key_and_variant_are_named():
    with pytest.raises(ConfigError, match="horizn"):
        load_config("dp3", overrides=["policy.horizn=16"])
    with pytest.raises(ConfigError, match="variant 'tiny'"):
        load_config("dp3", variant="tiny")
    with pytest.raises(ConfigError, match="does_not_exist"):
        load_config("does_not_exist")


def test_force_needs_a_visual_observation():
    data = config_to_dict(state_only_config())
    data["policy"]["observations"]["wrench"] = {"type": "wrench", "shape": [6]}
    with pytest.raises(ConfigError, match="force encoder"):
        config_from_dict(data)
