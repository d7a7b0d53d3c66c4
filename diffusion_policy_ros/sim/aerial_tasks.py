"""The aerial manipulator's task: reach a target on a stand, round a post, without touching either.

``reach`` (aerial): the end effector starts hovering on one side of a post (x ≈ 0.55 m) that stands
between it and a red target on a stand; bring the gripper onto the target and hold it there. The
post reaches above the gripper's flight height but below the multirotor, so the gripper has to go
round it, left or right. The scripted expert is the oracle floating gripper (a handheld UMI-style
demonstration, tracked perfectly) at a human hand's pace; it picks the side at random per seed, so the
demonstrations hold two modes whatever the start. The side opposite the start needs a sharp lateral
swing that a thrust-limited, lagging multirotor cuts, and cutting it meets the post: which mode to
follow is the embodiment's business, which is what embodiment-aware guidance decides.

Success: the gripper within ``tolerance`` of its resting place on the target for ``hold_s``, within
``duration_s``. Failure: the gripper overlapping the post or the stand, or the robot touching them or
the ground (MuJoCo contacts; the oracle has none, its geometry is checked).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .aerial import AerialSceneConfig, AerialSim
from .report import draw_paths
from .task_parts import BoxObject, HoldTimer, toward

GREY = (0.55, 0.55, 0.6, 1.0)


@dataclass
class ReachTask:
    name: str = "reach"
    embodiment: str = "aerial"
    description: str = "bring the gripper onto the red target round the post, touching neither post nor stand"
    duration_s: float = 12.0
    flight_z: float = 1.0  # the gripper's height while travelling
    start_x: float = 0.0
    start_y: float = 0.20  # ± (side at random), plus jitter
    start_jitter: float = 0.03
    post_half: tuple[float, float, float] = (0.06, 0.06, 0.55)  # top at 1.10 m: under the multirotor
    post_x: tuple[float, float] = (0.50, 0.60)
    post_y: float = 0.03  # ±
    stand_half: tuple[float, float, float] = (0.07, 0.07, 0.35)
    target_half: tuple[float, float, float] = (0.04, 0.04, 0.02)
    target_x: tuple[float, float] = (1.10, 1.25)
    target_y: float = 0.15  # ±
    tolerance: float = 0.035  # m, gripper centre to its resting place on the target
    hold_s: float = 0.5
    wind_std: float = 0.0  # N, gusts on the multirotor
    expert_speed: float = 0.8  # m/s, the demonstrator's hand
    side_clearance: float = 0.06  # m between the gripper and the post as the expert passes it
    pass_margin: float = 0.06  # m before and after the post where the expert's path turns

    def __post_init__(self):
        self._reset_state()

    def _reset_state(self) -> None:
        self.hold = HoldTimer()
        self.crash = ""

    def scene_config(self, oracle: bool = False) -> AerialSceneConfig:
        s, t, p = self.stand_half, self.target_half, self.post_half
        return AerialSceneConfig(oracle=oracle, wind_std=self.wind_std, objects=[
            BoxObject("post", p, GREY, free=False, pos=(0.55, 0.0, p[2])),
            BoxObject("stand", s, GREY, free=False, pos=(1.2, 0.0, s[2])),
            BoxObject("target", t, (0.85, 0.15, 0.12, 1.0), free=False, pos=(1.2, 0.0, 2 * s[2] + t[2])),
        ])

    def reset(self, sim: AerialSim, kin, seed: int) -> dict:
        rng = np.random.default_rng(seed)
        side = 1.0 if rng.random() < 0.5 else -1.0
        start = np.array([self.start_x, side * self.start_y, self.flight_z]) + \
            np.r_[rng.uniform(-1, 1, 2) * self.start_jitter, 0.0]
        post = (rng.uniform(*self.post_x), rng.uniform(-self.post_y, self.post_y))
        target = (rng.uniform(*self.target_x), rng.uniform(-self.target_y, self.target_y))
        self.demo_side = 1.0 if rng.random() < 0.5 else -1.0  # the expert's way round (independent of the start)
        m = sim.model
        m.geom("post").pos[:2] = post
        m.geom("stand").pos[:2] = target
        m.geom("target").pos[:2] = target
        sim.reset(start, seed=seed)
        self._reset_state()
        return {"start": start.tolist(), "post": [float(v) for v in post], "target": [float(v) for v in target],
                "demo_side": "left" if self.demo_side > 0 else "right"}

    def goal(self, sim: AerialSim) -> np.ndarray:
        """Where the gripper's centre rests on the target."""
        g = sim.model.geom("target")
        return np.r_[g.pos[:2], g.pos[2] + self.target_half[2] + sim.cfg.gripper_half[2]]

    def _overlaps(self, sim: AerialSim, name: str) -> bool:
        g = sim.model.geom(name)
        d = np.abs(sim.tip_position() - g.pos) - (g.size + np.asarray(sim.cfg.gripper_half))
        return bool((d < 0).all())

    def update(self, sim: AerialSim) -> None:
        if not self.crash:
            for name in ("post", "stand"):
                if self._overlaps(sim, name):
                    self.crash = f"the gripper hit the {name}"
            if not sim.cfg.oracle:
                hit = [n for n in sim.contacts() if n in ("post", "stand", "ground")]
                if hit:
                    self.crash = f"the robot hit the {hit[0]}"
        self.hold.update(bool(np.linalg.norm(sim.tip_position() - self.goal(sim)) <= self.tolerance), sim.time_ns)

    def success(self, sim: AerialSim) -> bool:
        return self.hold.longest_ns >= self.hold_s * 1e9 and not self.crash

    def failure(self, sim: AerialSim) -> str:
        return self.crash

    def trace(self, sim: AerialSim) -> list[float]:
        """The gripper's x, y, z."""
        return sim.tip_position().tolist()

    def plot(self, ax, episodes) -> None:
        draw_paths(ax, episodes, "gripper path")

    def expert(self, sim: AerialSim) -> "ReachExpert":
        return ReachExpert(self, sim)


