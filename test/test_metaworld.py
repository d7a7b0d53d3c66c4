"""The Meta-World adapter (DP3's protocol), where Meta-World imports: `make test-metaworld` runs this in
.venv-metaworld (Meta-World pins its own MuJoCo); the main environment skips it."""
import numpy as np
import pytest
import yaml

from diffusion_policy_ros import mujoco_gl  # noqa: F401,E402  (before Meta-World imports MuJoCo)

pytest.importorskip("metaworld")

from diffusion_policy_ros.cli import main  # noqa: E402
from diffusion_policy_ros.data import ReplayBuffer  # noqa: E402
from diffusion_policy_ros.errors import ConfigError  # noqa: E402
from diffusion_policy_ros.sim import metaworld_tasks as MW  # noqa: E402


def test_every_task_name_builds_with_dp3_observations_and_its_own_expert():
    names = MW.task_names()
    assert len(names) == 50 and {"button-press", "drawer-open", "door-open", "coffee-push", "hammer",
                                 "stick-push"} <= set(names)
    for name in names:  # the same code for every task: no per-task case
        env = MW.MetaWorldTask(MW.PREFIX + name)
        try:
            obs = env.reset(1000)
            assert obs.point_cloud.shape == (512, 3) and obs.agent_pos.shape == (9,)
            assert _inside_dp3_box(env, obs.point_cloud).all(), name
            assert len(np.unique(obs.point_cloud, axis=0)) > 256, name  # a real cloud, not padding
            a = env.expert(obs)
            assert a.shape == (4,) and np.isfinite(a).all()
            assert np.isfinite(env.step(a).point_cloud).all()
        finally:
            env.close()
    with pytest.raises(ConfigError, match="metaworld/<name>"):
        MW.MetaWorldTask("metaworld/not-a-task")


def _inside_dp3_box(env, world_points):
    """DP3's crop test, redone from its definition: world → corner2's optical frame → DP3's frame."""
    from diffusion_policy_ros.perception.pointcloud import extrinsic_matrix

    cam = extrinsic_matrix(env.camera()[1])  # optical → world
    optical = (world_points - cam[:3, 3]) @ cam[:3, :3]
    frame = env._dp3_frame()
    p = optical @ frame[:3, :3].T + frame[:3, 3]
    lo, hi = np.array(MW.DP3_BOUNDS[0]), np.array(MW.DP3_BOUNDS[1])
    return np.all((p > lo - 1e-5) & (p < hi + 1e-5), axis=1)


def test_the_two_crops_keep_what_they_say():
    clouds = {}
    for crop in MW.CROPS:
        env = MW.MetaWorldTask("metaworld/hammer", crop=crop)
        try:
            pc = clouds[crop] = env.reset(1000).point_cloud
            if crop == "dp3":
                assert _inside_dp3_box(env, pc).all()
            else:
                lo, hi = np.array(MW.CROP_MIN), np.array(MW.CROP_MAX)
                assert ((pc >= lo - 1e-6) & (pc <= hi + 1e-6)).all()
                assert not _inside_dp3_box(env, pc).all()  # the world box keeps a strip DP3 drops
        finally:
            env.close()
    assert not np.array_equal(clouds["dp3"], clouds["world"])
    with pytest.raises(ConfigError, match="crop"):
        MW.MetaWorldTask("metaworld/hammer", crop="table")


def test_the_cloud_is_in_the_world_frame_and_the_end_effector_is_in_it():
    env = MW.MetaWorldTask("metaworld/button-press")
    try:
        obs = env.reset(1000)
        # The gripper's own points lie by the end effector and both finger pads (agent_pos, world frame):
        # within a few cm, the spacing of 512 farthest points; a wrong frame puts them decimetres away.
        for part in obs.agent_pos.reshape(3, 3):
            near = np.linalg.norm(obs.point_cloud - part, axis=1).min()
            assert near < 0.06, near
        # Seeds are initial conditions: the same seed → the same scene, another → another.
        again = env.reset(1000).point_cloud
        other = env.reset(1001).point_cloud
        assert np.array_equal(obs.point_cloud, again) and not np.array_equal(obs.point_cloud, other)
    finally:
        env.close()


