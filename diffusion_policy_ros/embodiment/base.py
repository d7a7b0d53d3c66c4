"""The embodiment protocol: what guidance and evaluation need from a robot.

Given world-frame end-effector trajectories (B, T, ≥9: position, 6-D rotation[, gripper]) at the
policy's control period and the robot's current state, an embodiment returns

  cost(traj, state)          differentiable scalar per trajectory (B,): its controller's tracking cost
  rollout(traj, state)       what its controller does: {'ee': reached positions (B, T, 3), 'command': ...,
                             'body': points on the robot (B, T, K, 3), ee first, for clearance checks}
  feasibility(traj, state)   {'tracking_error': RMS position error (m), 'limit_violations': count} (B,)

Three ship: ``OracleEmbodiment`` (a handheld gripper: tracks anything, cost 0; the embodiment the
demonstrations come from), ``ArmEmbodiment`` (serial arm from a URDF, DLS tracking under joint limits)
and ``AerialEmbodiment`` (multirotor + arm, embodiment/aerial.py).
"""
from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from .aerial import AerialConfig, AerialManipulator
from .arm import ArmKinematics, ArmTracker
from .limits import Limits


class Embodiment(Protocol):
    name: str

    def state(self, ee_pose: torch.Tensor, joints: torch.Tensor | None = None,
              velocity: torch.Tensor | None = None) -> dict: ...

    def cost(self, traj: torch.Tensor, state: dict, reference: torch.Tensor | None = None) -> torch.Tensor: ...

    def rollout(self, traj: torch.Tensor, state: dict) -> dict: ...

    def feasibility(self, traj: torch.Tensor, state: dict) -> dict: ...


def _rms(reached: torch.Tensor, traj: torch.Tensor) -> torch.Tensor:
    return ((reached - traj[..., :3].to(reached.dtype)) ** 2).sum(-1).mean(-1).sqrt()


class OracleEmbodiment:
    """Tracks any end-effector trajectory exactly."""

    name = "oracle"

    def state(self, ee_pose, joints=None, velocity=None) -> dict:
        return {}

    def cost(self, traj, state, reference=None) -> torch.Tensor:
        if reference is None:
            return traj.new_zeros(traj.shape[0])
        return ((traj[..., :3] - reference[..., :3].to(traj)) ** 2).sum(-1).mean(-1)

    def rollout(self, traj, state) -> dict:
        return {"ee": traj[..., :3], "command": traj, "body": traj[..., None, :3]}

    def feasibility(self, traj, state) -> dict:
        z = torch.zeros(traj.shape[0], dtype=torch.float64)
        return {"tracking_error": z, "limit_violations": z.clone()}


class ArmEmbodiment:
    """A serial arm whose base sits at ``base_position`` in the world (identity rotation); state: joints."""

    name = "arm"

    def __init__(self, kinematics: ArmKinematics, dt: float = 0.1, limits: Limits | None = None,
                 base_position=(0.0, 0.0, 0.0), rotation_weight: float = 0.1):
        self.kin = kinematics
        self.tracker = ArmTracker(kinematics, dt=dt, limits=limits, rotation_weight=rotation_weight)
        self.base = torch.as_tensor(base_position, dtype=kinematics.dtype)

    def _local(self, traj: torch.Tensor) -> torch.Tensor:
        t = traj[..., :9].to(self.kin.dtype)
        return torch.cat((t[..., :3] - self.base, t[..., 3:9]), dim=-1)

    def state(self, ee_pose, joints=None, velocity=None) -> dict:
        if joints is None:
            raise ValueError("arm embodiment: expected the current joint positions, got None")
        return {"q": torch.as_tensor(joints, dtype=self.kin.dtype)}

    def _q0(self, state, b):
        q = state["q"]
        return q.expand(b, -1) if q.shape[0] == 1 else q

    def cost(self, traj, state, reference=None) -> torch.Tensor:
        return self.tracker.cost(self._local(traj), self._q0(state, traj.shape[0]),
                                 None if reference is None else self._local(reference))

    def rollout(self, traj, state) -> dict:
        q = self.tracker.rollout(self._local(traj), self._q0(state, traj.shape[0]))
        ee = self.kin.fk(q)[..., :3] + self.base
        return {"ee": ee, "command": q, "body": ee[..., None, :]}

    def joint_limit_cost(self, traj, state, margin: float = 0.1) -> torch.Tensor:
        """Barrier: squared intrusion of the tracking rollout's joints into a margin inside the limits (B,)."""
        q = self.tracker.rollout(self._local(traj), self._q0(state, traj.shape[0]))
        lo = torch.as_tensor(self.tracker.limits.lower, dtype=q.dtype) + margin
        hi = torch.as_tensor(self.tracker.limits.upper, dtype=q.dtype) - margin
        return (torch.relu(q - hi) ** 2 + torch.relu(lo - q) ** 2).sum(-1).sum(-1)

    def feasibility(self, traj, state) -> dict:
        """Tracking error, and how many waypoints' IK solutions (unclamped) would leave the joint limits."""
        with torch.no_grad():
            r = self.rollout(traj, state)
            lim = self.tracker.limits
            at_limit = ((r["command"] <= torch.as_tensor(lim.lower) + 1e-6)
                        | (r["command"] >= torch.as_tensor(lim.upper) - 1e-6)).any(-1).sum(-1)
            return {"tracking_error": _rms(r["ee"], traj), "limit_violations": at_limit.double()}


