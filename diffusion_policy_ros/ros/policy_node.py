"""The policy node: RGB-D + wrench + joint states in, timed trajectories out, on a real robot.

A thin shell over ``runtime.controller.PolicyRuntime``: callbacks decode messages (``ros/msgs.py``)
and hand them to the runtime; a control thread runs one cycle per observation period on the node's
clock (``use_sim_time`` honoured), so callbacks never wait on the model.

    ros2 run diffusion_policy_ros policy_node --ros-args --params-file config/arm.yaml \\
        -p checkpoint:=/path/to/checkpoint

Parameters: every field of ``config.DeployConfig`` (dotted names: ``topics.color``, ``timing.control_rate_hz``,
``embodiment.urdf`` ...); ``config/arm.yaml`` lists them with comments.
Services: ``~/enable`` (std_srvs/SetBool; the node starts disabled unless ``start_enabled``),
``~/tare`` (std_srvs/Trigger; zero the force/torque sensor).
Status: ``/diagnostics`` (diagnostic_msgs/DiagnosticArray) once a second.
"""
from __future__ import annotations

import threading
from collections import deque

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped, WrenchStamped
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, JointState
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory, MultiDOFJointTrajectory

from ..config import DeployConfig, deploy_config_from_dict, flatten_params, unflatten_params
from ..errors import ConfigError, DiffusionPolicyRosError
from ..geometry import enu_to_ned, ned_yaw_from_enu_rotation, rot6d_to_quat_xyzw
from ..runtime.controller import Command, Plan
from ..runtime.deployment import build_runtime
from ..runtime.schedule import TimedTrajectory
from ..io import msgs as M
from .entry import run_node
from ..io.inputs import STREAM_OF, Input, runtime_inputs

NODE_NAME = "policy_node"
MSG_CLASSES = {c.__name__: c for c in (Image, CompressedImage, CameraInfo, WrenchStamped, JointState, PoseStamped)}


