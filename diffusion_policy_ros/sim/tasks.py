"""Simulated tasks: randomised initial conditions per seed, an explicit success test, a scripted expert.

``push`` (arm): a red cube starts at a random place and yaw in front of the robot; push it past the
green line at x = ``goal_x``. The cube's position is only known from the camera, so a policy has to see
it. The expert closes the loop on the true cube pose: over it, down behind it, push along +x while
centring on the cube, then lift away.

``press`` (arm, contact-rich): a spring-loaded part sits in a housing at a random place; press it with
12–18 N and hold that for 1 s, never above 25 N (a snap-fit seated without damage). The spring's
stiffness (1–6 N/mm, log-uniform) changes per seed and cannot be seen: how deep to press is only known
from the wrist force. The expert descends onto the part, presses slowly until the force reads 15 N and
holds (``PressExpert``; its ``planned`` profile slows before the part and stops on a planned depth).

Each task: ``reset(sim, kin, seed)``, ``update(sim)`` after every physics sub-step (stateful tests),
``success(sim)``, ``failure(sim)`` (a reason that ends the episode, or ""), ``trace(sim)`` (what the
report plots) and ``expert(sim)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..embodiment.arm import ArmKinematics, ArmTracker
from ..geometry import matrix_to_rot6d
from .aerial_tasks import FastReachTask, ReachTask
from .report import draw_paths
from .arm import ArmSceneConfig, ArmSim
from .task_parts import BoxObject, HoldTimer, SpringPart, toward

# The UR-style "home" with the tool pointing straight down, turned to face +x.
HOME_Q = np.array([0.0, -np.pi / 2, np.pi / 2, -np.pi / 2, -np.pi / 2, 0.0])
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

    def update(self, sim: ArmSim) -> None:
        pass

    def success(self, sim: ArmSim) -> bool:
        x, y, z = self.cube(sim)
        return bool(x - self.cube_half >= self.goal_x - 0.005 and abs(y) < 0.3 and z > 0)

    def failure(self, sim: ArmSim) -> str:
        return ""

    def trace(self, sim: ArmSim) -> list[float]:
        """The cube's x, y (the report draws its path)."""
        return self.cube(sim)[:2].tolist()

    def plot(self, ax, episodes) -> None:
        ax.axvline(self.goal_x, color="tab:green", lw=3, alpha=0.6, label="goal line")
        draw_paths(ax, episodes, "cube path")

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

    def next_target(self, p: np.ndarray) -> np.ndarray:
        c = self.task.cube(self.sim)
        if self.phase == "approach":
            goal = np.array([c[0] - self.back, c[1], self.z_high])
            if np.linalg.norm(goal - p) < 1e-3:
                self.phase = "descend"
            return toward(p, goal, self.step)
        if self.phase == "descend":
            goal = np.array([c[0] - self.back, c[1], self.z_push])
            if np.linalg.norm(goal - p) < 1e-3:
                self.phase = "push"
            return toward(p, goal, self.step)
        if self.phase == "push":
            if c[0] - self.task.cube_half >= self.task.goal_x + 0.02:
                self.phase = "lift"
            elif abs(c[1] - p[1]) > self.lost or c[0] - p[0] > self.back + 0.03:
                self.phase = "approach"
                return toward(p, np.array([p[0], p[1], self.z_high]), self.step)
            dy = np.clip(c[1] - p[1], -0.5 * self.push_step, 0.5 * self.push_step)
            return np.array([p[0] + self.push_step, p[1] + dy, self.z_push])
        if self.phase == "lift":
            goal = np.array([p[0], p[1], self.z_high])
            if np.linalg.norm(goal - p) < 1e-3:
                self.phase = "done"
            return toward(p, goal, self.step)
        return p.copy()


