"""The simulated aerial manipulator (thrust-limited multirotor + 3-DoF arm, MuJoCo), the oracle floating
gripper the demonstrations come from, and the reach task round the post."""
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from diffusion_policy_ros.data import ReplayBuffer
from diffusion_policy_ros.embodiment.base import AerialEmbodiment
from diffusion_policy_ros.errors import ConfigError
from diffusion_policy_ros.perception.pointcloud import PointCloudPipeline
from diffusion_policy_ros.runtime.schedule import TimedTrajectory
from diffusion_policy_ros.sim.aerial import AerialSceneConfig, AerialSim
from diffusion_policy_ros.sim.aerial_tasks import ReachTask
from diffusion_policy_ros.sim.env import SimEnv, sim_deploy_config
from diffusion_policy_ros.sim.experts import collect, expert_episode
from diffusion_policy_ros.constants import NS
from diffusion_policy_ros.sim.tasks import make_task

START = np.array([0.0, 0.0, 1.0])


def _move(sim: AerialSim, goal, over_s: float, then_s: float, every_s: float = 0.05):
    """Command a straight line to ``goal`` over ``over_s`` and hold; the end effector's path."""
    t = sim.time_ns
    sim.follower.set(TimedTrajectory(np.array([t + int(over_s * NS)]), np.asarray(goal, float)[None]), t)
    path = []
    for k in range(1, int(round((over_s + then_s) / every_s)) + 1):
        sim.advance(t + int(k * every_s * NS))
        path.append(sim.tip_position())
    return np.array(path)


@pytest.fixture(scope="module")
def aerial():
    sim = AerialSim(AerialSceneConfig())
    yield sim
    sim.close()


def test_hovers_where_told_with_the_arm_at_rest(aerial):
    aerial.reset(START)
    aerial.advance(2 * NS)
    np.testing.assert_allclose(aerial.ee_pose()[:3], START, atol=0.015)
    np.testing.assert_allclose(aerial.joints(), aerial.q_rest, atol=0.05)
    np.testing.assert_allclose(aerial.ee_pose()[3:], [0, 0, 0, 1], atol=2e-3)  # level, heading 0


def test_a_fast_move_lags_and_overshoots_a_slow_one_does_not(aerial):
    """The thrust-limited, lagging base cannot follow a hand's 1 m/s step; at 0.1 m/s it can. The
    differentiable model guidance uses predicts the same ordering."""
    goal = START + [0.5, 0.0, 0.0]
    aerial.reset(START)
    fast = _move(aerial, goal, 0.5, 3.0)
    aerial.reset(START)
    slow = _move(aerial, goal, 5.0, 1.0)
    assert fast[:, 0].max() - goal[0] > 0.08  # overshoot past the goal
    assert slow[:, 0].max() - goal[0] < 0.03
    np.testing.assert_allclose(fast[-1], goal, atol=0.03)  # both settle
    np.testing.assert_allclose(slow[-1], goal, atol=0.03)
    model = AerialEmbodiment()
    state = model.state(torch.as_tensor(START)[None])
    t = torch.linspace(0, 1, 6, dtype=torch.float64)[1:, None]
    fast_t = torch.cat((torch.as_tensor(START) + t * torch.tensor([0.5, 0, 0.0]),
                        torch.as_tensor(goal).expand(15, 3))).unsqueeze(0)
    slow_t = (torch.as_tensor(START) + torch.linspace(0, 1, 20, dtype=torch.float64)[:, None]
              * torch.tensor([0.5, 0, 0.0])).unsqueeze(0)
    assert model.feasibility(fast_t, state)["tracking_error"] > 2 * model.feasibility(slow_t, state)["tracking_error"]


def test_the_oracle_is_exactly_where_its_trajectory_says():
    sim = AerialSim(AerialSceneConfig(oracle=True))
    sim.reset(START)
    path = _move(sim, START + [0.5, 0.0, 0.0], 0.5, 0.5)
    np.testing.assert_allclose(path[4], START + [0.25, 0, 0], atol=1e-9)  # half-way at 0.25 s
    np.testing.assert_allclose(path[-1], START + [0.5, 0, 0], atol=1e-9)
    assert sim.joints().size == 0 and not sim.wrench().any()
    sim.close()


