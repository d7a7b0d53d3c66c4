"""Serial-arm kinematics from a URDF, differentiable (pytorch-kinematics), and its limits.

``fk(q)`` returns the end-effector pose as position + 6-D rotation (the action representation's
layout), so costs on world-frame trajectories can be pulled back to joint space by autograd.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import mujoco_gl  # noqa: F401  (pytorch-kinematics imports MuJoCo)

import pytorch_kinematics as pk  # noqa: E402
import torch

from ..errors import ConfigError
from ..geometry import matrix_to_rot6d, rot6d_to_matrix
from .limits import Limits


class ArmKinematics:
    def __init__(self, urdf: str | Path, ee_link: str = "tool0", joint_names: list[str] | None = None,
                 dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu"):
        path = Path(urdf)
        if not path.is_file():
            raise ConfigError(f"embodiment.urdf: expected a URDF file, got '{path}' (not found)")
        text = path.read_text()
        try:
            self.chain = pk.build_serial_chain_from_urdf(text, ee_link).to(dtype=dtype, device=device)
        except (KeyError, ValueError) as e:
            raise ConfigError(f"embodiment.ee_link: expected a link of {path.name}, got '{ee_link}' ({e})") from None
        names = self.chain.get_joint_parameter_names()
        if joint_names is not None:
            missing = [n for n in joint_names if n not in names]
            if missing or len(joint_names) != len(names):
                raise ConfigError(f"embodiment.joint_names: expected the {len(names)} movable joints of {path.name} "
                                  f"up to {ee_link} {names}, got {list(joint_names)} (missing {missing})")
            if list(joint_names) != names:
                raise ConfigError(f"embodiment.joint_names: expected chain order {names}, got {list(joint_names)}")
        self.joint_names = names
        self._urdf_text, self._tree, self.urdf_name = text, None, path.name
        self.dtype, self.device = dtype, torch.device(device)
        lower, upper = (np.asarray(x, float) for x in self.chain.get_joint_limits())
        vel = np.asarray(self.chain.get_joint_velocity_limits()[1], float)
        bad = [n for n, lo, hi, v in zip(names, lower, upper, vel) if not (lo < hi and v > 0)]
        if bad:
            raise ConfigError(f"{path.name}: joints {bad} need lower < upper and a positive velocity limit, got "
                              f"lower {lower.tolist()}, upper {upper.tolist()}, velocity {vel.tolist()}")
        self.limits = Limits(lower, upper, vel)

    @property
    def dof(self) -> int:
        return len(self.joint_names)

    def link_pose(self, q, link: str) -> np.ndarray:
        """4x4 pose of any URDF link in the base frame at arm joints ``q`` (other joints at 0)."""
        if self._tree is None:
            self._tree = pk.build_chain_from_urdf(self._urdf_text).to(dtype=self.dtype)
        names = self._tree.get_joint_parameter_names()
        full = torch.zeros(len(names), dtype=self.dtype)
        for name, value in zip(self.joint_names, np.asarray(q, float)):
            full[names.index(name)] = float(value)
        frames = self._tree.forward_kinematics(full[None])
        if link not in frames:
            raise ConfigError(f"link '{link}': expected a link of {self.urdf_name}, got none of that name "
                              f"(links: {sorted(frames)})")
        return frames[link].get_matrix()[0].numpy()

    def fk(self, q: torch.Tensor) -> torch.Tensor:
        """Joint positions (..., dof) → end-effector pose (..., 9): position + 6-D rotation, base frame."""
        q = torch.as_tensor(q, dtype=self.dtype, device=self.device)
        shape = q.shape[:-1]
        m = self.chain.forward_kinematics(q.reshape(-1, self.dof)).get_matrix()
        pose = torch.cat((m[:, :3, 3], matrix_to_rot6d(m[:, :3, :3])), dim=-1)
        return pose.reshape(*shape, 9)

    def position_jacobian(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Joint positions (B, dof) → (end-effector position (B, 3), position Jacobian (B, 3, dof)) from one
        kinematics pass (what a rollout's IK needs each sub-step; separate fk + jacobian calls do it twice)."""
        jac, m = self.chain.jacobian(torch.as_tensor(q, dtype=self.dtype, device=self.device), ret_eef_pose=True)
        return m[:, :3, 3], jac[:, :3]


