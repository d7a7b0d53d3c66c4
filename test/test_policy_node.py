"""The policy node over real rclpy + Fast DDS on loopback, with a checkpoint trained in the test session.

A peer node plays the robot: realsense-ros-like colour (rgb8) + aligned depth (16UC1) + camera_info,
a wrist wrench and joint_states, and listens on the joint_trajectory_controller topic."""
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from .spinning import SpinEach, interrupt
from .factories import ARM_HOME, small_intrinsics, small_rgbd

pytest.importorskip("rclpy")

ROOT = Path(__file__).resolve().parents[1]
PERIOD_NS = 100_000_000
MAX_AGE_S = 0.3
UR_JOINTS = ["shoulder_pan_joint", "shoulder_lift_joint", "elbow_joint", "wrist_1_joint", "wrist_2_joint",
             "wrist_3_joint"]


class Robot:
    """The peer: publishes sensor streams from timers, records what the policy node sends."""

    def __init__(self, context, malformed: bool = False, gripper: str = ""):
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import WrenchStamped
        from rclpy.node import Node
        from sensor_msgs.msg import CameraInfo, Image, JointState
        from trajectory_msgs.msg import JointTrajectory

        from diffusion_policy_ros.io import msgs as M

        self.M, self.types = M, M.RosTypes()
        self.node = node = Node("fake_robot", context=context)
        self.pub = {
            "color": node.create_publisher(Image, "/camera/camera/color/image_raw", 10),
            "depth": node.create_publisher(Image, "/camera/camera/aligned_depth_to_color/image_raw", 10),
            "info": node.create_publisher(CameraInfo, "/camera/camera/aligned_depth_to_color/camera_info", 10),
            "wrench": node.create_publisher(WrenchStamped, "/force_torque_sensor_broadcaster/wrench", 10),
            "joints": node.create_publisher(JointState, "/joint_states", 10),
        }
        self.depth_m, self.rgb = small_rgbd()
        self.camera_on = threading.Event()
        self.camera_on.set()
        self.malformed = malformed
        self.camera_stamps: list[int] = []
        self.stamps: set[int] = set()  # of every valid sample published
        self.trajectories: list = []  # (receipt order) decoded JointTrajectoryData
        # joint_trajectory_controller's semantics on what arrives (open loop: continuity of the command)
        from diffusion_policy_ros.sim.controllers import JointTrajectoryFollower

        self.jtc = JointTrajectoryFollower(ARM_HOME, open_loop=True)
        self.lead_ns: list[int] = []  # first point time - receipt time, per trajectory
        self.diagnostics: list = []
        self.got = threading.Condition()
        node.create_subscription(JointTrajectory, "/joint_trajectory_controller/joint_trajectory", self._on_traj, 10)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        node.create_timer(1 / 30, self._camera)
        node.create_timer(1 / 200, self._wrench)
        node.create_timer(1 / 100, self._joints)
        self.n = 0
        self.force = [0.5, 0.0, -3.0, 0.0, 0.02, 0.0]
        self.gripper = gripper  # a gripper joint in joint_states, and its forward_command_controller
        self.gripper_commands: list[float] = []
        if gripper:
            from std_msgs.msg import Float64MultiArray

            node.create_subscription(Float64MultiArray, "/gripper_controller/commands",
                                     lambda m: self.gripper_commands.append(float(m.data[0])), 10)

    def now(self) -> int:
        return self.node.get_clock().now().nanoseconds

    def _on_diagnostics(self, msg):
        with self.got:
            self.diagnostics.append(msg)
            self.got.notify_all()

    def _camera(self):
        with self.got:  # camera_on and camera_stamps change together (see stop_camera)
            if self.camera_on.is_set():
                self._publish_camera()

    def stop_camera(self) -> int:
        """Stop the camera; → the stamp of the last frame published."""
        with self.got:
            self.camera_on.clear()
            return self.camera_stamps[-1]

    def _publish_camera(self):
        t, M, ty = self.now(), self.M, self.types
        depth_mm = np.round(self.depth_m * 1000).astype(np.uint16)
        self.pub["info"].publish(M.encode_camera_info(ty, small_intrinsics(), t))
        self.pub["color"].publish(M.numpy_to_image(ty, self.rgb, "rgb8", t, "camera_color_optical_frame"))
        self.pub["depth"].publish(M.numpy_to_image(ty, depth_mm, "16UC1", t, "camera_color_optical_frame"))
        self.camera_stamps.append(t)
        self.stamps.add(t)
        if self.malformed:
            bad = M.numpy_to_image(ty, self.rgb, "rgb8", t + 1, "x")  # colour on the depth topic
            self.pub["depth"].publish(bad)
            short = M.numpy_to_image(ty, depth_mm, "16UC1", t + 2, "x")
            short.data = short.data[: len(short.data) // 2]  # truncated
            self.pub["depth"].publish(short)

    def _wrench(self):
        t = self.now()
        self.stamps.add(t)
        self.pub["wrench"].publish(self.M.encode_wrench(self.types, self.force, t))
        if self.malformed:
            self.pub["wrench"].publish(self.M.encode_wrench(self.types, [np.nan, 0, 0, 0, 0, 0], t + 1))

    def _joints(self):
        t, M = self.now(), self.M
        self.stamps.add(t)
        names, q = UR_JOINTS, list(ARM_HOME)
        if self.gripper:
            names, q = names + [self.gripper], q + [0.01]
        self.pub["joints"].publish(M.encode_joint_state(self.types, names, q, t))
        if self.malformed:
            self.pub["joints"].publish(M.encode_joint_state(self.types, ["finger", "thumb"], [0.0, 0.0], t + 1))
            self.pub["joints"].publish(M.encode_joint_state(self.types, UR_JOINTS, ARM_HOME, t - 500_000_000))

    def _on_traj(self, msg):
        from diffusion_policy_ros.runtime.schedule import TimedTrajectory

        now = self.now()
        data = self.M.decode_joint_trajectory(msg)
        with self.got:
            times = data.stamp_ns + data.time_from_start_ns
            self.lead_ns.append(int(times[0]) - now)
            self.jtc.set(TimedTrajectory(times, data.positions, data.velocities), now)
            self.trajectories.append((time.monotonic(), data))
            self.got.notify_all()

    def wait_for(self, predicate, timeout: float = 30.0):
        with self.got:
            assert self.got.wait_for(lambda: predicate(self.trajectories), timeout), "timed out waiting"

    def fresh_status(self, timeout: float = 10.0) -> dict:
        """The next /diagnostics message's key-values (published once a second)."""
        with self.got:
            n = len(self.diagnostics)
            assert self.got.wait_for(lambda: len(self.diagnostics) > n, timeout), "no /diagnostics"
            return {kv.key: kv.value for kv in self.diagnostics[-1].status[0].values}


@pytest.fixture
def running(ros_context, force_checkpoint, tmp_path):
    """start(malformed) → (robot, policy node process): the node runs as its installed executable, with
    the package's parameter file plus overrides, as `ros2 run` would start it; the robot spins here."""
    procs, robots, spinners = [], [], []

    def start(malformed=False, extra=(), gripper=""):
        robot = Robot(ros_context, malformed, gripper)
        spinners.append(SpinEach(ros_context, robot.node))
        log = open(tmp_path / "policy_node.log", "w")
        proc = subprocess.Popen([shutil.which("policy_node") or str(Path(sys.executable).parent / "policy_node"),
                                 "--ros-args", "--params-file", str(ROOT / "config" / "arm.yaml"),
                                 "-p", f"checkpoint:={force_checkpoint}",
                                 "-p", "timing.control_rate_hz:=10",  # an integer for a float: accepted
                                 "-p", f"timing.max_observation_age_s:={MAX_AGE_S}",
                                 "-p", "timing.camera_latency_s:=0.0",
                                 # Delivery time allowed over DDS on a loaded 2-core CI machine.
                                 "-p", "timing.action_latency_s:=0.1",
                                 "-p", "point_cloud.extrinsic:=[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]",
                                 "-p", "point_cloud.crop_min:=[-1.0, -1.0, -1.0]",
                                 "-p", "point_cloud.crop_max:=[1.0, 1.0, 1.0]",
                                 "-p", "sampling.seed:=0", *extra], stdout=log, stderr=subprocess.STDOUT)
        procs.append((proc, log))
        robots.append(robot)
        return robot, proc

    yield start
    for proc, log in procs:
        interrupt(proc)
        log.close()
    for spinner in spinners:
        spinner.shutdown()  # joins: no timer callback may publish on a node being destroyed
    for r in robots:
        r.node.destroy_node()


def set_enabled(robot, value: bool, proc=None, call: bool = True, expect: bool | None = True) -> str:
    """Call /policy_node/enable; → the response message (asserting success == ``expect`` unless None)."""
    from std_srvs.srv import SetBool

    client = robot.node.create_client(SetBool, "/policy_node/enable")
    for _ in range(120):  # the node process imports torch and loads the checkpoint first
        if client.wait_for_service(timeout_sec=0.5):
            break
        assert proc is None or proc.poll() is None, "policy_node exited; see policy_node.log"
    else:
        raise AssertionError("/policy_node/enable never appeared")
    if not call:
        return ""
    future = client.call_async(SetBool.Request(data=value))
    done = threading.Event()
    future.add_done_callback(lambda f: done.set())
    assert done.wait(10) and expect in (None, future.result().success), future.result().message
    return future.result().message


def arm_limits():
    from diffusion_policy_ros.config import EmbodimentConfig
    from diffusion_policy_ros.embodiment.arm import arm_from_config

    return arm_from_config(EmbodimentConfig()).limits


def check_valid(data, limits):
    assert data.joint_names == UR_JOINTS
    assert np.isfinite(data.positions).all()
    assert (data.positions >= limits.lower - 1e-9).all() and (data.positions <= limits.upper + 1e-9).all()
    assert (data.time_from_start_ns > 0).all() and (np.diff(data.time_from_start_ns) > 0).all()


def test_node_streams_trajectories_holds_on_stale_camera_and_stops_when_disabled(running):
    # DDPM-100: each inference takes longer than the action latency, as on a robot with a large model;
    # trajectories stamped before inference would arrive with their first point in the past.
    robot, proc = running(extra=("-p", "sampling.solver:=ddpm", "-p", "sampling.num_inference_steps:=100"))
    limits = arm_limits()
    set_enabled(robot, True, proc, call=False)  # wait until the node is up
    st = robot.fresh_status()  # started disabled: the node says so, and has run no cycle
    assert st["enabled"] == "False" and st["cycles"] == "0" and robot.trajectories == []
    set_enabled(robot, True)
    robot.wait_for(lambda tr: len(tr) >= 4)
    for _, data in robot.trajectories:
        check_valid(data, limits)
        absolute = data.stamp_ns + data.time_from_start_ns
        # Waypoints after the hand-over point sit on t_obs + i·dt, t_obs being the stamp of the stream
        # that lagged most (the latest instant every stream had reached); a chunk observed with the robot
        # at rest (the first, or after an inference outlasted the running chunk) starts when it lands:
        # every waypoint on publish (the header stamp) + action latency (0.1 s here) + i·dt.
        on_obs_grid = any(((absolute[1:] - s) % PERIOD_NS == 0).all() for s in list(robot.stamps))
        at_rest = ((absolute - data.stamp_ns - 100_000_000) % PERIOD_NS == 0).all()  # action latency 0.1 s
        assert on_obs_grid or at_rest
        # Velocities consistent with the positions, zero at the end (what JTC accepts by default).
        assert data.velocities is not None and np.allclose(data.velocities[-1], 0)
    # Stamped after inference: every trajectory's first point is still ahead when it arrives, so a
    # joint_trajectory_controller ramps into it; the commanded position never jumps at a hand-over.
    with robot.got:
        assert min(robot.lead_ns) > 0 and robot.jtc.stats.first_point_in_past == 0
        assert robot.jtc.stats.max_jump < 1e-3, robot.jtc.stats.handovers
    # Stale camera → one single-point hold, never before the age limit, then silence. (How long after the
    # limit depends on how long a cycle already in flight takes on a loaded CPU: not asserted.)
    last_camera = robot.stop_camera()
    robot.wait_for(lambda tr: len(tr[-1][1].time_from_start_ns) == 1)
    received, hold = robot.trajectories[-1]
    assert hold.stamp_ns - last_camera > MAX_AGE_S * 1e9
    n = len(robot.trajectories)
    time.sleep(0.6)  # silence window: no further holds
    assert len(robot.trajectories) == n
    # Camera back → trajectories resume; disabled → at most one final hold, then nothing.
    robot.camera_on.set()
    robot.wait_for(lambda tr: len(tr) >= n + 2)
    set_enabled(robot, False)
    robot.wait_for(lambda tr: len(tr[-1][1].time_from_start_ns) == 1)  # the final hold (a cycle in flight sends nothing)
    n = len(robot.trajectories)
    time.sleep(0.8)  # silence window
    assert len(robot.trajectories) == n
    st = robot.fresh_status()
    assert st["enabled"] == "False" and float(st["inference_ms_p50"]) > 0
    assert "age_ms.depth" in st and float(st["rate_hz.joint_states"]) > 10
    assert proc.poll() is None


def test_contact_guard_stops_the_arm_from_the_wrench_subscription_and_keeps_the_policy_enabled(running):
    """safety.max_contact_force: a wrench above it → a one-point stop at once (DDPM-100 inferences take
    ~1 s: the stop does not wait for one), its point still ahead on arrival; one stop while the force
    stays high; the node stays enabled and goes on commanding."""
    robot, proc = running(extra=("-p", "sampling.solver:=ddpm", "-p", "sampling.num_inference_steps:=100",
                                 "-p", "safety.max_contact_force:=20.0"))
    set_enabled(robot, True, proc)
    robot.wait_for(lambda tr: len(tr) >= 2)
    with robot.got:
        n = len(robot.trajectories)
        robot.force = [0.0, 0.0, -40.0, 0.0, 0.0, 0.0]
        pushed = time.monotonic()
    robot.wait_for(lambda tr: any(len(d.time_from_start_ns) == 1 for _, d in tr[n:]))
    received = next(t for t, d in robot.trajectories[n:] if len(d.time_from_start_ns) == 1)
    robot.wait_for(lambda tr: len(tr) >= n + 3)  # the policy goes on
    with robot.got:
        assert min(robot.lead_ns) > 0 and robot.jtc.stats.first_point_in_past == 0
    st = robot.fresh_status()
    assert st["contact_stops"] == "1" and st["enabled"] == "True" and not st["safety_stop"], st
    assert received - pushed < float(st["inference_ms_p50"]) / 1e3, (received - pushed, st["inference_ms_p50"])
    assert proc.poll() is None


def test_malformed_messages_are_dropped_and_the_node_keeps_commanding(running):
    robot, proc = running(malformed=True)
    set_enabled(robot, True, proc)
    robot.wait_for(lambda tr: len(tr) >= 6)
    limits = arm_limits()
    for _, data in robot.trajectories:
        check_valid(data, limits)
    st = robot.fresh_status()
    # wrong encoding + truncated depth, NaN wrench, unknown joints and out-of-order stamps: all dropped
    assert int(st["dropped.depth"]) > 0 and int(st["dropped.wrench"]) > 0 and int(st["dropped.joint_states"]) > 0
    assert st["state"] == "command" and int(st["commands"]) >= 6
    assert proc.poll() is None  # alive


def test_every_parameter_a_config_file_sets_is_declared():
    """config/arm.yaml, config/ur.yaml and config/aerial.yaml load into the node's parameters."""
    from diffusion_policy_ros.config import flatten_params, load_deploy_config
    from diffusion_policy_ros.ros.policy_node import declared_parameters

    from .test_launch import CONFIG_DIR, flat_keys, sections

    for name in ("arm", "aerial", "ur"):
        path = CONFIG_DIR / f"{name}.yaml"
        data = sections(path)["policy_node"]["ros__parameters"]
        assert set(flat_keys(data)) <= set(declared_parameters())
        cfg = load_deploy_config(path)
        assert flatten_params(cfg).keys() == declared_parameters().keys()


def call(robot, srv_type, name: str, request):
    client = robot.node.create_client(srv_type, name)
    assert client.wait_for_service(timeout_sec=30), name
    future = client.call_async(request)
    done = threading.Event()
    future.add_done_callback(lambda f: done.set())
    assert done.wait(10), name
    return future.result()


def test_safety_stops_gripper_controller_and_parameter_descriptions(running):
    """One node: every parameter described; the gripper goes to its own controller; a protective stop
    (UR's robot_program_running false) and a wrench over the force limit each hold and disable."""
    from rcl_interfaces.srv import DescribeParameters, ListParameters
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import Bool

    program = "/io_and_status_controller/robot_program_running"
    qos = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)
    robot, proc = running(gripper="finger_joint", extra=(
        "-p", f"topics.program_running:={program}", "-p", "force.force_limit:=8.0",
        "-p", "embodiment.gripper_joint:=finger_joint", "-p", "embodiment.gripper_output:=forward"))
    running_pub = robot.node.create_publisher(Bool, program, qos)
    running_pub.publish(Bool(data=True))
    set_enabled(robot, True, proc, call=False)

    # `ros2 param describe`: a description for every parameter, read-only (read once at start-up).
    names = call(robot, ListParameters, "/policy_node/list_parameters", ListParameters.Request()).result.names
    from diffusion_policy_ros.ros.policy_node import declared_parameters

    assert set(declared_parameters()) <= set(names)
    descs = call(robot, DescribeParameters, "/policy_node/describe_parameters",
                 DescribeParameters.Request(names=list(declared_parameters()))).descriptors
    assert [d.name for d in descs if not d.description.strip()] == []
    assert all(d.read_only for d in descs)
    scale = next(d for d in descs if d.name == "safety.velocity_scale")
    assert scale.floating_point_range[0].to_value == 1.0

    # Gripper: its own controller topic; the arm's JointTrajectory names the arm's joints only.
    set_enabled(robot, True)
    robot.wait_for(lambda tr: len(tr) >= 3)
    assert all(data.joint_names == UR_JOINTS for _, data in robot.trajectories)
    deadline = time.monotonic() + 10
    while len(robot.gripper_commands) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(robot.gripper_commands) >= 5
    assert all(0.0 - 1e-9 <= g <= 0.04 + 1e-9 for g in robot.gripper_commands)  # gripper_open..closed

    # Protective stop: the program stops → a single-point hold, disabled, an error in diagnostics.
    n = len(robot.trajectories)
    running_pub.publish(Bool(data=False))
    robot.wait_for(lambda tr: len(tr) > n and len(tr[-1][1].time_from_start_ns) == 1)
    st = robot.fresh_status()
    assert st["enabled"] == "False" and program in st["safety_stop"]
    assert robot.diagnostics[-1].status[0].level == b"\x02"  # ERROR
    assert "robot stopped" in set_enabled(robot, True, expect=False)  # refused while it lasts
    n = len(robot.trajectories)
    time.sleep(0.5)
    assert len(robot.trajectories) == n  # silent after the hold
    running_pub.publish(Bool(data=True))
    deadline = time.monotonic() + 10  # accepted once the node has the new state
    while "robot stopped" in set_enabled(robot, True, expect=None) and time.monotonic() < deadline:
        pass
    assert robot.fresh_status()["enabled"] == "True"
    robot.wait_for(lambda tr: len(tr) >= n + 2)

    # Force limit: a 12 N push (limit 8 N) → hold and disable, the wrench named in diagnostics.
    n = len(robot.trajectories)
    robot.force = [0.5, 0.0, -12.0, 0.0, 0.02, 0.0]
    robot.wait_for(lambda tr: len(tr) > n and len(tr[-1][1].time_from_start_ns) == 1)
    st = robot.fresh_status()
    assert st["enabled"] == "False" and "force limit" in st["safety_stop"]
    robot.force = [0.5, 0.0, -3.0, 0.0, 0.02, 0.0]
    assert proc.poll() is None


