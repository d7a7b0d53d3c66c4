"""The MuJoCo simulator: scene from the URDF, camera geometry, JTC-style following, wrist F/T, the push
task's expert, dataset collection and closed-loop evaluation through PolicyRuntime."""
import json

import numpy as np
import pytest
import torch

from diffusion_policy_ros.cli import main
from diffusion_policy_ros.config import resolve_shipped_checkpoint
from diffusion_policy_ros.embodiment.arm import arm_from_config
from diffusion_policy_ros.data import ReplayBuffer
from diffusion_policy_ros.errors import ConfigError, SimError
from diffusion_policy_ros.perception.pointcloud import PointCloudPipeline
from diffusion_policy_ros.runtime.schedule import TimedTrajectory
from diffusion_policy_ros.sim.closed_loop import evaluate
from diffusion_policy_ros.sim.env import SimEnv, sim_deploy_config
from diffusion_policy_ros.sim.experts import collect, expert_episode
from diffusion_policy_ros.sim.stats import paired_flips, sampling_noise, wilson_ci95
from diffusion_policy_ros.constants import NS
from diffusion_policy_ros.sim.camera import CameraSpec
from diffusion_policy_ros.sim.controllers import JointTrajectoryFollower
from diffusion_policy_ros.sim.tasks import HOME_Q, R_DOWN, solve_ik


@pytest.fixture(scope="module")
def env():
    e = SimEnv("push", sim_deploy_config())
    yield e
    e.close()


def test_sim_config_extrinsic_is_the_scene_camera():
    cfg = sim_deploy_config()
    np.testing.assert_allclose(cfg.point_cloud.extrinsic, CameraSpec().extrinsic(), atol=1e-5)


def test_point_cloud_from_rendered_depth_finds_the_cube_where_physics_has_it(env):
    """Intrinsics, depth units and the extrinsic together: the points above the table near the cube
    sit on the cube's faces."""
    cube = np.array([0.47, -0.05, env.task.cube_half])
    env.sim.reset(solve_ik(env.kin, np.array([0.3, 0.25, 0.3])), {"cube": (cube, 0.0)})  # the tool far away
    rgb, depth = env.sim.render()
    assert rgb.dtype == np.uint8 and rgb.shape == (240, 320, 3) and depth.dtype == np.uint16
    cloud = PointCloudPipeline(env.cfg.point_cloud, env.sim.camera)(depth.astype(np.float32) * 0.001)
    near = cloud[np.linalg.norm(cloud[:, :2] - cube[:2], axis=1) < 0.06]
    assert len(near) > 20
    h = env.task.cube_half
    assert np.all(np.abs(near[:, :2] - cube[:2]) < h + 0.008)  # inside the footprint (+ depth quantisation)
    assert near[:, 2].max() == pytest.approx(2 * h, abs=0.006)  # the top face


def test_flange_pose_matches_the_urdf_kinematics(env):
    q = solve_ik(env.kin, np.array([0.4, 0.1, 0.2]))
    env.sim.reset(q, {"cube": (np.array([0.45, 0.0, 0.025]), 0.0)})
    pose = env.kin.fk(torch.as_tensor(q)).numpy()
    np.testing.assert_allclose(env.sim.flange_pose()[:3], [0.4, 0.1, 0.2], atol=1e-6)
    np.testing.assert_allclose(pose[:3], [0.4, 0.1, 0.2], atol=1e-3)
    from scipy.spatial.transform import Rotation

    np.testing.assert_allclose(Rotation.from_quat(env.sim.flange_pose()[3:]).as_matrix(), R_DOWN, atol=1e-3)


