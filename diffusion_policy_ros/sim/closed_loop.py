"""Policy episodes on the simulator through ``PolicyRuntime`` (the runtime the ROS node runs), with
inference charged the latency a robot would see.

Time is the simulator's, in 50 Hz ticks (the joint-state rate). The camera renders once per control
period; joints (or the end-effector pose) and the wrench reach the runtime every tick. Each tick the
runtime may ``begin`` an inference (``PolicyRuntime.due``); its chunk becomes available
``latency`` later in sim time — 0 in lockstep, a fixed delay, or the measured wall time of the
inference × a factor — while the arm keeps executing the running trajectory under the
joint_trajectory_controller-faithful follower (``sim/controllers.py``). The runtime then ``commit``s
it, stamped from that later time, and the follower receives it. ``dpros sim-eval --ros``
(``ros/sim_eval.py``) runs the same episodes through the policy node over DDS instead.
"""
from __future__ import annotations

import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..constants import NS
from ..errors import ConfigError
from ..runtime.controller import CycleResult, Plan
from ..runtime.schedule import TimedTrajectory
from .env import STATE_RATE_HZ, Episode, SimEnv, demo_seed_overlap, eval_config, record_step
from .stats import summarize


@dataclass(frozen=True)
class Latency:
    """What an inference costs in sim time: ``fixed_ms``, or its measured wall time × ``factor``."""

    fixed_ms: float = 0.0
    factor: float = 0.0  # > 0: measured

    @classmethod
    def parse(cls, text: str | float | int) -> "Latency":
        """'0' (lockstep), '300' (ms), 'measured' or 'measured*2' (wall time × 2)."""
        m = re.fullmatch(r"measured(?:\*([0-9.]+))?", str(text).strip())
        if m:
            factor = float(m.group(1) or 1.0)
            if factor <= 0:
                raise ConfigError(f"--delay-ms: expected measured*F with F > 0, got {text!r}")
            return cls(factor=factor)
        try:
            ms = float(text)
        except ValueError:
            raise ConfigError(f"--delay-ms: expected milliseconds >= 0, 'measured' or 'measured*F', got "
                              f"{text!r}") from None
        if ms < 0:
            raise ConfigError(f"--delay-ms: expected milliseconds >= 0, got {ms}")
        return cls(fixed_ms=ms)

    def of(self, plan: Plan) -> int:
        ms = (plan.inference_ms + plan.perception_ms) * self.factor if self.factor else self.fixed_ms
        return int(round(ms * 1e6))

    @property
    def label(self) -> str | float:
        return (f"measured*{self.factor:g}" if self.factor != 1 else "measured") if self.factor else self.fixed_ms


def charge_latency(runtime, t: int, pending: tuple[Plan, int] | None, latency: Latency, apply,
                   stamp_from_observation: bool = False) -> tuple[Plan, int] | None:
    """One tick of a driver whose inferences take ``latency`` of sim time: the pending plan is committed
    (stamped ``t``) once its time has come, then, if none is pending, a cycle begins; a plan is committed
    at once in lockstep, else kept pending. Every result goes to ``apply``. → the pending (plan, due)."""
    if pending is not None and t >= pending[1]:
        plan = pending[0]
        apply(runtime.commit(plan, plan.started_ns if stamp_from_observation else t))
        pending = None
    if pending is None:
        out = runtime.begin(t)
        delay = latency.of(out) if isinstance(out, Plan) else 0
        if not isinstance(out, Plan):
            apply(out)
        elif delay <= 0:
            apply(runtime.commit(out, t))
        else:
            pending = (out, t + delay)
    return pending