def test_enable_is_refused_without_a_controller_on_the_command_topic(running):
    robot, proc = running(extra=("-p", "topics.command:=/scaled_joint_trajectory_controller/joint_trajectory"))
    set_enabled(robot, True, proc, call=False)
    message = set_enabled(robot, True, expect=False)
    assert "/scaled_joint_trajectory_controller/joint_trajectory" in message and "joint_trajectory_controller" in message
    st = robot.fresh_status()
    assert st["enabled"] == "False" and st["cycles"] == "0"
    assert proc.poll() is None


def test_takeover_pauses_the_policy_teleop_drives_and_no_hand_over_jumps(running, force_checkpoint, tmp_path):
    """Policy commanding → deadman held (teleop_node's takeover topics) → the twist drives from where
    the command is → release → the policy again. The commanded position, as a joint_trajectory_controller
    applies what arrives, never jumps by more than one command period at the fastest joint's velocity
    limit; the recorder lists the takeover in episode.json; `dpros convert --segments takeover` makes
    it an episode of its own."""
    import json

    import torch
    from geometry_msgs.msg import TwistStamped
    from rclpy.parameter import Parameter
    from std_msgs.msg import Bool

    from diffusion_policy_ros.checkpoint import checkpoint_config
    from diffusion_policy_ros.config import load_deploy_config
    from diffusion_policy_ros.data import ReplayBuffer
    from diffusion_policy_ros.data.convert import convert_bags
    from diffusion_policy_ros.embodiment.arm import arm_from_config
    from diffusion_policy_ros.config import EmbodimentConfig
    from diffusion_policy_ros.ros.recorder_node import RecorderNode

    from .spinning import SpinEach

    # A briefly trained policy wanders; slowed down, it stays near the start pose, where the tool can
    # move along +x (near the joint limits the IK would go where it can).
    scale = 0.1
    robot, proc = running(extra=("-p", f"safety.velocity_scale:={scale}"))
    topics = ["/camera/camera/aligned_depth_to_color/image_raw", "/camera/camera/aligned_depth_to_color/camera_info",
              "/force_torque_sensor_broadcaster/wrench", "/joint_states"]
    rec = RecorderNode(context=robot.node.context, parameter_overrides=[
        Parameter("output_dir", value=str(tmp_path / "eps")), Parameter("topics", value=topics),
        Parameter("keys", value=False)])
    spin = SpinEach(robot.node.context, rec)
    deadman = robot.node.create_publisher(Bool, "/teleop/takeover", 10)
    twist_pub = robot.node.create_publisher(TwistStamped, "/teleop/twist", 10)
    try:
        set_enabled(robot, True, proc)
        robot.wait_for(lambda tr: len(tr) >= 2)
        assert rec.start().startswith("recording")
        time.sleep(0.8)
        speed, held_s = 0.05, 2.5
        t_on = time.monotonic()
        while time.monotonic() - t_on < held_s:  # teleop_node publishes both on every Joy message (50 Hz)
            deadman.publish(Bool(data=True))
            twist_pub.publish(robot.M.encode_twist(robot.types, [speed, 0, 0, 0, 0, 0], robot.now(), "base_link"))
            time.sleep(0.02)
        t_off = time.monotonic()
        deadman.publish(Bool(data=False))
        robot.wait_for(lambda tr: sum(t > t_off + 0.3 and len(d.time_from_start_ns) > 3 for t, d in tr) >= 3)
        time.sleep(0.5)
        assert "saved" in rec.stop(True)
    finally:
        spin.shutdown()
        rec.destroy_node()
    with robot.got:
        received = list(robot.trajectories)
        jump, stats = robot.jtc.stats.max_jump, robot.jtc.stats
    # During the takeover: three-point teleop trajectories only, moving the tool along +x at the twist.
    during = [d for t, d in received if t_on + 0.3 < t < t_off]
    assert len(during) > 30 and all(len(d.time_from_start_ns) == 3 for d in during)
    arm = arm_from_config(EmbodimentConfig())
    x0, x1 = (arm.fk(torch.as_tensor(d.positions[0], dtype=torch.float64)).numpy()[:3] for d in (during[0], during[-1]))
    moved = x1 - x0
    assert 0.5 * speed * (held_s - 0.3) < moved[0] < 1.5 * speed * held_s and np.abs(moved[1:]).max() < 0.01, moved
    # Every hand-over (policy → teleop, teleop → teleop, teleop → policy) continuous.
    fastest = float(np.max(arm_limits().max_velocity)) * scale  # safety.velocity_scale
    assert stats.first_point_in_past == 0 and jump <= fastest * 0.02, (jump, fastest)  # 50 Hz command period
    # The episode lists its takeover; the segment converts to an episode of its own.
    episode = tmp_path / "eps" / "episode_0000"
    meta = json.loads((episode / "episode.json").read_text())
    (seg,) = meta["takeover"]
    assert seg["start_s"] > 0.4 and abs(seg["end_s"] - seg["start_s"] - held_s) < 0.5, seg
    dep = load_deploy_config(ROOT / "config" / "arm.yaml", overrides={
        "timing.max_observation_age_s": MAX_AGE_S, "timing.camera_latency_s": 0.0,
        "point_cloud.extrinsic": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
        "point_cloud.crop_min": [-1.0, -1.0, -1.0], "point_cloud.crop_max": [1.0, 1.0, 1.0]})
    summary = convert_bags([episode], checkpoint_config(force_checkpoint), dep, tmp_path / "takeover.zarr",
                           segments="takeover", progress=False)
    assert summary["episodes"] == 1 and summary["skipped"] == [], summary
    assert abs(summary["steps"] - held_s * 10) <= 3, summary  # 10 Hz observation period
    assert ReplayBuffer.open(tmp_path / "takeover.zarr").n_episodes == 1


