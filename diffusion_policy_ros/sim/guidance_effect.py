"""Does guidance make sampled trajectories trackable by a robot, and at what cost in fidelity and time?

``guidance_effect`` samples the same observations with the same noise seeds, unguided and guided by
an embodiment's tracking cost, then rolls both out through the embodiment and reports the mean
tracking error (RMS end-effector position error of the rollout), the distance to the demonstration
distribution (position RMSE to the nearest demonstration window) and the per-chunk latency.
Used by the tests and bench/guidance.py.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..diffusion.guidance import CostGuidance, GuidanceConfig
from ..embodiment.base import nearest_demo_rmse

MODES = ("per_step", "substeps", "posthoc")


@dataclass
class GuidanceMode:
    name: str = "per_step"  # per_step: every denoising step | substeps: K per step | posthoc: refine a finished chunk
    strength: float = 1.0
    substeps: int = 3  # for 'substeps'
    refine_from: int = 6  # for 'posthoc': re-noise to inference step k of N and denoise guided
    schedule: str = "alpha_bar"  # alpha_bar (strongest near the end) | constant
    iterations: int = 1  # clipped gradient steps per denoising step


def guided_predict(policy, obs: dict[str, np.ndarray], embodiment, state: dict, mode: GuidanceMode, clip: float,
                   seed: int = 0, plain: np.ndarray | None = None) -> np.ndarray:
    """Full-horizon chunks guided by the embodiment's cost on the executed part, in ``mode``. Post-hoc
    refinement starts from ``plain`` (the unguided chunks), sampled here when not given."""
    if mode.name not in MODES:
        raise ValueError(f"guidance mode: expected one of {MODES}, got {mode.name!r}")
    start = policy.cfg.n_obs_steps - 1
    end = start + policy.cfg.n_action_steps
    tensors, _ = policy.validate(obs)
    guide = CostGuidance(policy.model, {k: v.clone() for k, v in tensors.items()},
                         [(1.0, lambda traj: embodiment.cost(traj[:, start:end], state).to(traj.dtype))],
                         GuidanceConfig(strength=mode.strength, schedule=mode.schedule, iterations=mode.iterations,
                                        clip_position=clip, clip_rotation=clip))
    if mode.name == "posthoc":
        if plain is None:
            plain = policy.predict(obs, seed=seed, full_horizon=True)
        return policy.predict(obs, seed=seed, full_horizon=True, guidance=guide, warm_start=plain, shift=0,
                              start_index=mode.refine_from)
    return policy.predict(obs, seed=seed, full_horizon=True, guidance=guide,
                          substeps=mode.substeps if mode.name == "substeps" else 1)


def _ms(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t0) * 1e3, out


def guidance_effect(policy, obs: dict[str, np.ndarray], embodiment, state: dict, demos: np.ndarray,
                    mode: GuidanceMode, seed: int = 0, clip: float = 0.1, time_batch1: bool = True,
                    execute: bool = False) -> dict:
    """obs: a batch (B, To, ...); state: the embodiment's state for that batch; demos (M, ≥n_action_steps, ≥3)
    world-frame demonstration windows starting at the same instant as the executed part of the chunk.
    Cost, tracking error and demo distance are over the executed part (n_action_steps waypoints).
    ``execute``: also execute both in MuJoCo (``executed_tracking_error``): what a robot would gain, scored
    by physics the guidance never saw, not by its own differentiable model."""
    start = policy.cfg.n_obs_steps - 1
    end = start + policy.cfg.n_action_steps  # the executed part: what the robot will be asked to track
    t_plain, plain = _ms(lambda: policy.predict(obs, seed=seed, full_horizon=True))
    t_guided, guided = _ms(lambda: guided_predict(policy, obs, embodiment, state, mode, clip, seed, plain=plain))
    if mode.name == "posthoc":  # refinement needs the plain chunk first
        t_guided += t_plain
    n = len(plain)
    out = {}
    for label, traj in (("unguided", plain), ("guided", guided)):
        f = embodiment.feasibility(torch.as_tensor(traj[:, start:end]), state)
        out[f"tracking_error_{label}_m"] = float(f["tracking_error"].mean())
        out[f"limit_violations_{label}"] = float(f["limit_violations"].mean())
        out[f"demo_rmse_{label}_m"] = float(nearest_demo_rmse(traj[:, start:end], demos[:, :end - start]).mean())
        if execute:
            dt = float(getattr(getattr(embodiment, "tracker", None), "dt", 0.0) or embodiment.model.cfg.dt)
            out[f"executed_tracking_error_{label}_m"] = float(
                executed_tracking_error(embodiment, traj[:, start:end], state, dt=dt).mean())
    out["tracking_error_reduction"] = 1.0 - out["tracking_error_guided_m"] / out["tracking_error_unguided_m"]
    if execute:
        out["executed_tracking_error_reduction"] = (1.0 - out["executed_tracking_error_guided_m"]
                                                    / out["executed_tracking_error_unguided_m"])
    out["samples"] = n
    out["batched_ms_per_sample_unguided"] = t_plain / n
    out["batched_ms_per_sample_guided"] = t_guided / n
    if not time_batch1:
        return out
    # One robot: batch-1 chunk latency, median of 5, same mode.
    one = {k: v[:1] for k, v in obs.items()}
    one_state = {k: v[:1] for k, v in state.items()}
    out["latency_unguided_ms"] = float(np.median(
        [_ms(lambda: policy.predict(one, seed=0, full_horizon=True))[0] for _ in range(5)]))
    out["latency_guided_ms"] = float(np.median(
        [_ms(lambda: guided_predict(policy, one, embodiment, one_state, mode, clip))[0] for _ in range(5)]))
    out["overhead_ms"] = out["latency_guided_ms"] - out["latency_unguided_ms"]
    return out


def executed_tracking_error(embodiment, chunks: np.ndarray, state: dict, dt: float = 0.1,
                            lift: float = 1.0) -> np.ndarray:
    """RMS end-effector position error (B,) of world-frame chunks (B, T, ≥3) *executed in MuJoCo*: not the
    differentiable model the guidance optimises. Aerial: the chunk's positions go to the aerial sim's
    flight controller and arm as a trajectory (waypoint k due at (k+1)·dt), from a hover at the state's
    end-effector position, lifted by ``lift`` m (the free-space scene has a floor). Arm: the chunk goes
    through the runtime's IK (the embodiment's tracker, inside its joint envelope) to a joint trajectory
    that the MuJoCo arm follows under joint_trajectory_controller semantics from ``state['q']``; the error
    is the flange's measured position against the chunk."""
    from ..constants import NS
    from ..runtime.schedule import TimedTrajectory
    from .aerial import AerialSceneConfig, AerialSim
    from .arm import ArmSceneConfig, ArmSim

    import torch

    chunks = np.asarray(chunks, np.float64)
    b, t = chunks.shape[:2]
    times = ((np.arange(t) + 1) * dt * NS).round().astype(np.int64)
    errors = np.empty(b)
    if embodiment.name == "aerial":
        sim = AerialSim(AerialSceneConfig(flight=embodiment.model.cfg))
        start = (state["p"] + embodiment.model.offset).detach().numpy().reshape(-1, 3)  # base → end effector
        up = np.array([0.0, 0.0, lift])
        for i in range(b):
            sim.reset(start[min(i, len(start) - 1)] + up)
            sim.send(TimedTrajectory(times, chunks[i, :, :3] + up), 0)
            reached = []
            for when in times:
                sim.advance(int(when))
                reached.append(sim.ee_pose()[:3] - up)
            errors[i] = np.sqrt(((np.asarray(reached) - chunks[i, :, :3]) ** 2).sum(-1).mean())
        sim.close()
        return errors
    q0 = state["q"].expand(b, -1) if state["q"].shape[0] == 1 else state["q"]
    with torch.no_grad():
        q = embodiment.tracker.rollout(embodiment._local(torch.as_tensor(chunks)), q0).numpy()
    sim = ArmSim(ArmSceneConfig(), embodiment.kin.joint_names)
    base = embodiment.base.numpy()
    for i in range(b):
        sim.reset(q0[i].numpy())
        sim.send(TimedTrajectory(times, q[i]).with_velocities(), 0)
        reached = []
        for when in times:
            sim.advance(int(when))
            reached.append(sim.flange_pose()[:3])
        errors[i] = np.sqrt(((np.asarray(reached) - (chunks[i, :, :3] - base)) ** 2).sum(-1).mean())
    sim.close()
    return errors


