"""The policy node: RGB-D + wrench + joint states in, timed trajectories out, on a real robot.

A thin shell over ``runtime.controller.PolicyRuntime``: callbacks decode messages (``ros/msgs.py``)
and hand them to the runtime; a control thread runs one cycle per observation period on the node's
clock (``use_sim_time`` honoured), so callbacks never wait on the model.

    ros2 run diffusion_policy_ros policy_node --ros-args --params-file config/arm.yaml \\
        -p checkpoint:=/path/to/checkpoint

Parameters: every field of ``config.DeployConfig`` (dotted names: ``topics.color``, ``timing.control_rate_hz``,
``embodiment.urdf`` ...); ``config/arm.yaml`` lists them with comments.
Services: ``~/enable`` (std_srvs/SetBool; the node starts disabled unless ``start_enabled``; refused
while nothing subscribes to the command topic or the robot reports a stop), ``~/tare``
(std_srvs/Trigger; zero the force/torque sensor).
Takeover (DAgger-style corrections): while ``topics.takeover`` (std_msgs/Bool, teleop_node's deadman)
is true, the policy is paused and the node streams the teleop twist (``topics.teleop_twist``) from
where the command is, through the same limits; on release the policy plans again from there.
Safety stops (hold where the command is, disable, ERROR in diagnostics until enabled again): a wrench
beyond ``force.force_limit``/``torque_limit``, ``topics.estop`` true, ``topics.program_running`` false.
Contact guard (``safety.max_contact_force`` > 0): on the wrench sample that exceeds it, the running
trajectory stops where its command is (published from the subscription, while an inference runs) and
chunks go no deeper until the force falls back; the policy stays enabled.
Status: ``/diagnostics`` (diagnostic_msgs/DiagnosticArray) once a second.
"""
from __future__ import annotations

import threading
from pathlib import Path
from collections import deque

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped, TwistStamped, WrenchStamped
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, JointState
from rcl_interfaces.msg import FloatingPointRange
from std_msgs.msg import Bool, Float64, Float64MultiArray
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory, MultiDOFJointTrajectory

from ..config import DeployConfig, deploy_config_from_dict, field_docs, flatten_params, unflatten_params
from .. import constants as C
from ..errors import ConfigError, DiffusionPolicyRosError
from ..geometry import enu_to_ned, ned_yaw_from_enu_rotation, rot6d_to_quat_xyzw
from ..runtime.controller import Command, Plan
from ..runtime.deployment import build_runtime
from ..runtime.schedule import TimedTrajectory, command_at
from ..io import msgs as M
from .entry import run_node
from ..io.inputs import STREAM_OF, Input, runtime_inputs

NODE_NAME = "policy_node"
TELEOP_TIMEOUT_S = 0.5  # takeover: no teleop twist this long → zero twist
MSG_CLASSES = {c.__name__: c for c in (Image, CompressedImage, CameraInfo, WrenchStamped, JointState, PoseStamped)}


def declared_parameters() -> dict[str, object]:
    """Every parameter the node declares, with its default (launch files and tests check against this)."""
    return flatten_params(DeployConfig())


# Ranges ``ros2 param describe`` shows (the config checks every bound again when it loads).
RANGES = {"safety.velocity_scale": (0.0, 1.0), "execution.latency_percentile": (0.0, 100.0),
          "execution.rtc_max_weight": (0.0, 1.0), "timing.control_rate_hz": (0.1, 1000.0),
          "timing.command_rate_hz": (0.1, 1000.0)}
CONTROLLERS = ("joint_trajectory_controller (ros2_control), scaled_joint_trajectory_controller (UR's driver), "
               "a PX4 offboard bridge for px4 output, a forward_command_controller for command output")


def px4_topic(base: str, msg_type) -> str:
    """PX4's ROS 2 topic for a message: ``<base>_v<N>`` when the installed px4_msgs definition has
    MESSAGE_VERSION N > 0 (PX4 v1.16+ message versioning), else ``base``."""
    version = int(getattr(msg_type, "MESSAGE_VERSION", 0) or 0)
    return f"{base}_v{version}" if version > 0 and not base.endswith(f"_v{version}") else base


def pose10_to_pose7(v: np.ndarray) -> np.ndarray:
    return np.concatenate((v[:3], rot6d_to_quat_xyzw(v[3:9])))


