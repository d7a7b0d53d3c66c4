"""The simulator as a ROS 2 robot: publishes what realsense-ros, ros2_control and a wrist F/T
broadcaster publish, and follows JointTrajectory commands the way joint_trajectory_controller does
(arm tasks) or MultiDOFJointTrajectory end-effector targets (the aerial manipulator's tasks).

    ros2 run diffusion_policy_ros sim_node --ros-args -p task:=push -p seed:=0
    ros2 run diffusion_policy_ros policy_node --ros-args --params-file config/sim_arm.yaml \\
        -p use_sim_time:=true -p checkpoint:=push_dp3 -p start_enabled:=true

Topics are the sim deploy config's (``config/sim_arm.yaml``, ``config/sim_aerial.yaml``), so the policy
node started with the same file finds them. Published (sim time, /clock): colour (rgb8) +
``camera_info``, aligned depth (16UC1, mm) + ``camera_info``, the wrist wrench, joint states (the arm's
joints; none for the oracle gripper), the end-effector pose (PoseStamped: on the config's ``ee_pose``
topic for the aerial tasks, ``~/ee_pose`` = the flange for the arm), ``~/success`` (std_msgs/Bool,
once per camera frame). Consumed on the config's command topic: JointTrajectory (names in any order)
or MultiDOFJointTrajectory (one transform per point: the end-effector target; its position is
followed, the base stays level); header stamp 0 = now; time_from_start relative to the stamp.
Services: ``~/reset`` (std_srvs/Trigger): next episode with seed + 1. Parameters: task, embodiment
("" = the task's own; ``oracle`` for the floating gripper on aerial tasks), seed, real_time_factor
(sim seconds per wall second), camera_rate_hz, state_rate_hz, frame_id (of the published poses).
"""
from __future__ import annotations

import threading
import time

import numpy as np
from geometry_msgs.msg import PoseStamped, WrenchStamped
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Bool
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, MultiDOFJointTrajectory

from ..errors import ConfigError, DiffusionPolicyRosError
from ..runtime.schedule import TimedTrajectory
from ..sim.env import SimEnv, record_step, sim_deploy_config, task_embodiment
from ..constants import NS
from ..io import msgs as M
from .entry import run_node

NODE_NAME = "sim_node"
START_NS = NS  # sim time starts at 1 s: a zero stamp means "now" to trajectory controllers


