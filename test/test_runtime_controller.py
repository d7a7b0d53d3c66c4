"""The deployment runtime on its own (no ROS): a trained checkpoint, real perception, real arm IK."""
import numpy as np
import pytest

from diffusion_policy_ros.config import DeployConfig, deploy_config_from_dict
from diffusion_policy_ros.embodiment.arm import arm_from_config
from diffusion_policy_ros.errors import ConfigError, ObservationError
from diffusion_policy_ros.policy import Policy
from diffusion_policy_ros.runtime.controller import Plan, PolicyRuntime

from .factories import ARM_HOME, small_intrinsics, small_rgbd, vector_policy

MS = 1_000_000


def make_runtime(ckpt, **cfg):
    sampling = {"seed": 0, **cfg.pop("sampling", {})}
    deploy = deploy_config_from_dict({"sampling": sampling, **cfg})
    policy = Policy.from_checkpoint(ckpt)
    return PolicyRuntime(policy, deploy, arm_from_config(deploy.embodiment) if deploy.embodiment.kind == "arm" else None)


def feed(rt, t0_ns, t1_ns, camera=True, q=ARM_HOME):
    """Camera at 30 Hz, wrench at 500 Hz, joints at 100 Hz over [t0, t1)."""
    depth, rgb = small_rgbd()
    for t in range(t0_ns, t1_ns, 2 * MS):
        rt.add_wrench(t, np.array([0.1, 0.0, -2.0, 0.0, 0.01, 0.0]))
        if (t // (2 * MS)) % 5 == 0:
            rt.add_joints(t, q)
        if camera and (t // (2 * MS)) % 17 == 0:
            rt.add_depth(t, depth)
            rt.add_color(t, rgb)


def feed_pose(rt, ee_xyz, t1_ns=400 * MS, t0_ns=0):
    """End-effector pose, wrench and depth every 10 ms over [t0, t1): a robot without joint_states."""
    rt.set_camera(small_intrinsics())
    depth, _ = small_rgbd()
    for t in range(t0_ns, t1_ns, 10 * MS):
        rt.add_ee_pose(t, np.array([*ee_xyz, 0, 0, 0, 1.0]))
        rt.add_wrench(t, np.zeros(6))
        rt.add_depth(t, depth)


@pytest.fixture
def runtime(force_checkpoint):
    rt = make_runtime(force_checkpoint, sampling={"replan_steps": 1})  # a new chunk every period
    rt.set_camera(small_intrinsics())
    return rt


def test_a_cycle_produces_a_safe_joint_trajectory_on_the_observation_grid(runtime):
    feed(runtime, 0, 500 * MS)
    now = 500 * MS
    res = runtime.step(now)
    assert res.status == "command", res.reason
    cmd = res.command
    assert cmd.names == runtime.arm.joint_names
    t = cmd.trajectory.times_ns
    assert np.all(np.diff(t) > 0) and t[0] > now  # nothing in the past, strictly increasing
    period = runtime.period
    # Nothing ran before (the robot is at rest where it was observed): the chunk starts when it lands,
    # every waypoint on the grid publish + action latency + i·dt, none dropped, no hand-over point.
    landing = now + runtime.scheduler.latency
    assert np.all((t - landing) % period == 0) and t[0] == landing + period and cmd.t_obs_ns <= now
    v = cmd.trajectory.values
    lim = runtime.limits
    assert np.isfinite(v).all() and (v >= lim.lower).all() and (v <= lim.upper).all()
    steps = np.diff(np.vstack((ARM_HOME, v)), axis=0)
    dts = np.diff(np.concatenate(([now], t))) / 1e9
    assert (np.abs(steps) <= lim.max_velocity * dts[:, None] + 1e-9).all()


def test_consecutive_chunks_hand_over_without_a_jump(runtime):
    feed(runtime, 0, 500 * MS)
    first = runtime.step(500 * MS).command.trajectory
    feed(runtime, 500 * MS, 600 * MS)
    second = runtime.step(600 * MS)
    assert second.status == "command"
    traj = second.command.trajectory
    start = traj.times_ns[0]
    np.testing.assert_allclose(traj.values[0], first.at(start), atol=1e-9)


def test_stale_camera_holds_once_at_the_running_command_then_waits(runtime):
    feed(runtime, 0, 500 * MS)
    running = runtime.step(500 * MS).command.trajectory
    feed(runtime, 500 * MS, 1000 * MS, camera=False)  # robot streams continue, camera stops
    res = runtime.step(1000 * MS)
    assert res.status == "hold" and "depth" in res.reason or "color" in res.reason
    hold = res.command.trajectory
    assert len(hold.times_ns) == 1 and hold.times_ns[0] > 1000 * MS
    np.testing.assert_allclose(hold.values[0], running.at(1000 * MS + runtime.scheduler.latency))
    assert runtime.step(1100 * MS).status == "waiting"  # no repeated holds
    feed(runtime, 1000 * MS, 1400 * MS)
    assert runtime.step(1400 * MS).status == "command"  # recovers when the camera returns


def test_bad_samples_are_rejected_with_their_field_and_counted(runtime):
    feed(runtime, 0, 100 * MS)
    with pytest.raises(ObservationError, match="joint_states"):
        runtime.add_joints(200 * MS, np.array([0.0, np.nan, 0, 0, 0, 0]))
    with pytest.raises(ObservationError, match="wrench"):
        runtime.add_wrench(200 * MS, np.array([np.nan] * 6))
    with pytest.raises(ObservationError, match="stamp"):
        runtime.add_joints(1 * MS, ARM_HOME)  # older than what was received
    with pytest.raises(ObservationError, match="depth"):
        runtime.add_depth(300 * MS, np.zeros((10, 10), np.float32))
    assert runtime.stats.rejected["joints"] == 1 and runtime.stats.rejected["wrench"] == 1


def test_unsynchronised_color_and_depth_are_not_paired(force_checkpoint):
    rt = make_runtime(force_checkpoint, point_cloud={"use_rgb": True}, timing={"sync_slop_s": 0.01})
    rt.set_camera(small_intrinsics())
    depth, rgb = small_rgbd()
    for t in range(0, 400 * MS, 33 * MS):
        rt.add_depth(t, depth)
        rt.add_color(t + 25 * MS, rgb)  # colour always 25 ms after depth
        rt.add_wrench(t, np.zeros(6))
        rt.add_joints(t, ARM_HOME)
    res = rt.step(400 * MS)
    assert res.status == "waiting" and "sync_slop_s" in res.reason and rt.stats.unsynced == 1


def test_pose_output_stays_in_the_workspace_box(force_checkpoint):
    rt = make_runtime(force_checkpoint, output="pose", embodiment={"kind": "oracle"}, topics={"ee_pose": "/ee"},
                      safety={"workspace_min": [-0.1, 0.0, 0.25], "workspace_max": [0.1, 0.2, 0.35]})
    feed_pose(rt, (0.0, 0.05, 0.3))
    res = rt.step(400 * MS)
    assert res.status == "command", res.reason
    v = res.command.trajectory.values
    assert v.shape[1] == 10 and res.command.names == ["end_effector"]
    assert (v[:, :3] >= [-0.1, 0.0, 0.25]).all() and (v[:, :3] <= [0.1, 0.2, 0.35]).all()


def test_warm_start_and_guidance_run_through_the_runtime(force_checkpoint):
    rt = make_runtime(force_checkpoint, sampling={"seed": 0, "warm_start_index": 5, "replan_steps": 1},
                      guidance={"strength": 0.5, "workspace_weight": 1.0})
    rt.set_camera(small_intrinsics())
    feed(rt, 0, 500 * MS)
    assert rt.step(500 * MS).status == "command"
    feed(rt, 500 * MS, 600 * MS)
    res = rt.step(600 * MS)
    assert res.status == "command" and np.isfinite(res.command.trajectory.values).all()


def test_bad_deployment_config_fails_at_start(force_checkpoint):
    with pytest.raises(ConfigError, match="joint_trajectory only with embodiment.kind arm"):
        DeployConfig(output="joint_trajectory", embodiment=deploy_config_from_dict(
            {"embodiment": {"kind": "oracle"}}).embodiment)
    with pytest.raises(ConfigError, match="timing.control_rate_hz"):
        deploy_config_from_dict({"timing": {"control_rate_hz": 0}})
    with pytest.raises(ConfigError, match="embodiment.urdf"):
        make_runtime(force_checkpoint, embodiment={"urdf": "/nonexistent/robot.urdf"})
    with pytest.raises(ConfigError, match="joint_names"):
        make_runtime(force_checkpoint, embodiment={"joint_names": ["a", "b"]})
    with pytest.raises(ConfigError, match="n_action_steps"):
        make_runtime(force_checkpoint, sampling={"n_action_steps": 40})
    with pytest.raises(ConfigError, match="unknown_key|unexpected"):
        deploy_config_from_dict({"timing": {"unknown_key": 1}})


def test_aerial_guidance_runs_through_the_runtime(force_checkpoint):
    rt = make_runtime(force_checkpoint, output="multidof", embodiment={"kind": "aerial"}, topics={"ee_pose": "/ee"},
                      guidance={"strength": 1.0, "embodiment_weight": 1.0})
    assert rt.embodiment is not None and rt.embodiment.name == "aerial"
    feed_pose(rt, (0.0, 0.0, 0.3))
    res = rt.step(400 * MS)
    assert res.status == "command" and np.isfinite(res.command.trajectory.values).all()
    with pytest.raises(ConfigError, match="ee_pose"):
        make_runtime(force_checkpoint, output="multidof", embodiment={"kind": "aerial"}, guidance={"strength": 1.0})


def test_every_guidance_term_switches_on_from_config(force_checkpoint):
    rt = make_runtime(force_checkpoint, guidance={"strength": 0.5, "embodiment_weight": 1.0, "workspace_weight": 1.0,
                                                  "joint_limit_weight": 1.0, "clearance_weight": 1.0,
                                                  "iterations": 2})
    rt.set_camera(small_intrinsics())
    feed(rt, 0, 500 * MS)
    res = rt.step(500 * MS)
    assert res.status == "command" and np.isfinite(res.command.trajectory.values).all()
    with pytest.raises(ConfigError, match="guidance.iterations"):
        deploy_config_from_dict({"guidance": {"iterations": 0}})


def test_replan_steps_executes_the_chunk_but_still_watches_for_stale_data(force_checkpoint):
    rt = make_runtime(force_checkpoint, sampling={"seed": 0, "replan_steps": 0},  # 0: n_action_steps (8)
                      execution={"mode": "sync"})
    rt.set_camera(small_intrinsics())
    feed(rt, 0, 500 * MS)
    assert rt.step(500 * MS).status == "command"
    period = rt.period
    statuses = []
    for k in range(1, 9):
        feed(rt, 500 * MS + (k - 1) * period, 500 * MS + k * period)
        statuses.append(rt.step(500 * MS + k * period).status)
    assert statuses == ["running"] * 7 + ["command"]  # a new chunk once 8 periods have passed
    now = 500 * MS + 8 * period
    feed(rt, now, now + 2 * period, camera=False)
    assert rt.step(now + 2 * period + rt.cfg.timing.max_observation_age_s * 1e9).status == "hold"
    with pytest.raises(ConfigError, match="replan_steps"):
        make_runtime(force_checkpoint, sampling={"replan_steps": 9})


def test_reset_with_clear_observations_accepts_time_starting_over(runtime):
    feed(runtime, 0, 500 * MS)
    assert runtime.step(500 * MS).status == "command"
    with pytest.raises(ObservationError, match="increasing"):
        runtime.add_joints(100 * MS, ARM_HOME)
    runtime.reset(clear_observations=True)
    feed(runtime, 0, 400 * MS)  # a new sim episode / a looped bag: the clock starts again
    assert runtime.step(400 * MS).status == "command"


def test_best_of_n_sends_the_candidate_with_the_lowest_guidance_cost(force_checkpoint):
    """Candidates only (strength 0): N chunks for one observation, scored by the guidance costs."""
    import torch

    box = {"workspace_min": [-0.1, 0.0, 0.28], "workspace_max": [0.1, 0.2, 0.3]}  # tighter than the samples spread
    for n in (1, 16):
        rt = make_runtime(force_checkpoint, safety=box, sampling={"seed": 3},
                          guidance={"candidates": n, "workspace_weight": 1.0, "embodiment_weight": 0.0})
        rt.set_camera(small_intrinsics())
        feed(rt, 0, 500 * MS)
        obs, samples, _ = rt.observe(500 * MS)
        batch = rt._candidates(obs)
        guide = rt._guidance(obs, samples, batch)
        assert (guide is None) == (n == 1)
        _, full, _ = rt._infer(obs, samples, 500 * MS, 500 * MS)
        if n > 1:
            every = rt.policy.predict(batch, seed=3, full_horizon=True)  # the same N candidates
            with torch.no_grad():
                costs = guide.total_cost(torch.as_tensor(every, dtype=torch.float64)).numpy()
            chosen = guide.total_cost(torch.as_tensor(full[None], dtype=torch.float64)).item()
    assert costs.max() > costs.min()  # the candidates differ, so choosing matters
    assert chosen == pytest.approx(costs.min())
    assert chosen < np.median(costs)
    with pytest.raises(ConfigError, match="guidance.candidates"):
        deploy_config_from_dict({"guidance": {"candidates": 0}})


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_replan_periods_are_counted_in_observation_time(force_checkpoint, mode):
    """A 50 Hz timer with the camera at the 10 Hz control rate and replan_steps=2: every chunk is
    planned from a frame two periods newer than the last one's, on the frame's tick, never 1.5 periods
    on from a frame up to 80 ms old."""
    rt = make_runtime(force_checkpoint, sampling={"seed": 0, "replan_steps": 2}, execution={"mode": mode})
    rt.set_camera(small_intrinsics())
    depth, _ = small_rgbd()
    starts = []
    for t in range(0, 2000 * MS, 2 * MS):
        rt.add_wrench(t, np.array([0.1, 0.0, -2.0, 0.0, 0.01, 0.0]))
        if t % (10 * MS) == 0:
            rt.add_joints(t, ARM_HOME)
        if t % rt.period == 0:
            rt.add_depth(t, depth)
        if t >= 300 * MS and t % (20 * MS) == 0:
            res = rt.step(t)
            if res.status == "command":
                starts.append((t, res.command.t_obs_ns))
    assert len(starts) >= 6
    assert all(t == t_obs for t, t_obs in starts)  # begun on a fresh frame
    assert set(np.diff([t_obs for _, t_obs in starts])) == {2 * rt.period}


def test_async_inference_begins_when_the_running_chunk_runs_low_and_commits_from_the_publish_time(
        force_checkpoint):
    rt = make_runtime(force_checkpoint, execution={"initial_latency_s": 0.3, "margin_s": 0.0})
    rt.set_camera(small_intrinsics())
    feed(rt, 0, 500 * MS)
    plan = rt.begin(500 * MS)
    publish = 500 * MS + 300 * MS  # the inference took 300 ms of robot time
    res = rt.commit(plan, publish)
    assert res.status == "command" and res.latency_ms == pytest.approx(300)
    traj = res.command.trajectory
    assert traj.times_ns[0] > publish + rt.scheduler.latency  # never a first point in the past
    assert traj.velocities is not None and np.allclose(traj.velocities[-1], 0)
    assert rt.predicted_latency_ns() == 300 * MS
    # Not due while more than the predicted latency remains; due from then on.
    assert not rt.due(traj.end_ns - 300 * MS - 1 * MS) and rt.due(traj.end_ns - 300 * MS)


def test_a_late_chunk_is_not_sent_and_a_plan_from_before_a_reset_is_dropped(force_checkpoint):
    rt = make_runtime(force_checkpoint, sampling={"replan_steps": 1})
    rt.set_camera(small_intrinsics())
    feed(rt, 0, 500 * MS)
    first = rt.step(500 * MS)
    assert first.status == "command"
    t = first.command.trajectory.end_ns - 100 * MS
    feed(rt, 500 * MS, t)
    plan = rt.begin(t)
    late = rt.commit(plan, plan.started_ns + 5_000 * MS)  # every waypoint long due
    assert late.status == "late" and late.command is None and rt.stats.late == 1
    assert rt.scheduler.current is first.command.trajectory  # the running trajectory goes on
    plan = rt.begin(t)
    rt.reset()  # e.g. disabled while the chunk was being computed
    assert rt.commit(plan, plan.started_ns + 10 * MS).status == "dropped"


def prefix_trained(ckpt, tmp_path):
    """The checkpoint, declared as trained with prefix conditioning (same weights)."""
    import shutil

    import yaml

    out = tmp_path / "prefix_ckpt"
    shutil.copytree(ckpt, out)
    meta = yaml.safe_load((out / "config.yaml").read_text())
    meta["config"]["policy"]["max_prefix_steps"] = 6
    (out / "config.yaml").write_text(yaml.safe_dump(meta))
    return out


@pytest.mark.parametrize("consistency", ["rtc", "inpaint", "prefix"])
def test_real_time_chunking_holds_the_new_chunk_to_the_running_one(force_checkpoint, consistency, tmp_path):
    """A chunk begun mid-trajectory with a 300 ms predicted latency: the actions that execute before it
    lands equal the running plan's (frozen), whatever the new observation says."""
    ckpt = prefix_trained(force_checkpoint, tmp_path) if consistency == "prefix" else force_checkpoint
    rt = make_runtime(ckpt, execution={"consistency": consistency})
    rt.set_camera(small_intrinsics())
    feed(rt, 0, 500 * MS)
    assert rt.commit(rt.begin(500 * MS), 800 * MS).status == "command"  # 300 ms of latency measured
    t_prev, full_prev = rt._prev
    end = rt.scheduler.current.end_ns
    feed(rt, 500 * MS, end - 300 * MS, q=ARM_HOME + 0.05)  # the arm moved: the observation changed
    plan = rt.begin(end - 300 * MS)
    assert plan.frozen_steps >= 3
    steps = (np.arange(rt.pcfg.horizon) - (rt.pcfg.n_obs_steps - 1)) * rt.period
    frozen = np.arange(plan.frozen_steps)  # the running plan at the new chunk's step times
    expected = np.stack([np.interp(plan.t_obs_ns + steps[frozen], t_prev + steps, full_prev[:, j])
                         for j in range(3)], -1)
    np.testing.assert_allclose(plan.full[frozen, :3], expected, atol=1e-4)
    unguided = rt.policy.predict(rt.observe(end - 300 * MS)[0], seed=0, full_horizon=True)
    assert np.abs(unguided[frozen, :3] - expected).max() > 1e-3  # left alone, the new chunk would differ
    rt.reset()
    free = rt.begin(end - 300 * MS)  # nothing running: nothing to stay consistent with
    assert free.frozen_steps == 0


def test_prefix_consistency_needs_a_prefix_trained_checkpoint(force_checkpoint):
    with pytest.raises(ConfigError, match="max_prefix_steps"):
        make_runtime(force_checkpoint, execution={"consistency": "prefix"})


def test_force_limit_latches_a_hold_until_a_reset_and_tare_on_enable_zeroes_the_first_samples(force_checkpoint):
    rt = make_runtime(force_checkpoint, force={"force_limit": 5.0, "tare_on_enable": True, "tare_samples": 20},
                      sampling={"replan_steps": 1})
    rt.set_camera(small_intrinsics())
    rt.reset(clear_observations=True)  # what an enable (or a new episode in dpros convert) does
    feed(rt, 0, 30 * MS)  # 15 wrench samples: still taring
    with pytest.raises(ObservationError, match="tare_on_enable"):
        rt.observe(30 * MS)
    feed(rt, 30 * MS, 400 * MS)
    obs, _, _ = rt.observe(400 * MS)
    # The sensor read [0.1, 0, -2, 0, 0.01, 0] throughout: tared to zero, and only tared values in the window.
    wrench_key = next(k for k in obs if "wrench" in k or "force" in k)
    assert np.abs(obs[wrench_key]).max() < 1e-6
    res = rt.step(400 * MS)
    assert res.status == "command"
    # 12 N on z: beyond the 5 N limit → latched; every cycle holds (once at the running command), even
    # after the force is back, until a reset (an enable).
    rt.add_wrench(402 * MS, np.array([0.1, 0.0, -12.0, 0.0, 0.0, 0.0]))
    assert "force limit" in rt.fault and "force.force_limit 5" in rt.fault
    feed(rt, 404 * MS, 600 * MS)
    first = rt.step(600 * MS)
    assert first.status == "hold" and "force limit" in first.reason and len(first.command.trajectory.times_ns) == 1
    assert rt.step(700 * MS).status == "waiting"
    rt.reset(clear_observations=True)
    assert rt.fault is None


def test_a_wrench_published_in_another_urdf_link_is_transformed_into_force_frame(force_checkpoint):
    import torch

    from diffusion_policy_ros.geometry import rot6d_to_matrix

    rt = make_runtime(force_checkpoint, force={"frame": "tool0", "cutoff_hz": 0.0})
    rt.add_joints(0, ARM_HOME)
    w_base = np.array([0.0, 0.0, -10.0, 0.0, 0.0, 0.0])  # 10 N straight down, no torque, at the base origin
    out = rt._wrench_in(w_base, "base_link", "tool0")
    pose = rt.arm.fk(torch.as_tensor(ARM_HOME)).numpy()
    r_tool = rot6d_to_matrix(torch.as_tensor(pose[3:9])).numpy()
    f = r_tool.T @ w_base[:3]
    p = -r_tool.T @ pose[:3]  # the base origin seen from the tool
    assert np.allclose(out[:3], f, atol=1e-9) and np.allclose(out[3:], np.cross(p, f), atol=1e-9)
    assert np.allclose(rt._wrench_in(w_base, "wrist_3_link", "tool0"), w_base)  # a fixed identity joint
    with pytest.raises(ObservationError, match="tool0_controller"):
        rt.add_wrench(2 * MS, w_base, "tool0_controller")  # UR's controller frame is not a URDF link


def test_the_workspace_box_holds_the_tool_tip_not_the_flange():
    from diffusion_policy_ros.runtime.safety import clamp_tool_to_box

    down = np.array([1.0, 0.0, 0.0, 0.0, -1.0, 0.0])  # 6-D rotation: flange z axis pointing down
    pose = np.r_[0.5, 0.0, 0.15, down][None]  # flange 15 cm above the table, a 20 cm tool below it
    out, moved = clamp_tool_to_box(pose, (-1, -1, 0.02), (1, 1, 1), tcp_offset=(0.0, 0.0, 0.2))
    assert moved == 1 and np.isclose(out[0, 2], 0.22)  # tip at the floor of the box: flange 20 cm above it
    same, moved = clamp_tool_to_box(pose, (-1, -1, 0.02), (1, 1, 1))
    assert moved == 0 and np.allclose(same, pose)  # no offset: the flange itself is inside


def test_after_a_stop_the_next_chunk_is_limited_from_the_measured_joints(runtime):
    """A protective stop: the robot halts (or is moved) away from the last command; after the node's
    hold + reset (disable), the next trajectory's velocity limits count from where the joints are."""
    feed(runtime, 0, 500 * MS)
    assert runtime.step(500 * MS).status == "command"
    assert runtime.hold(550 * MS, "robot stopped").status == "hold"
    runtime.reset()  # what disabling does
    # where the stop left the arm: further from the last command than one period at the velocity limit
    moved = ARM_HOME + np.array([0.6, -0.5, 0.5, 0.0, 0.0, 0.0])
    feed(runtime, 500 * MS, 900 * MS, q=moved)
    res = runtime.step(900 * MS)
    assert res.status == "command", res.reason
    t, v = res.command.trajectory.times_ns, res.command.trajectory.values
    first_step = np.abs(v[0] - moved)
    assert (first_step <= runtime.limits.max_velocity * (t[0] - 900 * MS) / 1e9 + 1e-9).all(), first_step


def test_takeover_drops_the_plan_in_flight_drives_the_twist_and_resumes_from_the_teleop_command(force_checkpoint):
    rt = make_runtime(force_checkpoint, output="pose", embodiment={"kind": "oracle"}, topics={"ee_pose": "/ee"},
                      sampling={"replan_steps": 1})
    feed_pose(rt, (0.0, 0.05, 0.3))
    first = rt.step(400 * MS)
    assert first.status == "command"
    feed_pose(rt, (0.0, 0.05, 0.3), 470 * MS, 400 * MS)
    plan = rt.begin(460 * MS)  # a chunk in flight when the deadman is pressed
    assert isinstance(plan, Plan)
    start = rt.scheduler.current.at(470 * MS + rt.scheduler.latency)
    v = np.array([0.0, 0.0, 0.05, 0.0, 0.0, 0.3])  # up, and turning about z
    now = 470 * MS
    for _ in range(25):  # 0.5 s at 50 Hz
        res = rt.teleop(now, v)
        assert res.status == "takeover" and rt.in_takeover and len(res.command.trajectory.times_ns) == 3
        now += 20 * MS
    assert rt.commit(plan, 480 * MS).status == "dropped"  # the policy's chunk never goes out
    cmd = rt.scheduler.current.at(now)
    assert abs(cmd[2] - start[2] - 0.05 * 0.5) < 0.01 and np.abs(cmd[:2] - start[:2]).max() < 1e-6
    with pytest.raises(ObservationError, match="teleop twist"):
        rt.teleop(now, [np.nan, 0, 0, 0, 0, 0])
    rt.resume()  # released: the policy plans at the next cycle, from where the teleop command is
    teleop_end = rt.scheduler.current
    depth, _ = small_rgbd()
    for t in range(470 * MS, now + 10 * MS, 10 * MS):  # the robot went on publishing
        rt.add_ee_pose(t, np.array([0.0, 0.05, 0.3, 0, 0, 0, 1.0]))
        rt.add_wrench(t, np.zeros(6))
        rt.add_depth(t, depth)
    assert rt.due(now) and not rt.in_takeover
    back = rt.step(now)
    assert back.status == "command"
    jump = np.abs(back.command.trajectory.at(now + 1) - teleop_end.at(now + 1))[:3].max()
    assert jump < 0.01, jump


def test_contact_guard_stops_the_running_trajectory_and_holds_chunks_at_the_stop_point(force_checkpoint):
    """safety.max_contact_force: a wrench above it stops the running command where it is (no first point
    in the past); until the force falls below contact_release × the limit, a chunk that goes deeper
    along the approach is held at the stop point from its first deeper waypoint; then it passes."""
    rt = make_runtime(force_checkpoint, sampling={"replan_steps": 1},
                      safety={"max_contact_force": 20.0, "contact_release": 0.5})
    rt.set_camera(small_intrinsics())
    feed(rt, 0, 500 * MS)
    assert rt.contact_guard(500 * MS) is None  # ~2 N: nothing to do
    running = rt.step(500 * MS).command.trajectory
    now = int(running.times_ns[0]) + rt.period  # a period into the running trajectory: it has moved
    feed(rt, 500 * MS, now - 40 * MS)
    for t in range(now - 40 * MS, now, 2 * MS):  # a contact: 30 N through the sensor's low-pass filter
        rt.add_wrench(t, np.array([0.0, 0.0, -30.0, 0.0, 0.0, 0.0]))
    stop = rt.contact_guard(now)
    assert stop is not None and stop.status == "hold" and "max_contact_force" in stop.reason
    traj = stop.command.trajectory
    t_stop = now + rt.scheduler.latency
    assert traj.times_ns[0] > t_stop  # delivered before it is due: no jump
    np.testing.assert_allclose(traj.values[0], running.at(t_stop), atol=1e-12)
    assert rt.contact_guard(now + 2 * MS) is None and rt.stats.contact_stops == 1  # once, not every sample
    # A chunk that keeps going the way the arm was moving: held at the stop point from the first deeper waypoint.
    here, before = rt._ee_positions(np.stack((running.at(t_stop), running.at(t_stop - rt.period))))
    assert np.linalg.norm(here - before) > 1e-4
    approach = (here - before) / np.linalg.norm(here - before)
    q_stop = running.at(t_stop)
    dq = q_stop - running.at(t_stop - rt.period)
    chunk = q_stop + np.arange(-1, 7)[:, None] * dq  # one waypoint back, then deeper and deeper
    plan = Plan(now, now, chunk, np.zeros((rt.pcfg.horizon, rt.pcfg.action.dim)), rt._generation)
    res = rt.commit(plan, now + 10 * MS)
    assert res.status == "command" and rt.stats.contact_clipped == 1
    sent = res.command.trajectory
    depth = (rt._ee_positions(sent.values) - here) @ approach
    assert depth.max() <= 1e-5
    assert (sent.values[-3:] == sent.values[-1]).all()  # it holds there
    np.testing.assert_allclose(sent.velocities[-1], 0)
    # The force falls below 10 N: the guard lets go and the same chunk goes through.
    for t in range(now, now + 100 * MS, 2 * MS):
        rt.add_wrench(t, np.zeros(6))
    assert rt.contact_guard(now + 100 * MS) is None
    res = rt.commit(Plan(now + 100 * MS, now + 100 * MS, chunk, plan.full, rt._generation), now + 110 * MS)
    assert rt.stats.contact_clipped == 1
    assert ((rt._ee_positions(res.command.trajectory.values) - here) @ approach).max() > 1e-3


def test_contact_guard_is_off_by_default(runtime):
    feed(runtime, 0, 500 * MS)
    runtime.step(500 * MS)
    for t in range(500 * MS, 600 * MS, 2 * MS):
        runtime.add_wrench(t, np.array([0.0, 0.0, -150.0, 0.0, 0.0, 0.0]))
    assert runtime.contact_guard(600 * MS) is None and runtime.stats.contact_stops == 0


@pytest.mark.parametrize("extend", [True, False])
def test_async_chunks_are_extended_by_the_latency_unless_told_not_to(force_checkpoint, extend):
    rt = make_runtime(force_checkpoint, execution={"initial_latency_s": 0.25, "extend_by_latency": extend})
    rt.set_camera(small_intrinsics())
    feed(rt, 0, 500 * MS)
    plan = rt.begin(500 * MS)
    # 250 ms of inference + the action latency: the first ceil(latency / period) waypoints are due
    # before the chunk lands; extended, it still has n_action_steps after them.
    late = int(np.ceil((250 * MS + rt.scheduler.latency) / rt.period))
    expected = min(rt.n_action + late, rt.pcfg.horizon - rt.pcfg.n_obs_steps + 1) if extend else rt.n_action
    assert len(plan.chunk) == expected and (not extend or expected > rt.n_action)
    traj = rt.commit(plan, 750 * MS).command.trajectory
    kept = int(np.count_nonzero(traj.times_ns > 750 * MS + rt.scheduler.latency + rt.scheduler.lead))
    assert kept >= rt.n_action if extend else kept < rt.n_action


def test_command_output_sends_the_action_vector_one_value_per_period_within_its_limit():
    names = [f"s{i}" for i in range(9)]
    policy = vector_policy(scale=3.0)
    deploy = deploy_config_from_dict({"output": "command", "embodiment": {"joint_names": names},
                                      "sampling": {"seed": 0}, "timing": {"action_latency_s": 0.0, "blend_steps": 0},
                                      "execution": {"mode": "sync", "consistency": "none"},
                                      "safety": {"command_limit": 1.0}})
    rt = PolicyRuntime(policy, deploy)  # no arm: no kinematics
    assert rt.output_names == ["command"] and rt.joint_state_names == names
    state = np.linspace(-0.5, 0.5, 9)
    for t in range(0, 300 * MS, 100 * MS):
        rt.add_joints(t, state)
    now = 200 * MS
    res = rt.step(now)
    assert res.status == "command", res.reason
    traj = res.command.trajectory
    # value i holds over the period that ends at t_obs + (i+1)·dt: the first is applied from now on
    assert traj.times_ns.tolist() == [now + (i + 1) * rt.period for i in range(rt.n_action)]
    obs = {"agent_pos": np.stack([state, state]).astype(np.float32)}
    raw = policy.predict(obs, seed=0)[:rt.n_action]
    assert np.abs(raw).max() > 1.0 and res.position_clamped  # wider than the limit: clamped
    assert np.allclose(traj.values, np.clip(raw, -1.0, 1.0), atol=1e-6) and traj.velocities is None
    # a hold stands still: zeros, due after now
    hold = rt.hold(now + 50 * MS, "test")
    assert hold.status == "hold" and np.all(hold.command.trajectory.values == 0.0)
    assert hold.command.trajectory.times_ns[0] > now + 50 * MS
    with pytest.raises(ConfigError, match="takeover"):
        rt.teleop(now, np.zeros(6))


def test_command_output_refuses_what_it_cannot_do():
    policy = vector_policy()
    names = {"embodiment": {"joint_names": [f"s{i}" for i in range(9)]}}
    with pytest.raises(ConfigError, match="joint_names"):  # the state's names are needed (no URDF)
        PolicyRuntime(policy, deploy_config_from_dict({"output": "command"}))
    with pytest.raises(ConfigError, match="expects 9"):
        PolicyRuntime(policy, deploy_config_from_dict({"output": "command", "embodiment": {"joint_names": ["a"]}}))
    with pytest.raises(ConfigError, match="max_contact_force"):
        deploy_config_from_dict({"output": "command", "safety": {"max_contact_force": 10.0}, **names})
    with pytest.raises(ConfigError, match="command_limit"):
        deploy_config_from_dict({"output": "command", "safety": {"command_limit": 0.0}, **names})
    from diffusion_policy_ros.policy import DiffusionPolicy

    from .factories import state_only_config

    cfg = state_only_config()  # end-effector actions: they need kinematics, not a raw command
    with pytest.raises(ConfigError, match="representation joint"):
        PolicyRuntime(Policy(DiffusionPolicy.build(cfg.policy), cfg), deploy_config_from_dict({"output": "command",
                                                                                                 **names}))


def test_real_time_chunking_holds_command_steps_by_their_due_times_and_never_beyond_the_running_plan():
    """Command outputs are due one period later than positions (offset 1): RTC freezes the steps due
    before the new chunk lands, and gives no weight where the running plan has no step (holding a
    command to the plan's clamped last value froze Meta-World's chunks and stopped every episode)."""
    from diffusion_policy_ros.runtime.schedule import TimedTrajectory

    names = [f"s{i}" for i in range(9)]
    rt = PolicyRuntime(vector_policy(), deploy_config_from_dict({
        "output": "command", "embodiment": {"joint_names": names}, "timing": {"action_latency_s": 0.0},
        "execution": {"initial_latency_s": 0.2}}))
    pc, P = rt.pcfg, rt.period
    assert rt.scheduler.offset == 1.0
    t_prev, t_obs = 0, 4 * P
    full_prev = np.random.default_rng(0).normal(size=(pc.horizon, 4))
    due_prev = t_prev + (np.arange(pc.horizon) - (pc.n_obs_steps - 1) + 1) * P
    running = TimedTrajectory(due_prev[pc.n_obs_steps - 1:], full_prev[pc.n_obs_steps - 1:])
    _, w = rt._chunk_prefix(t_obs, t_obs, (t_prev, full_prev), running)
    due = t_obs + (np.arange(pc.horizon) - (pc.n_obs_steps - 1) + 1) * P
    lands = t_obs + int(0.2e9) + rt.scheduler.lead
    inside = due <= due_prev[-1]
    assert np.all(w[~inside] == 0.0) and (~inside).any()
    assert np.all(w[inside & (due <= lands)] == 1.0) and (inside & (due <= lands)).any()
    assert np.all(w[due > lands] < 1.0)
    # begun late: the new chunk lands after the running plan's last step; nothing beyond it is frozen
    t_obs = int(due_prev[-1]) - P
    _, w = rt._chunk_prefix(t_obs, t_obs, (t_prev, full_prev), running)
    due = t_obs + (np.arange(pc.horizon) - (pc.n_obs_steps - 1) + 1) * P
    assert t_obs + int(0.2e9) > due_prev[-1] and np.all(w[due > due_prev[-1]] == 0.0)
    assert w[due <= due_prev[-1]].max() == 1.0