def test_wind_pushes_the_base_and_the_controller_holds_against_it():
    calm, windy = (AerialSim(AerialSceneConfig(wind_std=w)) for w in (0.0, 4.0))
    errs = []
    for sim in (calm, windy):
        sim.reset(START, seed=3)
        e = []
        for k in range(1, 41):
            sim.advance(int(k * 0.1 * NS))
            e.append(np.linalg.norm(sim.base_position() - (START - sim.offset)))
        errs.append(max(e))
        sim.close()
    assert errs[1] > 3 * errs[0] and errs[1] > 0.01
    assert errs[1] < 0.5  # pushed, not blown away


def test_sim_aerial_config_extrinsic_is_the_scene_camera():
    np.testing.assert_allclose(sim_deploy_config("aerial").point_cloud.extrinsic,
                               AerialSceneConfig().camera.extrinsic(), atol=1e-5)


@pytest.fixture(scope="module")
def reach():
    env = SimEnv("reach", sim_deploy_config("oracle"), "oracle")
    yield env
    env.close()


def test_the_point_cloud_sees_post_and_target_but_not_the_multirotor():
    env = SimEnv("reach", sim_deploy_config("aerial"))
    task, sim = env.task, env.sim
    task.reset(sim, None, 1000)
    _, depth = sim.render()
    cloud = PointCloudPipeline(env.cfg.point_cloud, sim.camera)(depth.astype(np.float32) * 0.001)
    post = sim.model.geom("post").pos
    near_post = cloud[np.linalg.norm(cloud[:, :2] - post[:2], axis=1) < 0.1]
    assert len(near_post) > 10 and near_post[:, 2].max() == pytest.approx(2 * task.post_half[2], abs=0.02)
    goal = task.goal(sim)
    assert (np.linalg.norm(cloud - (goal - [0, 0, 0.02]), axis=1) < 0.06).sum() > 3  # the target's top
    base = sim.base_position()
    assert not (np.linalg.norm(cloud - base, axis=1) < 0.2).any()  # self-filtered
    env.close()


def test_expert_demonstrations_go_round_both_sides_and_succeed(reach):
    sides = set()
    for seed in range(1000, 1006):
        ep, data = expert_episode(reach, seed, 128)
        assert ep.success, (seed, ep.failure)
        assert data["state"].shape == (ep.steps, 10) and data["action"].shape == (ep.steps, 10)
        sides.add(ep.initial["demo_side"])
        # The post stays between start and target, and the path passes beside it.
        path = np.asarray(ep.trace)
        post = np.asarray(ep.initial["post"])
        passing = path[np.abs(path[:, 0] - post[0]) < 0.05]
        assert len(passing) and np.all(np.abs(passing[:, 1] - post[1]) > 0.08)
    assert sides == {"left", "right"}


