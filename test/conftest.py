"""Shared fixtures: generated datasets (real zarr stores on disk)."""
import pytest

from diffusion_policy_ros.data.synthetic import make_obstacle_dataset

from .factories import TEST_SCENE


@pytest.fixture(scope="session")
def obstacle_dataset(tmp_path_factory):
    """60 generated two-mode demonstrations with every observation type."""
    path = tmp_path_factory.mktemp("data") / "obstacle.zarr"
    return make_obstacle_dataset(path, n_episodes=60, seed=1, scene=TEST_SCENE, progress=False)



@pytest.fixture
def ros_context(monkeypatch):
    """A fresh rclpy context on a DDS domain of this test process's own, discovery on localhost only."""
    rclpy = pytest.importorskip("rclpy")
    import os

    monkeypatch.setenv("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    context.try_shutdown()


@pytest.fixture(scope="session")
def force_checkpoint(obstacle_dataset, tmp_path_factory):
    """A DP3 + force policy (point cloud, end-effector state, wrench), briefly trained here."""
    from diffusion_policy_ros.train import Trainer

    from .factories import shipped_small

    cfg = shipped_small("dp3_force", max_steps=20, checkpoint_every=20, val_every=20)
    return Trainer(cfg, obstacle_dataset, tmp_path_factory.mktemp("force_run"), progress=False).run()


@pytest.fixture(scope="session")
def state_policy(obstacle_dataset, tmp_path_factory):
    """The smallest real policy (end-effector state → actions), trained 600 steps on the two-mode scene."""
    from diffusion_policy_ros.policy import Policy
    from diffusion_policy_ros.train import Trainer

    from .factories import state_only_config

    run = tmp_path_factory.mktemp("state_run")
    return Policy.from_checkpoint(Trainer(state_only_config(), obstacle_dataset, run, progress=False).run())