@dataclass
class PressTask:
    name: str = "press"
    embodiment: str = "arm"
    description: str = "press the spring-loaded part with 12-18 N, steady, for 1 s; never above 25 N"
    duration_s: float = 12.0
    part_half: tuple[float, float, float] = (0.025, 0.025, 0.02)
    rest_z: float = 0.05  # the part's centre at rest: its top at 7 cm
    part_x: tuple[float, float] = (0.40, 0.50)
    part_y: tuple[float, float] = (-0.10, 0.10)
    stiffness: tuple[float, float] = (1000.0, 6000.0)  # N/m, log-uniform per seed
    band: tuple[float, float] = (12.0, 18.0)  # N
    max_force: float = 25.0  # N: above this the part is damaged
    hold_s: float = 1.0
    # N: the hold must be steady (the force within this spread for hold_s). Without it a policy that
    # never stops but creeps through the band passed on soft springs (the vision-only policy's 32/50).
    steady: float = 1.0
    start: tuple[float, float, float] = (0.33, 0.0, 0.25)
    start_jitter: float = 0.04
    # Joint position gains: a stiff arm, as an industrial position controller is (~45 N/mm at the
    # flange; at 30000 the contact chattered ±2 N against the stiffest springs). With the push
    # scene's 3000 N·m/rad the flange deflected ~1.5 mm at 15 N (~10 N/mm, the springs' order), so
    # the descent speed seen in joint_states told the spring's stiffness and vision alone sufficed.
    kp: float = 15000.0
    # Integral action (1/s): no steady-state error under load, as on an industrial arm. Without it the
    # pose held 0.3 mm above the command at 15 N, so "command a fixed offset below the measured pose"
    # was a force controller through the servo gains, and a relative-action policy pressed within the
    # band without feeling the force (vision 49/50). With it the hold offset is 0 and the pressing
    # offset ~0.02 mm whatever the spring: how deep to press is only known from the wrist force.
    ki: float = 20.0
    expert_profile: str = "reactive"  # or "planned", "regulating": see PressExpert

    def __post_init__(self):
        self._reset_state()

    def _reset_state(self) -> None:
        self.hold = HoldTimer(spread=self.steady)
        self.peak = 0.0

    def scene_config(self) -> ArmSceneConfig:
        return ArmSceneConfig(kp=self.kp, ki=self.ki,
                              objects=[SpringPart("part", self.part_half, (0.2, 0.35, 0.85, 1.0), self.rest_z)])

    def reset(self, sim: ArmSim, kin: ArmKinematics, seed: int) -> dict:
        rng = np.random.default_rng(seed)
        xy = (rng.uniform(*self.part_x), rng.uniform(*self.part_y))
        k = float(np.exp(rng.uniform(*np.log(self.stiffness))))
        start = np.array(self.start) + np.r_[rng.uniform(-1, 1, 2) * self.start_jitter, 0.0]
        sim.set_part("part", xy, k)
        sim.reset(solve_ik(kin, start))
        self._reset_state()
        return {"part": [float(xy[0]), float(xy[1])], "stiffness_n_per_mm": k / 1000, "start": start.tolist()}

    def part_top(self, sim: ArmSim) -> np.ndarray:
        """The part's top centre at rest (what the camera sees before contact)."""
        x, y = sim.model.body("part").pos[:2]
        return np.array([x, y, self.rest_z + self.part_half[2]])

    def force(self, sim: ArmSim) -> float:
        return sim.part_state("part")[1]

    def spring_rate(self, sim: ArmSim) -> float:
        """The spring's stiffness (N/m): the expert's privileged knowledge."""
        return float(sim.model.jnt_stiffness[sim.model.joint("part").id])

    def update(self, sim: ArmSim) -> None:
        f = self.force(sim)
        self.peak = max(self.peak, f)
        self.hold.update(self.band[0] <= f <= self.band[1], sim.time_ns, f)

    def success(self, sim: ArmSim) -> bool:
        return self.hold.longest_ns >= self.hold_s * 1e9 and not self.failure(sim)

    def failure(self, sim: ArmSim) -> str:
        if self.peak > self.max_force:
            return f"over-pressed: {self.peak:.1f} N > {self.max_force:g} N"
        return ""

    def trace(self, sim: ArmSim) -> list[float]:
        """Time (s), spring force (N) and press depth (mm)."""
        depth, f = sim.part_state("part")
        return [sim.time_ns / 1e9, f, depth * 1000]

    def plot(self, ax, episodes) -> None:
        ax.axhspan(*self.band, color="tab:green", alpha=0.2, label=f"{self.band[0]:g}-{self.band[1]:g} N band")
        ax.axhline(self.max_force, color="tab:red", lw=1, ls="--", label=f"damage > {self.max_force:g} N")
        for e in episodes:
            c = np.asarray(e.trace)
            ax.plot(c[:, 0], c[:, 1], color="tab:blue" if e.success else "tab:red", lw=1, alpha=0.8)
        ax.plot([], [], color="tab:blue", label="success")
        ax.plot([], [], color="tab:red", label="failure")
        ax.set_xlabel("time [s]")
        ax.set_ylabel("spring force [N]")

    def expert(self, sim: ArmSim) -> "PressExpert":
        return PressExpert(self, sim, profile=self.expert_profile)


PRESS_EXPERTS = ("reactive", "planned", "regulating", "servo", "proportional", "overshoot")
TAKEOVER_EXPERTS = ("servo", "proportional")  # functions of the state: they can act from any state