class AerialEmbodiment:
    """Multirotor + arm; state: the end effector's current position and velocity (arm at rest)."""

    name = "aerial"

    def __init__(self, cfg: AerialConfig | None = None):
        self.model = AerialManipulator(cfg)

    def state(self, ee_pose, joints=None, velocity=None) -> dict:
        v = None if velocity is None else torch.as_tensor(velocity)
        return self.model.initial_state(torch.as_tensor(ee_pose)[..., :3], v)

    def _expand(self, state, b):
        return {k: (v.expand(b, -1) if v.shape[0] == 1 else v) for k, v in state.items()}

    def cost(self, traj, state, reference=None) -> torch.Tensor:
        return self.model.cost(traj, self._expand(state, traj.shape[0]), reference)

    # where on the line from the end effector to the base the body points lie: the arm's lower half
    # (the multirotor flies above obstacles the gripper reaches round; its frame is not in the cloud)
    BODY_FRACTIONS = (0.0, 0.25, 0.5)

    def rollout(self, traj, state) -> dict:
        r = self.model.rollout(traj, self._expand(state, traj.shape[0]))
        f = torch.tensor(self.BODY_FRACTIONS, dtype=r["ee"].dtype)[:, None]
        body = r["ee"][..., None, :] + f * (r["base"] - r["ee"])[..., None, :]
        return {"ee": r["ee"], "command": r["base"], "arm": r["q"], "a_cmd": r["a_cmd"], "body": body}

    def feasibility(self, traj, state) -> dict:
        with torch.no_grad():
            r = self.rollout(traj, state)
            over_tilt = (r["a_cmd"][..., :2].norm(dim=-1) > self.model.a_h_max).sum(-1)
            return {"tracking_error": _rms(r["ee"], traj), "limit_violations": over_tilt.double()}


def make_embodiment(cfg, dt: float = 0.1):
    """From a config.EmbodimentConfig: 'arm' (its URDF), 'aerial' (shipped aerial manipulator), 'oracle'."""
    from .arm import arm_from_config

    if cfg.kind == "arm":
        return ArmEmbodiment(arm_from_config(cfg), dt=dt)
    if cfg.kind == "aerial":
        return AerialEmbodiment(AerialConfig(dt=dt, **({"urdf": cfg.urdf} if cfg.urdf else {})))
    return OracleEmbodiment()


def nearest_demo_rmse(samples: np.ndarray, demos: np.ndarray) -> np.ndarray:
    """Distance to the demonstration distribution: for each sample (N, T, ≥3), the position RMSE to the
    closest demonstration window (M, T, ≥3), metres."""
    s, d = samples[:, None, :, :3], demos[None, :, :, :3]
    return np.sqrt(((s - d) ** 2).sum(-1).mean(-1)).min(axis=1)
