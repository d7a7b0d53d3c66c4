import numpy as np
import pytest
import zarr

from diffusion_policy_ros.data import PolicyDataset, ReplayBuffer, SequenceSampler, split_episodes
from diffusion_policy_ros.errors import DatasetError

from .factories import shipped_small, state_only_config


def dp_reference_windows(episode_ends, horizon, pad_before, pad_after):
    """Diffusion Policy's create_indices + sample_sequence, written out step by step."""
    out = []
    start = 0
    for end in episode_ends:
        length = end - start
        for idx in range(-pad_before, length - horizon + pad_after + 1):
            b0, b1 = max(idx, 0) + start, min(idx + horizon, length) + start
            s0 = b0 - (idx + start)
            s1 = horizon - ((idx + horizon + start) - b1)
            rows = np.arange(b0, b1)
            window = np.empty(horizon, int)
            window[s0:s1] = rows
            window[:s0] = rows[0]
            window[s1:] = rows[-1]
            out.append(window)
        start = end
    return np.array(out)


@pytest.mark.parametrize("horizon, pad_before, pad_after", [(16, 1, 7), (8, 0, 0), (4, 3, 3), (16, 0, 15)])
def test_sampler_matches_diffusion_policy_padding(horizon, pad_before, pad_after):
    rng = np.random.default_rng(horizon + pad_after)
    ends = np.cumsum(rng.integers(1, 40, size=25))
    s = SequenceSampler(ends, horizon, pad_before, pad_after)
    ref = dp_reference_windows(ends, horizon, pad_before, pad_after)
    assert len(s) == len(ref)
    assert np.array_equal(s.indices(np.arange(len(s))), ref)


def test_sampler_episode_mask_and_short_episodes():
    ends = np.array([10, 12, 40])
    mask = np.array([True, False, True])
    s = SequenceSampler(ends, 16, 1, 7, episode_mask=mask)
    rows = s.indices(np.arange(len(s)))
    assert not np.isin(rows, [10, 11]).any()  # the masked episode never appears
    for w in rows:  # every window stays inside one episode
        assert (w < 10).all() or (w >= 12).all()


def test_replay_buffer_write_read_and_interrupted_append(tmp_path):
    buf = ReplayBuffer.create(tmp_path / "b.zarr")
    ep = {"state": np.arange(30, dtype=np.float32).reshape(10, 3), "action": np.ones((10, 2), np.float32)}
    buf.add_episode(ep)
    buf.add_episodes([ep, {k: v[:4] for k, v in ep.items()}])
    assert list(buf.episode_ends) == [10, 20, 24]
    # An append that died before the commit point leaves extra rows that readers ignore.
    arr = buf.array("state")
    arr.resize((30, 3))
    arr[24:30] = -1
    again = ReplayBuffer.open(tmp_path / "b.zarr")
    loaded = again.load(["state", "action"])
    assert loaded["state"].shape == (24, 3) and (loaded["state"] >= 0).all()
    with pytest.raises(DatasetError, match="per-step shape"):
        buf.add_episode({"state": np.zeros((3, 4), np.float32), "action": np.zeros((3, 2), np.float32)})
    with pytest.raises(DatasetError, match="same non-zero length|common non-zero length"):
        buf.add_episode({"state": np.zeros((3, 3), np.float32), "action": np.zeros((2, 2), np.float32)})


def test_written_store_is_zarr_v2_in_dp_layout(tmp_path):
    buf = ReplayBuffer.create(tmp_path / "b.zarr")
    buf.add_episode({"action": np.zeros((5, 2), np.float32)})
    root = zarr.open_group(str(tmp_path / "b.zarr"), mode="r")
    assert root.metadata.zarr_format == 2
    assert list(root["meta/episode_ends"][:]) == [5]
    assert (tmp_path / "b.zarr" / ".zgroup").exists()


def test_bad_stores_are_named(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        ReplayBuffer.open(tmp_path / "nope.zarr")
    zarr.open_group(str(tmp_path / "other.zarr"), mode="w", zarr_format=2).create_group("stuff")
    with pytest.raises(DatasetError, match="meta/episode_ends"):
        ReplayBuffer.open(tmp_path / "other.zarr")


def test_policy_dataset_windows_and_key_errors(obstacle_dataset):
    cfg = shipped_small("dp3_force").policy
    ds = PolicyDataset.from_path(obstacle_dataset, cfg)
    b = ds.get_batch(np.arange(5))
    assert b["obs"]["point_cloud"].shape == (5, cfg.n_obs_steps, 64, 3)
    assert b["obs"]["wrench"].shape == (5, cfg.n_obs_steps, 6)
    assert b["action"].shape == (5, cfg.horizon, 10)
    item = ds[3]
    assert item["action"].shape == (cfg.horizon, 10)

    bad = state_only_config().policy
    bad.observations["agent_pos"].dataset_key = "joint_states"
    with pytest.raises(DatasetError, match="joint_states"):
        PolicyDataset.from_path(obstacle_dataset, bad)
    bad = state_only_config().policy
    bad.observations["agent_pos"].shape = (7,)
    with pytest.raises(DatasetError, match=r"expected per-step shape \(7,\), got \(10,\)"):
        PolicyDataset.from_path(obstacle_dataset, bad)


def test_split_holds_out_whole_episodes():
    train, val = split_episodes(20, 0.1, seed=0)
    assert val.sum() == 2 and train.sum() == 18 and not (train & val).any()
    train, val = split_episodes(1, 0.5, seed=0)
    assert train.sum() == 1 and val.sum() == 0