class SimNode(Node):
    def __init__(self, env: SimEnv | None = None, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        p = {name: self.declare_parameter(name, default).value for name, default in (
            ("task", "push"), ("embodiment", ""), ("seed", 0), ("real_time_factor", 1.0), ("camera_rate_hz", 10.0),
            ("state_rate_hz", 50.0), ("frame_id", ""), ("camera_frame_id", "camera_color_optical_frame"))}
        if p["real_time_factor"] <= 0 or p["camera_rate_hz"] <= 0 or p["state_rate_hz"] < p["camera_rate_hz"]:
            raise ConfigError(f"sim_node: expected real_time_factor > 0 and state_rate_hz >= camera_rate_hz > 0, got "
                              f"{p['real_time_factor']}, {p['state_rate_hz']}, {p['camera_rate_hz']}")
        self.p = p
        if env is None:
            embodiment = task_embodiment(p["task"], p["embodiment"] or None)
            env = SimEnv(p["task"], sim_deploy_config(embodiment), embodiment)
        self.env = env
        self.aerial = env.aerial
        if not p["frame_id"]:
            p["frame_id"] = env.cfg.frame_id if self.aerial else "base_link"
        t = env.cfg.topics
        self.types = M.RosTypes()
        self.pubs = {
            "color": self.create_publisher(Image, t.color, qos_profile_sensor_data),
            "depth": self.create_publisher(Image, t.depth, qos_profile_sensor_data),
            "depth_info": self.create_publisher(CameraInfo, t.camera_info, qos_profile_sensor_data),
            "color_info": self.create_publisher(CameraInfo, t.color.rsplit("/", 1)[0] + "/camera_info",
                                                qos_profile_sensor_data),
            "wrench": self.create_publisher(WrenchStamped, t.wrench, qos_profile_sensor_data),
            "joints": self.create_publisher(JointState, t.joint_states, 10),
            "ee_pose": self.create_publisher(PoseStamped, t.ee_pose if self.aerial and t.ee_pose else "~/ee_pose", 10),
            "success": self.create_publisher(Bool, "~/success", 10),
            "clock": self.create_publisher(Clock, "/clock", 10),
        }
        if self.aerial:
            self.create_subscription(MultiDOFJointTrajectory, t.command, self._on_multidof, 10)
        else:
            self.create_subscription(JointTrajectory, t.command, self._on_trajectory, 10)
        self.create_service(Trigger, "~/reset", self._on_reset)
        cam = self.env.sim.camera
        self.intrinsics = M.Intrinsics(cam.width, cam.height, np.array([[cam.fx, 0, cam.cx], [0, cam.fy, cam.cy],
                                                                        [0, 0, 1.0]]), np.zeros(5), "plumb_bob",
                                       p["camera_frame_id"])
        self.lock = threading.Lock()
        self.offset = START_NS  # sim time = offset + episode time; monotonic across episodes
        self.seed = int(p["seed"])
        self.received = self.rejected = 0
        self.recording = None  # a sim.env.Episode to append camera frames and paths to (sim-eval --ros)
        self.record_frames = False
        self.latency_ms: list[float] = []  # wall time from a cycle's sim time to its trajectory's arrival
        self._wall_at: dict[int, float] = {}  # sim stamp → wall time it was published (insertion = time order)
        self.initial: dict | None = None
        self.episode_start(self.seed)
        self._stop = threading.Event()
        self._paused = threading.Event()
        self.error: str | None = None  # set when the sim loop stopped on an unexpected error
        self._thread = threading.Thread(target=self._guarded_run, daemon=True)
        self._thread.start()

    # --- episodes ------------------------------------------------------------------------------------
    def now_ns(self) -> int:
        return self.offset + self.env.sim.time_ns

    def episode_start(self, seed: int) -> dict:
        with self.lock:
            if self.initial is not None:  # not the first episode: continue sim time
                self.offset = self.now_ns() + NS // 10
            self.seed = seed
            self.initial = self.env.task.reset(self.env.sim, self.env.kin, seed)
            self.success = False
        return self.initial

    def _on_reset(self, request, response):
        initial = self.episode_start(self.seed + 1)
        response.success, response.message = True, f"seed {self.seed}: {initial}"
        return response

    # --- commands --------------------------------------------------------------------------------------
    def _on_trajectory(self, msg) -> None:
        def targets():
            data = M.decode_joint_trajectory(msg)
            names = self.env.sim.joint_names
            if sorted(data.joint_names) != sorted(names) or len(data.time_from_start_ns) == 0:
                raise M.MessageError(f"joint_trajectory.joint_names: expected {names} with points, got "
                                     f"{data.joint_names} ({len(data.time_from_start_ns)} points)")
            order = [data.joint_names.index(n) for n in names]
            vel = data.velocities[:, order] if data.velocities is not None else None
            return data.stamp_ns, data.time_from_start_ns, data.positions[:, order], vel

        self._follow(targets)

    def _on_multidof(self, msg) -> None:
        def targets():
            data = M.decode_multidof_trajectory(msg)
            if data.poses.shape[1] != 1 or len(data.time_from_start_ns) == 0:
                raise M.MessageError(f"multi_dof_trajectory: expected one end-effector transform per point and at "
                                     f"least one point, got joint_names {data.joint_names} "
                                     f"({len(data.time_from_start_ns)} points)")
            return data.stamp_ns, data.time_from_start_ns, data.poses[:, 0, :3], None

        self._follow(targets)

    def _follow(self, targets) -> None:
        """Hand the decoded trajectory (``targets()`` → stamp, time_from_start, positions, velocities) to
        the controller with joint_trajectory_controller's semantics (sim/controllers.py); a message that
        does not decode or fit is dropped with a warning."""
        arrived = time.monotonic()
        try:
            stamp_ns, from_start, values, velocities = targets()
            if (np.diff(from_start) <= 0).any():
                raise M.MessageError(f"trajectory.points[].time_from_start: expected strictly increasing, got "
                                     f"{(from_start / 1e9).round(3).tolist()}")
            with self.lock:
                start = stamp_ns if stamp_ns > 0 else self.now_ns()
                times = start + from_start - self.offset
                self.env.sim.send(TimedTrajectory(times.astype(np.int64), values, velocities), self.env.sim.time_ns)
                sent = self._wall_at.get(int(stamp_ns))
        except (DiffusionPolicyRosError, ValueError) as e:
            self.rejected += 1
            self.get_logger().warning(f"{self.env.cfg.topics.command}: dropped: {e}", throttle_duration_sec=2.0)
            return
        self.received += 1
        if sent is not None:
            self.latency_ms.append((arrived - sent) * 1e3)

    # --- the sim loop ----------------------------------------------------------------------------------
    def _guarded_run(self) -> None:
        try:
            self._run()
        except Exception as e:  # noqa: BLE001 - report any failure (e.g. no OpenGL for rendering), never hang
            self.error = f"sim loop stopped: {e!r}"
            self.get_logger().fatal(self.error)

    def _run(self) -> None:
        sim, p = self.env.sim, self.p
        dt = int(round(NS / p["state_rate_hz"]))
        cam_every = max(1, int(round(p["state_rate_hz"] / p["camera_rate_hz"])))
        wall0, sim0, k = time.monotonic(), self.now_ns(), 0
        while not self._stop.is_set() and self.context.ok():
            if self._paused.is_set():
                time.sleep(0.01)
                wall0, sim0 = time.monotonic(), self.now_ns()
                continue
            try:
                with self.lock:
                    sim.advance(sim.time_ns + dt)
                    self.env.task.update(sim)
                    now = self.now_ns()
                    frame = sim.render() if k % cam_every == 0 else None
                    self.success = self.success or self.env.task.success(sim)
                    if frame is not None and self.recording is not None:
                        record_step(self.recording, self.env, frame[0], self.record_frames)
                        self.recording.steps += 1
                    joints, wrench = sim.joints(), sim.wrench()
                    pose = sim.ee_pose() if self.aerial else sim.flange_pose()
            except DiffusionPolicyRosError as e:
                self.get_logger().error(f"{e}; resetting the episode")
                self.episode_start(self.seed)
                continue
            self._wall_at[now] = time.monotonic()
            if len(self._wall_at) > 1000:
                for key in list(self._wall_at)[:500]:
                    del self._wall_at[key]
            self._publish(now, joints, wrench, pose, frame)
            k += 1
            ahead = wall0 + (now - sim0) / NS / p["real_time_factor"] - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)

    def _publish(self, now: int, joints, wrench, pose, frame) -> None:
        T, fid = self.types, self.p["frame_id"]
        clock = Clock()
        clock.clock = T.time(now)
        self.pubs["clock"].publish(clock)
        if len(joints):
            self.pubs["joints"].publish(M.encode_joint_state(T, self.env.sim.joint_names, joints, now))
        self.pubs["wrench"].publish(M.encode_wrench(T, wrench, now, "ft_sensor"))
        self.pubs["ee_pose"].publish(M.encode_pose(T, pose, now, fid))
        if frame is None:
            return
        rgb, depth = frame
        cf = self.p["camera_frame_id"]
        self.pubs["color"].publish(M.numpy_to_image(T, rgb, "rgb8", now, cf))
        self.pubs["depth"].publish(M.numpy_to_image(T, depth, "16UC1", now, cf))
        info = M.encode_camera_info(T, self.intrinsics, now)
        self.pubs["depth_info"].publish(info)
        self.pubs["color_info"].publish(info)
        self.pubs["success"].publish(Bool(data=bool(self.success)))

    def pause(self, paused: bool) -> None:
        (self._paused.set if paused else self._paused.clear)()

    def destroy_node(self):
        self._stop.set()
        self._thread.join(timeout=2.0)
        self.env.close()
        super().destroy_node()


def main(args=None) -> None:
    run_node(SimNode, NODE_NAME, args)


if __name__ == "__main__":
    main()