def test_follower_ramps_to_a_future_first_point_and_jumps_to_a_past_one_like_jtc():
    """joint_trajectory_controller's semantics (ros2_controllers Trajectory::sample): the state at
    receipt (measured by default) → first point; waypoints; last point held; a first point in the past
    means the command jumps to where the new trajectory is now."""
    f = JointTrajectoryFollower(np.zeros(2))
    traj = TimedTrajectory(np.array([100, 200], np.int64), np.array([[1.0, 2.0], [2.0, 4.0]]))
    measured = np.array([0.1, 0.0])  # the arm lags its command a little
    assert f.set(traj, now_ns=0, measured=measured)
    np.testing.assert_allclose(f.command(0), measured)  # from the measured state, not the old command
    np.testing.assert_allclose(f.command(50), (measured + [1.0, 2.0]) / 2)
    np.testing.assert_allclose(f.command(150), [1.5, 3.0])
    np.testing.assert_allclose(f.command(500), [2.0, 4.0])  # the last point is held
    assert f.stats.first_point_in_past == 0 and f.stats.max_jump == pytest.approx(0.1)
    # A trajectory received at t=150 whose first point (120) is already past: sampled at now, a jump.
    late = TimedTrajectory(np.array([120, 250], np.int64), np.array([[9.0, 9.0], [0.0, 0.0]]))
    assert f.set(late, now_ns=150, measured=f.command(150))
    np.testing.assert_allclose(f.command(150), late.at(150))
    assert f.stats.first_point_in_past == 1 and f.stats.max_jump > 5.0
    # One that ends in the past is rejected; the running one continues.
    assert not f.set(TimedTrajectory(np.array([200], np.int64), np.ones((1, 2))), now_ns=300)
    assert f.stats.rejected == 1
    np.testing.assert_allclose(f.command(300), [0.0, 0.0])
    with pytest.raises(ConfigError, match="finite"):
        f.set(TimedTrajectory(np.array([400], np.int64), np.array([[np.nan, 0.0]])), now_ns=300)


def test_follower_splines_with_velocities_and_open_loop_starts_from_the_command():
    f = JointTrajectoryFollower(np.zeros(1), open_loop=True)
    traj = TimedTrajectory(np.array([100, 200, 300], np.int64), np.array([[1.0], [2.0], [2.0]])).with_velocities()
    f.set(traj, now_ns=0, measured=np.array([0.5]))  # open loop: the measured state is ignored
    np.testing.assert_allclose(f.command(0), [0.0])
    q, v = f.sample(150)
    assert 1.5 < q[0] < 2.0 and v[0] > 0  # a cubic through the waypoints with their velocities
    np.testing.assert_allclose(f.sample(200)[1], traj.velocities[1])
    np.testing.assert_allclose(f.sample(400), ([2.0], [0.0]))


