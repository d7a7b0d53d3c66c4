"""An arm scene for MuJoCo built from the shipped URDF, and the robot-side drivers it stands in for.

``build_arm_model`` loads the URDF with MuJoCo's own URDF importer (MjSpec), then adds what a real
cell has: position-controlled joints (ros2_control position interface: PD with gravity compensation),
a pusher tool on the flange with a wrist force/torque sensor, a table, the task's objects and a
RealSense-like camera. ``ArmSim`` steps it: a follower with joint_trajectory_controller's semantics
(``sim/controllers.py``) sets the joint targets at every physics step, and ``render`` returns what
realsense-ros publishes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import mujoco
import numpy as np

from ..constants import NS
from ..errors import ConfigError, SimError
from .camera import CameraScene, CameraSpec, RgbdRenderer, add_camera
from .controllers import JointTrajectoryFollower
from .task_parts import BoxObject, SpringPart


@dataclass
class ArmSceneConfig:
    urdf: str = ""  # empty: the shipped urdf/ur5e_like.urdf
    ee_link: str = "tool0"
    tool_length: float = 0.1  # pusher rod along the flange's z axis
    # Paddle at the rod's end, half extents in the flange frame (x across the push, y along it).
    tip_half: tuple[float, float, float] = (0.04, 0.008, 0.015)
    tool_mass: float = 0.1
    kp: float = 3000.0  # joint position gains (N·m/rad)
    # Integral action on the joint position error (1/s; 0 = none): the target the servo sees is the
    # command plus ki·∫(command - measured) dt, so a steady load leaves no steady-state error, as an
    # industrial position controller holds its pose under load. Added on top of MuJoCo's built-in
    # position servo (not the mujoco.pid plugin) so the servo keeps its implicit damping.
    ki: float = 0.0
    integral_limit: float = 0.02  # rad: anti-windup bound on the integral correction
    timestep: float = 0.002
    camera: CameraSpec = field(default_factory=CameraSpec)
    objects: list[BoxObject | SpringPart] = field(default_factory=list)


def _urdf_path(urdf: str) -> Path:
    from ..config import resolve_shipped
    from ..embodiment.arm import DEFAULT_URDF

    return Path(resolve_shipped("urdf", urdf or DEFAULT_URDF, "sim.urdf"))


def build_arm_model(cfg: ArmSceneConfig) -> mujoco.MjModel:
    text = _urdf_path(cfg.urdf).read_text()
    # Keep fixed links (tool0) as bodies: the force/torque sensor and the tool hang on the flange.
    compiler = '<mujoco><compiler discardvisual="true" fusestatic="false" balanceinertia="true"/></mujoco>'
    head = text.index(">", text.index("<robot")) + 1
    spec = mujoco.MjSpec.from_string(text[:head] + compiler + text[head:])
    spec.option.timestep = cfg.timestep
    spec.compiler.discardvisual = False  # the URDF's duplicates are gone; keep our visual-only geoms
    spec.visual.global_.offwidth = max(640, cfg.camera.width)
    spec.visual.global_.offheight = max(480, cfg.camera.height)
    flange = spec.body(cfg.ee_link)
    if flange is None:
        raise ConfigError(f"sim.ee_link: expected a link of the URDF, got '{cfg.ee_link}'")
    for body in spec.bodies:
        if body.name not in ("world", cfg.ee_link):
            body.gravcomp = 1.0  # the position controllers hold the arm; the tool's weight reaches the sensor
    for geom in spec.geoms:  # the URDF's link cylinders: seen by the camera, no contacts
        geom.contype, geom.conaffinity, geom.rgba = 0, 0, [0.6, 0.62, 0.65, 1.0]
    for joint in spec.joints:
        joint.damping[0], joint.armature = 2.0, 0.1
        act = spec.add_actuator(name=joint.name, target=joint.name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        act.set_to_position(kp=cfg.kp, dampratio=1.0)
    # Pusher: a rod and a paddle along the flange z axis, and the wrist F/T sensor at the flange.
    tool = flange.add_body(name="tool", pos=[0, 0, 0])
    tool.add_geom(type=mujoco.mjtGeom.mjGEOM_CAPSULE, fromto=[0, 0, 0.01, 0, 0, cfg.tool_length],
                  size=[0.01, 0, 0], mass=cfg.tool_mass * 0.6, rgba=[0.2, 0.2, 0.25, 1])
    tool.add_geom(name="tool_tip", type=mujoco.mjtGeom.mjGEOM_BOX, pos=[0, 0, cfg.tool_length],
                  size=list(cfg.tip_half), mass=cfg.tool_mass * 0.4, rgba=[0.9, 0.6, 0.1, 1],
                  friction=[0.3, 0.005, 0.0001])
    flange.add_site(name="ft_sensor", pos=[0, 0, 0])
    spec.add_sensor(name="ft_force", type=mujoco.mjtSensor.mjSENS_FORCE, objtype=mujoco.mjtObj.mjOBJ_SITE,
                    objname="ft_sensor")
    spec.add_sensor(name="ft_torque", type=mujoco.mjtSensor.mjSENS_TORQUE, objtype=mujoco.mjtObj.mjOBJ_SITE,
                    objname="ft_sensor")
    world = spec.worldbody
    # No shadows: they double OSMesa's render time and a depth camera does not see them.
    world.add_light(pos=[0.6, 0.3, 2.0], dir=[0, 0, -1], diffuse=[0.8, 0.8, 0.8], castshadow=False)
    world.add_light(pos=[1.5, -0.5, 1.5], dir=[-1, 0.3, -1], diffuse=[0.4, 0.4, 0.4], castshadow=False)
    world.add_geom(name="table", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[1.2, 1.2, 0.05], rgba=[0.45, 0.42, 0.38, 1],
                   friction=[0.5, 0.005, 0.0001])
    for obj in cfg.objects:
        if isinstance(obj, SpringPart):
            h = obj.half
            body = world.add_body(name=obj.name, pos=[obj.pos[0], obj.pos[1], obj.rest_z], gravcomp=1.0)
            body.add_joint(name=obj.name, type=mujoco.mjtJoint.mjJNT_SLIDE, axis=[0, 0, 1], stiffness=1000.0,
                           damping=obj.damping, range=[-obj.travel, 0.0], limited=True, armature=0.01)
            body.add_geom(name=obj.name, type=mujoco.mjtGeom.mjGEOM_BOX, size=list(h), mass=0.1, rgba=list(obj.rgba),
                          friction=[0.8, 0.005, 0.0001])
            # The housing, a little wider than the part, from the table to the part's rest centre.
            world.add_geom(name=obj.name + "_housing", type=mujoco.mjtGeom.mjGEOM_BOX,
                           size=[h[0] + 0.012, h[1] + 0.012, obj.rest_z / 2],
                           pos=[obj.pos[0], obj.pos[1], obj.rest_z / 2], rgba=list(obj.housing_rgba),
                           contype=0, conaffinity=0)
        elif obj.free:
            body = world.add_body(name=obj.name, pos=list(obj.pos))
            body.add_freejoint(name=obj.name)
            body.add_geom(name=obj.name, type=mujoco.mjtGeom.mjGEOM_BOX, size=list(obj.half), mass=obj.mass,
                          rgba=list(obj.rgba), friction=[obj.friction, 0.005, 0.0001])
        else:
            world.add_geom(name=obj.name, type=mujoco.mjtGeom.mjGEOM_BOX, size=list(obj.half), pos=list(obj.pos),
                           rgba=list(obj.rgba), contype=0, conaffinity=0)
    add_camera(world, cfg.camera)
    return spec.compile()


_DIVERGENCE = (mujoco.mjtWarning.mjWARN_BADQPOS, mujoco.mjtWarning.mjWARN_BADQVEL, mujoco.mjtWarning.mjWARN_BADQACC)


class ArmSim(CameraScene):
    """One MuJoCo arm scene: reset, advance in time under a trajectory, render, read sensors."""

    def __init__(self, cfg: ArmSceneConfig, joint_names: list[str]):
        self.cfg = cfg
        self.model = build_arm_model(cfg)
        self.data = mujoco.MjData(self.model)
        self.joint_names = list(joint_names)
        self.qadr = np.array([self.model.joint(n).qposadr[0] for n in joint_names])
        self.dadr = np.array([self.model.joint(n).dofadr[0] for n in joint_names])
        self.act = np.array([self.model.actuator(n).id for n in joint_names])
        self.flange = self.model.body(cfg.ee_link).id
        self.tip = self.model.geom("tool_tip").id
        self.time_ns = 0
        self.follower = JointTrajectoryFollower(np.zeros(len(joint_names)))
        self._integral = np.zeros(len(joint_names))
        self.camera = cfg.camera.model()
        self._renderer: RgbdRenderer | None = None
        self._steps_per_ms = 1e-3 / self.model.opt.timestep

    # --- state ---------------------------------------------------------------------------------
    def reset(self, q: np.ndarray, objects: dict[str, tuple[np.ndarray, float]] | None = None) -> None:
        """Joint positions and object poses {name: (xyz, yaw)}; time restarts at 0."""
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[self.qadr] = q
        for name, (xyz, yaw) in (objects or {}).items():
            adr = self.model.joint(name).qposadr[0]
            self.data.qpos[adr:adr + 3] = xyz
            self.data.qpos[adr + 3:adr + 7] = [np.cos(yaw / 2), 0, 0, np.sin(yaw / 2)]
        self.data.ctrl[self.act] = q
        self._integral = np.zeros(len(self.act))
        self.time_ns = 0
        self.follower.hold(q)
        mujoco.mj_forward(self.model, self.data)

    def send(self, traj, now_ns: int) -> bool:
        """A JointTrajectory arrives at the controller (JTC semantics: ``sim/controllers.py``)."""
        return self.follower.set(traj, now_ns, self.joints(), self.joint_velocities())

    def advance(self, t_ns: int) -> None:
        """Step physics to ``t_ns``, the follower setting the joint targets at every step."""
        dt = self.model.opt.timestep
        n = int(round((t_ns - self.time_ns) / NS / dt))
        ki, lim = self.cfg.ki, self.cfg.integral_limit
        for _ in range(max(0, n)):
            q_cmd = self.follower.command(self.time_ns)
            if ki > 0.0:
                err = q_cmd - self.data.qpos[self.qadr]
                self._integral = np.clip(self._integral + ki * dt * err, -lim, lim)
                q_cmd = q_cmd + self._integral
            self.data.ctrl[self.act] = q_cmd
            mujoco.mj_step(self.model, self.data)
            self.time_ns += int(round(dt * NS))
        # MuJoCo resets the state itself when it becomes non-finite or huge, and counts a warning.
        bad = {w.name: self.data.warning[int(w)].number for w in _DIVERGENCE}
        if any(bad.values()) or not np.isfinite(self.data.qpos).all():
            raise SimError(f"sim: the physics diverged (non-finite or huge state: {bad}) at t = "
                           f"{self.time_ns / NS:.3f} s; check the commanded trajectory and the model")

    def joints(self) -> np.ndarray:
        return self.data.qpos[self.qadr].copy()

    def joint_velocities(self) -> np.ndarray:
        return self.data.qvel[self.dadr].copy()

    def flange_pose(self) -> np.ndarray:
        """Flange pose [x, y, z, qx, qy, qz, qw] in the base (world) frame."""
        q = self.data.xquat[self.flange]
        return np.concatenate((self.data.xpos[self.flange], [q[1], q[2], q[3], q[0]]))

    def tip_position(self) -> np.ndarray:
        return self.data.geom_xpos[self.tip].copy()

    def wrench(self) -> np.ndarray:
        """Force (N) and torque (N·m) on the tool, in the sensor (flange) frame, as a wrist F/T reads."""
        return np.concatenate((self.data.sensor("ft_force").data, self.data.sensor("ft_torque").data)).copy()

    def set_part(self, name: str, xy: tuple[float, float], stiffness: float) -> None:
        """Move a SpringPart (and its housing) to ``xy`` and give its spring ``stiffness`` N/m (before reset)."""
        body, joint = self.model.body(name), self.model.joint(name)
        body.pos[:2] = xy
        self.model.geom(name + "_housing").pos[:2] = xy
        self.model.jnt_stiffness[joint.id] = stiffness

    def part_state(self, name: str) -> tuple[float, float]:
        """(press depth in metres, spring force in N) of a SpringPart."""
        joint = self.model.joint(name)
        depth = -float(self.data.qpos[joint.qposadr[0]])
        return depth, depth * float(self.model.jnt_stiffness[joint.id])

    def object_pose(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(xyz, quaternion wxyz) of a free object."""
        adr = self.model.joint(name).qposadr[0]
        return self.data.qpos[adr:adr + 3].copy(), self.data.qpos[adr + 3:adr + 7].copy()
