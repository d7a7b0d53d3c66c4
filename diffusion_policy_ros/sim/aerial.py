"""An aerial manipulator for MuJoCo built from the shipped URDF, flown by a thrust-limited controller, and
the oracle floating gripper that demonstrations come from.

``AerialSim`` is the plant the policy is deployed on: the multirotor is a free body pushed by a force
(the rotors' total thrust) that its flight controller computes at every physics step: PD on the base
position with velocity feed-forward → acceleration command, bounded by the tilt limit (horizontal,
g·tan tilt) and the thrust range (vertical), reached through a first-order lag with a jerk limit (the
attitude and motor response). The attitude itself is held level by a stiff torque, so the tilt the
horizontal thrust would need is not drawn; its limit and lag are what the base shows. Optional wind
gusts (an Ornstein-Uhlenbeck force, seeded) push the base. The 3-DoF arm is position-servoed (with
gravity feed-forward, as servo firmware does) to damped-least-squares IK toward the end-effector
target relative to the measured base. The parameters are ``embodiment.aerial.AerialConfig``'s, so the
guidance model and this plant agree on limits and lag; the plant adds rigid-body dynamics, hard
saturations, the arm's reaction on the base and the wind.

``oracle=True`` replaces the robot with a floating gripper (a mocap body) that is exactly where its
end-effector trajectory says at every instant: the handheld demonstration embodiment (UMI-style).

Both follow ``MultiDOFJointTrajectory`` points (end-effector positions) with joint_trajectory_controller
semantics (linear interpolation, the last point held, a new trajectory spliced in from the current
command) and render what realsense-ros publishes, from a fixed camera.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import mujoco
import numpy as np
import torch

from ..embodiment.aerial import G, AerialConfig
from ..embodiment.arm import ArmKinematics
from ..errors import ConfigError, SimError
from ..constants import NS
from .arm import _DIVERGENCE
from .camera import SELF_FILTERED_GROUP, CameraScene, CameraSpec, RgbdRenderer, add_camera
from .controllers import JointTrajectoryFollower
from .task_parts import BoxObject


@dataclass
class AerialSceneConfig:
    urdf: str = "aerial_manipulator.urdf"
    ee_link: str = "ee_link"
    gripper_half: tuple[float, float, float] = (0.02, 0.02, 0.02)  # a block at the end effector
    timestep: float = 0.002
    arm_kp: float = 40.0  # N·m/rad, arm joint servos
    arm_period: float = 0.01  # s between arm IK updates (100 Hz)
    arm_posture: float = 0.005  # pull toward the rest posture in the IK (keeps the arm off its stretched singularity)
    attitude_kp: float = 1000.0  # N·m/rad, holds the base level with heading 0 (a stiff attitude loop)
    attitude_kd: float = 10.0
    wind_std: float = 0.0  # N, standard deviation of the gust force on the base (0: calm)
    wind_time: float = 1.0  # s, gust correlation time
    oracle: bool = False  # the floating gripper instead of the robot
    camera: CameraSpec = field(default_factory=lambda: CameraSpec(pos=(0.6, -1.9, 1.9), target=(0.65, 0.0, 0.8),
                                                                  fovy_deg=50.0, max_range=4.0))
    objects: list[BoxObject] = field(default_factory=list)
    flight: AerialConfig = field(default_factory=AerialConfig)


def build_aerial_model(cfg: AerialSceneConfig) -> mujoco.MjModel:
    from ..config import resolve_shipped

    if cfg.oracle:
        spec = mujoco.MjSpec()
    else:  # the URDF's links hang from the world; the base gets a free joint below
        text = open(resolve_shipped("urdf", cfg.urdf, "sim.urdf")).read()
        compiler = '<mujoco><compiler discardvisual="false" fusestatic="false" balanceinertia="true"/></mujoco>'
        head = text.index(">", text.index("<robot")) + 1
        spec = mujoco.MjSpec.from_string(text[:head] + compiler + text[head:])
    spec.option.timestep = cfg.timestep
    spec.visual.global_.offwidth = max(640, cfg.camera.width)
    spec.visual.global_.offheight = max(480, cfg.camera.height)
    world = spec.worldbody
    gh = list(cfg.gripper_half)
    if cfg.oracle:
        grip = world.add_body(name="gripper", mocap=True, pos=[0, 0, 1])
        grip.add_geom(name="gripper", type=mujoco.mjtGeom.mjGEOM_BOX, size=gh, rgba=[0.9, 0.6, 0.1, 1],
                      contype=0, conaffinity=0)
        grip.add_site(name="ft_sensor")
    else:
        base = spec.body("base_link")
        if base is None or spec.body(cfg.ee_link) is None:
            raise ConfigError(f"sim.aerial: expected links base_link and '{cfg.ee_link}' in {cfg.urdf}")
        base.add_freejoint(name="base")
        boxes = [g for g in base.geoms if g.type == mujoco.mjtGeom.mjGEOM_BOX]
        for g in base.geoms:  # the URDF's visual duplicate of the body box: no contacts
            g.rgba, g.group = [0.25, 0.25, 0.3, 1], SELF_FILTERED_GROUP
            if boxes and g is not boxes[0]:
                g.contype, g.conaffinity = 0, 0
        for body in spec.bodies:
            if body.name not in ("world", "base_link"):
                for g in body.geoms:
                    g.contype, g.conaffinity, g.rgba = 0, 0, [0.6, 0.62, 0.65, 1.0]
                    g.group = SELF_FILTERED_GROUP
        for joint in spec.joints:
            if joint.type == mujoco.mjtJoint.mjJNT_HINGE:
                joint.damping[0], joint.armature = 0.05, 0.01
                act = spec.add_actuator(name=joint.name, target=joint.name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
                act.set_to_position(kp=cfg.arm_kp, dampratio=1.0)
        ee = spec.body(cfg.ee_link)
        ee.add_geom(name="gripper", type=mujoco.mjtGeom.mjGEOM_BOX, size=gh, mass=0.05, rgba=[0.9, 0.6, 0.1, 1])
        ee.add_site(name="ft_sensor")
        spec.add_sensor(name="ft_force", type=mujoco.mjtSensor.mjSENS_FORCE, objtype=mujoco.mjtObj.mjOBJ_SITE,
                        objname="ft_sensor")
        spec.add_sensor(name="ft_torque", type=mujoco.mjtSensor.mjSENS_TORQUE, objtype=mujoco.mjtObj.mjOBJ_SITE,
                        objname="ft_sensor")
    world.add_light(pos=[0.5, 0.0, 3.0], dir=[0, 0, -1], diffuse=[0.8, 0.8, 0.8], castshadow=False)
    world.add_light(pos=[2.0, -1.5, 2.5], dir=[-1, 0.6, -1], diffuse=[0.4, 0.4, 0.4], castshadow=False)
    world.add_geom(name="ground", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[4, 4, 0.05], rgba=[0.4, 0.45, 0.4, 1])
    for obj in cfg.objects:
        if obj.free:
            body = world.add_body(name=obj.name, pos=list(obj.pos))
            body.add_freejoint(name=obj.name)
            body.add_geom(name=obj.name, type=mujoco.mjtGeom.mjGEOM_BOX, size=list(obj.half), mass=obj.mass,
                          rgba=list(obj.rgba))
        else:  # fixed obstacles and markers collide (a crash is a contact)
            world.add_geom(name=obj.name, type=mujoco.mjtGeom.mjGEOM_BOX, size=list(obj.half), pos=list(obj.pos),
                           rgba=list(obj.rgba))
    add_camera(world, cfg.camera)
    return spec.compile()


class FlightController:
    """The multirotor's position controller (AerialConfig's law with hard limits), in numpy."""

    def __init__(self, cfg: AerialConfig, mass: float):
        self.cfg, self.mass = cfg, mass
        self.a_h_max = G * math.tan(math.radians(cfg.max_tilt_deg))
        self.a_z = (G * (cfg.min_thrust_ratio - 1.0), G * (cfg.thrust_to_weight - 1.0))
        self.a = np.zeros(3)

    def reset(self) -> None:
        self.a = np.zeros(3)

    def thrust(self, p_ref, v_ref, p, v, h: float) -> np.ndarray:
        """World force (N) the rotors produce this step, gravity included."""
        c = self.cfg
        a_cmd = c.kp * (np.asarray(p_ref) - p) + c.kd * (np.asarray(v_ref) - v)
        horiz = np.linalg.norm(a_cmd[:2])
        if horiz > self.a_h_max:
            a_cmd[:2] *= self.a_h_max / horiz
        a_cmd[2] = np.clip(a_cmd[2], *self.a_z)
        da = (h / c.response_time) * (a_cmd - self.a)
        n, lim = np.linalg.norm(da), c.max_jerk * h
        self.a = self.a + (da * lim / n if n > lim else da)
        return self.mass * (self.a + np.array([0.0, 0.0, G]))


class AerialSim(CameraScene):
    """The aerial manipulator (or, with ``cfg.oracle``, the floating gripper) in its scene. Its camera
    leaves the multirotor and the arm links out of depth (self-filtered); the gripper stays in, as the
    oracle's does."""

    def __init__(self, cfg: AerialSceneConfig):
        self.cfg = cfg
        self.model = build_aerial_model(cfg)
        self.data = mujoco.MjData(self.model)
        self.camera = cfg.camera.model()
        self.time_ns = 0
        self.follower = JointTrajectoryFollower(np.zeros(3), open_loop=True)
        self._renderer: RgbdRenderer | None = None
        self.wind = np.zeros(3)
        self._rng = np.random.default_rng(0)
        self.gripper_geom = self.model.geom("gripper").id
        self._robot_geoms = {self.gripper_geom}  # what a contact with counts as touching the robot
        if cfg.oracle:
            self.joint_names: list[str] = []
            self.mocap = self.model.body("gripper").mocapid[0]
            return
        from ..config import resolve_shipped

        self.kin = ArmKinematics(resolve_shipped("urdf", cfg.urdf, "sim.urdf"), cfg.ee_link)
        self.joint_names = list(self.kin.joint_names)
        m = self.model
        self.base = m.body("base_link").id
        self.base_q = m.joint("base").qposadr[0]
        self.base_v = m.joint("base").dofadr[0]
        self.qadr = np.array([m.joint(n).qposadr[0] for n in self.joint_names])
        self.dadr = np.array([m.joint(n).dofadr[0] for n in self.joint_names])
        self.act = np.array([m.actuator(n).id for n in self.joint_names])
        self.ee = m.body(cfg.ee_link).id
        self._robot_geoms |= {i for i in range(m.ngeom) if m.geom_bodyid[i] == self.base}
        self.flight = FlightController(cfg.flight, float(m.body_subtreemass[self.base]))
        self.q_rest = np.asarray(cfg.flight.arm_rest, float)
        self.offset = self.kin.fk(torch.as_tensor(self.q_rest))[:3].numpy()  # ee relative to the base at rest
        lim = self.kin.limits
        self._lo, self._hi, self._vmax = np.asarray(lim.lower), np.asarray(lim.upper), np.asarray(lim.max_velocity)
        self.q_cmd = self.q_rest.copy()
        self._arm_steps = max(1, int(round(cfg.arm_period / cfg.timestep)))
        self._step = 0

    # --- state -----------------------------------------------------------------------------------
    def reset(self, ee_position, seed: int = 0) -> None:
        """Hovering (or the gripper held) with the end effector at ``ee_position``; time restarts at 0.
        ``seed`` seeds the wind."""
        mujoco.mj_resetData(self.model, self.data)
        p = np.asarray(ee_position, float)
        self.follower.hold(p)
        self.time_ns, self._step = 0, 0
        self._rng = np.random.default_rng(seed)
        self.wind = np.zeros(3)
        if self.cfg.oracle:
            self.data.mocap_pos[self.mocap] = p
        else:
            a = self.base_q
            self.data.qpos[a:a + 3] = p - self.offset
            self.data.qpos[a + 3:a + 7] = [1, 0, 0, 0]
            self.data.qpos[self.qadr] = self.q_rest
            self.q_cmd = self.q_rest.copy()
            self.data.ctrl[self.act] = self.q_rest
            self.flight.reset()
        mujoco.mj_forward(self.model, self.data)

    def _reference(self, t_ns: int) -> tuple[np.ndarray, np.ndarray]:
        """The end-effector target and its velocity at ``t_ns``, as the follower commands them."""
        return self.follower.sample(int(t_ns))

    def send(self, traj, now_ns: int) -> bool:
        """A MultiDOFJointTrajectory (end-effector positions) arrives; JTC semantics, from the last command."""
        return self.follower.set(traj, now_ns)

    def _arm_ik(self, goal: np.ndarray, h: float) -> None:
        """One damped-least-squares step of the arm toward ``goal`` relative to the (level, heading-0)
        base, with a small pull toward the rest posture: min |J dq - e|² + λ²|dq|² + μ|q + dq - q_rest|²."""
        lam, mu = self.cfg.flight.arm_damping, self.cfg.arm_posture
        rel = goal - self.data.xpos[self.base]
        q = torch.as_tensor(self.q_cmd)[None]
        err = rel - self.kin.fk(q)[0, :3].numpy()
        jac = self.kin.chain.jacobian(q)[0, :3].numpy()
        dq = np.linalg.solve(jac.T @ jac + (lam ** 2 + mu) * np.eye(len(self.q_cmd)),
                             jac.T @ err + mu * (self.q_rest - self.q_cmd))
        step = self._vmax * h
        self.q_cmd = np.clip(self.q_cmd + np.clip(dq, -step, step), self._lo, self._hi)

    def advance(self, t_ns: int) -> None:
        """Step physics to ``t_ns`` under the current trajectory (and the wind)."""
        dt = self.model.opt.timestep
        n = int(round((t_ns - self.time_ns) / NS / dt))
        c = self.cfg
        d = self.data
        for _ in range(max(0, n)):
            if c.oracle:  # where the hand is at the end of this step (MuJoCo reports poses from its start)
                d.mocap_pos[self.mocap] = self._reference(self.time_ns + int(round(dt * NS)))[0]
            else:
                goal, v_ref = self._reference(self.time_ns)
                if self._step % self._arm_steps == 0:
                    self._arm_ik(goal, dt * self._arm_steps)
                # Servo targets with gravity feed-forward (the bias torque over the gain).
                d.ctrl[self.act] = self.q_cmd + d.qfrc_bias[self.dadr] / c.arm_kp
                a, v = self.base_q, self.base_v
                force = self.flight.thrust(goal - self.offset, v_ref, d.qpos[a:a + 3], d.qvel[v:v + 3], dt)
                if c.wind_std > 0:
                    k = dt / c.wind_time
                    gust = self._rng.standard_normal(3) * [1.0, 1.0, 0.3]  # mostly horizontal
                    self.wind += -k * self.wind + c.wind_std * math.sqrt(2 * k) * gust
                # Level attitude, heading 0: a stiff torque on the rotation vector and the body rates.
                w, x, y, z = d.qpos[a + 3:a + 7]
                ang = 2.0 * np.array([x, y, z]) * np.sign(w)
                torque = -c.attitude_kp * ang - c.attitude_kd * d.qvel[v + 3:v + 6]
                d.xfrc_applied[self.base] = np.concatenate((force + self.wind, torque))
            mujoco.mj_step(self.model, d)
            self.time_ns += int(round(dt * NS))
            self._step += 1
        bad = {w.name: d.warning[int(w)].number for w in _DIVERGENCE}
        if any(bad.values()) or not np.isfinite(d.qpos).all():
            raise SimError(f"sim: the physics diverged (non-finite or huge state: {bad}) at t = "
                           f"{self.time_ns / NS:.3f} s; check the commanded trajectory and the model")

    def ee_pose(self) -> np.ndarray:
        """End-effector pose [x, y, z, qx, qy, qz, qw] in the world frame (what mocap/VIO + arm FK give).
        The gripper hangs from a levelled wrist, so its orientation is the base's (level, heading 0),
        as the oracle gripper's is."""
        if self.cfg.oracle:
            return np.r_[self.data.mocap_pos[self.mocap], 0.0, 0.0, 0.0, 1.0]
        q = self.data.xquat[self.base]
        return np.concatenate((self.data.xpos[self.ee], [q[1], q[2], q[3], q[0]]))

    def tip_position(self) -> np.ndarray:
        return self.data.geom_xpos[self.gripper_geom].copy()

    def base_position(self) -> np.ndarray:
        return np.zeros(3) if self.cfg.oracle else self.data.xpos[self.base].copy()

    def joints(self) -> np.ndarray:
        return np.zeros(0) if self.cfg.oracle else self.data.qpos[self.qadr].copy()

    def wrench(self) -> np.ndarray:
        """Force and torque at the gripper's sensor site (zero for the oracle)."""
        if self.cfg.oracle:
            return np.zeros(6)
        return np.concatenate((self.data.sensor("ft_force").data, self.data.sensor("ft_torque").data)).copy()

    def contacts(self) -> list[str]:
        """Names of the geoms touching the robot's body (base box or gripper)."""
        mine, hits = self._robot_geoms, []
        for c in self.data.contact[:self.data.ncon]:
            g1, g2 = int(c.geom1), int(c.geom2)
            other = g2 if g1 in mine else g1 if g2 in mine else None
            if other is not None:
                hits.append(self.model.geom(other).name)
        return hits
