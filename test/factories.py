"""Factories for tests: small configs, the test scene, start observations."""
from __future__ import annotations

import numpy as np

from diffusion_policy_ros.config import Config, config_from_dict, config_to_dict, load_config
from diffusion_policy_ros.data.synthetic import ObstacleScene, state_policy_config

TEST_SCENE = ObstacleScene(num_points=64, image_size=64)


def state_only_config(**train) -> Config:
    """The smallest real policy: end-effector state → end-effector actions (DP3-style sample prediction)."""
    return state_policy_config(**train)


def shipped_small(name: str, **train) -> Config:
    """A shipped config's `small` variant, shrunk further to the test scene's sizes."""
    cfg = config_to_dict(load_config(name, variant="small"))
    for spec in cfg["policy"]["observations"].values():
        if spec["type"] == "point_cloud":
            spec["shape"][0] = TEST_SCENE.num_points
        if spec["type"] == "rgb":
            spec["shape"][:2] = [TEST_SCENE.image_size, TEST_SCENE.image_size]
    cfg["policy"]["encoders"]["image"]["crop_shape"] = [56, 56]
    cfg["train"].update({**dict(batch_size=16, max_steps=6, warmup_steps=2, checkpoint_every=3, val_every=3,
                                 log_every=3), **train})
    return config_from_dict(cfg)


def vector_policy(scale: float = 1.0):
    """An untrained policy with Meta-World's shapes: a 9-value state → 4-value actions passed as they are
    (representation joint: output command); ``scale`` widens what it can output (the action normalizer)."""
    import torch

    from diffusion_policy_ros.policy import DiffusionPolicy, Policy

    data = config_to_dict(state_only_config())
    data["policy"]["observations"]["agent_pos"]["shape"] = [9]
    data["policy"]["action"] = {"representation": "joint", "dim": 4}
    cfg = config_from_dict(data)
    torch.manual_seed(0)
    model = DiffusionPolicy.build(cfg.policy)
    model.normalizer.fields["action"].scale.fill_(1.0 / scale)
    return Policy(model, cfg)


def start_obs(cfg: Config, batch: int | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    obs = TEST_SCENE.policy_observation(cfg.policy, seed=seed)
    if batch is not None:
        obs = {k: np.repeat(v[None], batch, axis=0) for k, v in obs.items()}
    return obs



SMALL_CAMERA = dict(width=160, height=120, fx=154.0, fy=154.0, cx=80.0, cy=60.0)
# A UR5e-like configuration with the tool above the table, pointing down.
ARM_HOME = np.array([np.pi, -1.2, 1.4, -1.77, -1.57, 0.0])


def small_intrinsics():
    from diffusion_policy_ros.perception.pointcloud import Intrinsics

    c = SMALL_CAMERA
    k = np.array([[c["fx"], 0, c["cx"]], [0, c["fy"], c["cy"]], [0, 0, 1.0]])
    return Intrinsics(c["width"], c["height"], k, np.zeros(5), "plumb_bob", "camera_color_optical_frame")


def small_rgbd():
    """(depth m, rgb) of the analytic tabletop at the small camera's resolution."""
    from diffusion_policy_ros.perception.pointcloud import CameraModel
    from diffusion_policy_ros.perception.synthetic import tabletop_depth

    return tabletop_depth(CameraModel(**SMALL_CAMERA), (0.0, -0.5, -1.0), -0.8)