class PressExpert:
    """``reactive`` (the default, the shipped checkpoint's demonstrations): over the part, down at 75 mm/s
    to 2 mm above it, then 0.3 mm per period until the spring force (a perfect sensor) reads 15 N; hold
    1.3 s (the demonstration ends there, pressed).

    ``planned``: down slowing as it nears the part (``descend_tau``: a time constant of the remaining
    height, between ``press_speed`` and half ``speed``), into it at ``press_speed`` toward the depth that
    gives ``target`` N (the spring's stiffness: privileged; a policy infers it from force over depth),
    slowing on the last ``press_tau`` of it. No speed change reacts to the newest force reading, so a
    chunk predicted half a second ahead can be right. Measured (docs/realtime.md): a policy trained on it
    is no better under 400 ms of latency (its far predictions still leave the demonstrations' states).

    ``regulating``: ``reactive`` up to 15 N; then, in about half the demonstrations (a draw from the
    spring's stiffness, fixed per seed), one step deeper by the depth of 2..6 N more (a mistake, as a
    policy whose chunks run 0.5 s after their frame makes), and in every one the hold moves the tool up
    ``settle_gain`` x (F - 15)/k a period until the force and the force the command settles at are both
    within ``settle_band`` N of 15, then holds. A slow correction (``settle_gain`` 0.1: a gain a ~0.6 s
    force-loop delay keeps stable); above 15 N the demonstrations only ever correct, never press on.
    Measured (docs/realtime.md): no better under 400 ms of latency (its policy hovers at 16-17 N instead
    of settling).

    ``servo``: ``reactive`` down to 2 mm above the part; from there each period moves the tool down by
    ``settle_gain`` (0.15 here) x (15 - F)/k, at most ``press_speed`` (up when above 15 N), until the
    force and the force the command settles at are both within ``settle_band`` N of 15; then the hold. A
    function of the state alone (force, commanded depth, stiffness), so it can label any state a policy
    reaches (``sim.experts.takeover_episode``), and a gain a ~0.5 s force-loop delay keeps stable. Measured: its
    policy stalls on soft springs without latency (each step depends on a stiffness it cannot observe).

    ``proportional``: ``servo`` with each step a function of the force alone, ``settle_gain`` x (15 - F)/k_max
    (k_max: the stiffest spring the task draws, 6 N/mm): a loop gain of 0.15 on the stiffest spring, less on
    softer ones (0.025 on the softest: its press takes most of the episode); and the descent's last
    ``slow_from`` (12 mm) to the press height at ``slow_speed`` (20 mm/s), so that a chunk planned during
    the descent and run late does not carry the tool into the part at 75 mm/s (docs/realtime.md).

    ``overshoot``: ``reactive`` with the descent's last ``slow_from`` (12 mm) at ``slow_speed``, and, in
    about half the demonstrations (the draw ``regulating`` uses), one step deeper by the depth of 0.5..2.5 N
    more once 15 N is read, then the plain hold (no correction). Its policy, run with ``replan_steps: 1``,
    keeps its success under 400 ms of latency (docs/realtime.md)."""

    def __init__(self, task: "PressTask", sim: ArmSim, dt: float = 0.1, speed: float = 0.15,
                 press_speed: float = 0.003, target: float = 15.0, descend_tau: float = 0.3,
                 press_tau: float = 0.5, settle_gain: float | None = None, settle_band: float = 0.5,
                 slow_from: float | None = None, slow_speed: float = 0.02, profile: str = "reactive"):
        if profile not in PRESS_EXPERTS:
            raise ValueError(f"press expert profile: expected one of {PRESS_EXPERTS}, got {profile!r}")
        self.task, self.sim, self.phase, self.profile = task, sim, "approach", profile
        self.dt, self.step, self.press_step, self.target = dt, speed * dt, press_speed * dt, target
        self.descend_tau, self.press_tau = descend_tau, press_tau
        self.hold_steps = int(round((task.hold_s + 0.3) / dt))
        top = task.part_top(sim)
        self.contact_z = top[2] + sim.cfg.tool_length + sim.cfg.tip_half[2]  # flange z at first touch
        self.over = np.array([top[0], top[1], self.contact_z + 0.05])
        self.rate = task.spring_rate(sim)
        self.depth = target / self.rate  # m below first touch
        self.held = 0
        if settle_gain is None:
            settle_gain = 0.15 if profile in TAKEOVER_EXPERTS else 0.1
        self.settle_gain, self.settle_band, self.settled = settle_gain, settle_band, profile != "regulating"
        # the descent's last slow_from metres to the press height at slow_speed (proportional, overshoot)
        if slow_from is None:
            slow_from = 0.012 if profile in ("proportional", "overshoot") else 0.0
        self.slow_from = slow_from
        self.slow_step = slow_speed * dt
        u = (self.rate * 7919.0) % 1.0  # deterministic per seed, since the stiffness is drawn per seed
        lo, span = {"regulating": (2.0, 8.0), "overshoot": (0.5, 4.0)}.get(profile, (0.0, 0.0))
        self.overshoot = lo + span * (u - 0.5) if u >= 0.5 and lo > 0 else 0.0  # N past the target

    def next_target(self, p: np.ndarray) -> np.ndarray:
        if self.phase == "approach":
            if np.linalg.norm(self.over - p) < 1e-3:
                self.phase = "descend"
            return toward(p, self.over, self.step)
        if self.profile in ("reactive", "regulating", "overshoot"):
            return self._reactive(p)
        if self.profile in TAKEOVER_EXPERTS:
            return self._servo(p)
        if self.phase == "descend":
            h = p[2] - self.contact_z
            if h > 0:
                step = np.clip(h / self.descend_tau * self.dt, self.press_step, 0.5 * self.step)
            else:  # the part's top sits ~0.5 mm under its nominal height: in contact, from the force
                f = self.task.force(self.sim)
                left = (self.target - f) / self.rate if f > 0.2 else self.depth + h
                step = np.clip(left / self.press_tau * self.dt, 0.05 * self.press_step, self.press_step)
                if left <= step:
                    self.phase = "hold"
                    return np.r_[p[:2], p[2] - max(left, 0.0)]
            return np.r_[p[:2], p[2] - step]
        return self._hold(p)

    def _reactive(self, p: np.ndarray) -> np.ndarray:
        if self.phase == "descend":
            goal = np.r_[self.over[:2], self.contact_z + 0.002]
            if np.linalg.norm(goal - p) < 1e-3:
                self.phase = "press"
            fast = self.slow_from <= 0.0 or p[2] - goal[2] > self.slow_from
            return toward(p, goal, 0.5 * self.step if fast else self.slow_step)
        f = self.task.force(self.sim)
        if self.phase == "press":
            if f >= self.target:
                self.phase = "hold"
                return p - np.array([0.0, 0.0, self.overshoot / self.rate])
            return p - np.array([0.0, 0.0, self.press_step])
        if not self.settled:
            settles_at = f + self.rate * (self.sim.flange_pose()[2] - p[2])  # the servo holds the command
            if max(abs(f - self.target), abs(settles_at - self.target)) < self.settle_band:
                self.settled = True
            else:
                return p + np.array([0.0, 0.0, self.settle_gain * (f - self.target) / self.rate])
        return self._hold(p)

    def _servo(self, p: np.ndarray) -> np.ndarray:
        if self.phase == "descend":
            return self._reactive(p)
        if self.phase == "press":
            f = self.task.force(self.sim)
            settles_at = f + self.rate * (self.sim.flange_pose()[2] - p[2])  # the servo holds the command
            if max(abs(f - self.target), abs(settles_at - self.target)) < self.settle_band:
                self.phase = "hold"
            else:
                # servo: a loop gain of settle_gain on every spring (the stiffness is privileged); proportional:
                # the step a function of the force alone, that gain on the stiffest spring, less on softer ones
                k = self.rate if self.profile == "servo" else self.task.stiffness[1]
                down = min(self.settle_gain * (self.target - f) / k, self.press_step)
                return p - np.array([0.0, 0.0, down])
        return self._hold(p)

    def take_over(self, p: np.ndarray) -> None:
        """Start from any state, the commanded flange position ``p`` (``servo``, ``proportional``): in contact or
        at the press height, pressing (regulating toward 15 N); over the part, descending; else approaching."""
        if self.profile not in TAKEOVER_EXPERTS:
            raise ValueError(f"take_over: only the servo and proportional profiles act from any state, this one is "
                             f"{self.profile!r}")
        near_xy = np.linalg.norm(p[:2] - self.over[:2]) < 1e-3
        if self.task.force(self.sim) > 0.2 or (near_xy and p[2] <= self.contact_z + 0.0025):
            self.phase = "press"
        elif near_xy and p[2] <= self.over[2] + 1e-3:
            self.phase = "descend"
        else:
            self.phase = "approach"

    def _hold(self, p: np.ndarray) -> np.ndarray:
        # no lift afterwards: how long it has held cannot be observed, so a policy taught to lift after
        # 1.3 s lifts at random times instead
        self.held += 1
        if self.held >= self.hold_steps:
            self.phase = "done"
        return p.copy()


TASKS = {"push": PushTask, "press": PressTask, "reach": ReachTask, "reach_fast": FastReachTask}


def make_task(name: str):
    from ..errors import ConfigError

    if name not in TASKS:
        raise ConfigError(f"--task: expected one of {sorted(TASKS)}, got '{name}'")
    return TASKS[name]()
