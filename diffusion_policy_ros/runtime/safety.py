"""Limits enforced on every trajectory before it leaves the runtime.

NaN or inf anywhere → ``UnsafeCommandError`` (nothing is sent). Positions are clamped into
[lower, upper]; each step is then shortened so that no segment, including the first one from the
current position at ``now``, exceeds the velocity limit (timing is kept, motion is reduced: the
conservative choice). End-effector targets can be clamped into a workspace box the same way, and
their linear and angular velocity and acceleration limited from the measured pose.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from ..embodiment.limits import Limits  # noqa: F401  (enforced here)
from ..errors import UnsafeCommandError  # noqa: F401
from ..geometry import rot6d_to_matrix
from .schedule import TimedTrajectory


@dataclass
class SafetyReport:
    position_clamped: int = 0  # waypoint entries moved into [lower, upper]
    velocity_limited: int = 0  # waypoint entries shortened to respect max_velocity


def enforce_limits(traj: TimedTrajectory, current: np.ndarray, now_ns: int, limits: Limits
                   ) -> tuple[TimedTrajectory, SafetyReport]:
    values = np.asarray(traj.values, float)
    current = np.asarray(current, float)
    if not np.isfinite(values).all() or not np.isfinite(current).all():
        raise UnsafeCommandError("trajectory: expected finite values, got NaN/inf; nothing is sent")
    if values.shape[1:] != limits.lower.shape or current.shape != limits.lower.shape:
        raise UnsafeCommandError(f"trajectory: expected {limits.lower.shape[0]} values per waypoint, got "
                                 f"{values.shape[1:]} (current {current.shape})")
    report = SafetyReport()
    clamped = np.clip(values, limits.lower, limits.upper)
    report.position_clamped = int(np.count_nonzero(clamped != values))
    out = np.empty_like(clamped)
    prev, t_prev = np.clip(current, limits.lower, limits.upper), int(now_ns)
    for k, (t, q) in enumerate(zip(traj.times_ns, clamped)):
        dt = max(int(t) - t_prev, 0) / 1e9
        step = limits.max_velocity * dt
        limited = np.clip(q, prev - step, prev + step)
        report.velocity_limited += int(np.count_nonzero(limited != q))
        out[k] = limited
        prev, t_prev = limited, int(t)
    return TimedTrajectory(np.asarray(traj.times_ns, np.int64), out), report


def clamp_to_box(points: np.ndarray, lo, hi) -> tuple[np.ndarray, int]:
    """Clamp (..., 3) positions into a workspace box; returns (clamped, number of entries moved)."""
    p = np.asarray(points, float)
    if not np.isfinite(p).all():
        raise UnsafeCommandError("workspace: expected finite positions, got NaN/inf; nothing is sent")
    c = np.clip(p, lo, hi)
    return c, int(np.count_nonzero(c != p))


def clamp_tool_to_box(poses: np.ndarray, lo, hi, tcp_offset=(0.0, 0.0, 0.0)) -> tuple[np.ndarray, int]:
    """End-effector poses (K, ≥9: position + 6-D rotation of the flange) moved so the tool tip, at
    ``tcp_offset`` in the flange frame, stays inside the box; → (poses, number of tips moved)."""
    from ..geometry import rot6d_to_matrix
    import torch

    out = np.array(poses, float, copy=True)
    t = np.asarray(tcp_offset, float)
    if not t.any():
        out[:, :3], moved = clamp_to_box(out[:, :3], lo, hi)
        return out, moved
    rot = rot6d_to_matrix(torch.as_tensor(out[:, 3:9])).numpy()
    tip = out[:, :3] + rot @ t
    clamped, moved = clamp_to_box(tip, lo, hi)
    out[:, :3] += clamped - tip
    return out, moved


@dataclass
class CartesianLimits:
    """Limits on an end-effector trajectory [position(3), rotation 6-D(6), (gripper)]."""

    max_linear_velocity: float  # m/s
    max_angular_velocity: float  # rad/s
    max_linear_acceleration: float  # m/s²
    max_angular_acceleration: float  # rad/s²


def _clip_norm(v: np.ndarray, limit: float) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v if n <= limit else v * (limit / n)


def enforce_cartesian_limits(traj: TimedTrajectory, current: np.ndarray, now_ns: int, limits: CartesianLimits,
                             velocity: np.ndarray | None = None) -> tuple[TimedTrajectory, SafetyReport]:
    """Each segment's linear and angular velocity, and its change from the previous segment's, limited:
    the first segment starts from ``current`` (pose9 at ``now``) moving at ``velocity`` (linear and
    angular, (6,); default at rest). Timing is kept and motion shortened, as for joints. Rotations are
    limited on SO(3) (axis-angle of each step), so a limited waypoint is still a rotation."""
    values = np.asarray(traj.values, float)
    if not np.isfinite(values).all() or not np.isfinite(current).all():
        raise UnsafeCommandError("trajectory: expected finite values, got NaN/inf; nothing is sent")
    rots = rot6d_to_matrix(torch.as_tensor(np.concatenate((current[None, 3:9], values[:, 3:9])))).numpy()
    p_prev, r_prev = np.asarray(current[:3], float), Rotation.from_matrix(rots[0])
    v_prev, w_prev = (np.zeros(3), np.zeros(3)) if velocity is None else (velocity[:3], velocity[3:6])
    out, report, t_prev = values.copy(), SafetyReport(), int(now_ns)
    lim = limits
    for k, t in enumerate(traj.times_ns):
        dt = max(int(t) - t_prev, 1) / 1e9
        v = (values[k, :3] - p_prev) / dt
        v_lim = _clip_norm(v_prev + _clip_norm(v - v_prev, lim.max_linear_acceleration * dt), lim.max_linear_velocity)
        r_goal = Rotation.from_matrix(rots[k + 1])
        w = (r_prev.inv() * r_goal).as_rotvec() / dt  # body frame
        w_lim = _clip_norm(w_prev + _clip_norm(w - w_prev, lim.max_angular_acceleration * dt),
                           lim.max_angular_velocity)
        if not np.allclose(v_lim, v, atol=1e-12, rtol=1e-9):
            report.velocity_limited += 1
            out[k, :3] = p_prev + v_lim * dt
        r = r_goal
        if not np.allclose(w_lim, w, atol=1e-12, rtol=1e-9):
            report.velocity_limited += 1
            r = r_prev * Rotation.from_rotvec(w_lim * dt)
            out[k, 3:9] = r.as_matrix()[:2, :].reshape(6)
        p_prev, r_prev, v_prev, w_prev, t_prev = out[k, :3], r, v_lim, w_lim, int(t)
    return TimedTrajectory(np.asarray(traj.times_ns, np.int64), out), report
