"""Simulated tasks: randomised initial conditions per seed, an explicit success test, a scripted expert.

``push`` (arm): a red cube starts at a random place and yaw in front of the robot; push it past the
green line at x = ``goal_x``. The cube's position is only known from the camera, so a policy has to see
it. The expert closes the loop on the true cube pose: over it, down behind it, push along +x while
centring on the cube, then lift away.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..embodiment.arm import ArmKinematics, ArmTracker
from ..geometry import matrix_to_rot6d
from .scene import ArmSceneConfig, ArmSim, BoxObject

# The UR-style "home" with the tool pointing straight down, turned to face +x.
HOME_Q = np.array([np.pi, -np.pi / 2, np.pi / 2, -np.pi / 2, -np.pi / 2, 0.0])
R_DOWN = np.array([[0.0, -1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
ROT6D_DOWN = matrix_to_rot6d(torch.as_tensor(R_DOWN)).numpy()


def solve_ik(kin: ArmKinematics, position: np.ndarray, q0: np.ndarray = HOME_Q, iterations: int = 60) -> np.ndarray:
    """Joints placing the flange at ``position`` pointing down (repeated damped-least-squares steps)."""
    tracker = ArmTracker(kin, dt=1.0, damping=0.02)
    target = torch.as_tensor(np.concatenate((position, ROT6D_DOWN)))[None, None].repeat(1, iterations, 1)
    with torch.no_grad():
        q = tracker.rollout(target, torch.as_tensor(q0)[None])[0, -1].numpy()
    reached = kin.fk(torch.as_tensor(q))[:3].numpy()
    if np.linalg.norm(reached - position) > 1e-3:
        raise ValueError(f"sim: no IK solution for flange position {position.tolist()} (reached {reached.tolist()})")
    return q


@dataclass
class PushTask:
    name: str = "push"
    embodiment: str = "arm"
    description: str = "push the red cube across the green line"
    duration_s: float = 10.0
    cube_half: float = 0.025
    goal_x: float = 0.60
    cube_x: tuple[float, float] = (0.40, 0.48)
    cube_y: tuple[float, float] = (-0.12, 0.12)
    cube_yaw: float = 0.4  # ± rad
    start: tuple[float, float, float] = (0.33, 0.0, 0.25)  # flange start (± start_jitter in x, y)
    start_jitter: float = 0.04

    def scene_config(self) -> ArmSceneConfig:
        h = self.cube_half
        return ArmSceneConfig(objects=[
            BoxObject("cube", (h, h, h), (0.85, 0.15, 0.12, 1.0), mass=0.2, pos=(0.45, 0.0, h)),
            BoxObject("goal_line", (0.006, 0.35, 0.001), (0.1, 0.7, 0.2, 1.0), free=False, pos=(self.goal_x, 0.0, 0.001)),
        ])

    def reset(self, sim: ArmSim, kin: ArmKinematics, seed: int) -> dict:
        """Random initial conditions for ``seed``; returns them (for logs)."""
        rng = np.random.default_rng(seed)
        cube = np.array([rng.uniform(*self.cube_x), rng.uniform(*self.cube_y), self.cube_half])
        yaw = rng.uniform(-self.cube_yaw, self.cube_yaw)
        start = np.array(self.start) + np.r_[rng.uniform(-1, 1, 2) * self.start_jitter, 0.0]
        sim.reset(solve_ik(kin, start), {"cube": (cube, yaw)})
        return {"cube": cube.tolist(), "yaw": float(yaw), "start": start.tolist()}

    def cube(self, sim: ArmSim) -> np.ndarray:
        return sim.object_pose("cube")[0]

    def success(self, sim: ArmSim) -> bool:
        x, y, z = self.cube(sim)
        return bool(x - self.cube_half >= self.goal_x - 0.005 and abs(y) < 0.3 and z > 0)

    def expert(self, sim: ArmSim) -> "PushExpert":
        return PushExpert(self, sim)


class PushExpert:
    """Scripted pusher on the true cube pose. ``next_target(reference)`` moves the flange reference
    one control period along: approach over the cube's back side, descend, push, lift."""

    def __init__(self, task: PushTask, sim: ArmSim, dt: float = 0.1, speed: float = 0.15, push_speed: float = 0.08):
        self.task, self.sim, self.phase = task, sim, "approach"
        self.step, self.push_step = speed * dt, push_speed * dt
        tool = sim.cfg.tool_length
        self.z_high = tool + 0.12  # flange height clear of the cube
        self.z_push = tool + 0.02  # paddle centre a little below the cube's middle
        self.back = task.cube_half + sim.cfg.tip_half[1] + 0.03
        self.lost = task.cube_half + 0.02  # cube this far off the paddle's line: go round again

    def _toward(self, p: np.ndarray, goal: np.ndarray, step: float) -> np.ndarray:
        d = goal - p
        n = np.linalg.norm(d)
        return goal.copy() if n <= step else p + d * (step / n)

    def next_target(self, p: np.ndarray) -> np.ndarray:
        c = self.task.cube(self.sim)
        if self.phase == "approach":
            goal = np.array([c[0] - self.back, c[1], self.z_high])
            if np.linalg.norm(goal - p) < 1e-3:
                self.phase = "descend"
            return self._toward(p, goal, self.step)
        if self.phase == "descend":
            goal = np.array([c[0] - self.back, c[1], self.z_push])
            if np.linalg.norm(goal - p) < 1e-3:
                self.phase = "push"
            return self._toward(p, goal, self.step)
        if self.phase == "push":
            if c[0] - self.task.cube_half >= self.task.goal_x + 0.02:
                self.phase = "lift"
            elif abs(c[1] - p[1]) > self.lost or c[0] - p[0] > self.back + 0.03:
                self.phase = "approach"
                return self._toward(p, np.array([p[0], p[1], self.z_high]), self.step)
            dy = np.clip(c[1] - p[1], -0.5 * self.push_step, 0.5 * self.push_step)
            return np.array([p[0] + self.push_step, p[1] + dy, self.z_push])
        if self.phase == "lift":
            goal = np.array([p[0], p[1], self.z_high])
            if np.linalg.norm(goal - p) < 1e-3:
                self.phase = "done"
            return self._toward(p, goal, self.step)
        return p.copy()


TASKS = {"push": PushTask}


def make_task(name: str):
    from ..errors import ConfigError

    if name not in TASKS:
        raise ConfigError(f"--task: expected one of {sorted(TASKS)}, got '{name}'")
    return TASKS[name]()