def declared_parameters() -> dict[str, object]:
    """Every parameter the node declares, with its default (launch files and tests check against this)."""
    return flatten_params(DeployConfig())


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
        self.types = M.RosTypes()
        self._px4 = None
        if cfg.output == "px4":
            try:
                from px4_msgs.msg import OffboardControlMode, TrajectorySetpoint
            except ImportError:
                raise ConfigError("output 'px4': expected px4_msgs to be importable (source the PX4 ROS 2 "
                                  "workspace), it is not") from None
            self._px4 = (TrajectorySetpoint, OffboardControlMode)

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
                               f"{cfg.timing.control_rate_hz:g} Hz, {'enabled' if cfg.start_enabled else 'disabled'}")

    # --- parameters -------------------------------------------------------------------------------
    def _read_parameters(self) -> DeployConfig:
        values = {}
        for name, default in declared_parameters().items():
            is_float = isinstance(default, float) or (isinstance(default, list) and default
                                                      and isinstance(default[0], float))
            if isinstance(default, list) and not default:
                self.declare_parameter(name, Parameter.Type.STRING_ARRAY)
            else:  # floats accept integers too (a YAML "10" for a rate)
                self.declare_parameter(name, default, ParameterDescriptor(dynamic_typing=is_float))
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
        for inp in runtime_inputs(self.runtime, self.cfg.topics):
            pkg, _, name = inp.msgtype.split("/")
            self._sub(MSG_CLASSES[name], inp.topic, self._guard(inp), qos_profile_sensor_data)

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
            if stream == self._trigger_stream:
                self._arrived.set()
        return callback

    # --- outputs -----------------------------------------------------------------------------------
    def _make_publishers(self) -> None:
        cfg = self.cfg
        kind = {"joint_trajectory": JointTrajectory, "pose": PoseStamped, "multidof": MultiDOFJointTrajectory}
        if cfg.output in kind:
            self.command_pub = self._pub(kind[cfg.output], cfg.topics.command, 10)
        else:  # px4: TrajectorySetpoint on the command topic + OffboardControlMode beside it
            sp, mode = self._px4
            self.command_pub = self._pub(sp, cfg.topics.command, qos_profile_sensor_data)
            self.mode_pub = self._pub(mode, cfg.topics.command.rsplit("/", 1)[0] + "/offboard_control_mode",
                                                  qos_profile_sensor_data)
        if cfg.output in ("pose", "px4"):  # setpoint streams: resample the running trajectory
            self.create_timer(1.0 / cfg.timing.command_rate_hz, self._stream_setpoint)
        self.diag_pub = self._pub(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(1.0, self._publish_diagnostics)

    def _publish(self, cmd: Command, now_ns: int) -> None:
        traj = cmd.trajectory
        with self._lock:
            self.active = traj
        if self.cfg.output == "joint_trajectory":
            data = M.JointTrajectoryData(cmd.names, now_ns, traj.times_ns - now_ns, traj.values, traj.velocities)
            self.command_pub.publish(M.encode_joint_trajectory(self.types, data))
        elif self.cfg.output == "multidof":
            poses = np.stack([pose10_to_pose7(v) for v in traj.values])[:, None]
            data = M.MultiDOFTrajectoryData(cmd.names, now_ns, traj.times_ns - now_ns, poses)
            self.command_pub.publish(M.encode_multidof_trajectory(self.types, data, self.cfg.frame_id))
        else:
            self._stream_setpoint()

    def _stream_setpoint(self) -> None:
        with self._lock:
            traj = self.active
        if traj is None or not self.enabled.is_set():
            return
        now = self.get_clock().now().nanoseconds
        v = traj.at(now)
        if not np.isfinite(v).all():
            return
        if self.cfg.output == "pose":
            self.command_pub.publish(M.encode_pose(self.types, pose10_to_pose7(v), now, self.cfg.frame_id))
            return
        sp_type, mode_type = self._px4
        dt = 0.05
        vel = (traj.at(now + int(dt * 1e9))[:3] - v[:3]) / dt
        mode = mode_type()
        mode.timestamp, mode.position = now // 1000, True
        self.mode_pub.publish(mode)
        sp = sp_type()
        sp.timestamp = now // 1000
        sp.position = enu_to_ned(v[:3]).astype(np.float32).tolist()
        sp.velocity = enu_to_ned(vel).astype(np.float32).tolist()
        sp.yaw = float(ned_yaw_from_enu_rotation(v[3:9]))
        self.command_pub.publish(sp)

    # --- control loop ----------------------------------------------------------------------------------
    def _control_loop(self) -> None:
        if self.cfg.timing.trigger == "observation":
            self._triggered_loop()
        else:
            self._timer_loop()

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
            if res.status == "running":  # the running chunk continues: nothing to report
                return
            self.last_status, self.last_reason = res.status, res.reason
            if res.status == "command":
                self.inference_ms.append(res.inference_ms)
                self.latency_ms.append(res.latency_ms)
            elif res.status in ("hold", "late"):
                self.get_logger().warning(f"{res.status}: {res.reason}", throttle_duration_sec=2.0)
            if res.command is not None:
                self._publish(res.command, publish_ns)

    # --- services, diagnostics ---------------------------------------------------------------------------
    def _on_enable(self, request, response):
        with self._enable_lock:
            now = self.get_clock().now().nanoseconds
            if request.data and not self.enabled.is_set():
                # Only what arrives from now on: samples from before the enable may show another scene
                # (a reset sim, a robot moved by hand); the window refills within n_obs_steps periods.
                self.runtime.reset(clear_observations=True)
                self.enabled.set()
            elif not request.data and self.enabled.is_set():
                self.enabled.clear()
                res = self.runtime.hold(now, "disabled")
                if res.command is not None:  # stop where the running trajectory is, then go quiet
                    self._publish(res.command, now)
                self.runtime.reset()  # a chunk still being computed is dropped at commit
                with self._lock:
                    self.active = None
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
               "inference_ms_p50": f"{np.percentile(lat, 50):.1f}" if lat is not None else "",
               "inference_ms_max": f"{lat.max():.1f}" if lat is not None else "",
               "latency_ms_p95": f"{np.percentile(self.latency_ms, 95):.1f}" if self.latency_ms else "",
               "predicted_latency_ms": f"{self.runtime.predicted_latency_ns() / 1e6:.1f}",
               "late": str(st.late), "execution": f"{self.cfg.execution.mode}+{self.cfg.execution.consistency}",
               "cycles": str(st.cycles), "commands": str(st.commands), "holds": str(st.holds),
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
        ok = ("command", "running", "waiting")
        s.level = DiagnosticStatus.OK if self.last_status in ok else DiagnosticStatus.WARN
        if not self.enabled.is_set():
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
        super().destroy_node()


def main(args=None) -> None:
    run_node(PolicyNode, NODE_NAME, args)


if __name__ == "__main__":
    main()
