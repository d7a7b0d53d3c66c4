"""Shared fixtures: generated datasets (real zarr stores on disk)."""
import pytest

from diffusion_policy_ros.data.synthetic import make_obstacle_dataset

from .factories import TEST_SCENE


@pytest.fixture(scope="session")
def obstacle_dataset(tmp_path_factory):
    """60 generated two-mode demonstrations with every observation type."""
    path = tmp_path_factory.mktemp("data") / "obstacle.zarr"
    return make_obstacle_dataset(path, n_episodes=60, seed=1, scene=TEST_SCENE, progress=False)