@dataclass
class FastReachTask(ReachTask):
    """``reach`` demonstrated at a quick hand's pace (1.6 m/s): the oracle swings round the post faster
    than the thrust-limited, lagging multirotor can turn, so followed as demonstrated the gripper cuts
    the corner into the post (about half the demonstrations, replayed open loop; tested), and at this
    speed one action chunk covers the whole swing: re-planning cannot catch it."""

    name: str = "reach_fast"
    description: str = "reach, demonstrated at 1.6 m/s: quicker than the multirotor can turn round the post"
    expert_speed: float = 1.6


class ReachExpert:
    """The demonstrator's hand: round the post on ``task.demo_side`` at ``task.expert_speed``, passing it
    ``task.side_clearance`` away, over the target, down onto it slowly, hold ``hold_s`` + 0.3 s (the
    demonstration ends there)."""

    def __init__(self, task: ReachTask, sim: AerialSim, dt: float = 0.1, descent_speed: float = 0.25,
                 decel: float = 2.0):
        self.task, self.sim, self.phase = task, sim, "travel"
        post = sim.model.geom("post")
        goal = task.goal(sim)
        y = post.pos[1] + task.demo_side * (task.post_half[1] + sim.cfg.gripper_half[1] + task.side_clearance)
        reach_x = task.post_half[0] + sim.cfg.gripper_half[0] + task.pass_margin
        z = task.flight_z
        self.waypoints = [np.array([post.pos[0] - reach_x, y, z]), np.array([post.pos[0] + reach_x, y, z]),
                          np.r_[goal[:2], goal[2] + 0.12]]
        self.goal = goal
        self.step, self.descent_step, self.dt, self.decel = task.expert_speed * dt, descent_speed * dt, dt, decel
        self.hold_steps = int(round((task.hold_s + 0.3) / dt))
        self.held = 0

    def next_target(self, p: np.ndarray) -> np.ndarray:
        if self.phase == "travel":
            # Along the polyline at constant speed, slowing to the descent speed over the last stretch
            # (a hand decelerating at ``decel``); a step may pass a corner and go on along the next leg.
            rest = sum(np.linalg.norm(b - a) for a, b in zip([p] + self.waypoints[:-1], self.waypoints))
            left, q = min(self.step, max(self.descent_step, self.dt * np.sqrt(2 * self.decel * rest))), p.copy()
            while self.waypoints and left > 1e-9:
                n = np.linalg.norm(self.waypoints[0] - q)
                if n <= left:
                    q, left = self.waypoints.pop(0), left - n
                else:
                    q, left = toward(q, self.waypoints[0], left), 0.0
            if not self.waypoints:
                self.phase = "descend"
            return q
        if self.phase == "descend":
            if np.linalg.norm(self.goal - p) < 1e-3:
                self.phase = "hold"
            return toward(p, self.goal, self.descent_step)
        if self.phase == "hold":
            self.held += 1
            if self.held >= self.hold_steps:
                self.phase = "done"
        return p.copy()