def test_collect_keeps_successful_expert_episodes_with_their_seeds(tmp_path):
    out = tmp_path / "bp.zarr"
    assert main(["collect", "--task", "metaworld/button-press", "--episodes", "2", "--out", str(out),
                 "--seed", "1000", "--no-progress", "--json"]) == 0
    buf = ReplayBuffer.open(out)
    assert buf.n_episodes == 2 and set(buf.keys) == {"point_cloud", "state", "action", "img"}
    data = buf.load(buf.keys)
    assert data["point_cloud"].shape[1:] == (512, 3) and data["state"].shape[1:] == (9,)
    assert data["img"].shape[1:] == (MW.RGB_SIZE, MW.RGB_SIZE, 3) and data["img"].dtype == np.uint8
    assert data["img"].std() > 10  # a rendered scene, not a blank frame
    assert data["action"].shape[1:] == (4,) and np.isfinite(data["action"]).all()
    p = buf.provenance
    assert p["task"] == "metaworld/button-press" and p["demo_seeds"][0] == 1000 and len(p["kept_seeds"]) == 2
    assert p["crop"] == "dp3" and p["episode_end"] == "success" and p["demo_selection"] == "consecutive"
    # Each demonstration ends at its first success: replaying its actions from its seed succeeds on the last.
    lengths = np.diff(buf.episode_ends, prepend=0)
    assert np.all(lengths < MW.EPISODE_STEPS)
    env = MW.MetaWorldTask("metaworld/button-press", rgb_size=0)
    try:
        env.reset(p["kept_seeds"][0])
        flags = [env.step(a).success for a in data["action"][:lengths[0]]]
        assert flags[-1] and not any(flags[:-1])
    finally:
        env.close()


def test_collect_full_episodes_from_seeds_spread_over_initial_conditions(tmp_path):
    env = MW.MetaWorldTask("metaworld/drawer-open", rgb_size=0)
    try:
        conditions = {}
        for s in range(1000, 1006):
            env.reset(s)
            conditions[s] = env.initial_condition()
            assert np.array_equal(env.initial_condition_of(s), conditions[s])
        order = MW.coverage_order(env, range(1000, 1006))
        gaps = MW.distance_to_demonstrations(env, [1000, 1001], [1000, 1003])
    finally:
        env.close()
    assert all(c.shape == (1,) and -0.1 <= c[0] <= 0.1 for c in conditions.values())  # drawer-open: x only
    assert sorted(order) == list(range(1000, 1006)) and order[0] == 1000
    far = {s: abs(conditions[s][0] - conditions[1000][0]) for s in range(1001, 1006)}
    assert order[1] == max(far, key=far.get)
    nearest = min(abs(conditions[1003] - conditions[s])[0] for s in (1000, 1001))
    assert gaps[0] == 0 and gaps[1] == pytest.approx(nearest)
    # DP3's generator: all 200 steps (Meta-World never ends an episode), from the pool's coverage order.
    summary = MW.collect("metaworld/drawer-open", 1, tmp_path / "do.zarr", seed=1000, rgb_size=0, progress=False,
                         episode_end="full", pool=6)
    buf = ReplayBuffer.open(tmp_path / "do.zarr")
    assert buf.episode_ends.tolist() == [MW.EPISODE_STEPS] and summary["kept_seeds"] == [1000]
    p = buf.provenance
    assert p["episode_end"] == "full" and p["demo_seeds"] == [1000, 1005]
    assert p["demo_selection"] == "coverage of 6 seeds"
    with pytest.raises(ConfigError, match="episode_end"):
        MW.collect("metaworld/drawer-open", 1, tmp_path / "x.zarr", episode_end="never", progress=False)
    with pytest.raises(ConfigError, match="pool"):
        MW.collect("metaworld/drawer-open", 3, tmp_path / "y.zarr", pool=2, progress=False)