class PolicyNode(Node):
    def __init__(self, *, policy=None, **kwargs):
        """``policy``: an already loaded ``Policy`` (tests, sim); otherwise the ``checkpoint`` parameter is loaded."""
        super().__init__(NODE_NAME, **kwargs)
        self.cfg = cfg = self._read_parameters()
        if cfg.torch_threads > 0:
            import torch

            torch.set_num_threads(cfg.torch_threads)
        self.runtime = build_runtime(cfg, policy)
        try:  # the trace / ONNX session now, not in the first cycle
            warm_ms = self.runtime.policy.warm_up()
        except DiffusionPolicyRosError as e:  # a blank observation the policy cannot digest: warm up live
            warm_ms = float("nan")
            self.get_logger().warning(f"warm-up skipped: {e}")
        self.view = None
        if cfg.rerun:
            from ..runtime.live_view import LiveView

            self.view = LiveView(str(Path(cfg.rerun).expanduser()) if cfg.rerun != "spawn" else "spawn",
                                 self.runtime, app=self.get_name())
        self.types = M.RosTypes()
        self._px4 = None
        if cfg.output == "px4":
            try:
                from px4_msgs import msg as px4
            except ImportError:
                raise ConfigError("output 'px4': expected px4_msgs to be importable (source the PX4 ROS 2 "
                                  "workspace), it is not") from None
            self._px4 = px4
        self.vehicle = {"nav_state": None, "arming_state": None, "position": None, "yaw": None}  # ENU
        self._vehicle_hold: tuple[np.ndarray, float] | None = None  # (ENU position, NED yaw) held when idle
        self._vehicle_active: TimedTrajectory | None = None
        self._yaw_active: float = 0.0

        self.counts = {k: 0 for k in ("color", "depth", "camera_info", "wrench", "joint_states", "ee_pose")}
        self.dropped = dict(self.counts)
        self._rate_base = (dict(self.counts), None)
        self._subscribe()
        self._make_publishers()
        self.enabled = threading.Event()
        if cfg.start_enabled:
            self.enabled.set()
        self.create_service(SetBool, "~/enable", self._on_enable)
        self.create_service(Trigger, "~/tare", self._on_tare)
        self.active: TimedTrajectory | None = None  # what streamed outputs (pose, px4) follow
        self.last_status, self.last_reason = "waiting", "starting"
        self.stop_reason = ""  # the last safety stop, until the next enable
        self.inference_ms: deque[float] = deque(maxlen=100)
        self.latency_ms: deque[float] = deque(maxlen=100)  # cycle start → publish
        self._enable_lock = threading.Lock()
        self.overruns = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._arrived = threading.Event()  # a trigger-stream sample arrived (timing.trigger: observation)
        streams = self.runtime.window.buffers
        self._trigger_stream = next((s for s in ("depth", "color", "ee_pose", "joints") if s in streams), None)
        self._thread = threading.Thread(target=self._control_loop, name="policy_control", daemon=True)
        self._thread.start()
        self.get_logger().info(f"policy node ready: {len(self.runtime.window.buffers)} streams "
                               f"{sorted(self.runtime.window.buffers)}, output {cfg.output} on {cfg.topics.command}, "
                               f"{cfg.timing.control_rate_hz:g} Hz, {'enabled' if cfg.start_enabled else 'disabled'}; "
                               f"first inference (warm-up) {warm_ms:.0f} ms")

    # --- parameters -------------------------------------------------------------------------------
    def _read_parameters(self) -> DeployConfig:
        values = {}
        docs = field_docs(DeployConfig())
        for name, default in declared_parameters().items():
            is_float = isinstance(default, float) or (isinstance(default, list) and default
                                                      and isinstance(default[0], float))
            # Read once at start-up: read_only tells `ros2 param set` so instead of silently ignoring it.
            desc = ParameterDescriptor(description=docs[name], read_only=True, dynamic_typing=is_float)
            if name in RANGES:
                lo, hi = RANGES[name]
                desc.floating_point_range = [FloatingPointRange(from_value=lo, to_value=hi)]
            if isinstance(default, list) and not default:
                desc.dynamic_typing = False
                self.declare_parameter(name, Parameter.Type.STRING_ARRAY, desc)
            else:  # floats accept integers too (a YAML "10" for a rate)
                self.declare_parameter(name, default, desc)
            try:
                value = self.get_parameter(name).value
            except rclpy.exceptions.ParameterUninitializedException:
                value = default
            if is_float:
                try:
                    value = [float(v) for v in value] if isinstance(value, (list, tuple)) else float(value)
                except (TypeError, ValueError):
                    raise ConfigError(f"parameter {name}: expected a number, got {value!r}") from None
            values[name] = list(value) if isinstance(value, (list, tuple)) else value
        return deploy_config_from_dict(unflatten_params(values), source=f"{NODE_NAME} parameters")

    # --- inputs ------------------------------------------------------------------------------------
    def _subscribe(self) -> None:
        for inp in runtime_inputs(self.runtime, self.cfg.topics, watch_wrench=True):
            pkg, _, name = inp.msgtype.split("/")
            self._sub(MSG_CLASSES[name], inp.topic, self._guard(inp), qos_profile_sensor_data)
        # Robot state: latched topics (UR's io_and_status_controller publishes on change, transient local).
        self.robot_stop: dict[str, str] = {}  # topic → why the robot cannot be commanded now
        state_qos = rclpy.qos.QoSProfile(depth=1, durability=rclpy.qos.DurabilityPolicy.TRANSIENT_LOCAL,
                                         reliability=rclpy.qos.ReliabilityPolicy.RELIABLE)
        for topic, stopped_when in ((self.cfg.topics.program_running, False), (self.cfg.topics.estop, True)):
            if topic:
                self._sub(Bool, topic, self._robot_state(topic, stopped_when), state_qos)
        # Takeover: the deadman's state, the teleop twist and gripper (0 open … 1 closed).
        self.takeover = threading.Event()
        self._teleop = (np.zeros(6), 0, None)  # (twist, receipt ns, gripper)
        t = self.cfg.topics
        if t.takeover and self.cfg.output != "command":  # takeover drives an end effector; a command has none
            self._sub(Bool, t.takeover, self._on_takeover, 10)
            self._sub(TwistStamped, t.teleop_twist, self._on_teleop_twist, 10)
            self._sub(Float64, t.teleop_gripper, self._on_teleop_gripper, 10)

    def _on_takeover(self, msg) -> None:
        if bool(msg.data) == self.takeover.is_set():
            return
        if msg.data:
            self.takeover.set()
            self.get_logger().info(f"takeover: {self.cfg.topics.teleop_twist} drives, the policy is paused")
        else:
            self.takeover.clear()
            self.get_logger().info("takeover released: the policy drives again")

    def _on_teleop_twist(self, msg) -> None:
        try:
            twist = M.decode_twist(msg)
        except (DiffusionPolicyRosError, ValueError) as e:
            self.get_logger().warning(f"{self.cfg.topics.teleop_twist}: {e}; message dropped", throttle_duration_sec=2.0)
            return
        self._teleop = (twist, self.get_clock().now().nanoseconds, self._teleop[2])

    def _on_teleop_gripper(self, msg) -> None:
        g = float(msg.data)
        if np.isfinite(g):
            self._teleop = (self._teleop[0], self._teleop[1], float(np.clip(g, 0.0, 1.0)))

    def _robot_state(self, topic: str, stopped_when: bool):
        def callback(msg):
            if bool(msg.data) == stopped_when:
                self.robot_stop[topic] = f"{topic} is {str(msg.data).lower()}"
                self.safety_stop(f"robot stopped: {self.robot_stop[topic]}")
            else:
                self.robot_stop.pop(topic, None)
        return callback

    # No default QoS-event handlers: each adds a waitable the executor rebuilds on every wake-up,
    # which at 250-500 Hz joint states costs more CPU than the callbacks themselves.
    def _sub(self, msg_type, topic, callback, qos):
        return self.create_subscription(msg_type, topic, callback, qos,
                                        event_callbacks=SubscriptionEventCallbacks(use_default_callbacks=False))

    def _pub(self, msg_type, topic, qos):
        return self.create_publisher(msg_type, topic, qos,
                                     event_callbacks=PublisherEventCallbacks(use_default_callbacks=False))

    def _guard(self, inp: Input):
        """Count, decode, hand over; a bad message is logged with its topic and dropped, never fatal."""
        stream = STREAM_OF.get(inp.name, inp.name)

        def callback(msg):
            self.counts[inp.name] += 1
            try:
                inp.feed(self.runtime, msg)
            except (DiffusionPolicyRosError, ValueError, TypeError) as e:
                self.dropped[inp.name] += 1
                self.get_logger().warning(f"{inp.topic}: {e}; message dropped", throttle_duration_sec=2.0)
                return
            if self.runtime.fault is not None and self.enabled.is_set():
                self.safety_stop(self.runtime.fault)
            elif inp.name == "wrench" and self.cfg.safety.max_contact_force > 0:
                self._contact_guard()
            if stream == self._trigger_stream:
                self._arrived.set()
        return callback

    # --- outputs -----------------------------------------------------------------------------------
    def _make_publishers(self) -> None:
        cfg = self.cfg
        kind = {"joint_trajectory": JointTrajectory, "pose": PoseStamped, "multidof": MultiDOFJointTrajectory,
                "command": Float64MultiArray}
        if cfg.output in kind:
            self.command_pub = self._pub(kind[cfg.output], cfg.topics.command, 10)
        else:  # px4: TrajectorySetpoint on the command topic + OffboardControlMode beside it, from start-up
            px4 = self._px4
            self.command_pub = self._pub(px4.TrajectorySetpoint, px4_topic(cfg.topics.command, px4.TrajectorySetpoint), 10)
            self.mode_pub = self._pub(px4.OffboardControlMode, px4_topic(
                cfg.topics.command.rsplit("/", 1)[0] + "/offboard_control_mode", px4.OffboardControlMode), 10)
            self.arm_pub = self._pub(JointTrajectory, cfg.topics.arm_command, 10) if cfg.topics.arm_command else None
            # PX4's bridge publishes best effort: a best-effort, volatile reader matches it either way.
            px4_qos = rclpy.qos.QoSProfile(depth=1, reliability=rclpy.qos.ReliabilityPolicy.BEST_EFFORT)
            self._sub(px4.VehicleStatus, px4_topic(cfg.topics.vehicle_status, px4.VehicleStatus),
                      self._on_vehicle_status, px4_qos)
            self._sub(px4.VehicleOdometry, px4_topic(cfg.topics.vehicle_odometry, px4.VehicleOdometry),
                      self._on_vehicle_odometry, px4_qos)
            # OffboardControlMode must stream (> 2 Hz) before the pilot may switch to offboard and must
            # never stop while in it (PX4's failsafe): a timer of its own, whatever ~/enable says.
            self.create_timer(1.0 / cfg.timing.command_rate_hz, self._px4_heartbeat)
        e = cfg.embodiment
        self.gripper_pub = None
        self._gripper_col = None  # the gripper's column in the runtime's output values
        if e.gripper_output != "none" and (self.runtime.gripper or (cfg.output != "joint_trajectory"
                                                                    and self.runtime.action_has_gripper)):
            self._gripper_col = (len(self.runtime.output_names) - 1 if cfg.output == "joint_trajectory"
                                 else C.EE_POSE_DIM)
            kind_g = Float64MultiArray if e.gripper_output == "forward" else JointTrajectory
            self.gripper_pub = self._pub(kind_g, cfg.topics.gripper_command, 10)
        if cfg.output in ("pose", "command") or (self.gripper_pub is not None and e.gripper_output == "forward"):
            # setpoint streams: resample the running trajectory
            self.create_timer(1.0 / cfg.timing.command_rate_hz, self._stream_setpoint)
        self.diag_pub = self._pub(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(1.0, self._publish_diagnostics)

    def _publish(self, cmd: Command, now_ns: int) -> None:
        traj = cmd.trajectory
        with self._lock:
            self.active = traj
        g = self._gripper_col
        if g is not None and self.cfg.embodiment.gripper_output == "trajectory":
            grip = self._gripper_values(traj.values)
            vel = None if traj.velocities is None or self.cfg.output != "joint_trajectory" else traj.velocities[:, g:g + 1]
            data = M.JointTrajectoryData([self.cfg.embodiment.gripper_joint], now_ns, traj.times_ns - now_ns,
                                         grip, vel)
            self.gripper_pub.publish(M.encode_joint_trajectory(self.types, data))
        if self.cfg.output == "joint_trajectory":
            names, values, vel = cmd.names, traj.values, traj.velocities
            if self.runtime.gripper:  # the arm's controller owns the arm's joints only
                arm = len(self.runtime.joint_names)
                names, values = names[:arm], values[:, :arm]
                vel = None if vel is None else vel[:, :arm]
            data = M.JointTrajectoryData(names, now_ns, traj.times_ns - now_ns, values, vel)
            self.command_pub.publish(M.encode_joint_trajectory(self.types, data))
        elif self.cfg.output == "multidof":
            poses = np.stack([pose10_to_pose7(v) for v in traj.values])[:, None]
            data = M.MultiDOFTrajectoryData(cmd.names, now_ns, traj.times_ns - now_ns, poses)
            self.command_pub.publish(M.encode_multidof_trajectory(self.types, data, self.cfg.frame_id))
        elif self.cfg.output == "px4":
            self._publish_px4(cmd, now_ns)
        elif self.cfg.output == "command":  # at once, enabled or not: a hold on disable must reach the robot
            self._publish_command(traj, now_ns)
        else:
            self._stream_setpoint()

    def _gripper_values(self, values: np.ndarray) -> np.ndarray:
        """(K, 1) gripper joint positions from output values (joint units already for joint outputs;
        end-effector outputs carry the [0, 1] action)."""
        g = values[:, self._gripper_col:self._gripper_col + 1]
        if self.cfg.output == "joint_trajectory":
            return g
        e = self.cfg.embodiment
        return e.gripper_open + np.clip(g, 0.0, 1.0) * (e.gripper_closed - e.gripper_open)

    def _stream_setpoint(self) -> None:
        with self._lock:
            traj = self.active
        if traj is None or not self.enabled.is_set():
            return
        now = self.get_clock().now().nanoseconds
        v = traj.at(now)
        if not np.isfinite(v).all():
            return
        if self.gripper_pub is not None and self.cfg.embodiment.gripper_output == "forward":
            self.gripper_pub.publish(Float64MultiArray(data=[float(self._gripper_values(v[None])[0, 0])]))
        if self.cfg.output in ("joint_trajectory", "multidof"):
            return
        if self.cfg.output == "command":
            self._publish_command(traj, now)
        elif self.cfg.output == "pose":
            self.command_pub.publish(M.encode_pose(self.types, pose10_to_pose7(v), now, self.cfg.frame_id))

    def _publish_command(self, traj: TimedTrajectory, now_ns: int) -> None:
        """output command: the value that holds from now (zeros after the trajectory's end) as a
        forward_command_controller's Float64MultiArray, streamed at timing.command_rate_hz."""
        v = command_at(traj, now_ns, self.runtime.period, self.runtime.pcfg.action.dim)
        if np.isfinite(v).all():
            self.command_pub.publish(Float64MultiArray(data=[float(x) for x in v]))

    # --- px4 -------------------------------------------------------------------------------------------
    def _publish_px4(self, cmd: Command, now_ns: int) -> None:
        """A command's vehicle trajectory becomes what the heartbeat streams; its arm trajectory goes to
        the arm's controller at once. A hold keeps the vehicle where its hold point is."""
        if cmd.vehicle is None:
            return
        with self._lock:
            self._yaw_active = float(ned_yaw_from_enu_rotation(cmd.trajectory.values[-1, 3:9]))
            if cmd.kind == "hold":
                self._vehicle_active, self._vehicle_hold = None, (cmd.vehicle.values[-1].copy(), self._yaw_active)
            else:
                self._vehicle_active = cmd.vehicle
        if self.arm_pub is not None and cmd.arm is not None:
            names = self.runtime.aerial.arm.joint_names
            data = M.JointTrajectoryData(names, now_ns, cmd.arm.times_ns - now_ns, cmd.arm.values)
            self.arm_pub.publish(M.encode_joint_trajectory(self.types, data))

    def _px4_heartbeat(self) -> None:
        """OffboardControlMode always; a TrajectorySetpoint on the running vehicle trajectory while enabled,
        else on the hold point (where the vehicle was when the policy stopped or, before any command,
        where odometry puts it): disabling holds position, it never goes silent."""
        px4, now = self._px4, self.get_clock().now().nanoseconds
        mode = px4.OffboardControlMode(timestamp=now // 1000, position=True, velocity=True)
        self.mode_pub.publish(mode)
        with self._lock:
            traj = self._vehicle_active if self.enabled.is_set() else None
            in_offboard = self.vehicle["nav_state"] == px4.VehicleStatus.NAVIGATION_STATE_OFFBOARD
            if traj is None and self.vehicle["position"] is not None and (
                    self._vehicle_hold is None or not in_offboard):
                # Outside offboard the pilot flies: the setpoint follows the vehicle, so switching to
                # offboard holds where it is; in offboard the hold point stays put (no drift with wind).
                self._vehicle_hold = (self.vehicle["position"].copy(), self.vehicle["yaw"])
            hold, yaw = self._vehicle_hold, self._yaw_active
        sp = px4.TrajectorySetpoint(timestamp=now // 1000)
        nan3 = [float("nan")] * 3
        sp.acceleration, sp.jerk, sp.yawspeed = nan3, nan3, float("nan")
        if traj is not None:
            p, v = traj.sample(now)
            sp.position = enu_to_ned(p).astype(np.float32).tolist()
            sp.velocity = enu_to_ned(v).astype(np.float32).tolist()
            sp.yaw = yaw
        elif hold is not None:
            sp.position = enu_to_ned(hold[0]).astype(np.float32).tolist()
            sp.velocity = [0.0, 0.0, 0.0]
            sp.yaw = float(hold[1])
        else:
            self.get_logger().warning(f"px4: no vehicle odometry yet on {self.cfg.topics.vehicle_odometry}: "
                                      f"streaming OffboardControlMode only", throttle_duration_sec=5.0)
            return
        if np.isfinite(sp.position).all():
            self.command_pub.publish(sp)

    def _on_vehicle_odometry(self, msg) -> None:
        p = np.asarray(msg.position, np.float64)
        if msg.pose_frame != self._px4.VehicleOdometry.POSE_FRAME_NED or not np.isfinite(p).all():
            return
        w, x, y, z = (float(c) for c in msg.q)
        with self._lock:
            self.vehicle["position"] = enu_to_ned(p)  # NED → ENU is the same swap
            self.vehicle["yaw"] = float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))

    def _on_vehicle_status(self, msg) -> None:
        s = self._px4.VehicleStatus
        self.vehicle["nav_state"], self.vehicle["arming_state"] = int(msg.nav_state), int(msg.arming_state)
        if not self.enabled.is_set():
            return
        if msg.arming_state != s.ARMING_STATE_ARMED:
            self.safety_stop("pilot takeover: the vehicle was disarmed")
        elif msg.nav_state != s.NAVIGATION_STATE_OFFBOARD:
            self.safety_stop(f"pilot takeover: the vehicle left offboard (nav_state {msg.nav_state})")

    # --- control loop ----------------------------------------------------------------------------------
    def _control_loop(self) -> None:
        try:
            if self.cfg.timing.trigger == "observation":
                self._triggered_loop()
            else:
                self._timer_loop()
        except Exception:  # noqa: BLE001
            if self._stop.is_set() or not self.context.ok():
                return  # Ctrl-C: the context went away under a publish or a sleep; not an error
            raise

    def _triggered_loop(self) -> None:
        """A cycle when a trigger-stream sample arrives >= 0.9 period after the last cycle, or after a
        period without one (stale detection keeps working)."""
        clock, period, last = self.get_clock(), self.runtime.period, None
        while not self._stop.is_set() and self.context.ok():
            self._arrived.wait(timeout=period / 1e9)
            self._arrived.clear()
            now = clock.now().nanoseconds
            if last is not None and now < last:  # time went backwards
                last = None
                self.runtime.reset(clear_observations=True)
            if last is None or now - last >= 0.9 * period:
                last = now
                if self.enabled.is_set():
                    self._cycle(now)

    def _timer_loop(self) -> None:
        """A tick every command period (at most the control period) on the node's clock (sim time when
        use_sim_time): each asks the runtime whether a new chunk is due (execution.mode), so an inference
        starts as soon as the running chunk runs low, not on the next control period. Sleeps in short
        slices so a clock that jumps back (a looped bag, a reset sim) restarts the timeline."""
        clock = self.get_clock()
        tick = min(self.runtime.period, int(1e9 / self.cfg.timing.command_rate_hz))
        period = rclpy.duration.Duration(nanoseconds=tick)
        slice_ = rclpy.duration.Duration(nanoseconds=min(tick, 50_000_000))
        deadline = clock.now() + period
        while not self._stop.is_set() and self.context.ok():
            now = clock.now()
            if now < deadline:
                if (deadline - now).nanoseconds > 2 * tick + self.runtime.period:  # time went backwards
                    deadline = now + period
                    self.runtime.reset(clear_observations=True)
                    continue
                try:
                    clock.sleep_until(min(deadline, now + slice_), context=self.context)
                except rclpy.exceptions.NotInitializedException:
                    break  # context shut down
                continue
            if (now - deadline).nanoseconds > tick:  # fell behind (an inference ran): skip, don't burst
                self.overruns += 1
                deadline = now
            deadline = deadline + period
            if self.enabled.is_set():
                self._cycle(now.nanoseconds)

    def _cycle(self, now_ns: int) -> None:
        """begin → (inference, while the controller runs the current trajectory) → commit at the clock
        read *after* inference, so every waypoint is scheduled from when it is published. Commit and
        publish happen under the enable lock: a chunk that finishes after a disable is never sent."""
        if self.takeover.is_set():
            self._teleop_cycle()
            return
        if self.runtime.in_takeover:
            self.runtime.resume()
        try:
            out = self.runtime.begin(now_ns)
        except Exception as e:  # noqa: BLE001 - a bug in one cycle must not stop the robot's control thread
            self.get_logger().error(f"control cycle failed: {e!r}; holding")
            out = self.runtime.hold(now_ns, repr(e))
        with self._enable_lock:
            if not self.enabled.is_set():  # disabled while inferring: send nothing
                return
            publish_ns = self.get_clock().now().nanoseconds
            if isinstance(out, Plan):
                try:
                    res = self.runtime.commit(out, publish_ns)
                except Exception as e:  # noqa: BLE001
                    self.get_logger().error(f"control cycle failed: {e!r}; holding")
                    res = self.runtime.hold(publish_ns, repr(e))
            else:
                res = out
            if self.view is not None and res.status != "running":
                self.view.cycle(publish_ns, res)
            if res.status == "running":  # the running chunk continues: nothing to report
                return
            self.last_status, self.last_reason = res.status, res.reason
            if res.status == "command":
                self.inference_ms.append(res.inference_ms)
                self.latency_ms.append(res.latency_ms)
            elif res.status in ("hold", "late"):
                self.get_logger().warning(f"{res.status}: {res.reason}", throttle_duration_sec=2.0)
            elif res.status == "waiting":  # enabled but nothing to command yet: say why, not only in diagnostics
                self.get_logger().warning(f"waiting: {res.reason}", throttle_duration_sec=5.0)
            if res.command is not None:
                self._publish(res.command, publish_ns)

    def _teleop_cycle(self) -> None:
        """Takeover: the teleop twist from where the command is (zero when the device went quiet for
        TELEOP_TIMEOUT_S: the arm stops where it is)."""
        with self._enable_lock:
            if not self.enabled.is_set():
                return
            now = self.get_clock().now().nanoseconds
            twist, stamp, gripper = self._teleop
            if now - stamp > TELEOP_TIMEOUT_S * 1e9:
                twist = np.zeros(6)
            try:
                res = self.runtime.teleop(now, twist, gripper)
            except Exception as e:  # noqa: BLE001 - the control thread goes on; hold where the command is
                self.get_logger().error(f"takeover cycle failed: {e!r}; holding")
                res = self.runtime.hold(now, repr(e))
            self.last_status, self.last_reason = res.status, res.reason
            if res.command is not None:
                self._publish(res.command, now)

    # --- services, diagnostics ---------------------------------------------------------------------------
    def _refuse_enable(self) -> str:
        """Why enabling now would be unsafe or useless, or ''."""
        if self.robot_stop:
            return "robot stopped: " + "; ".join(self.robot_stop.values())
        if self._px4 is not None:
            s, v = self._px4.VehicleStatus, self.vehicle
            topic = px4_topic(self.cfg.topics.vehicle_status, s)
            if v["nav_state"] is None:
                return f"no px4_msgs/VehicleStatus on {topic} yet: is the micro XRCE-DDS agent running?"
            if v["arming_state"] != s.ARMING_STATE_ARMED or v["nav_state"] != s.NAVIGATION_STATE_OFFBOARD:
                return (f"the vehicle must be armed and in offboard mode (arming_state {v['arming_state']}, "
                        f"nav_state {v['nav_state']}); the node already streams the offboard heartbeat and a "
                        f"hold setpoint, so the pilot can switch to offboard")
        topic = self.command_pub.topic_name
        if self.cfg.require_subscriber and self.command_pub.get_subscription_count() == 0:
            return (f"nothing subscribes to {topic}: is the controller loaded and active (ros2 control "
                    f"list_controllers)? Usual ones: {CONTROLLERS}. Set topics.command to its topic "
                    f"(require_subscriber:=false to skip this check)")
        return ""

    def _contact_guard(self) -> None:
        """On a wrench sample, in the subscription's thread (an inference may be running): the contact
        guard's stop, published at once (safety.max_contact_force)."""
        with self._enable_lock:
            if not self.enabled.is_set():
                return
            now = self.get_clock().now().nanoseconds
            res = self.runtime.contact_guard(now)
            if res is None or res.command is None:
                return
            self.last_status, self.last_reason = res.status, res.reason
            self._publish(res.command, now)
        self.get_logger().warning(res.reason, throttle_duration_sec=2.0)

    def safety_stop(self, reason: str) -> None:
        """Hold where the command is now, disable, and report ``reason`` as an error until enabled again."""
        with self._enable_lock:
            self.stop_reason = reason
            if not self.enabled.is_set():
                return
            self._disable(self.get_clock().now().nanoseconds)
        self.get_logger().error(f"safety stop: {reason}; holding, policy disabled (call ~/enable to resume)")

    def _disable(self, now: int) -> None:
        """Under the enable lock: hold where the running trajectory is, then go quiet. The next chunk
        after an enable is limited from the measured joints (the scheduler forgets the running one)."""
        self.enabled.clear()
        res = self.runtime.hold(now, "disabled")
        if res.command is not None:
            self._publish(res.command, now)
        self.runtime.reset()  # a chunk still being computed is dropped at commit
        with self._lock:
            self.active = self._vehicle_active = None

    def _on_enable(self, request, response):
        refused = self._refuse_enable() if request.data else ""
        if refused:
            response.success, response.message = False, f"not enabled: {refused}"
            self.get_logger().error(response.message)
            return response
        with self._enable_lock:
            now = self.get_clock().now().nanoseconds
            if request.data and not self.enabled.is_set():
                self.stop_reason = ""
                # Only what arrives from now on: samples from before the enable may show another scene
                # (a reset sim, a robot moved by hand); the window refills within n_obs_steps periods.
                self.runtime.reset(clear_observations=True)
                self.enabled.set()
            elif not request.data and self.enabled.is_set():
                self._disable(now)
        response.success = True
        response.message = "enabled" if self.enabled.is_set() else "disabled"
        self.get_logger().info(f"policy {response.message}")
        return response

    def _on_tare(self, request, response):
        try:
            bias = self.runtime.tare()
            response.success, response.message = True, f"bias {np.round(bias, 4).tolist()}"
        except DiffusionPolicyRosError as e:
            response.success, response.message = False, str(e)
        return response

    def status(self) -> dict[str, str]:
        now = self.get_clock().now().nanoseconds
        counts, (base, t0) = dict(self.counts), self._rate_base
        self._rate_base = (counts, now)
        dt = (now - t0) / 1e9 if t0 is not None and now > t0 else None
        lat = np.array(self.inference_ms) if self.inference_ms else None
        st = self.runtime.stats
        out = {"enabled": str(self.enabled.is_set()), "state": self.last_status, "reason": self.last_reason,
               "safety_stop": self.stop_reason,
               "inference_ms_p50": f"{np.percentile(lat, 50):.1f}" if lat is not None else "",
               "inference_ms_max": f"{lat.max():.1f}" if lat is not None else "",
               "latency_ms_p95": f"{np.percentile(self.latency_ms, 95):.1f}" if self.latency_ms else "",
               "predicted_latency_ms": f"{self.runtime.predicted_latency_ns() / 1e6:.1f}",
               "late": str(st.late), "execution": self.cfg.execution_label(),
               "cycles": str(st.cycles), "commands": str(st.commands), "holds": str(st.holds),
               "contact_stops": str(st.contact_stops), "contact_clipped": str(st.contact_clipped),
               "unsynced": str(st.unsynced), "overruns": str(self.overruns)}
        for name, age in self.runtime.ages_ms(now).items():
            out[f"age_ms.{name}"] = "" if age is None else f"{age:.1f}"
        for topic, n in counts.items():
            if dt:
                out[f"rate_hz.{topic}"] = f"{(n - base[topic]) / dt:.1f}"
            out[f"dropped.{topic}"] = str(self.dropped[topic])
        return out

    def _publish_diagnostics(self) -> None:
        values = self.status()
        s = DiagnosticStatus(name=f"{self.get_name()}: policy", hardware_id=self.cfg.checkpoint or "policy")
        ok = ("command", "running", "waiting", "takeover")
        s.level = DiagnosticStatus.OK if self.last_status in ok else DiagnosticStatus.WARN
        if self.stop_reason and not self.enabled.is_set():
            s.level, s.message = DiagnosticStatus.ERROR, f"safety stop: {self.stop_reason}"
        elif not self.enabled.is_set():
            s.level, s.message = DiagnosticStatus.OK, "disabled"
        else:
            s.message = self.last_status + (f": {self.last_reason}" if self.last_reason else "")
        s.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        msg = DiagnosticArray(status=[s])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(msg)

    def destroy_node(self):
        self._stop.set()
        self._thread.join(timeout=2.0 * self.runtime.period / 1e9 + 1.0)
        if self.view is not None:
            self.view.close()
        super().destroy_node()


def main(args=None) -> None:
    run_node(PolicyNode, NODE_NAME, args)


if __name__ == "__main__":
    main()
