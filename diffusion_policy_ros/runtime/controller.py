"""The deployment loop every driver shares: stamped sensor data in → safe, timed command trajectories out.

Drivers (the rclpy node, bag replay, the simulator) decode messages with ``io/msgs.py`` and call
``add_*`` with integer-ns stamps. A cycle has two halves, so that inference never holds up the
command stream:

  begin(now)   window.sample(now) → n_obs_steps synchronised samples (stale → hold); if a new chunk
               is due (``due``): perception → point clouds, images, filtered wrench, state;
               policy.predict → world-frame chunk (warm-started, guided, kept consistent with the
               running chunk by real-time chunking); embodiment → workspace clamp, IK for joint
               outputs. Returns a ``Plan`` (or a hold / "running" result).
  commit(plan, publish)  ActionScheduler → waypoints stamped from the *publish* time, read after
               inference (late ones dropped; an all-late chunk is not sent); safety → joint or
               Cartesian limits from the running command; velocities on every waypoint.

``step(now, publish)`` runs both at once. Asynchronous drivers call ``begin`` when ``due`` says the
running chunk's remaining time has fallen to the predicted latency (execution.mode async), let the
robot run meanwhile, and ``commit`` when the inference is done. No wall clock inside: times come
from the driver. ``add_*`` may run on one thread while a cycle runs on another (a lock guards the
window; inference runs outside it).
"""
from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from .. import constants as C
from ..constants import NS
from ..config import DeployConfig
from ..diffusion.chunking import prefix_weights
from ..diffusion.guidance import CostGuidance, GuidanceConfig, ReferenceCost, clearance_cost, workspace_cost
from ..embodiment.aerial import AerialConfig, AerialManipulator
from ..embodiment.arm import ArmTracker
from ..embodiment.base import AerialEmbodiment, ArmEmbodiment
from ..errors import ConfigError, NonFiniteActionError, ObservationError
from ..geometry import matrix_to_rot6d, quat_xyzw_to_rot6d, rot6d_to_matrix
from ..perception.force import WrenchProcessor
from ..perception.image import prepare_rgb
from ..perception.pointcloud import CameraModel, PointCloudPipeline
from .safety import (CartesianLimits, Limits, UnsafeCommandError, clamp_tool_to_box, enforce_cartesian_limits,
                     enforce_limits)
from .schedule import ActionScheduler, TimedTrajectory
from .window import ObservationWindow, StreamSpec

# Contact guard: motion below this (m) is no motion (the approach), and a waypoint counts as deeper than
# the stop point beyond it (FK round-off is ~1e-12 m).
CONTACT_MOTION_M = 1e-5


@dataclass
class Command:
    """What a driver sends: a trajectory in output space (joints, or end-effector [pos, rot6d, gripper])."""

    kind: str  # "trajectory" | "hold"
    names: list[str]  # joint names (joint outputs) or ["end_effector"]
    trajectory: TimedTrajectory
    t_obs_ns: int
    reason: str = ""
    # Aerial (px4 output): the vehicle's positions and the arm's joints over the same times (the base/arm
    # split of embodiment/aerial.py), from the measured end effector.
    vehicle: TimedTrajectory | None = None
    arm: TimedTrajectory | None = None


@dataclass
class CycleResult:
    # "command" | "hold" | "takeover" (a person drives: teleop) | "waiting" (nothing to send) | "running" (the current chunk continues) |
    # "late" (the chunk was entirely due before it could take over: not sent) | "dropped" (a plan from
    # before a reset/disable: never sent)
    status: str
    command: Command | None = None
    reason: str = ""
    inference_ms: float = 0.0
    perception_ms: float = 0.0
    latency_ms: float = 0.0  # observation (cycle start) → publish, in driver time
    position_clamped: int = 0
    velocity_limited: int = 0


@dataclass
class Plan:
    """One inference, not yet scheduled: ``commit`` stamps it from its publish time."""

    started_ns: int  # driver time the cycle began (its observation is the newest then)
    t_obs_ns: int
    chunk: np.ndarray  # (n_action, D) output-space waypoints
    full: np.ndarray  # (H, Da) world-frame prediction (warm start and real-time chunking of the next)
    generation: int  # the runtime's reset count when it began: a reset in between drops it
    inference_ms: float = 0.0
    perception_ms: float = 0.0
    frozen_steps: int = 0  # actions held to the running chunk (real-time chunking)


@dataclass
class RuntimeStats:
    cycles: int = 0
    commands: int = 0
    holds: int = 0
    rejected: dict[str, int] = field(default_factory=dict)  # per stream: bad or out-of-order samples
    unsynced: int = 0  # cycles skipped: colour and depth further apart than sync_slop
    late: int = 0  # chunks not sent: every waypoint was due before they could take over
    contact_stops: int = 0  # safety.max_contact_force exceeded: the running trajectory stopped
    contact_clipped: int = 0  # chunks held at the contact guard's stop point from some waypoint on


