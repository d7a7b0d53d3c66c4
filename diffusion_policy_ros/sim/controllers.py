"""The robot-side trajectory controller the simulator stands in for, with its real semantics.

``JointTrajectoryFollower`` executes trajectories as ros2_controllers' joint_trajectory_controller
(JTC) does (``Trajectory::sample`` and ``JointTrajectoryController::update``, jazzy):

- a new trajectory replaces the running one when it arrives; the state at that moment (measured
  positions and velocities by default, the last command with ``open_loop``, JTC's
  ``open_loop_control``) is the point "before the trajectory";
- before the first point's time, the command is interpolated from that state to the first point;
- from the first point on, it is interpolated between waypoints: linear when a segment's ends carry
  only positions, cubic when both carry velocities; after the last point, the last point is held;
- so a trajectory whose first point is already in the past on arrival starts where the new
  trajectory is *now*: the command jumps. That jump is recorded (``handovers``), as is every such
  late trajectory (``first_point_in_past``);
- a trajectory that ends in the past is rejected and the running one continues (JTC's validation).

The MultiDOF (end-effector) follower of the aerial sim uses the same class on positions.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError
from ..runtime.schedule import TimedTrajectory


@dataclass
class FollowerStats:
    received: int = 0
    rejected: int = 0  # ended in the past: ignored, as JTC rejects it
    first_point_in_past: int = 0
    handovers: list = field(default_factory=list)  # (t_ns, largest |command after - command before|)

    @property
    def max_jump(self) -> float:
        return max((j for _, j in self.handovers), default=0.0)


class JointTrajectoryFollower:
    def __init__(self, initial: np.ndarray, open_loop: bool = False):
        q = np.asarray(initial, float)
        self.open_loop = open_loop
        self.trajectory = TimedTrajectory(np.array([0], np.int64), q[None])
        self._before = (0, q.copy(), np.zeros_like(q))  # (t_ns, positions, velocities) at receipt
        self.stats = FollowerStats()

    @property
    def dim(self) -> int:
        return self.trajectory.values.shape[1]

    def sample(self, t_ns: int) -> tuple[np.ndarray, np.ndarray]:
        """(commanded positions, velocities) at ``t_ns``."""
        t0, q0, v0 = self._before
        tr = self.trajectory
        first = int(tr.times_ns[0])
        if t_ns >= first:
            return tr.sample(int(t_ns))
        if t_ns <= t0:
            return q0.copy(), v0.copy()
        # Before the first point: from the state at receipt to the first point (JTC's first segment).
        ramp = TimedTrajectory(np.array([t0, first], np.int64), np.stack((q0, tr.values[0])),
                               None if tr.velocities is None else np.stack((v0, tr.velocities[0])))
        return ramp.sample(int(t_ns))

    def command(self, t_ns: int) -> np.ndarray:
        return self.sample(t_ns)[0]

    def set(self, traj: TimedTrajectory, now_ns: int, measured: np.ndarray | None = None,
            measured_velocity: np.ndarray | None = None) -> bool:
        """A trajectory arrives at ``now_ns``; ``measured``: the joint state then (None: open loop).
        Returns False when it is rejected (it ends in the past)."""
        if traj.values.ndim != 2 or traj.values.shape[1] != self.dim or not np.isfinite(traj.values).all() or (
                traj.velocities is not None and not np.isfinite(traj.velocities).all()):
            raise ConfigError(f"trajectory: expected finite values for {self.dim} joints, got shape "
                              f"{traj.values.shape}")
        now_ns = int(now_ns)
        self.stats.received += 1
        if traj.end_ns < now_ns:
            self.stats.rejected += 1
            return False
        before, v_before = self.sample(now_ns)
        if int(traj.times_ns[0]) <= now_ns:
            self.stats.first_point_in_past += 1
        if self.open_loop or measured is None:
            state = (now_ns, before, v_before)
        else:
            v = np.zeros(self.dim) if measured_velocity is None else np.asarray(measured_velocity, float)
            state = (now_ns, np.asarray(measured, float).copy(), v.copy())
        self._before, self.trajectory = state, traj
        after = self.command(now_ns)
        self.stats.handovers.append((now_ns, float(np.max(np.abs(after - before)))))
        return True

    def hold(self, q: np.ndarray, now_ns: int = 0) -> None:
        """Hold ``q`` (a reset): no trajectory, no hand-over recorded."""
        q = np.asarray(q, float)
        self.trajectory = TimedTrajectory(np.array([int(now_ns)], np.int64), q[None])
        self._before = (int(now_ns), q.copy(), np.zeros_like(q))
        self.stats = FollowerStats()