def test_a_checkpoint_trained_on_collected_demos_evaluates_deterministically(tmp_path):
    from diffusion_policy_ros.config import load_config
    from diffusion_policy_ros.train import Trainer

    cfg = load_config("dp3", variant="small", overrides=[o.replace("512", "256") for o in MW.config_overrides()] + [
        "train.max_steps=10", "train.checkpoint_every=10", "train.val_every=10", "train.warmup_steps=2"])
    # The small variant reads 256 points: collect's clouds are 512, so collect again at 256.
    MW.collect("metaworld/button-press", 2, tmp_path / "bp256.zarr", seed=1000, num_points=256, progress=False)
    assert cfg.policy.horizon == 4 and cfg.policy.n_action_steps == 3  # DP3's Meta-World recipe
    ckpt = Trainer(cfg, tmp_path / "bp256.zarr", tmp_path / "run", progress=False).run()
    a = MW.evaluate("metaworld/button-press", ckpt, 1, 5000, progress=False)
    b = MW.evaluate("metaworld/button-press", ckpt, 1, 5000, progress=False)
    assert a["episodes_detail"] == b["episodes_detail"] and 0 < a["episodes_detail"][0]["steps"] <= MW.EPISODE_STEPS
    assert a["seeds"] == [5000, 5000] and 0.0 <= a["success_rate"] <= 1.0
    assert a["crop"] == "dp3" == MW.checkpoint_crop(ckpt)  # evaluation crops as the demonstrations were


def test_the_image_column_trains_on_collected_colour_and_evaluates(tmp_path):
    from diffusion_policy_ros.config import load_config
    from diffusion_policy_ros.train import Trainer

    MW.collect("metaworld/button-press", 2, tmp_path / "bp.zarr", seed=1000, rgb_size=48, progress=False)
    cfg = load_config("dp_image", variant="small", overrides=MW.image_config_overrides(48) + [
        "train.max_steps=4", "train.checkpoint_every=4", "train.val_every=4", "train.warmup_steps=1"])
    assert tuple(cfg.policy.observations["image"].shape) == (48, 48, 3) and cfg.policy.action.dim == 4
    ckpt = Trainer(cfg, tmp_path / "bp.zarr", tmp_path / "run", progress=False).run()
    r = MW.evaluate("metaworld/button-press", ckpt, 1, 5000, progress=False)
    assert r["crop"] == "dp3" and 0 < r["episodes_detail"][0]["steps"] <= MW.EPISODE_STEPS


def test_the_benchmark_script_writes_its_table_plot_and_json(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(root / "bench" / "metaworld_dp3.py"), "--tasks", "button-press",
                           "door-open", "--jobs", "2", "--precision", "bf16", "--demos", "1", "--steps", "3",
                           "--warmup", "1", "--episodes", "1", "--rgb-size", "0", "--out", str(tmp_path), "--json",
                           "--train-set", "policy.denoiser.down_dims=[32,64,128]"],
                          capture_output=True, text=True, timeout=900, cwd=root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    row, other = json.loads(proc.stdout)  # two tasks at once (--jobs 2), rows in --tasks order
    assert other["task"] == "door-open" and other["paper_dp3"] == 99
    assert row["train"]["precision"] == "bf16" and "train.precision=bf16" in row["train"]["command"]
    trained = yaml.safe_load((tmp_path / "button-press" / "run" / "config.yaml").read_text())
    assert trained["policy"]["denoiser"]["down_dims"] == [32, 64, 128]  # --train-set reached dpros train
    assert row["task"] == "button-press" and row["paper_dp3"] == 100 and row["paper_dp"] == 99
    assert row["crop"] == "dp3" and row["eval_seeds"] == [9000, 9000] and row["demo_seeds"][0] == 1000
    assert row["gap_to_dp3_points"] == round(100 * row["success_rate"] - 100, 1) and "dp_image" not in row
    assert (tmp_path / "metaworld.png").stat().st_size > 0 and "button-press" in (tmp_path / "table.md").read_text()
    # Cached: a second run trains and evaluates nothing again.
    again = subprocess.run([sys.executable, str(root / "bench" / "metaworld_dp3.py"), "--tasks", "button-press",
                            "--out", str(tmp_path), "--json"], capture_output=True, text=True, timeout=300, cwd=root)
    assert again.returncode == 0 and "$ dpros" not in again.stderr