class PolicyRuntime:
    def __init__(self, policy, cfg: DeployConfig, arm=None, policy_cfg=None):
        """policy: ``Policy``; arm: ``ArmKinematics`` (needed for joint outputs, FK state, arm guidance).
        ``policy=None`` with ``policy_cfg`` (a PolicyConfig): observations only (``observe``), for dataset
        conversion, which must see data exactly as the live runtime does; ``step`` then refuses."""
        if policy is None and policy_cfg is None:
            raise ConfigError("PolicyRuntime: expected a policy or a policy config, got neither")
        arm = None if cfg.output == "command" else arm  # a command vector goes out without kinematics
        self.policy, self.cfg, self.arm = policy, cfg, arm
        self.pcfg = pc = policy.cfg if policy is not None else policy_cfg
        self.period = int(round(NS / cfg.timing.control_rate_hz))
        self.n_action = cfg.sampling.n_action_steps or pc.n_action_steps
        self.replan = cfg.sampling.replan_steps or self.n_action
        if self.replan > self.n_action:
            raise ConfigError(f"sampling.replan_steps: expected <= n_action_steps = {self.n_action} (the chunk "
                              f"would run out before the next one), got {self.replan}")
        self._last_plan_ns: int | None = None
        self._last_obs_ns: int | None = None  # the last committed chunk's observation time
        if cfg.execution.consistency == "prefix" and pc.max_prefix_steps == 0:
            raise ConfigError("execution.consistency: 'prefix' needs a checkpoint trained with prefix conditioning "
                              "(policy.max_prefix_steps > 0), got max_prefix_steps = 0; use rtc or inpaint")
        if self.n_action > pc.horizon - pc.n_obs_steps + 1:
            raise ConfigError(f"sampling.n_action_steps: expected <= horizon - n_obs_steps + 1 = "
                              f"{pc.horizon - pc.n_obs_steps + 1}, got {self.n_action}")
        if cfg.sampling.warm_start_index >= (cfg.sampling.num_inference_steps or pc.inference.num_inference_steps):
            raise ConfigError(f"sampling.warm_start_index: expected < num_inference_steps, got "
                              f"{cfg.sampling.warm_start_index}")
        self.joint_repr = pc.action.representation == C.ACTION_JOINT
        # command: the action vector as it is, one value per control period (no kinematics, no gripper)
        self.command_output = cfg.output == "command"
        self.ee_output = cfg.output not in ("joint_trajectory", "command")
        self.gripper = (cfg.embodiment.gripper_joint or None) if not self.command_output else None
        if self.command_output and not self.joint_repr:
            raise ConfigError(f"output: command sends the action vector as it is; expected "
                              f"policy.action.representation {C.ACTION_JOINT}, got {pc.action.representation}")
        if (not self.ee_output or self.joint_repr) and arm is None and not self.command_output:
            raise ConfigError(f"embodiment.kind: output '{cfg.output}' with '{pc.action.representation}' actions "
                              f"needs an arm (URDF kinematics), got {cfg.embodiment.kind}")
        if self.joint_repr and self.ee_output:
            raise ConfigError(f"output: joint-space actions can only go out as joint_trajectory or command, got "
                              f"{cfg.output}")
        # command output: the state vector comes from joint_states under these names (no URDF)
        self.joint_names = list(cfg.embodiment.joint_names) if self.command_output else \
            list(arm.joint_names) if arm is not None else []
        # Which observations come from which stream.
        self.keys = {t: [k for k, s in pc.observations.items() if s.type == t] for t in C.OBS_TYPES}
        if len(self.keys[C.OBS_LOW_DIM]) > 1 or len(self.keys[C.OBS_POINT_CLOUD]) > 1 or len(self.keys[C.OBS_RGB]) > 1:
            raise ConfigError(f"policy observations: the runtime feeds one camera, one state and one wrench, "
                              f"got {dict(self.keys)}")
        self._check_state_dim()
        cam = StreamSpec(int(cfg.timing.camera_latency_s * NS), int(cfg.timing.max_observation_age_s * NS))
        robot = StreamSpec(int(cfg.timing.robot_latency_s * NS), int(cfg.timing.max_observation_age_s * NS))
        streams = {}
        use_rgb_cloud = bool(self.keys[C.OBS_POINT_CLOUD]) and cfg.point_cloud.use_rgb
        if self.keys[C.OBS_RGB] or use_rgb_cloud:
            streams["color"] = cam
        if self.keys[C.OBS_POINT_CLOUD]:
            streams["depth"] = cam
        if self.keys[C.OBS_WRENCH]:
            streams["wrench"] = robot
        self.state_from_pose = bool(cfg.topics.ee_pose) and not self.joint_repr
        if self.keys[C.OBS_LOW_DIM] and self.state_from_pose:
            streams["ee_pose"] = robot
        self.needs_joints = arm is not None and (not self.ee_output or self.joint_repr or not self.state_from_pose)
        if self.command_output:
            self.needs_joints = bool(self.keys[C.OBS_LOW_DIM])
        if self.needs_joints or self.gripper:
            streams["joints"] = robot
        self.window = ObservationWindow(streams, pc.n_obs_steps, self.period)
        # A command value holds over the period that ends at its time (offset 1): waypoint 0 is what the
        # robot applies from the observation on, a position waypoint 0 is where it is at the observation.
        self.scheduler = ActionScheduler(self.period, int(cfg.timing.action_latency_s * NS),
                                         offset_steps=1.0 if self.command_output else 0.0,
                                         blend_steps=cfg.timing.blend_steps, ensemble=cfg.timing.ensemble)
        self.wrench = WrenchProcessor(cfg.force) if "wrench" in streams else None
        self.fault: str | None = None  # a latched safety stop (force limit); cleared on reset with observations
        self._contact_force = 0.0  # |force| of the latest wrench sample (safety.max_contact_force)
        # the contact guard while it holds: (stop value in output space, its end-effector position,
        # approach direction: unit vector, or None when the command was not moving)
        self._contact: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None
        self._tare_pending = False  # force.tare_on_enable: zeroing on the first samples after a reset
        self._frames: dict[tuple[str, str], np.ndarray | None] = {}  # wrench-frame transforms (None: joint-dependent)
        self._pose_history: deque = deque(maxlen=64)  # (stamp, ee position): the aerial split's velocity
        self.last_observation = None  # (policy observation, raw samples) of the last cycle that observed
        self.last_prediction = None  # its full-horizon world-frame prediction
        self.last_guidance_cost = None  # guidance cost of the last chunk (guided or best-of-N), else None
        self.camera: CameraModel | None = None
        self.cloud: PointCloudPipeline | None = None
        self._cloud_cache: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()
        self._latest: dict[str, tuple[int, np.ndarray]] = {}
        self._prev: tuple[int, np.ndarray] | None = None  # (t_obs, full-horizon world prediction) for warm start
        self._generation = 0
        self._latencies: deque[int] = deque(maxlen=cfg.execution.latency_window)
        self._commanding = False
        self._teleop = False  # a person drives (``teleop``) until ``resume``
        self._gripper_cmd = 0.0
        self.stats = RuntimeStats(rejected={k: 0 for k in streams})
        self.limits = self._limits() if not self.ee_output and not self.command_output else None
        sc = cfg.safety
        self.cartesian = CartesianLimits(sc.max_linear_velocity, sc.max_angular_velocity, sc.max_linear_acceleration,
                                         sc.max_angular_acceleration) if self.ee_output else None
        self.tracker = None
        if arm is not None:
            self.tracker = ArmTracker(arm, dt=self.period / NS, damping=cfg.embodiment.ik_damping)
        # px4 output: the aerial model that splits end-effector targets into vehicle and arm commands.
        self.aerial = AerialManipulator(AerialConfig(dt=self.period / NS)) if cfg.output == "px4" else None
        # The embodiment whose tracking cost guides sampling (embodiment/base.py protocol).
        self.embodiment = None
        g = cfg.guidance
        uses_flight = g.embodiment_weight > 0 or g.joint_limit_weight > 0 or (
            g.clearance_weight > 0 and g.clearance_on == "flight")
        if (g.strength > 0 or g.candidates > 1) and uses_flight and not self.joint_repr:
            if arm is not None:
                self.embodiment = ArmEmbodiment(arm, dt=self.period / NS)
            elif cfg.embodiment.kind == "aerial":
                if not self.state_from_pose:
                    raise ConfigError("guidance: the aerial embodiment's cost needs the end-effector pose; set "
                                      "topics.ee_pose")
                self.embodiment = AerialEmbodiment(AerialConfig(dt=self.period / NS))

    # --- set-up checks -----------------------------------------------------------------------------
    def _check_state_dim(self) -> None:
        pc = self.pcfg
        if not self.keys[C.OBS_LOW_DIM]:
            return
        key = self.keys[C.OBS_LOW_DIM][0]
        got = pc.observations[key].shape[-1]
        if self.command_output and not self.joint_names:
            raise ConfigError(f"embodiment.joint_names: output command reads the state '{key}' from joint_states "
                              f"under these names; expected {pc.observations[key].shape[-1]} names, got none")
        if self.joint_repr:
            expected = (len(self.joint_names) + (1 if self.gripper else 0),)
        else:
            expected = (C.EE_POSE_DIM, C.EE_POSE_DIM + 1)
        if got not in expected:
            raise ConfigError(f"policy observation '{key}': the runtime builds {' or '.join(map(str, expected))} "
                              f"values ({'joints' if self.joint_repr else 'pose + 6-D rotation [+ gripper]'}), "
                              f"the checkpoint expects {got}")

    def _limits(self) -> Limits:
        lim = self.arm.limits
        lo, hi, vel = list(lim.lower), list(lim.upper), list(lim.max_velocity * self.cfg.safety.velocity_scale)
        if self.gripper:
            e = self.cfg.embodiment
            lo.append(min(e.gripper_open, e.gripper_closed))
            hi.append(max(e.gripper_open, e.gripper_closed))
            vel.append(e.gripper_max_velocity)
        return Limits(np.array(lo), np.array(hi), np.array(vel))

    @property
    def action_has_gripper(self) -> bool:
        """End-effector actions carry a gripper channel after the pose."""
        return not self.joint_repr and self.pcfg.action.dim > C.EE_POSE_DIM

    @property
    def output_names(self) -> list[str]:
        if self.ee_output:
            return ["end_effector"]
        if self.command_output:
            return ["command"]
        return self.joint_names + ([self.gripper] if self.gripper else [])

    @property
    def joint_state_names(self) -> list[str]:
        """The joint_states entries the runtime reads, in this order."""
        return (self.joint_names if self.needs_joints else []) + ([self.gripper] if self.gripper else [])

    # --- inputs (each raises ObservationError for bad data; the driver logs and drops) -----------------
    def _add(self, stream: str, stamp_ns: int, value) -> None:
        if stream not in self.window.buffers:
            return  # not used by this policy
        with self._lock:
            try:
                self.window.add(stream, stamp_ns, value)
            except ObservationError:
                self.stats.rejected[stream] += 1
                raise
            self._latest[stream] = (int(stamp_ns), value)

    def add_color(self, stamp_ns: int, rgb: np.ndarray) -> None:
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ObservationError(f"color: expected an (H, W, 3) uint8 image, got {rgb.dtype} {rgb.shape}")
        self._add("color", stamp_ns, rgb)

    def add_depth(self, stamp_ns: int, depth_m: np.ndarray) -> None:
        if depth_m.ndim != 2:
            raise ObservationError(f"depth: expected an (H, W) image in metres, got shape {depth_m.shape}")
        if self.camera is not None and depth_m.shape != (self.camera.height, self.camera.width):
            raise ObservationError(f"depth: expected {self.camera.height}x{self.camera.width} (camera_info), "
                                   f"got {depth_m.shape[0]}x{depth_m.shape[1]}")
        self._add("depth", stamp_ns, depth_m)

    def set_camera(self, intrinsics) -> None:
        """camera_info of the depth image (aligned to colour); rebuilds the point-cloud pipeline on change."""
        cam = CameraModel.from_intrinsics(intrinsics)
        if self.camera is None or cam != self.camera:
            pcfg = dataclasses.replace(self.cfg.point_cloud, num_points=self._num_points())
            with self._lock:
                self.camera, self.cloud = cam, PointCloudPipeline(pcfg, cam)
                self._cloud_cache.clear()

    def _num_points(self) -> int:
        keys = self.keys[C.OBS_POINT_CLOUD]
        return self.pcfg.observations[keys[0]].shape[0] if keys else self.cfg.point_cloud.num_points

    def add_wrench(self, stamp_ns: int, wrench: np.ndarray, frame_id: str = "") -> None:
        """A wrench sample: filtered into the window when the policy reads force, and always checked
        against force.force_limit / torque_limit (a sample beyond them latches ``fault``: every cycle
        holds until ``reset(clear_observations=True)``, which drivers call on enable). ``frame_id``: the
        message's frame; transformed into ``force.frame`` when that is set and differs."""
        target = self.cfg.force.frame
        if target and frame_id and frame_id != target:
            wrench = self._wrench_in(np.asarray(wrench, np.float64).reshape(-1), frame_id, target)
        if self.wrench is None:
            w = np.asarray(wrench, np.float64).reshape(-1)
            if w.shape != (6,) or not np.isfinite(w).all():
                raise ObservationError(f"wrench: expected 6 finite values, got {w.tolist()}")
            f = self.cfg.force
            if np.any(np.abs(w[:3]) > f.force_limit) or np.any(np.abs(w[3:]) > f.torque_limit):
                self._force_fault(w)
            self._contact_force = float(np.linalg.norm(w[:3]))
            return
        orientation = None
        if self.cfg.force.tool_mass > 0:
            orientation = self._sensor_orientation()
        with self._lock:
            try:
                filtered = self.wrench.add(int(stamp_ns), wrench, orientation)
            except ObservationError:
                self.stats.rejected["wrench"] += 1
                raise
            taring = self._tare_pending
            if taring and self.wrench.samples >= self.cfg.force.tare_samples:
                self.wrench.tare()
                self._tare_pending = False
        if self.wrench.saturated:
            self._force_fault(np.asarray(wrench, np.float64).reshape(-1))
        if taring:  # the window only ever holds tared values
            return
        self._contact_force = float(np.linalg.norm(filtered[:3]))
        self._add("wrench", stamp_ns, filtered.astype(np.float32))

    def add_observed_wrench(self, stamp_ns: int, wrench: np.ndarray) -> None:
        """A wrench as the policy observed it (filtered and tared already: what a dataset stores),
        straight into the window; for rebuilding observations from a dataset, not for live sensors."""
        w = np.asarray(wrench, np.float32).reshape(-1)
        if w.shape != (6,) or not np.isfinite(w).all():
            raise ObservationError(f"wrench: expected 6 finite values, got {w.tolist()}")
        self._add("wrench", stamp_ns, w)

    def add_joints(self, stamp_ns: int, positions: np.ndarray) -> None:
        """Positions in the order of ``joint_state_names``."""
        q = np.asarray(positions, np.float64)
        if q.shape != (len(self.joint_state_names),) or not np.isfinite(q).all():
            raise ObservationError(f"joint_states: expected {len(self.joint_state_names)} finite positions for "
                                   f"{self.joint_state_names}, got {q.tolist()}")
        self._add("joints", stamp_ns, q)

    def add_ee_pose(self, stamp_ns: int, pose7: np.ndarray) -> None:
        """End-effector pose [x, y, z, qx, qy, qz, qw] in the base frame."""
        p = np.asarray(pose7, np.float64)
        if p.shape != (7,) or not np.isfinite(p).all():
            raise ObservationError(f"ee_pose: expected 7 finite values, got {p.tolist()}")
        self._add("ee_pose", stamp_ns, np.concatenate((p[:3], quat_xyzw_to_rot6d(p[3:]))))
        with self._lock:
            self._pose_history.append((int(stamp_ns), p[:3].copy()))

    def _sensor_orientation(self):
        """Wrist orientation (3x3, base frame) from the latest joints, for gravity compensation."""
        if "ee_pose" in self._latest:
            return rot6d_to_matrix(torch.as_tensor(self._latest["ee_pose"][1][3:9])).numpy()
        if "joints" in self._latest and self.arm is not None:
            pose = self.arm.fk(torch.as_tensor(self._latest["joints"][1][:self.arm.dof]))
            return rot6d_to_matrix(pose[3:9]).numpy()
        raise ObservationError("wrench: gravity compensation needs the wrist orientation (joint_states or "
                               "ee_pose), none received yet")

    def _wrench_in(self, w: np.ndarray, source: str, target: str) -> np.ndarray:
        """The wrench w (in ``source``) expressed in ``target`` (both URDF links): f' = R f, τ' = R τ + p × f'."""
        if self.arm is None:
            raise ObservationError(f"wrench.header.frame_id '{source}': force.frame '{target}' needs the arm's "
                                   f"URDF to transform it (embodiment.kind arm)")
        if w.shape != (6,):
            raise ObservationError(f"wrench: expected 6 values, got {w.tolist()}")
        key = (source, target)
        with self._lock:
            q = self._latest["joints"][1][:self.arm.dof] if "joints" in self._latest else np.zeros(self.arm.dof)

        def relative(joints) -> np.ndarray:
            try:
                return np.linalg.inv(self.arm.link_pose(joints, target)) @ self.arm.link_pose(joints, source)
            except ConfigError as e:
                raise ObservationError(f"wrench.header.frame_id '{source}' → force.frame '{target}': {e}") from None

        if key not in self._frames:
            # Both links past the same joints (a sensor on the flange): a constant transform, kept; else
            # it is recomputed from the latest joints at every sample (None marks that).
            t = relative(q)
            q2 = np.random.default_rng(0).uniform(self.arm.limits.lower, self.arm.limits.upper)
            self._frames[key] = t if np.allclose(relative(q2), t, atol=1e-9) else None
        t = self._frames[key]
        if t is None:
            t = relative(q)
        r, p = t[:3, :3], t[:3, 3]
        f = r @ w[:3]
        return np.concatenate((f, r @ w[3:6] + np.cross(p, f)))

    def _force_fault(self, w: np.ndarray) -> None:
        if self.fault is None:
            f = self.cfg.force
            self.fault = (f"force limit: wrench {np.round(w, 1).tolist()} exceeds force.force_limit "
                          f"{f.force_limit:g} N or force.torque_limit {f.torque_limit:g} N·m on an axis")

    def tare(self) -> np.ndarray:
        with self._lock:
            return self.wrench.tare() if self.wrench is not None else np.zeros(6)

    def ages_ms(self, now_ns: int) -> dict[str, float | None]:
        with self._lock:
            return {k: (None if a is None else a / 1e6) for k, a in self.window.ages_ns(now_ns).items()}

    # --- one control cycle -----------------------------------------------------------------------------
    def reset(self, clear_observations: bool = False) -> None:
        """Forget the running trajectory (after disable): the next chunk starts fresh. With
        ``clear_observations`` also the buffered samples, for when time restarts (a new sim episode, a
        looped bag, a clock that jumped back): older stamps would otherwise be rejected as out of order."""
        self.scheduler.reset()
        self._prev, self._commanding, self._teleop = None, False, False
        self._last_plan_ns, self._last_obs_ns = None, None
        self._contact, self._contact_force = None, 0.0
        self._generation += 1
        if clear_observations:
            self.fault = None
            self._tare_pending = self.wrench is not None and self.cfg.force.tare_on_enable
            with self._lock:
                self._pose_history.clear()
                self.window.clear()
                self._latest.clear()
                self._cloud_cache.clear()
                if self.wrench is not None:
                    self.wrench.restart()

    def _sample(self, now_ns: int):
        """The window's n_obs_steps samples at now_ns; ObservationError if stale or the camera is unknown."""
        with self._lock:
            if self._tare_pending:
                raise ObservationError(f"force.tare_on_enable: taring the force/torque sensor "
                                       f"({self.wrench.samples}/{self.cfg.force.tare_samples} samples)")
            samples, t_obs = self.window.sample(now_ns)
            stamps = dict(self.window.last_stamps)
            if self.keys[C.OBS_POINT_CLOUD] and self.cloud is None:
                raise ObservationError("camera_info: none received yet")
            return samples, stamps, t_obs, self.cloud

    def _check_sync(self, stamps) -> None:
        if "color" in stamps and "depth" in stamps:
            gap = int(np.max(np.abs(stamps["color"] - stamps["depth"])))
            if gap > self.cfg.timing.sync_slop_s * NS:
                self.stats.unsynced += 1
                raise ObservationError(f"color/depth: frames {gap / 1e6:.1f} ms apart, expected <= "
                                       f"{self.cfg.timing.sync_slop_s * 1e3:.1f} ms (sync_slop_s)")

    def observe(self, now_ns: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], int]:
        """The policy's observation at now_ns, built as ``step`` builds it: (obs, raw samples, t_obs).
        Raises ObservationError (stale or missing streams, unsynced frames, bad data)."""
        samples, stamps, t_obs, cloud_pipe = self._sample(now_ns)
        self._check_sync(stamps)
        return self._observation(samples, stamps, cloud_pipe), samples, t_obs

    def measured_action(self, samples: dict[str, np.ndarray]) -> np.ndarray:
        """(To, Da) the robot's measured state in action space (absolute): joints [+ gripper], or the
        end-effector pose [+ gripper in [0, 1]]. Dataset conversion takes the next step's as the action."""
        return self._state(samples, self.pcfg.action.dim)

    # --- timing ------------------------------------------------------------------------------------
    def predicted_latency_ns(self) -> int:
        """Cycle start → publish, predicted: a high percentile of recent inferences (execution.*)."""
        e = self.cfg.execution
        if not self._latencies:
            return int(e.initial_latency_s * NS)
        return int(np.percentile(np.asarray(self._latencies, np.float64), e.latency_percentile))

    def due(self, now_ns: int, t_obs_ns: int | None = None) -> bool:
        """Whether a new inference should begin at ``now_ns`` on the observation taken at ``t_obs_ns``.
        sync: every replan period; async: when the running trajectory's remaining time falls to the
        predicted latency + margin, or after sampling.replan_steps periods (> 0). Periods are counted
        in observation time when it is known: a chunk is planned from an observation replan periods
        newer than the last one's, as in the demonstrations, never from one up to a frame older (a
        timer ticking faster than the camera would otherwise start 1.5 periods on: measured on press
        at 100 ms of latency, 4/20 against 17/20 counted in observation time, tuning seeds 7000-7019)."""
        cur = self.scheduler.current
        if not self._commanding or self._last_plan_ns is None or cur is None:
            return True
        if t_obs_ns is not None and self._last_obs_ns is not None and t_obs_ns >= self._last_obs_ns:
            elapsed = t_obs_ns - self._last_obs_ns
        else:
            elapsed = now_ns - self._last_plan_ns
        if self.cfg.execution.mode == "sync":
            return elapsed >= (self.replan - 0.5) * self.period
        if cur.end_ns - now_ns <= self.predicted_latency_ns() + int(self.cfg.execution.margin_s * NS):
            return True
        r = self.cfg.sampling.replan_steps
        return r > 0 and elapsed >= (r - 0.5) * self.period

    # --- one control cycle -----------------------------------------------------------------------------
    def step(self, now_ns: int, publish_ns: int | None = None) -> CycleResult:
        """``begin`` and, if it planned, ``commit`` at ``publish_ns`` (default ``now_ns``: lockstep)."""
        out = self.begin(now_ns)
        if isinstance(out, CycleResult):
            return out
        return self.commit(out, now_ns if publish_ns is None else publish_ns)

    def begin(self, now_ns: int) -> "Plan | CycleResult":
        """Start of a cycle: a hold (stale or bad data), "running" (no new chunk due) or a ``Plan``."""
        if self.policy is None:
            raise ConfigError("PolicyRuntime.step: this runtime was built without a policy (observations only)")
        self.stats.cycles += 1
        if self.fault is not None:
            return self.hold(now_ns, self.fault)
        try:
            samples, stamps, t_obs, cloud_pipe = self._sample(now_ns)
        except ObservationError as e:
            return self.hold(now_ns, str(e))
        if not self.due(now_ns, t_obs):
            return CycleResult("running", reason="executing the current chunk")
        generation = self._generation
        t0 = time.perf_counter()
        try:
            self._check_sync(stamps)
            obs = self._observation(samples, stamps, cloud_pipe)
        except ObservationError as e:
            return self.hold(now_ns, str(e))
        self.last_observation = (obs, samples)  # for a live view (runtime/live_view.py)
        t1 = time.perf_counter()
        try:
            chunk, full, frozen = self._infer(obs, samples, t_obs, now_ns)
            self.last_prediction = full
            t2 = time.perf_counter()
            values = self._to_output(chunk, samples)
        except (NonFiniteActionError, UnsafeCommandError, ObservationError) as e:
            self.scheduler.reset()
            return self.hold(now_ns, str(e))
        return Plan(int(now_ns), int(t_obs), values, full, generation, (t2 - t1) * 1e3, (t1 - t0) * 1e3, frozen)

    def commit(self, plan: Plan, publish_ns: int) -> CycleResult:
        """The plan as a command published at ``publish_ns`` (the driver's clock after inference)."""
        publish_ns = int(publish_ns)
        result = CycleResult("command", inference_ms=plan.inference_ms, perception_ms=plan.perception_ms,
                             latency_ms=(publish_ns - plan.started_ns) / 1e6)
        if plan.generation != self._generation:
            return CycleResult("dropped", reason="planned before a reset or disable; not sent")
        self._latencies.append(max(publish_ns - plan.started_ns, 0))
        anchor = self.scheduler.anchor_ns(plan.t_obs_ns, publish_ns)  # the plan's step 0, as scheduled
        try:
            traj = self.scheduler.schedule(plan.chunk, plan.t_obs_ns, publish_ns)
            if traj is None:
                self.stats.late += 1
                result.status = "late"
                result.reason = (f"chunk late: every waypoint was due before publish + action latency "
                                 f"({result.latency_ms:.0f} ms after its observation); the running trajectory "
                                 f"continues")
                return result
            traj = self._make_safe(traj, publish_ns, result)
            traj, clipped = self._clip_contact(traj)
        except (UnsafeCommandError, ObservationError) as e:
            self.scheduler.reset()
            return self.hold(publish_ns, str(e))
        # a clipped chunk is not what the prediction says: the next one is not held to it (RTC, warm start)
        self._prev = None if clipped else (anchor, plan.full)
        self._last_plan_ns, self._last_obs_ns = plan.started_ns, plan.t_obs_ns
        self.scheduler.current = traj
        self._commanding = True
        self.stats.commands += 1
        result.command = self._split(Command("trajectory", self.output_names, traj, plan.t_obs_ns))
        return result

    def _split(self, cmd: Command) -> Command:
        """px4 output: add the vehicle and arm trajectories the aerial model makes of the end-effector one."""
        if self.aerial is None:
            return cmd
        with self._lock:
            history = list(self._pose_history)
        if not history:
            return cmd
        (t1, ee), vel = history[-1], None
        older = [(t, p) for t, p in history if t1 - t >= self.period // 2]  # velocity over ≥ half a period
        if older:
            t0, p0 = older[-1]
            vel = (ee - p0) * (NS / (t1 - t0))
        base, q = self.aerial.split(cmd.trajectory.values[:, :3], ee, vel)
        cmd.vehicle = TimedTrajectory(cmd.trajectory.times_ns, base)
        cmd.arm = TimedTrajectory(cmd.trajectory.times_ns, q)
        return cmd

    def _observation(self, samples, stamps, cloud_pipe) -> dict[str, np.ndarray]:
        pc, obs = self.pcfg, {}
        for key in self.keys[C.OBS_POINT_CLOUD]:
            clouds, cache = [], {}
            for i, t in enumerate(stamps["depth"]):
                t = int(t)
                if t not in self._cloud_cache:
                    rgb = samples["color"][i] if self.cfg.point_cloud.use_rgb else None
                    self._cloud_cache[t] = cloud_pipe(samples["depth"][i], rgb, seed=0)
                cache[t] = self._cloud_cache[t]
                clouds.append(cache[t])
            self._cloud_cache = cache  # keep only what the next cycle can reuse
            obs[key] = np.stack(clouds).astype(np.float32)
        for key in self.keys[C.OBS_RGB]:
            h, w = pc.observations[key].shape[:2]
            obs[key] = np.stack([prepare_rgb(img, h, w) for img in samples["color"]])
        for key in self.keys[C.OBS_WRENCH]:
            obs[key] = samples["wrench"].astype(np.float32)
        for key in self.keys[C.OBS_LOW_DIM]:
            obs[key] = self._state(samples, pc.observations[key].shape[-1]).astype(np.float32)
        return obs

    def _gripper_state(self, samples) -> np.ndarray:
        """(To, 1) in [0, 1] (0 open, 1 closed) from the gripper joint, else the last command."""
        n = self.pcfg.n_obs_steps
        if not self.gripper:
            return np.full((n, 1), self._gripper_cmd)
        e = self.cfg.embodiment
        g = (samples["joints"][:, -1] - e.gripper_open) / (e.gripper_closed - e.gripper_open)
        return np.clip(g, 0.0, 1.0)[:, None]

    def _state(self, samples, dim: int) -> np.ndarray:
        if self.joint_repr:
            return samples["joints"]
        if self.state_from_pose:
            pose = samples["ee_pose"]
        else:
            pose = self.arm.fk(torch.as_tensor(samples["joints"][:, :self.arm.dof])).numpy()
        return np.concatenate((pose, self._gripper_state(samples)), axis=1) if dim > C.EE_POSE_DIM else pose

    def _infer(self, obs, samples, t_obs: int, now_ns: int) -> tuple[np.ndarray, np.ndarray, int]:
        """→ (executable chunk, full-horizon prediction, number of actions frozen to the running chunk)."""
        s, pc = self.cfg.sampling, self.pcfg
        kwargs = {"seed": s.seed if s.seed >= 0 else None, "full_horizon": True}
        prev, running = self._prev, self.scheduler.current  # read once: the contact guard may change them
        if s.warm_start_index > 0 and prev is not None:
            shift = int(round((t_obs - prev[0]) / self.period))
            if 0 <= shift < pc.horizon:
                kwargs.update(warm_start=prev[1], shift=shift, start_index=s.warm_start_index)
        frozen = 0
        if self.cfg.execution.consistency != "none" and self._commanding and prev is not None \
                and running is not None:
            prefix, weights = self._chunk_prefix(t_obs, now_ns, prev, running)
            if weights.any():
                kwargs.update(prefix=prefix, prefix_weights=weights, prefix_mode=self.cfg.execution.consistency,
                              prefix_max_weight=self.cfg.execution.rtc_max_weight)
                frozen = int(np.count_nonzero(weights >= 1.0))
        g = self.cfg.guidance
        batch = self._candidates(obs)
        guidance = self._guidance(obs, samples, batch)
        if guidance is not None and g.strength > 0:
            kwargs.update(guidance=guidance, substeps=g.substeps)
        self.last_guidance_cost = None
        if guidance is None or g.candidates == 1:
            full = self.policy.predict(obs, **kwargs)
            if guidance is not None and guidance.last_cost is not None:  # at the last guided step
                self.last_guidance_cost = float(guidance.last_cost.mean())
        else:  # best of N: N chunks for the same observation, the lowest guidance cost is sent
            for key in ("warm_start", "prefix"):
                if key in kwargs:
                    kwargs[key] = np.repeat(kwargs[key][None], g.candidates, 0)
            full_n = self.policy.predict(batch, **kwargs)
            with torch.no_grad():
                cost = guidance.total_cost(torch.as_tensor(full_n, dtype=torch.float64))
            full = full_n[int(torch.argmin(cost))]
            self.last_guidance_cost = float(cost.min())
        start = pc.n_obs_steps - 1
        return full[start:start + self.executed_steps()], full, frozen

    def executed_steps(self) -> int:
        """Waypoints sent per chunk. async: n_action_steps plus the steps the predicted latency covers
        (they are due before the chunk lands and dropped), up to the horizon, so a chunk still runs
        n_action_steps once it takes over, whatever the latency; sync: n_action_steps."""
        if self.cfg.execution.mode != "async" or not self.cfg.execution.extend_by_latency:
            return self.n_action
        pc = self.pcfg
        late = int(np.ceil((self.predicted_latency_ns() + self.scheduler.latency) / self.period))
        return min(self.n_action + late, pc.horizon - pc.n_obs_steps + 1)

    def _chunk_prefix(self, t_obs: int, now_ns: int, prev, running) -> tuple[np.ndarray, np.ndarray]:
        """Real-time chunking's target and weights for a chunk observed at ``t_obs`` and begun at
        ``now_ns``: the running chunk's world-frame plan at the new chunk's step times, weight 1 on the
        steps that execute before the new chunk can take over (predicted latency + action latency),
        decaying over the rest of the running trajectory, 0 after it and beyond the running plan's last
        step (no plan there to hold to) (diffusion/chunking.py)."""
        pc = self.pcfg
        # the steps' due times, as the scheduler stamps them (its offset: 1 for command outputs)
        steps = np.round((np.arange(pc.horizon) - (pc.n_obs_steps - 1) + self.scheduler.offset) * self.period
                         ).astype(np.int64)
        t_prev, full_prev = prev
        new_t, old_t = int(t_obs) + steps, int(t_prev) + steps
        prefix = np.stack([np.interp(new_t, old_t, full_prev[:, j]) for j in range(full_prev.shape[1])], -1)
        frozen_until = self.scheduler.handover_ns(now_ns + self.predicted_latency_ns()) + self.scheduler.lead
        overlap_until = min(running.end_ns, int(old_t[-1]))
        weights = prefix_weights(new_t, frozen_until, max(overlap_until, frozen_until), self.period,
                                 self.cfg.execution.consistency)
        weights[new_t > old_t[-1]] = 0.0
        return prefix.astype(np.float32), weights

    def _candidates(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The observation repeated for best-of-N sampling (guidance.candidates), or as is."""
        n = self.cfg.guidance.candidates
        return {k: np.repeat(v[None], n, 0) for k, v in obs.items()} if n > 1 else obs

    def _guidance(self, obs, samples, batch):
        """The guidance hook for this cycle's observation (its costs also score best-of-N candidates);
        ``batch``: the observation as sampled (repeated for candidates)."""
        g = self.cfg.guidance
        if g.strength == 0 and g.candidates == 1:
            return None
        costs = []
        start = self.pcfg.n_obs_steps - 1
        if g.workspace_weight > 0 and not self.joint_repr:
            ws = workspace_cost(self.cfg.safety.workspace_min, self.cfg.safety.workspace_max)
            costs.append((g.workspace_weight, lambda traj: ws(traj[:, start:])))
        n = self.executed_steps()  # every waypoint that will be sent, the latency extension included
        state = emb = None
        if self.embodiment is not None:
            joints = torch.as_tensor(samples["joints"][-1:, :self.arm.dof]) if self.arm is not None else None
            pose = torch.as_tensor(samples["ee_pose"][-1:]) if "ee_pose" in samples else None
            velocity = None  # end-effector velocity from the last two samples (an aerial base's momentum)
            if pose is not None and len(samples["ee_pose"]) > 1:
                velocity = torch.as_tensor((samples["ee_pose"][-1:, :3] - samples["ee_pose"][-2:-1, :3])
                                           * (NS / self.period))
            state, emb = self.embodiment.state(pose, joints, velocity), self.embodiment
            if g.embodiment_weight > 0 and g.embodiment_target == "intent":
                costs.append((g.embodiment_weight, ReferenceCost(lambda traj, ref: emb.cost(
                    traj[:, start:start + n], state, ref[:, start:start + n]).to(traj.dtype))))
            elif g.embodiment_weight > 0:
                costs.append((g.embodiment_weight,
                              lambda traj: emb.cost(traj[:, start:start + n], state).to(traj.dtype)))
            if g.joint_limit_weight > 0 and hasattr(emb, "joint_limit_cost"):
                costs.append((g.joint_limit_weight, lambda traj: emb.joint_limit_cost(
                    traj[:, start:start + n], state, g.joint_limit_margin).to(traj.dtype)))
        if g.clearance_weight > 0 and self.keys[C.OBS_POINT_CLOUD] and not self.joint_repr:
            cloud = torch.as_tensor(obs[self.keys[C.OBS_POINT_CLOUD][0]][-1, :, :3])
            if g.clearance_on == "flight" and emb is not None:
                here = torch.as_tensor(self._state(samples, C.EE_POSE_DIM)[-1, :3], dtype=cloud.dtype)
                near = clearance_cost(cloud[(cloud - here).norm(dim=-1) > g.clearance_self_radius],
                                      g.clearance_margin, g.clearance_goal_radius)

                def flight_clearance(traj):  # body points of the predicted flight; the plan's end as the goal
                    body = emb.rollout(traj[:, start:start + n], state)["body"].flatten(1, 2)
                    return near(body, traj[:, start + n - 1, :3])

                costs.append((g.clearance_weight, lambda traj: flight_clearance(traj).to(traj.dtype)))
            else:
                near = clearance_cost(cloud, g.clearance_margin)
                costs.append((g.clearance_weight, lambda traj: near(traj[:, start:start + n])))
        if not costs:
            return None
        tensors, _ = self.policy.validate(batch)
        gcfg = GuidanceConfig(strength=g.strength, schedule=g.schedule, clip_position=g.clip_position,
                              clip_rotation=g.clip_rotation, iterations=g.iterations, last_steps=g.last_steps)
        return CostGuidance(self.policy.model, {k: v.clone() for k, v in tensors.items()}, costs, gcfg)

    def _to_output(self, chunk: np.ndarray, samples) -> np.ndarray:
        """World-frame action chunk → output-space waypoints (joints [+ gripper] or EE [pos, rot6d, gripper])."""
        if self.joint_repr:
            return chunk
        ee = chunk.astype(np.float64).copy()
        sf = self.cfg.safety
        ee[:, :C.EE_POSE_DIM], _ = clamp_tool_to_box(ee[:, :C.EE_POSE_DIM], sf.workspace_min, sf.workspace_max,
                                                     sf.tcp_offset)
        grip = np.clip(ee[:, C.EE_POSE_DIM], 0.0, 1.0) if ee.shape[1] > C.EE_POSE_DIM else None
        if grip is not None:
            self._gripper_cmd = float(grip[0])
        if self.ee_output:
            return ee if grip is None else np.concatenate((ee[:, :C.EE_POSE_DIM], grip[:, None]), axis=1)
        q0 = torch.as_tensor(samples["joints"][-1, :self.arm.dof])[None]
        with torch.no_grad():
            q = self.tracker.rollout(torch.as_tensor(ee[None, :, :C.EE_POSE_DIM]), q0)[0].numpy()
        if self.gripper:
            e = self.cfg.embodiment
            g = grip if grip is not None else np.zeros(len(q))
            q = np.concatenate((q, (e.gripper_open + g * (e.gripper_closed - e.gripper_open))[:, None]), axis=1)
        return q

    def _make_safe(self, traj: TimedTrajectory, publish_ns: int, result: CycleResult) -> TimedTrajectory:
        """Limits counted from where the controller is commanded at publish time (continuity of the
        command), or from the measured state when nothing runs; joint waypoints get velocities."""
        if not np.isfinite(traj.values).all():
            raise UnsafeCommandError("trajectory: expected finite values, got NaN/inf; nothing is sent")
        running = self.scheduler.current
        if self.command_output:  # the values as they are, within ±command_limit
            lim = self.cfg.safety.command_limit
            safe = TimedTrajectory(traj.times_ns, np.clip(traj.values, -lim, lim))
            result.position_clamped = bool(np.any(np.abs(traj.values) > lim))
            return safe
        if self.limits is not None:
            current = running.at(publish_ns) if running is not None else self._latest_joints()
            safe, report = enforce_limits(traj, current, publish_ns, self.limits)
            first_velocity = running.sample(int(safe.times_ns[0]))[1] if running is not None else None
            safe = safe.with_velocities(first_velocity)
        else:
            if running is not None:
                current, v = running.sample(publish_ns)
                velocity = np.concatenate((v[:3], np.zeros(3)))
            else:
                current, velocity = self._measured_pose(), None
            safe, report = enforce_cartesian_limits(traj, current, publish_ns, self.cartesian, velocity)
            # The workspace box wins over the limiter (an acceleration limit may overshoot a target).
            sf = self.cfg.safety
            safe.values[:, :C.EE_POSE_DIM], _ = clamp_tool_to_box(safe.values[:, :C.EE_POSE_DIM], sf.workspace_min,
                                                                   sf.workspace_max, sf.tcp_offset)
        result.position_clamped, result.velocity_limited = report.position_clamped, report.velocity_limited
        return safe

    def _measured_pose(self) -> np.ndarray:
        """The latest measured end-effector pose9 (ee_pose, or FK of the joints)."""
        with self._lock:
            if "ee_pose" in self._latest:
                return np.asarray(self._latest["ee_pose"][1], float).copy()
            joints = self._latest.get("joints")
        if joints is None or self.arm is None:
            raise ObservationError("end-effector limits: no measured pose yet (ee_pose or joint_states)")
        return self.arm.fk(torch.as_tensor(np.asarray(joints[1][:self.arm.dof], float))).numpy()

    def _latest_joints(self) -> np.ndarray:
        with self._lock:
            return np.asarray(self._latest["joints"][1], float).copy()

    # --- takeover (a person drives; DAgger-style corrections) ------------------------------------------
    def teleop(self, now_ns: int, twist: np.ndarray, gripper: float | None = None) -> CycleResult:
        """A person holds the deadman: the policy is paused (a chunk still being computed is dropped at
        commit) and the end effector moves at ``twist`` (6: linear m/s, angular rad/s, base frame) from
        where the command is at ``now_ns`` + action latency: that point, then two waypoints one and two
        periods on (joint outputs through the same IK tracker as the policy's chunks), limited like every
        command, so the hand-over never jumps. Call it every command period while the deadman is held; ``resume``
        on release. ``gripper``: 0 open … 1 closed, or None to keep the commanded one."""
        if self.command_output:
            raise ConfigError("teleop: takeover drives the end effector; output command has none")
        v = np.asarray(twist, np.float64).reshape(-1)
        if v.shape != (6,) or not np.isfinite(v).all():
            raise ObservationError(f"teleop twist: expected 6 finite values, got {v.tolist()}")
        if not self._teleop:
            self._teleop = True
            self._generation += 1  # drop a chunk computed for the policy's own plan
        self._prev = None
        t = int(now_ns) + self.scheduler.latency
        running = self.scheduler.current
        try:
            if running is not None:
                current = running.at(t)
            elif self.ee_output:
                current = self._measured_pose()
                current = np.concatenate((current, [self._gripper_cmd])) if self.action_has_gripper else current
            else:
                current = self._latest_joints()
        except (KeyError, ObservationError):
            return CycleResult("waiting", reason="takeover: no measured state yet")
        pose = current[:C.EE_POSE_DIM] if self.ee_output else self.arm.fk(
            torch.as_tensor(current[:self.arm.dof], dtype=torch.float64)).numpy()
        steps = np.array([0.0, 1.0, 2.0]) * self.period / NS
        rot = rot6d_to_matrix(torch.as_tensor(pose[3:9], dtype=torch.float64)).numpy()
        targets = np.stack([np.concatenate((pose[:3] + v[:3] * dt, matrix_to_rot6d(torch.as_tensor(
            Rotation.from_rotvec(v[3:] * dt).as_matrix() @ rot)).numpy())) for dt in steps])
        if self.ee_output:
            values = targets
            if len(current) > C.EE_POSE_DIM:
                g = current[C.EE_POSE_DIM] if gripper is None else float(np.clip(gripper, 0.0, 1.0))
                values = np.concatenate((targets, np.full((3, 1), g)), axis=1)
        else:
            q0 = torch.as_tensor(current[:self.arm.dof], dtype=torch.float64)[None]
            with torch.no_grad():
                q = self.tracker.rollout(torch.as_tensor(targets[None, 1:]), q0)[0].numpy()
            values = np.concatenate((current[None, :self.arm.dof], q))
            if self.gripper:
                e = self.cfg.embodiment
                g = current[-1] if gripper is None else e.gripper_open + float(np.clip(gripper, 0, 1)) * (
                    e.gripper_closed - e.gripper_open)
                values = np.concatenate((values, np.full((3, 1), g)), axis=1)
        traj = TimedTrajectory(t + (steps * NS).astype(np.int64), values)
        result = CycleResult("takeover", reason="takeover: teleop drives, the policy is paused")
        try:
            traj = self._make_safe(traj, int(now_ns), result)
        except (UnsafeCommandError, ObservationError) as e:
            return self.hold(now_ns, f"takeover: {e}")
        self.scheduler.current = traj
        self._commanding = True
        result.command = self._split(Command("trajectory", self.output_names, traj, int(now_ns), result.reason))
        return result

    def resume(self) -> None:
        """The deadman released: the policy plans again at the next cycle, from the observation then,
        handing over from where the teleop command is (the running trajectory is kept)."""
        self._teleop = False
        self._prev, self._last_plan_ns, self._last_obs_ns = None, None, None

    @property
    def in_takeover(self) -> bool:
        return self._teleop

    def hold(self, now_ns: int, reason: str) -> CycleResult:
        """No new trajectory: if we were commanding, hold where the running trajectory is now."""
        if not self._commanding:
            return CycleResult("waiting", reason=reason)
        self._commanding = False
        self._prev = None
        t = int(now_ns) + self.scheduler.latency
        if self.command_output:  # a command (a move, a velocity) holds by standing still
            value = np.zeros(self.pcfg.action.dim)
        elif self.scheduler.current is not None:
            value = self.scheduler.current.at(t)
        elif not self.ee_output and "joints" in self._latest:
            value = self._latest_joints()
        else:
            return CycleResult("waiting", reason=reason)
        hold = self._one_point(t, value)
        self.scheduler.current = hold
        self.stats.holds += 1
        return CycleResult("hold", self._split(Command("hold", self.output_names, hold, int(now_ns), reason)),
                           reason=reason)

    # --- contact guard (safety.max_contact_force) ---------------------------------------------------
    def contact_guard(self, now_ns: int) -> CycleResult | None:
        """Call after every wrench sample. When the force exceeds safety.max_contact_force while a
        trajectory runs: a stop (status "hold") where the command is at ``now_ns`` + action latency, for
        the driver to publish at once, between inferences; until the force falls below
        contact_release × the limit, chunks are held at that stop point from their first waypoint that
        goes deeper along the approach (``commit``). Otherwise None."""
        limit, f = self.cfg.safety.max_contact_force, self._contact_force
        if limit <= 0:
            return None
        if self._contact is not None:
            if f < self.cfg.safety.contact_release * limit:
                self._contact = None
            return None
        running = self.scheduler.current
        if f <= limit or not self._commanding or running is None or self._teleop:
            return None
        t = int(now_ns) + self.scheduler.latency
        value = running.at(t)
        here, before = self._ee_positions(np.stack((value, running.at(t - self.period))))
        approach = here - before
        if np.linalg.norm(approach) < CONTACT_MOTION_M:  # the command rests: where it presses past the arm
            try:
                approach = here - self._measured_pose()[:3]
            except ObservationError:
                approach = np.zeros(3)
        norm = float(np.linalg.norm(approach))
        self._contact = (value, here, approach / norm if norm >= CONTACT_MOTION_M else None)
        self._prev = None  # the running plan no longer runs: the next chunk is not held to it
        stop = self._one_point(t, value)
        self.scheduler.current = stop
        self.stats.contact_stops += 1
        reason = (f"contact guard: force {f:.1f} N > safety.max_contact_force {limit:g} N; stopped, no deeper "
                  f"until it falls below {self.cfg.safety.contact_release * limit:g} N")
        return CycleResult("hold", self._split(Command("hold", self.output_names, stop, int(now_ns), reason)),
                           reason=reason)

    def _one_point(self, t_ns: int, value: np.ndarray) -> TimedTrajectory:
        """A trajectory that holds ``value``, due just after ``t_ns`` (hand-over time: never in the past)."""
        return TimedTrajectory(np.array([t_ns + self.period // 10], np.int64), value[None])

    def _ee_positions(self, values: np.ndarray) -> np.ndarray:
        """(K, 3) end-effector (ee_link) positions of output-space waypoints."""
        values = np.asarray(values, np.float64)
        if self.ee_output:
            return values[:, :3]
        return self.arm.fk(torch.as_tensor(values[:, :self.arm.dof])).numpy()[:, :3]

    def _clip_contact(self, traj: TimedTrajectory) -> tuple[TimedTrajectory, bool]:
        """While the contact guard holds: ``traj`` up to its first waypoint deeper than the stop point
        along the approach (any motion away from it, when the approach is unknown), held there after."""
        if self._contact is None:
            return traj, False
        stop_value, stop, approach = self._contact
        offset = self._ee_positions(traj.values) - stop
        depth = offset @ approach if approach is not None else np.linalg.norm(offset, axis=1)
        deeper = np.flatnonzero(depth > CONTACT_MOTION_M)
        if not deeper.size:
            return traj, False
        k = int(deeper[0])
        values = np.array(traj.values, np.float64)
        values[k:] = values[k - 1] if k > 0 else stop_value
        clipped = TimedTrajectory(traj.times_ns, values)
        if traj.velocities is not None:
            first = traj.velocities[0] if k > 1 else np.zeros_like(values[0])
            clipped = clipped.with_velocities(first)
        self.stats.contact_clipped += 1
        return clipped, True
