"""Real training runs: the diffusion-policy property (multi-modality), the CLI, resume, DP-layout
datasets and 2-process DistributedDataParallel on gloo."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml
import zarr

from diffusion_policy_ros.cli import main
from diffusion_policy_ros.modes_demo import MODE_THRESHOLD, mode_summary
from diffusion_policy_ros.policy import Policy
from diffusion_policy_ros.train import Trainer

from .factories import TEST_SCENE, shipped_small, start_obs, state_only_config


def write_yaml(cfg, path):
    from diffusion_policy_ros.config import config_to_dict

    path.write_text(yaml.safe_dump(config_to_dict(cfg)))
    return str(path)


def metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_trained_policy_samples_commit_to_one_of_two_modes(precision, obstacle_dataset, tmp_path):
    cfg = state_only_config()
    cfg.train.precision = precision  # bf16: autocast forward, float32 weights; the same property must hold
    ckpt = Trainer(cfg, obstacle_dataset, tmp_path / "run", progress=False).run()
    history = metrics(tmp_path / "run")
    assert history[-1]["val_loss"] < 0.5 * history[0]["val_loss"]
    policy = Policy.from_checkpoint(ckpt)
    for solver, steps in [("ddim", 10), ("ddpm", 100), ("dpmsolver++", 6)]:
        policy.cfg.inference.solver, policy.cfg.inference.num_inference_steps = solver, steps
        chunks = policy.predict(start_obs(cfg, batch=128), seed=0, full_horizon=True)
        offsets = TEST_SCENE.lateral_offset(chunks)
        s = mode_summary(offsets)
        # Near one of the modes (±0.1), not their average (0, straight into the box)...
        assert s["in_a_mode"] >= 0.9, (solver, s)
        assert np.all(np.abs(np.abs(offsets[np.abs(offsets) > MODE_THRESHOLD]) - 0.1) < 0.04), solver
        # ...and both modes are covered over many seeds.
        assert min(s["left"], s["right"]) >= 0.2 * s["samples"], (solver, s)
    # Warm start from a chunk keeps its mode (cold samples above cover both): 4 of 10 DDIM steps.
    policy.cfg.inference.solver, policy.cfg.inference.num_inference_steps = "ddim", 10
    prev = policy.predict(start_obs(cfg, batch=128), seed=1, full_horizon=True)
    warm = policy.predict(start_obs(cfg, batch=128), seed=2, full_horizon=True, warm_start=prev, start_index=6)
    prev_side, warm_side = np.sign(TEST_SCENE.lateral_offset(prev)), np.sign(TEST_SCENE.lateral_offset(warm))
    assert (prev_side == warm_side).mean() >= 0.95
    # The same checkpoint and seed give exactly the same actions, load after load.
    obs = start_obs(cfg)
    assert np.array_equal(Policy.from_checkpoint(ckpt).predict(obs, seed=3),
                          Policy.from_checkpoint(ckpt).predict(obs, seed=3))


@pytest.mark.parametrize("name", ["dp3", "dp3_force", "dp_image"])
def test_shipped_config_trains_through_the_cli_and_resumes(name, obstacle_dataset, tmp_path, capsys):
    cfg_path = write_yaml(shipped_small(name), tmp_path / f"{name}.yaml")
    out = tmp_path / "run"
    assert main(["train", cfg_path, "--dataset", str(obstacle_dataset), "--out", str(out), "--no-progress"]) == 0
    assert (out / "checkpoint" / "model.safetensors").is_file() and (out / "loss.png").stat().st_size > 1000
    assert [m["step"] for m in metrics(out)] == [3, 6]
    assert all("val_loss" in m for m in metrics(out))
    assert main(["train", cfg_path, "--dataset", str(obstacle_dataset), "--out", str(out), "--resume",
                 "--set", "train.max_steps=9", "--no-progress"]) == 0
    assert [m["step"] for m in metrics(out)] == [3, 6, 9]
    main(["info", str(out / "checkpoint")])
    assert '"step": 9' in capsys.readouterr().out
    from diffusion_policy_ros.checkpoint import read_checkpoint_meta

    # The demonstrations' seed block travels with the checkpoint: evaluation must stay outside it.
    assert read_checkpoint_meta(out / "checkpoint")["provenance"]["task"] == "two-mode obstacle scene"
    policy = Policy.from_checkpoint(out / "checkpoint")
    assert np.isfinite(policy.predict(start_obs(policy.config), seed=0)).all()


def test_snapshots_keep_the_policy_along_training_and_the_last_one_is_the_checkpoint(obstacle_dataset, tmp_path,
                                                                                     capsys):
    """`train.snapshot_every`: the EMA policy every N steps, each a checkpoint of its own (DP3 reports the
    best of its evaluations along training; bench/metaworld_dp3.py --paper-metric evaluates these)."""
    from safetensors.torch import load_file

    cfg_path = write_yaml(shipped_small("dp3"), tmp_path / "dp3.yaml")
    out = tmp_path / "run"
    assert main(["train", cfg_path, "--dataset", str(obstacle_dataset), "--out", str(out), "--no-progress",
                 "--set", "train.snapshot_every=2"]) == 0
    snaps = sorted(p.name for p in (out / "snapshots").iterdir())
    assert snaps == ["step_000002", "step_000004", "step_000006"]
    weights = {n: load_file(str(out / "snapshots" / n / "model.safetensors")) for n in snaps}
    final = load_file(str(out / "checkpoint" / "model.safetensors"))
    assert all(np.array_equal(final[k].numpy(), weights["step_000006"][k].numpy()) for k in final)
    assert any(not np.array_equal(final[k].numpy(), weights["step_000002"][k].numpy()) for k in final)
    assert not (out / "snapshots" / "step_000002" / "train_state.pt").exists()  # weights only
    policy = Policy.from_checkpoint(out / "snapshots" / "step_000004")
    assert np.isfinite(policy.predict(start_obs(policy.config), seed=0)).all()

    assert main(["train", cfg_path, "--dataset", str(obstacle_dataset), "--out", str(tmp_path / "bad"),
                 "--no-progress", "--set", "train.snapshot_every=-1"]) != 0
    assert "train.snapshot_every" in capsys.readouterr().err


def test_cli_reports_a_missing_dataset_key(obstacle_dataset, tmp_path, capsys):
    cfg = shipped_small("dp3")
    cfg.policy.observations["agent_pos"].dataset_key = "joint_pos"
    rc = main(["train", write_yaml(cfg, tmp_path / "c.yaml"), "--dataset", str(obstacle_dataset), "--out",
               str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "joint_pos" in err and "missing" in err


def test_dp_layout_zarr_v2_store_written_by_zarr_trains_without_conversion(tmp_path):
    """A store as Diffusion Policy / DP3 write it (zarr format 2, Blosc chunks, xyz+rgb clouds, joint actions)."""
    from numcodecs import Blosc

    path = tmp_path / "dp3_style.zarr"
    rng = np.random.default_rng(0)
    ends = np.cumsum(rng.integers(20, 30, size=8))
    n = int(ends[-1])
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    data, meta = root.create_group("data"), root.create_group("meta")
    comp = Blosc(cname="zstd", clevel=3, shuffle=Blosc.BITSHUFFLE)
    for key, shape, dtype in [("point_cloud", (n, 64, 6), "float32"), ("state", (n, 9), "float32"),
                              ("action", (n, 7), "float32")]:
        arr = data.create_array(key, shape=shape, dtype=dtype, chunks=(100, *shape[1:]), compressors=comp)
        arr[:] = rng.normal(size=shape).astype(dtype)
    meta.create_array("episode_ends", shape=(len(ends),), dtype="int64", chunks=(len(ends),))[:] = ends

    cfg = shipped_small("dp3")
    cfg.policy.observations["point_cloud"].shape = (64, 6)
    cfg.policy.observations["agent_pos"].shape = (9,)
    cfg.policy.action.representation, cfg.policy.action.dim = "joint", 7
    out = tmp_path / "run"
    assert main(["train", write_yaml(cfg, tmp_path / "c.yaml"), "--dataset", str(path), "--out", str(out),
                 "--no-progress"]) == 0
    policy = Policy.from_checkpoint(out / "checkpoint")
    obs = {"point_cloud": rng.normal(size=(2, 64, 6)).astype(np.float32),
           "agent_pos": rng.normal(size=(2, 9)).astype(np.float32)}
    assert policy.predict(obs, seed=0).shape == (cfg.policy.n_action_steps, 7)

    # The same store zipped (Diffusion Policy ships .zarr.zip files) opens as it is.
    from diffusion_policy_ros.data import ReplayBuffer

    zipped = shutil.make_archive(str(tmp_path / "dp3_style"), "zip", root_dir=path)
    os.rename(zipped, tmp_path / "dp3_style.zarr.zip")
    a = ReplayBuffer.open(tmp_path / "dp3_style.zarr.zip").load(["state"])["state"]
    assert np.array_equal(a, ReplayBuffer.open(path).load(["state"])["state"])


def test_distributed_data_parallel_on_two_cpu_processes(obstacle_dataset, tmp_path):
    cfg_path = write_yaml(shipped_small("dp3", max_steps=4, checkpoint_every=4, batch_size=8),
                          tmp_path / "c.yaml")
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "diffusion_policy_ros.cli", "train", cfg_path, "--dataset", str(obstacle_dataset),
         "--out", str(out), "--no-progress"],
        env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = metrics(out)
    sync = records[-1]
    assert sync["world_size"] == 2
    a, b = sync["rank_weight_checksums"]
    assert a == b  # DDP kept both replicas identical
    assert max(r.get("step", 0) for r in records) == 4
    assert Policy.from_checkpoint(out / "checkpoint").predict(start_obs(shipped_small("dp3")), seed=0).shape[0] == 8


def test_resume_on_another_dataset_fine_tunes_keeping_the_normalizer_and_records_both(obstacle_dataset, tmp_path):
    """`dpros train --resume` on corrections (e.g. `convert --segments takeover`): the run goes on from
    its weights and optimiser on the new data; the normalisation stays the original one (a few
    corrections must not re-scale the policy), and the checkpoint lists both datasets."""
    from diffusion_policy_ros.checkpoint import load_checkpoint, read_checkpoint_meta
    from diffusion_policy_ros.data import ReplayBuffer

    src = ReplayBuffer.open(obstacle_dataset)
    corrections = ReplayBuffer.create(tmp_path / "corrections.zarr")
    data = src.load(src.keys)
    data["action"] = data["action"] + 0.5  # other statistics than the original demonstrations
    ends = src.episode_ends[:3]
    corrections.add_episodes([{k: v[a:b] for k, v in data.items()} for a, b in zip(np.r_[0, ends[:-1]], ends)])
    cfg_path = write_yaml(shipped_small("dp3"), tmp_path / "dp3.yaml")
    out = tmp_path / "run"
    assert main(["train", cfg_path, "--dataset", str(obstacle_dataset), "--out", str(out), "--no-progress"]) == 0
    _, before = load_checkpoint(out / "checkpoint")
    assert main(["train", cfg_path, "--dataset", str(tmp_path / "corrections.zarr"), "--out", str(out), "--resume",
                 "--set", "train.max_steps=9", "--no-progress"]) == 0
    _, after = load_checkpoint(out / "checkpoint")
    norm = [k for k in before if "normalizer" in k]
    assert norm and all(np.array_equal(before[k].numpy(), after[k].numpy()) for k in norm)
    assert any(not np.array_equal(before[k].numpy(), after[k].numpy()) for k in before if k not in norm)
    meta = read_checkpoint_meta(out / "checkpoint")
    assert meta["step"] == 9 and [d["from_step"] for d in meta["datasets"]] == [0, 6]
    assert meta["datasets"][1]["dataset"].endswith("corrections.zarr")