def test_the_benchmark_trains_the_image_column_alone_when_asked(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(root / "bench" / "metaworld_dp3.py"), "--tasks", "door-open",
                           "--policies", "dp_image", "--demos", "1", "--steps", "2", "--warmup", "1", "--batch", "4",
                           "--episodes", "1", "--rgb-size", "48", "--out", str(tmp_path), "--json"],
                          capture_output=True, text=True, timeout=900, cwd=root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    [row] = json.loads(proc.stdout)
    assert "$ dpros train dp3" not in proc.stderr and not (tmp_path / "door-open" / "run").exists()
    assert "successes" not in row and row["paper_dp"] == 98
    image = row["dp_image"]
    assert image["train"]["command"].startswith("dpros train dp_image") and image["episodes"] == 1
    assert image["eval_seeds"] == [9000, 9000] and image["crop"] == "dp3"
    line = (tmp_path / "table.md").read_text().splitlines()[2]
    assert line.startswith("| door-open | dp3 | 2 steps, batch 4") and "| not run |" in line
    assert (tmp_path / "metaworld.png").stat().st_size > 0


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    """A DP3 checkpoint on two button-press demonstrations at 256 points, briefly trained."""
    from diffusion_policy_ros.config import load_config
    from diffusion_policy_ros.train import Trainer

    tmp = tmp_path_factory.mktemp("mw")
    cfg = load_config("dp3", variant="small", overrides=[o.replace("512", "256") for o in MW.config_overrides()] + [
        "train.max_steps=10", "train.checkpoint_every=10", "train.val_every=10", "train.warmup_steps=2"])
    MW.collect("metaworld/button-press", 2, tmp / "bp256.zarr", seed=1000, num_points=256, progress=False)
    return Trainer(cfg, tmp / "bp256.zarr", tmp / "run", progress=False).run()


def _recording(env):
    """``env`` whose steps append their actions to the returned list."""
    actions, step = [], env.step

    def recorded(a):
        actions.append(np.asarray(a, np.float64).copy())
        return step(a)

    env.step = recorded
    return actions


def test_through_the_runtime_the_environment_gets_what_dp3s_own_loop_sends(small_checkpoint):
    """PolicyRuntime (clouds from depth, chunks scheduled and stamped at 80 Hz, lockstep) applies exactly
    the actions DP3's loop applies: the same clouds, chunks and execution, one seed per chunk."""
    from collections import deque

    from diffusion_policy_ros.policy import Policy
    from diffusion_policy_ros.runtime.controller import PolicyRuntime
    from diffusion_policy_ros.sim.closed_loop import Latency

    policy = Policy.from_checkpoint(small_checkpoint)
    via, loop = MW.MetaWorldTask("metaworld/button-press", num_points=256, clouds=False), \
        MW.MetaWorldTask("metaworld/button-press", num_points=256)
    try:
        via.reset(5000)
        runtime = PolicyRuntime(policy, MW.deploy_config(via))
        assert runtime.period == int(round(via.env.dt * 1e9)) and runtime.output_names == ["command"]
        sent = _recording(via)
        r = MW.runtime_episode(via, runtime, 5000, Latency())
        # DP3's loop, seed 0 for every chunk (the runtime's sampling.seed)
        applied, obs = _recording(loop), loop.reset(5000)
        history = deque([obs] * 2, maxlen=2)
        first = runtime_cloud = None
        while len(applied) < r["steps"]:
            batch = {"point_cloud": np.stack([o.point_cloud for o in history]),
                     "agent_pos": np.stack([o.agent_pos for o in history])}
            first = batch["point_cloud"][-1] if first is None else first
            for a in policy.predict(batch, seed=0)[:3]:
                history.append(loop.step(a))
                if len(applied) == r["steps"]:
                    break
        runtime_cloud = runtime.last_observation[0]["point_cloud"][-1]
        assert runtime_cloud.shape == first.shape == (256, 3)
        assert r["late_chunks"] == 0 and r["holds"] == 0 and len(sent) == len(applied) == r["steps"]
        assert np.allclose(np.array(sent), np.clip(np.array(applied), -1, 1), atol=1e-5)  # Meta-World clips to ±1
        assert np.abs(np.array(sent)).max() > 0.05  # the policy moved the hand
    finally:
        via.close()
        loop.close()