def rotation_error(r_des: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) pair → (..., 3): sin(θ)·axis of R_des·Rᵀ (exact direction, smooth everywhere)."""
    e = r_des @ r.transpose(-1, -2)
    return 0.5 * torch.stack((e[..., 2, 1] - e[..., 1, 2], e[..., 0, 2] - e[..., 2, 0], e[..., 1, 0] - e[..., 0, 1]), -1)


class ArmTracker:
    """What an arm's Cartesian tracking controller does with an end-effector trajectory: at every
    control step, damped-least-squares IK toward the next target, joint steps limited smoothly to
    velocity·dt, positions kept inside the joint limits. Differentiable end to end (autograd through
    FK and the Jacobian), so the tracking cost's gradient reaches the proposed trajectory."""

    def __init__(self, kinematics: ArmKinematics, dt: float = 0.1, damping: float = 0.05, gain: float = 1.0,
                 position_weight: float = 1.0, rotation_weight: float = 0.1, limits: Limits | None = None):
        """``limits``: joint limits to track under (default: the URDF's), e.g. a tighter safety envelope."""
        if dt <= 0 or damping <= 0 or gain <= 0:
            raise ConfigError(f"embodiment.arm: expected dt, damping, gain > 0, got {dt}, {damping}, {gain}")
        self.kin, self.dt, self.damping, self.gain = kinematics, dt, damping, gain
        self.w_pos, self.w_rot = position_weight, rotation_weight
        k = kinematics
        self.limits = lim = limits or k.limits
        self._lo = torch.as_tensor(lim.lower, dtype=k.dtype, device=k.device)
        self._hi = torch.as_tensor(lim.upper, dtype=k.dtype, device=k.device)
        self._step = torch.as_tensor(lim.max_velocity * dt, dtype=k.dtype, device=k.device)

    def rollout(self, target: torch.Tensor, q0: torch.Tensor) -> torch.Tensor:
        """target (B, T, 9) poses (position + 6-D rotation), q0 (B, dof) → joint positions (B, T, dof)."""
        k = self.kin
        target = target.to(k.dtype)
        q = q0.to(k.dtype)
        eye = torch.eye(6, dtype=k.dtype, device=k.device)
        r_des = rot6d_to_matrix(target[..., 3:9])
        out = []
        for t in range(target.shape[1]):
            pose = k.fk(q)
            err = torch.cat((target[:, t, :3] - pose[:, :3], rotation_error(r_des[:, t], rot6d_to_matrix(pose[:, 3:]))), -1)
            jac = k.chain.jacobian(q)  # (B, 6, dof), base frame, linear then angular
            jjt = jac @ jac.transpose(1, 2) + self.damping ** 2 * eye
            dq = (jac.transpose(1, 2) @ torch.linalg.solve(jjt, self.gain * err.unsqueeze(-1))).squeeze(-1)
            dq = self._step * torch.tanh(dq / self._step)  # smooth velocity limit
            q = torch.minimum(torch.maximum(q + dq, self._lo), self._hi)
            out.append(q)
        return torch.stack(out, dim=1)

    def cost(self, target: torch.Tensor, q0: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        """Mean weighted squared error of the rollout against the target itself or a fixed reference (B,)."""
        q = self.rollout(target, q0)
        reached = self.kin.fk(q)
        goal = target if reference is None else reference
        pos = ((reached[..., :3] - goal[..., :3].to(reached.dtype)) ** 2).sum(-1)
        rot = (rotation_error(rot6d_to_matrix(goal[..., 3:9].to(reached.dtype)),
                              rot6d_to_matrix(reached[..., 3:])) ** 2).sum(-1)
        return (self.w_pos * pos + self.w_rot * rot).mean(-1)


DEFAULT_URDF = "ur5e_like.urdf"


def arm_from_config(cfg) -> ArmKinematics:
    """ArmKinematics from an EmbodimentConfig (urdf empty → the shipped UR5e-like arm)."""
    from ..config import resolve_shipped

    urdf = resolve_shipped("urdf", cfg.urdf or DEFAULT_URDF, "embodiment.urdf")
    return ArmKinematics(urdf, cfg.ee_link, list(cfg.joint_names) or None)