def test_command_output_streams_a_forward_command_within_its_limit_and_zeros_on_disable(ros_context, tmp_path):
    """output command (no kinematics): a 9-value state on joint_states → the policy's 4-D action as a
    forward_command_controller's Float64MultiArray, streamed at timing.command_rate_hz, each value
    within ±safety.command_limit; on disable the last message is zeros (a velocity-like command left
    running would keep the robot moving)."""
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray
    from std_srvs.srv import SetBool

    from diffusion_policy_ros.checkpoint import save_checkpoint
    from diffusion_policy_ros.io import msgs as M

    from .factories import vector_policy

    policy = vector_policy(scale=3.0)  # actions up to ±3: beyond the ±0.5 limit
    ckpt = save_checkpoint(tmp_path / "vector", policy.config, policy.model)
    names = [f"s{i}" for i in range(9)]
    node = Node("vector_robot", context=ros_context)
    ty, got, lock = M.RosTypes(), [], threading.Lock()
    pub = node.create_publisher(JointState, "/joint_states", 10)
    node.create_timer(0.01, lambda: pub.publish(M.encode_joint_state(ty, names, list(np.linspace(-.4, .4, 9)),
                                                                      node.get_clock().now().nanoseconds)))

    def on_command(msg):
        with lock:
            got.append((time.monotonic(), list(msg.data)))

    node.create_subscription(Float64MultiArray, "/forward_command_controller/commands", on_command, 10)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    log = open(tmp_path / "policy_node.log", "w")
    proc = subprocess.Popen([shutil.which("policy_node") or str(Path(sys.executable).parent / "policy_node"),
                             "--ros-args", "-p", f"checkpoint:={ckpt}", "-p", "output:=command",
                             "-p", "topics.command:=/forward_command_controller/commands",
                             "-p", f"embodiment.joint_names:=[{', '.join(names)}]",
                             "-p", "safety.command_limit:=0.5", "-p", "timing.control_rate_hz:=10.0",
                             "-p", "timing.command_rate_hz:=20.0", "-p", "timing.action_latency_s:=0.1",
                             "-p", "sampling.seed:=0", "-p", "start_enabled:=true"], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120  # the node imports torch first
        while time.monotonic() < deadline:
            with lock:
                if len(got) >= 40:
                    break
            assert proc.poll() is None, (tmp_path / "policy_node.log").read_text()[-2000:]
            time.sleep(0.2)
        with lock:
            values = np.array([v for _, v in got])
            span = got[-1][0] - got[0][0]
        assert values.shape[1] == 4 and np.isfinite(values).all()
        assert np.abs(values).max() <= 0.5 + 1e-9 and np.isclose(np.abs(values).max(), 0.5)  # clamped
        assert len(values) / span > 10  # streamed (20 Hz asked), not once per chunk
        client = node.create_client(SetBool, "/policy_node/enable")
        assert client.wait_for_service(timeout_sec=10)
        future = client.call_async(SetBool.Request(data=False))
        done = threading.Event()
        future.add_done_callback(lambda f: done.set())
        assert done.wait(10) and future.result().success
        time.sleep(1.0)
        with lock:
            n, last = len(got), got[-1][1]
        time.sleep(0.5)
        with lock:
            assert len(got) == n  # quiet after the disable
        assert last == [0.0, 0.0, 0.0, 0.0]
        assert proc.poll() is None
    finally:
        interrupt(proc)
        log.close()
        executor.shutdown(timeout_sec=5)
        node.destroy_node()
