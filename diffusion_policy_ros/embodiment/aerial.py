"""Aerial manipulator: a multirotor base carrying a 3-DoF arm (urdf/aerial_manipulator.urdf), as a
differentiable rollout under its tracking controller.

Base (world frame, heading held): a PD position controller with velocity feed-forward commands an
acceleration; thrust limits bound its vertical part, the tilt limit its horizontal part (g·tan tilt);
the achieved acceleration follows the command through a first-order lag (attitude + thrust response)
with a jerk limit (tilt-rate limit). The base reference is the end-effector target minus the arm's
rest offset, so the base carries the arm to the target and the arm takes up what the slower base
misses: at every control sub-step, damped-least-squares IK on the arm's position Jacobian toward the
target relative to the base, under joint velocity and position limits (pytorch-kinematics FK).

All saturations are smooth (tanh), so the end-effector tracking error + effort cost has useful
gradients everywhere: ``cost(target, state)`` is what embodiment-aware guidance differentiates.
Written here because no maintained library offers a differentiable multirotor + arm rollout in torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ConfigError
from .arm import ArmKinematics

G = 9.81


@dataclass
class AerialConfig:
    urdf: str = "aerial_manipulator.urdf"
    ee_link: str = "ee_link"
    mass: float = 2.5  # kg, with the arm
    thrust_to_weight: float = 2.0  # maximum total thrust / weight
    min_thrust_ratio: float = 0.3  # minimum thrust / weight (motors never stop in flight)
    max_tilt_deg: float = 20.0  # attitude limit → horizontal acceleration ≤ g·tan(tilt)
    response_time: float = 0.35  # s, first-order lag from commanded to achieved acceleration
    max_jerk: float = 12.0  # m/s³, from the tilt-rate limit
    kp: float = 5.0  # 1/s², position gain
    kd: float = 4.0  # 1/s, velocity gain
    dt: float = 0.1  # s between trajectory waypoints (the policy's control period)
    substeps: int = 2  # control sub-steps per waypoint
    arm_rest: tuple[float, float, float] = (0.0, 1.0, -1.4)  # arm joint positions at rest
    arm_damping: float = 0.05
    position_weight: float = 1.0
    effort_weight: float = 1e-3  # on the commanded base acceleration squared (m/s²)²
    # against a reference path the effort is what following it takes: only a light regulariser
    reference_effort_weight: float = 1e-5

    def __post_init__(self):
        positive = ("mass", "thrust_to_weight", "max_tilt_deg", "response_time", "max_jerk", "kp", "kd", "dt",
                    "arm_damping")
        bad = {k: getattr(self, k) for k in positive if not getattr(self, k) > 0}
        if bad or self.substeps < 1 or not 0 <= self.min_thrust_ratio < 1 < self.thrust_to_weight \
                or self.max_tilt_deg >= 80:
            raise ConfigError(f"embodiment.aerial: expected positive {', '.join(positive)}, substeps >= 1, "
                              f"0 <= min_thrust_ratio < 1 < thrust_to_weight, max_tilt_deg < 80; got {bad or self}")


def _soft_norm_limit(v: torch.Tensor, limit: float) -> torch.Tensor:
    """Scale vectors (..., n) so their norm is at most ``limit``, smoothly (tanh of the norm)."""
    n = v.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    return v * (limit * torch.tanh(n / limit) / n)


def _soft_clamp(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    return mid + half * torch.tanh((x - mid) / half)


class AerialManipulator:
    def __init__(self, cfg: AerialConfig | None = None, dtype: torch.dtype = torch.float64):
        from ..config import resolve_shipped

        self.cfg = cfg = cfg or AerialConfig()
        self.arm = ArmKinematics(resolve_shipped("urdf", cfg.urdf, "embodiment.aerial.urdf"), cfg.ee_link,
                                 dtype=dtype)
        if len(cfg.arm_rest) != self.arm.dof:
            raise ConfigError(f"embodiment.aerial.arm_rest: expected {self.arm.dof} joint positions "
                              f"{self.arm.joint_names}, got {list(cfg.arm_rest)}")
        self.dtype = dtype
        self.q_rest = torch.tensor(cfg.arm_rest, dtype=dtype)
        self.offset = self.arm.fk(self.q_rest)[:3]  # end effector relative to the base at rest
        lim = self.arm.limits
        self._lo, self._hi = torch.tensor(lim.lower, dtype=dtype), torch.tensor(lim.upper, dtype=dtype)
        self._vmax = torch.tensor(lim.max_velocity, dtype=dtype)
        self.a_h_max = G * math.tan(math.radians(cfg.max_tilt_deg))
        self.a_z = (G * (cfg.min_thrust_ratio - 1.0), G * (cfg.thrust_to_weight - 1.0))

    def initial_state(self, ee_position: torch.Tensor, velocity: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The arm at rest and the end effector at ``ee_position`` (B, 3), the base moving at ``velocity``
        (B, 3; e.g. the end effector's measured velocity) or hovering."""
        p = ee_position.to(self.dtype) - self.offset
        b = p.shape[0]
        v = torch.zeros_like(p) if velocity is None else velocity.to(self.dtype).expand_as(p).clone()
        return {"p": p, "v": v, "a": torch.zeros_like(p), "q": self.q_rest.expand(b, -1).clone()}

    def rollout(self, target: torch.Tensor, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """target (B, T, ≥3) world end-effector positions at dt spacing → {'ee', 'base', 'q': (B, T, ·),
        'a_cmd': (B, T·substeps, 3)} reached at each waypoint time."""
        c = self.cfg
        tgt = target[..., :3].to(self.dtype)
        p, v, a, q = state["p"], state["v"], state["a"], state["q"]
        h = c.dt / c.substeps
        eye = torch.eye(3, dtype=self.dtype)
        prev = p + self.offset
        ee, base, qs, cmds = [], [], [], []
        arm_pos, jac = self.arm.position_jacobian(q)  # one kinematics pass per arm configuration
        for k in range(tgt.shape[1]):
            goal = tgt[:, k]
            v_ref = (goal - prev) / c.dt
            prev = goal
            for _ in range(c.substeps):
                a_cmd = c.kp * (goal - self.offset - p) + c.kd * (v_ref - v)
                a_sat = torch.cat((_soft_norm_limit(a_cmd[:, :2], self.a_h_max),
                                   _soft_clamp(a_cmd[:, 2:], *self.a_z)), dim=-1)
                da = _soft_norm_limit((h / c.response_time) * (a_sat - a), c.max_jerk * h)
                a = a + da
                v = v + a * h
                p = p + v * h
                # Arm: DLS on the position Jacobian toward the target relative to the (level) base.
                rel = goal - p
                err = rel - arm_pos
                dq = (jac.transpose(1, 2) @ torch.linalg.solve(jac @ jac.transpose(1, 2) + c.arm_damping ** 2 * eye,
                                                               err.unsqueeze(-1))).squeeze(-1)
                step = self._vmax * h
                q = torch.minimum(torch.maximum(q + step * torch.tanh(dq / step), self._lo), self._hi)
                arm_pos, jac = self.arm.position_jacobian(q)
                cmds.append(a_cmd)
            ee.append(p + arm_pos)
            base.append(p)
            qs.append(q)
        return {"ee": torch.stack(ee, 1), "base": torch.stack(base, 1), "q": torch.stack(qs, 1),
                "a_cmd": torch.stack(cmds, 1)}

    def split(self, target: np.ndarray, ee_now: np.ndarray, velocity: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        """End-effector waypoints (T, ≥3, world, dt apart) from the measured end effector (3,) and its
        velocity → (vehicle positions (T, 3), arm joint positions (T, dof)): the base/arm split this
        model's rollout makes (the vehicle flies the target minus the arm's rest offset with its
        dynamics; the arm takes up the rest). What the guidance predicts is what the robot is sent."""
        with torch.no_grad():
            t = torch.as_tensor(np.asarray(target, np.float64)[None, :, :3], dtype=self.dtype)
            v = None if velocity is None else torch.as_tensor(np.asarray(velocity, np.float64)[None])
            state = self.initial_state(torch.as_tensor(np.asarray(ee_now, np.float64)[None, :3]), v)
            r = self.rollout(t, state)
        return r["base"][0].numpy(), r["q"][0].numpy()

    def cost(self, target: torch.Tensor, state: dict[str, torch.Tensor],
             reference: torch.Tensor | None = None) -> torch.Tensor:
        """Mean squared end-effector error + effort, per trajectory (B,): of the flight against the
        commanded ``target`` itself (plan and flight agree), or against a fixed ``reference`` path (the
        command is changed so the flight follows the reference: lead the corners, brake early)."""
        r = self.rollout(target, state)
        goal = target if reference is None else reference
        err = ((r["ee"] - goal[..., :3].to(self.dtype)) ** 2).sum(-1).mean(-1)
        effort = (r["a_cmd"] ** 2).sum(-1).mean(-1)
        w = self.cfg.effort_weight if reference is None else self.cfg.reference_effort_weight
        return self.cfg.position_weight * err + w * effort

    def tracking_error(self, target: torch.Tensor, state: dict[str, torch.Tensor]) -> torch.Tensor:
        """RMS end-effector position error over the trajectory, metres (B,)."""
        with torch.no_grad():
            r = self.rollout(target, state)
            return ((r["ee"] - target[..., :3].to(self.dtype)) ** 2).sum(-1).mean(-1).sqrt()