def test_touching_the_post_ends_the_episode_as_a_crash():
    sim = AerialSim(ReachTask().scene_config())
    task = ReachTask()
    task.reset(sim, None, 1000)
    post = sim.model.geom("post").pos
    t = sim.time_ns
    aim = np.array([post[0], post[1], task.flight_z])
    sim.follower.set(TimedTrajectory(np.array([t + 3 * NS]), aim[None]), t)
    for k in range(1, 60):
        sim.advance(t + k * NS // 10)
        task.update(sim)
        if task.failure(sim):
            break
    assert "post" in task.failure(sim) and not task.success(sim)
    sim.close()


def test_collect_uses_the_oracle_and_bad_embodiments_are_named(tmp_path):
    out = collect("reach", 2, tmp_path / "reach.zarr", seed=1000, num_points=64, progress=False)
    assert out["episodes"] == 2 and not out["failed_seeds"]
    buf = ReplayBuffer.open(tmp_path / "reach.zarr")
    assert buf.n_episodes == 2 and buf.array("point_cloud").shape[1:] == (64, 3)
    with pytest.raises(ConfigError, match="runs on"):
        SimEnv("reach", sim_deploy_config("arm"), "arm")
    with pytest.raises(ConfigError, match="runs on"):
        SimEnv("push", sim_deploy_config("arm"), "aerial")


def _replay_demonstrations_open_loop(task, seeds):
    """Each seed's oracle demonstration commanded open loop to the aerial manipulator →
    [(near side?, success, failure)]."""
    oracle, aerial = AerialSim(task.scene_config(oracle=True)), AerialSim(task.scene_config())
    period = NS // 10
    out = []
    for seed in seeds:
        initial = task.reset(oracle, None, seed)
        expert, ref, targets = task.expert(oracle), np.array(initial["start"]), []
        while expert.phase != "done":
            ref = expert.next_target(ref)
            targets.append(ref)
        task.reset(aerial, None, seed)
        for k, ref in enumerate(targets + [targets[-1]] * 20):
            aerial.follower.set(TimedTrajectory(np.array([(k + 1) * period]), ref[None]), k * period)
            for s in range(1, 6):
                aerial.advance(k * period + s * period // 5)
                task.update(aerial)
        near = (initial["start"][1] > 0) == (initial["demo_side"] == "left")
        out.append((near, task.success(aerial), task.failure(aerial)))
    oracle.close()
    aerial.close()
    return out


def test_demonstrations_replayed_on_the_aerial_manipulator_fail_more_on_the_far_side():
    """Why reach needs embodiment-aware guidance: the oracle's demonstrations, commanded open loop to
    the aerial manipulator, succeed when they go round the post on the start's side and mostly crash
    (overshooting the swing across) on the far side. Both sides are in the demonstrations."""
    runs = _replay_demonstrations_open_loop(ReachTask(), range(1000, 1016))
    wins = {side: [ok for near, ok, _ in runs if near == (side == "near")] for side in ("near", "far")}
    assert len(wins["near"]) >= 4 and len(wins["far"]) >= 4
    assert np.mean(wins["near"]) >= 0.8 and np.mean(wins["far"]) <= 0.5, wins


def test_fast_demonstrations_followed_open_loop_cut_into_the_post():
    """reach_fast's oracle swings round the post at 1.6 m/s: the multirotor cannot turn that fast, and
    followed as demonstrated the gripper cuts the corner into the post on either side."""
    runs = _replay_demonstrations_open_loop(make_task("reach_fast"), range(1000, 1016))
    post_hits = [fail for _, _, fail in runs if "post" in fail]
    assert np.mean([ok for _, ok, _ in runs]) <= 0.7 and len(post_hits) >= 4, runs
    assert {near for near, _, fail in runs if "post" in fail} == {True, False}, runs


def test_guidance_by_the_predicted_flight_gets_the_shipped_policy_round_the_post(tmp_path):
    """reach_fast's shipped policy (oracle demonstrations at 1.6 m/s) on the aerial manipulator, the same
    sampling seed: unguided its plan is followed into the post; guided by the clearance of the
    embodiment's predicted flight (config/sim_aerial.yaml) the same policy never hits the post and lands
    at least as often. (On the AVX512 CPU this was written on guided landed more often; on an AVX2 one
    seed 0's guided run hits the stand instead and seed 2 lands either way: floating point moves these
    episodes, so only what holds on both is asserted.) The live view of a guided run carries the guidance cost."""
    from diffusion_policy_ros.config import resolve_shipped_checkpoint
    from diffusion_policy_ros.sim.closed_loop import evaluate

    ckpt = str(resolve_shipped_checkpoint("reach_fast_dp3"))
    rrd = tmp_path / "guided.rrd"
    views = {(3.0, 0): str(rrd)} if importlib.util.find_spec("rerun") else {}
    runs = {g: [evaluate("reach_fast", ckpt, 1, seed=s, overrides={"sampling.seed": 0, "guidance.strength": g},
                         progress=False, rerun=views.get((g, s), ""))["per_episode"][0] for s in (0, 2)]
            for g in (0.0, 3.0)}
    unguided, guided = runs[0.0], runs[3.0]
    assert sum(e["success"] for e in guided) >= sum(e["success"] for e in unguided), runs
    assert any(e.get("failure") == "the robot hit the post" for e in unguided), unguided
    assert not any("post" in (e.get("failure") or "") for e in guided), guided
    if views:
        cli = shutil.which("rerun") or str(Path(sys.executable).parent / "rerun")
        printed = subprocess.run([cli, "rrd", "print", "-v", str(rrd)], capture_output=True, text=True, timeout=120,
                                 env=dict(os.environ, RERUN_TELEMETRY_ENABLED="false")).stdout
        assert "/guidance/cost" in printed and "/world/prediction" in printed