def policy_episode(env: SimEnv, runtime, seed: int, frames: bool = False, latency: Latency = Latency(),
                   stamp_from_observation: bool = False, view=None, view_offset_ns: int = 0,
                   hand_over=None) -> Episode:
    """One closed-loop episode of ``runtime`` (a PolicyRuntime on env.cfg); ends at success, failure or
    time-out. ``stamp_from_observation``: schedule each chunk as if it were published when its
    observation was taken (the timing before real-time execution), for comparison only.
    ``hand_over(ep)``: asked at the end of each control period; True ends the episode there (an expert
    takes over: ``sim.experts.takeover_episode``)."""
    sim, task = env.sim, env.task
    ep = Episode(seed, False, 0, task.reset(sim, env.kin, seed))
    runtime.reset(clear_observations=True)  # sim time restarts at 0
    runtime.set_camera(sim.camera)
    runtime.add_wrench(0, sim.wrench())
    tick = int(round(NS / STATE_RATE_HZ))
    if env.period % tick:
        raise ConfigError(f"timing.control_rate_hz: the sim needs a period that is a multiple of its "
                          f"{tick / 1e6:g} ms tick, got {env.period / 1e6:g} ms")
    per = env.period // tick
    pending: tuple[Plan, int] | None = None

    def apply(res: CycleResult, t: int) -> None:
        if view is not None:
            view.cycle(view_offset_ns + t, res)
        if res.status == "late":
            ep.late += 1
        if res.command is None:
            return
        traj = res.command.trajectory
        if env.aerial:  # end-effector waypoints [position, 6-D rotation(, gripper)]: the sim follows positions
            traj = TimedTrajectory(traj.times_ns, traj.values[:, :3])
        sim.send(traj, t)
        if res.status == "command":
            ep.inference_ms.append(res.inference_ms + res.perception_ms)
            ep.latency_ms.append(res.latency_ms)
        else:
            ep.holds += 1

    for k in range(env.steps * per):
        t = k * tick
        if k % per == 0:
            rgb, depth = sim.render()
            record_step(ep, env, rgb, frames)
            if "color" in runtime.window.buffers:
                runtime.add_color(t, rgb)
            runtime.add_depth(t, depth.astype(np.float32) * np.float32(0.001))
        if env.aerial:
            runtime.add_ee_pose(t, sim.ee_pose())
        else:
            runtime.add_joints(t, sim.joints())
        stop = runtime.contact_guard(t)  # on the wrench sample of this tick, between inferences
        if stop is not None:
            ep.contact_stops += 1
            apply(stop, t)
        pending = charge_latency(runtime, t, pending, latency, lambda res: apply(res, t), stamp_from_observation)
        sim.advance(t + tick)
        task.update(sim)
        runtime.add_wrench(t + tick, sim.wrench())
        if (k + 1) % per:
            continue
        ep.steps = (k + 1) // per
        ep.failure = task.failure(sim)
        if ep.failure:
            break
        if task.success(sim):
            ep.success = True
            break
        if hand_over is not None and hand_over(ep):
            break
    stats = sim.follower.stats
    ep.first_point_in_past, ep.max_handover_jump = stats.first_point_in_past, stats.max_jump
    return ep


def evaluate(task: str, checkpoint: str, episodes: int, seed: int = 0, embodiment: str | None = None,
             deploy_config: str | None = None, overrides: dict | None = None, out: str | Path | None = None,
             videos: int = 2, progress: bool = True, delay: str | float = 0,
             stamp_from_observation: bool = False, rerun: str = "") -> dict:
    """Closed-loop success over seeds seed … seed+episodes-1 (keep them apart from the training seeds).
    ``delay``: the latency charged to each inference in sim time (``Latency.parse``)."""
    from ..runtime.deployment import build_runtime, load_policy

    latency = Latency.parse(delay)
    cfg = eval_config(task, checkpoint, embodiment, deploy_config, overrides)
    overlap = demo_seed_overlap(checkpoint, seed, episodes)
    if overlap:
        warnings.warn(overlap, stacklevel=2)
    env = SimEnv(task, cfg, embodiment)
    runtime = build_runtime(cfg, load_policy(cfg, checkpoint), arm=env.kin)
    view = None
    if rerun:
        from ..runtime.live_view import LiveView

        view = LiveView(rerun, runtime, app=f"dpros sim-eval {task}")
    eps = []
    t0 = time.perf_counter()
    try:
        bar = tqdm(range(seed, seed + episodes), desc=f"sim-eval {task}", disable=not progress)
        for s in bar:
            eps.append(policy_episode(env, runtime, s, frames=len(eps) < videos and out is not None,
                                      latency=latency, stamp_from_observation=stamp_from_observation,
                                      view=view, view_offset_ns=len(eps) * 1000 * NS))  # episode k at k·1000 s
            bar.set_postfix(success=f"{sum(e.success for e in eps)}/{len(eps)}")
    finally:
        env.close()
        if view is not None:
            view.close()
    execution = "observation-stamped" if stamp_from_observation else cfg.execution_label()
    return summarize(env.task, env.embodiment, checkpoint, eps, seed, [m for ep in eps for m in ep.inference_ms],
                     time.perf_counter() - t0, out, delay_ms=latency.label, execution=execution)