def test_joints_track_a_commanded_trajectory(env):
    env.sim.reset(HOME_Q, {"cube": (np.array([0.45, 0.0, 0.025]), 0.0)})
    goal = HOME_Q + np.array([0.2, -0.1, 0.15, 0.1, -0.1, 0.3])
    env.sim.follower.set(TimedTrajectory(np.array([NS], np.int64), goal[None]), 0)
    env.sim.advance(NS // 2)
    np.testing.assert_allclose(env.sim.joints(), (HOME_Q + goal) / 2, atol=0.02)
    env.sim.advance(2 * NS)
    np.testing.assert_allclose(env.sim.joints(), goal, atol=2e-3)


def test_wrist_sensor_reads_the_tool_weight_then_the_table_pushing_back(env):
    start = np.array([0.35, -0.2, 0.2])
    q = solve_ik(env.kin, start)
    env.sim.reset(q, {"cube": (np.array([0.45, 0.1, 0.025]), 0.0)})
    env.sim.advance(NS // 2)
    w = env.sim.wrench()
    tool_weight = env.sim.cfg.tool_mass * 9.81
    assert np.linalg.norm(w[:3]) == pytest.approx(tool_weight, rel=0.05)
    # Press the paddle 1 cm into the table: the sensor sees a large force along the flange axis.
    low = solve_ik(env.kin, np.array([0.35, -0.2, env.sim.cfg.tool_length + env.sim.cfg.tip_half[2] - 0.01]), q)
    env.sim.follower.set(TimedTrajectory(np.array([NS], np.int64), low[None]), env.sim.time_ns)
    env.sim.advance(2 * NS)
    assert abs(env.sim.wrench()[2]) > 10 * tool_weight


def test_same_seed_same_start_and_the_expert_pushes_the_cube_over_the_line(env):
    a, b = env.task.reset(env.sim, env.kin, 7), env.task.reset(env.sim, env.kin, 7)
    assert a == b and env.task.reset(env.sim, env.kin, 8) != a
    ep, data = expert_episode(env, 7, num_points=128)
    assert ep.success
    assert data["point_cloud"].shape == (ep.steps, 128, 3)
    assert data["state"].shape == data["action"].shape == (ep.steps, 10)
    # The commanded path starts where the flange is and moves at most 0.15 m/s · 0.1 s per step.
    np.testing.assert_allclose(data["action"][0, :3], data["state"][0, :3], atol=1e-3)
    assert np.linalg.norm(np.diff(data["action"][:, :3], axis=0), axis=1).max() <= 0.015 + 1e-6


def test_a_diverging_sim_ends_with_a_clear_error(env):
    env.task.reset(env.sim, env.kin, 0)
    env.sim.data.qvel[:] = np.inf
    with pytest.raises(SimError, match="diverged"):
        env.sim.advance(env.sim.time_ns + NS // 10)


def test_collect_writes_dp3_episodes(tmp_path):
    out = tmp_path / "push.zarr"
    summary = collect("push", 2, out, seed=1000, num_points=64, progress=False)
    assert summary["episodes"] == 2 and summary["failed_seeds"] == []
    buf = ReplayBuffer.open(out)
    assert buf.n_episodes == 2 and set(buf.keys) == {"point_cloud", "state", "wrench", "action"}
    assert buf.array("point_cloud").shape[1:] == (64, 3)
    assert buf.provenance["demo_seeds"] == [1000, 1001] and buf.provenance["task"] == "push"
    assert "expert" not in buf.provenance  # push has one expert
    with pytest.raises(ConfigError, match="--expert: task 'push' has one expert"):
        collect("push", 1, tmp_path / "x.zarr", expert="reactive", progress=False)


def _press_seeds(task, env, soft_below=1.5, stiff_above=4.0):
    """The first training-range seeds with a soft and a stiff spring."""
    soft = stiff = None
    for seed in range(1000, 1100):
        k = task.reset(env.sim, env.kin, seed)["stiffness_n_per_mm"]
        soft = soft or (seed if k < soft_below else None)
        stiff = stiff or (seed if k > stiff_above else None)
        if soft and stiff:
            return soft, stiff
    raise AssertionError("no soft and stiff seeds")


def test_press_is_decided_by_force_one_depth_cannot_serve_every_spring():
    from diffusion_policy_ros.sim.tasks import PressExpert

    env = SimEnv("press", sim_deploy_config())
    try:
        task = env.task
        soft, stiff = _press_seeds(task, env)
        depth_z = {}
        for seed in (soft, stiff):
            ep, data = expert_episode(env, seed, num_points=64)
            assert ep.success and not ep.failure, (seed, ep.failure)
            assert task.band[0] <= task.peak <= task.band[1] + 1.0
            # the wrist feels it: the filtered sensor's z force reaches the band (+ the tool's ~1 N)
            assert data["wrench"][:, 2].max() > task.band[0] - 1.5 and data["wrench"][0, 2] < 0
            depth_z[seed] = data["action"][:, 2].min()
        assert depth_z[soft] < depth_z[stiff] - 0.005  # the soft spring needs > 5 mm more travel

        class FixedDepth(PressExpert):  # what a policy that cannot feel does: press to a learned depth
            def next_target(self, p):
                if self.phase == "press" and p[2] <= depth_z[soft] + 1e-6:
                    self.phase = "hold"
                return super().next_target(p) if self.phase != "press" else p - [0, 0, self.press_step]

        task.expert = lambda sim: FixedDepth(task, sim)
        ep, _ = expert_episode(env, stiff, num_points=64)
        assert not ep.success and ep.failure.startswith("over-pressed"), ep.failure
        assert len(ep.trace[0]) == 3  # time, force, depth for the report's plot

        class Creep(PressExpert):  # never stops: passes through the band at the expert's press speed
            def next_target(self, p):
                return super().next_target(p) if self.phase != "press" else p - [0, 0, self.press_step]

        task.expert = lambda sim: Creep(task, sim)
        ep, _ = expert_episode(env, soft, num_points=64)
        band_s = np.diff(np.asarray(ep.trace)[:, 0]).mean() * sum(
            task.band[0] <= f <= task.band[1] for _, f, _ in ep.trace)
        assert band_s > 1.2, band_s  # more than hold_s inside the band on the soft spring ...
        assert task.hold.longest_ns < task.hold_s * 1e9, task.hold.longest_ns  # ... but never held steady
    finally:
        env.close()


def test_press_experts_planned_slows_before_the_part_and_stops_on_its_depth():
    """The planned expert slows as it nears the part and stops at the depth that gives 15 N; the reactive
    one (the default) reaches 2 mm above the part at full descent speed and stops on the reading."""
    env = SimEnv("press", sim_deploy_config())
    try:
        task = env.task
        soft, stiff = _press_seeds(task, env)
        for profile in ("planned", "reactive"):
            task.expert_profile = profile
            for seed in (soft, stiff):
                ep, data = expert_episode(env, seed, num_points=64)
                assert ep.success, (profile, seed, ep.failure)
                expert = task.expert(env.sim)
                z = data["action"][:, 2] - expert.contact_z  # commanded flange height over the part
                speed = -np.diff(z) / 0.1
                near = z[1:] < 0.006  # steps that end within 6 mm over the part (or in it)
                if profile == "planned":
                    assert speed[near].max() < 0.035, speed[near]
                    assert abs(task.peak - 15.0) < 0.5, task.peak
                else:
                    assert speed[near].max() > 0.07, speed[near]
    finally:
        task.expert_profile = "reactive"
        env.close()


def _first_seeds_drawn_to_overshoot_or_not(env, profile: str) -> dict:
    """{True: (seed, overshoot N), False: (seed, 0.0)}: the first demonstration seeds from 1000 whose press
    expert (``profile``) is drawn to step past 15 N, and not to."""
    from diffusion_policy_ros.sim.tasks import PressExpert

    drawn = {}
    for seed in range(1000, 1100):
        env.task.reset(env.sim, env.kin, seed)
        extra = PressExpert(env.task, env.sim, profile=profile).overshoot
        drawn.setdefault(extra > 0, (seed, extra))
        if len(drawn) == 2:
            return drawn
    raise AssertionError(f"{profile}: seeds 1000-1099 do not draw both cases: {drawn}")


def test_press_expert_regulating_overshoots_on_half_the_seeds_then_settles_slowly_to_15_n():
    """regulating: on a seed drawn to overshoot, the press goes one step deeper at 15 N, the force passes
    15 N by the drawn amount, and the tool then only moves up, the force coming down to 15 N over several
    periods (not in one step) and held there; on a seed drawn not to, the demonstration is the reactive
    one, action for action, up to the hold (which may then correct a reading 0.5 N or more over 15 N)."""
    env = SimEnv("press", sim_deploy_config())
    task = env.task
    try:
        drawn = _first_seeds_drawn_to_overshoot_or_not(env, "regulating")
        (over, extra), (plain, _) = drawn[True], drawn[False]
        assert 2.0 <= extra <= 6.0, extra
        actions = {}
        for profile in ("regulating", "reactive"):
            task.expert_profile = profile
            for seed in (over, plain):
                ep, data = expert_episode(env, seed, num_points=64)
                assert ep.success, (profile, seed, ep.failure)
                actions[profile, seed] = data["action"]
                if profile == "regulating" and seed == over:
                    force = np.asarray(ep.trace)[:, 1]
                    peak = int(force.argmax())
                    assert force[peak] >= 15.0 + extra - 0.5, (force[peak], extra)
                    settle = np.nonzero(np.abs(force[peak:] - 15.0) < 1.0)[0]
                    assert settle.size and settle[0] >= 5, settle  # periods of 0.1 s from the peak to 15 +- 1 N
                    assert abs(force[-1] - 15.0) < 1.0, force[-1]
                    z = data["action"][:, 2]
                    deepest = int(z.argmin())  # the one step deeper; from there on it only ever moves up
                    jump = z[deepest - 1] - z[deepest]
                    assert np.isclose(jump, extra / task.spring_rate(env.sim), rtol=1e-3), (jump, extra)
                    assert (np.diff(z[deepest:]) >= 0).all() and z[-1] > z[deepest], z[deepest:]
        z = actions["reactive", plain][:, 2]
        pressed = int(np.nonzero((np.diff(z) == 0) & (z[1:] < z.min() + 1e-3))[0][0]) + 2  # through the hold's first
        np.testing.assert_array_equal(actions["regulating", plain][:pressed], actions["reactive", plain][:pressed])
        assert actions["regulating", over].shape != actions["reactive", over].shape or not np.array_equal(
            actions["regulating", over], actions["reactive", over])
    finally:
        task.expert_profile = "reactive"
        env.close()


def test_press_expert_servo_slows_as_the_force_nears_15_n_and_takes_over_from_a_policy_state():
    """servo: in contact each step is at most the reactive one and shrinks with 15 N - force; it settles
    within 0.5 N of 15 and never passes it. Taking over from the shipped policy under 400 ms of latency,
    the expert starts from the pose the arm was commanded (no jump) and ends its hold settled."""
    from diffusion_policy_ros.sim.closed_loop import Latency
    from diffusion_policy_ros.runtime.deployment import build_runtime, load_policy
    from diffusion_policy_ros.sim.env import eval_config
    from diffusion_policy_ros.sim.experts import takeover_episode
    from diffusion_policy_ros.sim.tasks import PressExpert

    env = SimEnv("press", sim_deploy_config())
    task = env.task
    try:
        task.expert_profile = "servo"
        ep, data = expert_episode(env, 1002, num_points=64)  # a 3.8 N/mm spring
        assert ep.success, ep.failure
        force = np.asarray(ep.trace)[:, 1]
        assert force.max() < 15.0 and abs(force[-1] - 15.0) < 0.5, force[-5:]
        z = data["action"][:, 2]
        steps = -np.diff(z)[force[1:] > 0.2]  # in contact
        steps = steps[steps > 1e-6]
        assert steps.max() <= PressExpert(task, env.sim).press_step + 1e-7, steps  # float32 actions
        assert steps[-1] < 0.5 * steps[0], steps
    finally:
        task.expert_profile = "reactive"
        env.close()

    ckpt = str(resolve_shipped_checkpoint("press_dp3_force"))
    cfg = eval_config("press", ckpt, None, None, {"sampling.seed": 0})
    env = SimEnv("press", cfg)
    env.task.expert_profile = "servo"
    try:
        runtime = build_runtime(cfg, load_policy(cfg, ckpt), arm=env.kin)
        ep, data = takeover_episode(env, runtime, 1000, Latency(400.0), contact_periods=3, num_points=64)
        assert data is not None and not ep.success and ep.steps > 3, ep
        # its first action is the pose the arm was commanded then: within the servo's lag of the measured one
        assert np.abs(data["action"][0, :3] - data["state"][0, :3]).max() < 1e-3, (data["action"][0], data["state"][0])
        f = np.asarray(ep.trace)[:, 1]
        assert f[-1] > 0.2, f[-3:]  # taken over in contact
        assert np.abs(np.diff(data["action"][:, :3], axis=0)).max() <= 0.0075 + 1e-6  # one approach step at most
        assert abs(env.task.force(env.sim) - 15.0) < 0.5, env.task.force(env.sim)
    finally:
        env.close()


def test_press_expert_proportional_steps_by_the_force_alone_on_soft_and_stiff_springs():
    """proportional: in contact each step is 0.15 x (15 N - force) / the stiffest spring's rate (at most the
    reactive step), the same function of the force on a 1.1 N/mm and a 5.9 N/mm spring, and both succeed;
    the descent ends at 20 mm/s (2 mm a period) over its last 12 mm instead of 75 mm/s."""
    env = SimEnv("press", sim_deploy_config())
    task = env.task
    try:
        task.expert_profile = "proportional"
        for seed in (1009, 1021):  # 1.09 and 5.91 N/mm
            ep, data = expert_episode(env, seed, num_points=64)
            assert ep.success, (seed, ep.failure)
            force = np.asarray(ep.trace)[:, 1]
            assert force.max() < 15.0, (seed, force.max())
            steps = -np.diff(data["action"][:, 2])
            pressing = (force[:-1] > 0.2) & (steps > 1e-7)
            assert pressing.sum() > 10, seed
            expected = np.minimum(0.15 * (15.0 - force[:-1]) / task.stiffness[1], 0.0003)
            np.testing.assert_allclose(steps[pressing], expected[pressing], atol=2e-7)  # float32 actions
            descent = steps[: int(np.argmax(force > 0.2))]
            assert descent.max() > 0.007 and np.isclose(descent, 0.002, atol=1e-6).sum() >= 5, descent[-12:]
    finally:
        task.expert_profile = "reactive"
        env.close()


def test_press_expert_overshoot_slows_before_the_part_steps_past_15_n_on_half_the_seeds_then_holds():
    """overshoot: the descent's last 12 mm at 2 mm a period; on a seed drawn to overshoot, one step deeper
    at 15 N by the depth of 0.5..2.5 N more and then the hold, unmoved (no correction); on a seed drawn
    not to, no step past the one that read 15 N. Both succeed."""
    from diffusion_policy_ros.sim.tasks import PressExpert

    env = SimEnv("press", sim_deploy_config())
    task = env.task
    try:
        drawn = _first_seeds_drawn_to_overshoot_or_not(env, "overshoot")
        task.expert_profile = "overshoot"
        for seed, extra in drawn.values():
            ep, data = expert_episode(env, seed, num_points=64)
            assert ep.success, (seed, ep.failure)
            z = data["action"][:, 2]
            steps = -np.diff(z)
            force = np.asarray(ep.trace)[:, 1]
            descent = steps[: int(np.argmax(force > 0.2))]
            assert descent.max() > 0.007 and np.isclose(descent, 0.002, atol=1e-6).sum() >= 5, descent[-12:]
            deepest = int(z.argmin())
            assert np.allclose(z[deepest:], z[deepest], atol=1e-7), z[deepest:]  # the hold never corrects
            last = z[deepest - 1] - z[deepest]
            if extra > 0:
                assert 0.5 <= extra <= 2.5, extra
                assert np.isclose(last, extra / task.spring_rate(env.sim), rtol=1e-3), (last, extra)
                assert force.max() >= 15.0 + extra - 0.5, (force.max(), extra)
            else:
                assert np.isclose(last, PressExpert(task, env.sim).press_step, atol=2e-7), last
        assert set(drawn) == {True, False}
    finally:
        task.expert_profile = "reactive"
        env.close()


def test_collect_takeover_adds_expert_segments_to_a_dataset_and_records_them(tmp_path, capsys):
    """dpros collect --takeover: the expert's take-overs are appended to the demonstrations' dataset; its
    provenance says which checkpoint, delay and seeds, and the seeds trained on cover them."""
    out = tmp_path / "press.zarr"
    assert main(["collect", "--task", "press", "--episodes", "1", "--seed", "1000", "--out", str(out),
                 "--expert", "servo", "--num-points", "64", "--no-progress"]) == 0
    assert main(["collect", "--task", "press", "--takeover", "press_dp3_force", "--expert", "reactive",
                 "--out", str(out), "--no-progress"]) == 2
    assert "expected servo" in capsys.readouterr().err
    assert main(["collect", "--task", "press", "--takeover", "press_dp3_force", "--episodes", "1", "--seed",
                 "1003", "--takeover-draws", "1", "--num-points", "64", "--out", str(out), "--no-progress",
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    buf = ReplayBuffer.open(out)
    assert summary["segments"] + sum(summary["skipped"].values()) == 1
    assert buf.n_episodes == 1 + summary["segments"] == summary["episodes"]
    prov = buf.provenance
    assert prov["expert"] == "servo" and prov["demo_seeds"] == [1000, 1003], prov
    assert prov["takeover"][0]["delay_ms"] == 400.0 and prov["takeover"][0]["seeds"] == [1003, 1003], prov


def test_press_arm_holds_its_command_under_load_only_with_integral_action(monkeypatch):
    """Without integral action the servo holds the pose ~0.3 mm above the command at 15 N, so a fixed
    command offset is a force controller a policy can learn without feeling anything; with it (the
    press task's default) the held pose is the command."""
    import functools

    from diffusion_policy_ros.sim import tasks

    offsets = {}
    for ki in (0.0, tasks.PressTask.ki):
        monkeypatch.setitem(tasks.TASKS, "press", functools.partial(tasks.PressTask, ki=ki))
        env = SimEnv("press", sim_deploy_config())
        try:
            ep, data = expert_episode(env, 1000, num_points=64)
        finally:
            env.close()
        assert ep.success, ep.failure
        offsets[ki] = data["action"][-1, 2] - data["state"][-1, 2]  # commanded - measured flange z, held
    assert tasks.PressTask.ki > 0 and offsets[0.0] < -2e-4, offsets
    assert abs(offsets[tasks.PressTask.ki]) < 5e-5, offsets


def test_shipped_press_checkpoint_seats_the_part_by_feel():
    """The shipped vision + force checkpoint presses unseen springs into the band without over-pressing."""
    summary = evaluate("press", str(resolve_shipped_checkpoint("press_dp3_force")), episodes=2, seed=0,
                       overrides={"sampling.replan_steps": 2}, progress=False)
    assert summary["successes"] == 2, summary["per_episode"]


def test_temporal_ensembling_keeps_a_press_steady_under_400_ms_of_latency():
    """At 400 ms the chunk that runs was predicted ~0.5 s ahead; each new chunk replacing the last moves
    the pressing depth by its own far-prediction error, the force hunts and the hold is never steady.
    Averaging the overlapping predictions (timing.ensemble 0.5, the arm configs' default) holds it."""
    ckpt = str(resolve_shipped_checkpoint("press_dp3_force"))
    wins = {}
    for ensemble in (1.0, 0.5):
        s = evaluate("press", ckpt, episodes=3, seed=0, progress=False, delay=400,
                     overrides={"sampling.replan_steps": 2, "sampling.seed": 0, "timing.ensemble": ensemble})
        assert s["first_point_in_past"] == 0, s
        wins[ensemble] = s["successes"]
    assert wins[0.5] == 3 and wins[1.0] <= 1, wins


def test_contact_guard_caps_the_press_force_in_the_simulator():
    """safety.max_contact_force below the band the policy presses to: the guard stops the arm on the
    sim's wrench, between inferences, and the spring never reaches what the policy alone presses to."""
    from diffusion_policy_ros.runtime.deployment import build_runtime, load_policy
    from diffusion_policy_ros.sim.closed_loop import policy_episode
    from diffusion_policy_ros.sim.env import eval_config

    ckpt = str(resolve_shipped_checkpoint("press_dp3_force"))
    peaks = {}
    for limit in (0.0, 8.0):
        cfg = eval_config("press", ckpt, None, None, {"sampling.replan_steps": 2, "sampling.seed": 0,
                                                       "safety.max_contact_force": limit})
        env = SimEnv("press", cfg)
        try:
            ep = policy_episode(env, build_runtime(cfg, load_policy(cfg, ckpt), arm=env.kin), seed=0)
            peaks[limit] = (env.task.peak, ep.contact_stops, ep.first_point_in_past)
        finally:
            env.close()
    assert peaks[0.0][0] >= 12.0 and peaks[0.0][1] == 0, peaks  # the policy alone presses into the band
    assert peaks[8.0][1] >= 1 and peaks[8.0][0] < 11.0 and peaks[8.0][2] == 0, peaks


def test_hold_timer_counts_a_steady_hold_not_a_pass_through():
    from diffusion_policy_ros.sim.task_parts import HoldTimer

    t = np.arange(0, 3e9, 2e7).astype(np.int64)  # 3 s at 50 Hz
    ramp, steady = HoldTimer(spread=1.0), HoldTimer(spread=1.0)
    for ti in t:
        ramp.update(True, int(ti), 12.0 + 2.0 * ti / 1e9)  # 2 N/s through the band
        steady.update(True, int(ti), 15.0 + 0.4 * np.sin(ti / 1e8))
    assert ramp.longest_ns <= 0.52e9 and steady.longest_ns >= 2.9e9
    plain = HoldTimer()
    for ti in t:
        plain.update(True, int(ti), 12.0 + 2.0 * ti / 1e9)
    assert plain.longest_ns >= 2.9e9  # without a spread any value holds


def test_wilson_interval():
    assert wilson_ci95(0, 10)[0] == 0.0 and wilson_ci95(10, 10)[1] == 1.0
    lo, hi = wilson_ci95(45, 50)
    assert 0.78 < lo < 0.9 < hi < 0.97


def test_paired_flips_count_lost_and_gained_seeds_with_mcnemars_exact_p():
    base = {s: s % 2 == 0 for s in range(50)}  # 25 of 50
    reshuffled = {s: (s % 2 == 1) if s < 10 else base[s] for s in range(50)}  # 5 lost, 5 gained: no change
    worse = {s: False if s < 16 else base[s] for s in range(50)}  # 8 lost, none gained
    r = paired_flips(base, reshuffled)
    assert len(r["lost"]) == 5 and len(r["gained"]) == 5 and r["mcnemar_p"] == 1.0
    r = paired_flips(base, worse)
    assert r["lost"] == [0, 2, 4, 6, 8, 10, 12, 14] and not r["gained"] and r["mcnemar_p"] < 0.01  # 2/2^8
    with pytest.raises(ValueError, match="no seed"):
        paired_flips({1: True}, {2: True})


def test_sampling_noise_counts_seeds_a_new_sampling_seed_flips():
    a = {s: s < 30 for s in range(50)}
    b = {s: s < 30 if s >= 10 else not a[s] for s in range(50)}  # the first 10 seeds flipped
    c = dict(a)
    r = sampling_noise({0: a, 1: b, 2: c})
    assert r["seeds"] == 50 and r["changed"] == {"0-1": 10, "0-2": 0, "1-2": 10}
    assert abs(r["changed_mean"] - 20 / 3) < 1e-9
    with pytest.raises(ValueError, match="at least 2"):
        sampling_noise({0: a})


def test_shipped_checkpoint_pushes_in_closed_loop_and_writes_its_report(tmp_path):
    """The shipped DP3 checkpoint through the runtime the node uses, on seeds it never saw."""
    summary = evaluate("push", str(resolve_shipped_checkpoint("push_dp3")), episodes=3, seed=0, out=tmp_path,
                       videos=1, progress=False)
    assert summary["successes"] >= 2, summary["per_episode"]
    assert summary["p99_latency_ms"] > 0
    files = summary["files"]
    assert (tmp_path / "results.md").read_text().startswith("| task |")
    assert json.loads((tmp_path / "results.json").read_text())["episodes"] == 3
    assert (tmp_path / "paths.png").stat().st_size > 5000
    assert files["video"].endswith((".mp4", ".gif"))


def test_shipped_students_load_as_any_checkpoint_and_push_in_one_denoiser_call(monkeypatch):
    """The distilled students ship beside their teachers, carry their demonstration seeds, and drive the
    same runtime; push_dp3_student succeeds where its teacher does, one denoiser call per chunk."""
    from diffusion_policy_ros.checkpoint import read_checkpoint_meta
    from diffusion_policy_ros.diffusion import sampling

    for teacher in ("push_dp3", "press_dp3_force", "reach_fast_dp3"):
        meta = read_checkpoint_meta(resolve_shipped_checkpoint(teacher + "_student"))
        assert meta["distilled_from"]["checkpoint"].endswith(teacher)
        assert meta["provenance"] == read_checkpoint_meta(resolve_shipped_checkpoint(teacher))["provenance"]
        assert meta["config"]["policy"]["inference"]["timestep_spacing"] == "trailing"
    import diffusion_policy_ros.policy as policy_module

    steps, real = [], sampling.sample

    def counted(*args, **kwargs):  # the real sampling loop, its step count noted
        steps.append(kwargs["num_inference_steps"])
        return real(*args, **kwargs)

    monkeypatch.setattr(policy_module, "sample", counted)
    summary = evaluate("push", str(resolve_shipped_checkpoint("push_dp3_student")), episodes=2, seed=0,
                       progress=False, overrides={"sampling.seed": 0})
    assert summary["successes"] == 2, summary["per_episode"]
    assert steps and set(steps) == {1}


def test_sim_eval_cli_errors_are_clear(capsys, tmp_path):
    assert main(["sim-eval", "--checkpoint", str(tmp_path / "missing"), "--episodes", "1"]) == 2
    assert "--checkpoint: expected a checkpoint folder" in capsys.readouterr().err
    assert main(["sim-eval", "--task", "juggle", "--episodes", "1"]) == 2
    assert "--task: expected one of" in capsys.readouterr().err
    assert main(["sim-eval", "--list"]) == 0
    out = capsys.readouterr().out
    assert "push" in out and "push_dp3" in out


def test_a_late_stamped_chunk_makes_the_controller_jump_and_publish_time_stamping_does_not():
    """Inference charged 300 ms of sim time. Stamped from the observation (the timing before real-time
    execution), the follower receives first points in the past and the commanded position jumps;
    stamped from the publish time, none arrives late and every hand-over stays within what the fastest
    joint's velocity limit allows in one 50 Hz command period."""

    ckpt = str(resolve_shipped_checkpoint("push_dp3"))
    old = evaluate("push", ckpt, 2, seed=95000, progress=False, delay=300, stamp_from_observation=True,
                   overrides={"execution.mode": "sync", "execution.consistency": "none", "sampling.seed": 0})
    new = evaluate("push", ckpt, 2, seed=95000, progress=False, delay=300, overrides={"sampling.seed": 0})
    v_max = float(np.max(arm_from_config(sim_deploy_config("arm").embodiment).limits.max_velocity))
    assert old["first_point_in_past"] > 0 and old["max_handover_jump_rad"] > v_max * 0.02
    assert new["first_point_in_past"] == 0 and new["max_handover_jump_rad"] <= v_max * 0.02
    assert new["delay_ms"] == 300 and new["execution"] == "async+rtc+ensemble0.5"


def test_sim_eval_warns_when_its_seeds_were_demonstrations():
    from diffusion_policy_ros.sim.env import demo_seed_overlap

    ckpt = resolve_shipped_checkpoint("push_dp3")  # demonstrated on seeds 1000-1099
    assert "overlap" in demo_seed_overlap(ckpt, 1050, 10) and demo_seed_overlap(ckpt, 1095, 10)
    assert demo_seed_overlap(ckpt, 0, 50) == "" and demo_seed_overlap(ckpt, 1100, 5) == ""