def test_dp3s_loop_runs_the_steps_asked_and_reports_where_the_hand_ended(small_checkpoint):
    """``direct_episode`` with ``max_steps`` and no stop on success: that many steps, one chunk per three,
    the object's start as reset gives it, and the hand and object where replaying the same actions puts them. The env
    comes from ``env_for_checkpoint``: the checkpoint's 256 points, not the default 512."""
    from diffusion_policy_ros.policy import Policy

    policy = Policy.from_checkpoint(small_checkpoint)
    env = MW.env_for_checkpoint("metaworld/button-press", policy, small_checkpoint)
    assert (env.num_points, env.crop) == (256, "dp3") != (MW.NUM_POINTS, None)
    try:
        sent = _recording(env)
        r = MW.direct_episode(env, policy, 5000, max_steps=7, stop_on_success=False)
        assert r["steps"] == len(sent) == 7 and len(r["inference_ms"]) == 3
        actions = list(sent)
        obs = env.reset(5000)
        assert np.allclose(r["object_start"], obs.raw[4:7])
        for a in actions:
            obs = env.step(a)
        assert np.allclose(r["hand"], obs.raw[:3]) and not np.allclose(r["hand"], env.reset(5000).raw[:3])
        assert np.allclose(r["object"], obs.raw[4:7]) and np.allclose(r["goal"], obs.raw[36:39])
    finally:
        env.close()


def test_at_50_ms_chunks_planned_in_motion_are_dropped_and_those_planned_at_rest_start_when_published(
        small_checkpoint):
    """At 50 ms of inference (4 steps at 80 Hz) every action of a 3-step chunk planned while the hand
    moves is due before the chunk lands: none of it is sent (late) and the command falls to zero. The
    next chunk is then planned with the hand at rest, so it starts at its publish time (the scheduler's
    at-rest anchor) and goes out whole: late and sent chunks alternate, 8 steps a cycle, and the hand
    only moves on the same 3 steps of each cycle."""
    from diffusion_policy_ros.policy import Policy
    from diffusion_policy_ros.runtime.controller import PolicyRuntime
    from diffusion_policy_ros.sim.closed_loop import Latency

    env = MW.MetaWorldTask("metaworld/button-press", num_points=256, clouds=False)
    try:
        env.reset(5000)
        runtime = PolicyRuntime(Policy.from_checkpoint(small_checkpoint), MW.deploy_config(env))
        sent = _recording(env)
        d = MW.runtime_episode(env, runtime, 5000, Latency(fixed_ms=50.0))
    finally:
        env.close()
    moving = [k for k, a in enumerate(sent) if np.abs(a).max() > 0]
    assert len(sent) == d["steps"] and d["late_chunks"] >= (d["steps"] - 8) // 8
    assert len(moving) >= 3 * (d["steps"] // 8 - 1) and len({k % 8 for k in moving}) == 3
    r = MW.evaluate("metaworld/button-press", small_checkpoint, 1, 5000, progress=False, delay=50)
    assert r["evaluation"] == "runtime" and r["delay_ms"] == 50.0 and r["execution"] == "sync+none"
    assert r["late_chunks"] == r["episodes_detail"][0]["late_chunks"] > 0
    ok = MW.evaluate("metaworld/button-press", small_checkpoint, 1, 5000, progress=False, delay=12.5)
    assert ok["late_chunks"] == 0  # one step of latency: the last two actions of each chunk still go out
    with pytest.raises(ConfigError, match="direct"):
        MW.evaluate("metaworld/button-press", small_checkpoint, 1, 5000, progress=False, direct=True, delay=50)
    with pytest.raises(ConfigError, match="unknown parameters"):
        MW.evaluate("metaworld/button-press", small_checkpoint, 1, 5000, progress=False, overrides={"x.y": 1})