# --- the two standard settings (tests and bench/guidance.py) ---------------------------------------
def aerial_scene():
    """Oracle (handheld) demonstrations faster than the aerial manipulator's base can follow: the
    two-mode box scene traversed in 1.2 s with a 0.25 m detour."""
    from ..data.synthetic import ObstacleScene

    return ObstacleScene(steps=12, detour=0.25, num_points=64, image_size=64)


def demo_windows(scene, n: int, length: int, seed: int = 0) -> np.ndarray:
    """(n, length, 3) demonstration position windows from the episode start (both modes, ends held)."""
    rng = np.random.default_rng(seed)
    out = []
    for side in np.tile([-1, 1], (n + 1) // 2)[:n]:
        p = scene.trajectory(rng, int(side))
        out.append(np.concatenate([p, np.repeat(p[-1:], max(0, length - len(p)), 0)])[:length])
    return np.stack(out)


ARM_BASE = (0.45, 0.3, 0.0)  # the arm's base in the scene's world frame


def arm_near_limits(dt: float = 0.1, scene=None):
    """The shipped UR5e-like arm beside the box scene, started at the scene's start pose, with a joint
    envelope that the demonstrated detours exceed: shoulder pan may turn 0.6 rad one way, the elbow
    only 0.25 rad further. → (ArmEmbodiment, q_start (1, 6))."""
    from ..config import resolve_shipped
    from ..data.synthetic import IDENTITY_ROT6D, ObstacleScene
    from ..embodiment.limits import Limits
    from ..embodiment.arm import DEFAULT_URDF, ArmKinematics, ArmTracker
    from ..embodiment.base import ArmEmbodiment

    scene = scene or ObstacleScene()
    kin = ArmKinematics(resolve_shipped("urdf", DEFAULT_URDF, "urdf"))
    start = torch.as_tensor(np.concatenate((np.asarray(scene.start) - ARM_BASE, IDENTITY_ROT6D)), dtype=kin.dtype)
    home = torch.tensor([[math.pi, -1.2, 1.4, -1.77, -1.57, 0.0]], dtype=kin.dtype)
    q_start = ArmTracker(kin, dt=dt).rollout(start.expand(1, 60, 9), home)[:, -1].detach()
    lo, hi = kin.limits.lower.copy(), kin.limits.upper.copy()
    lo[0] = float(q_start[0, 0]) - 0.6
    hi[2] = float(q_start[0, 2]) + 0.25
    limits = Limits(lo, hi, kin.limits.max_velocity)
    return ArmEmbodiment(kin, dt=dt, limits=limits, base_position=ARM_BASE), q_start
