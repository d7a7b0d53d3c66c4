"""Closed loops on the simulator: scripted demonstrations into a zarr dataset, and policy episodes
through ``PolicyRuntime`` (the same runtime the ROS node runs) with a success table.

Time is the simulator's: each control period the camera renders, the runtime gets the frame and the
joints stamped with sim time, ``step`` runs (inference takes no sim time here: lockstep), and the
commanded trajectory drives the joint_trajectory_controller-style follower until the next period.
``dpros sim-eval --ros`` (``ros/sim_eval.py``) runs the same episodes through the policy node over DDS instead, where the
sim keeps running while the node thinks.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..config import DeployConfig, load_deploy_config, resolve_shipped
from ..embodiment.arm import ArmTracker, arm_from_config
from ..errors import ConfigError
from ..geometry import quat_xyzw_to_rot6d
from ..perception.pointcloud import PointCloudPipeline
from ..runtime.schedule import TimedTrajectory
from .aerial import AerialSim
from .scene import NS, ArmSim
from .tasks import ROT6D_DOWN, make_task

SIM_CONFIGS = {"arm": "sim_arm.yaml", "aerial": "sim_aerial.yaml", "oracle": "sim_aerial.yaml"}
# Which embodiments can run a task made for an embodiment (the oracle gripper does the aerial tasks).
EMBODIMENTS = {"arm": ("arm",), "aerial": ("aerial", "oracle")}


def sim_config_path(embodiment: str = "arm", path: str | None = None):
    """The policy node's parameter file for a sim embodiment (``path`` if given)."""
    if embodiment not in SIM_CONFIGS:
        raise ConfigError(f"--embodiment: expected one of {sorted(SIM_CONFIGS)}, got '{embodiment}'")
    return path or resolve_shipped("config", SIM_CONFIGS[embodiment], "--deploy-config")


def sim_deploy_config(embodiment: str = "arm", path: str | None = None) -> DeployConfig:
    return load_deploy_config(sim_config_path(embodiment, path))


def task_embodiment(task: str, embodiment: str | None) -> str:
    """``embodiment`` (default: the task's own) checked against what the task can run on."""
    made_for = make_task(task).embodiment
    embodiment = embodiment or made_for
    if embodiment not in EMBODIMENTS[made_for]:
        raise ConfigError(f"--embodiment: task '{task}' runs on {list(EMBODIMENTS[made_for])}, got '{embodiment}'")
    return embodiment


class SimEnv:
    """A task on its scene, with the kinematics the runtime uses (none for the aerial embodiments)."""

    def __init__(self, task: str, cfg: DeployConfig, embodiment: str | None = None):
        self.task = make_task(task)
        self.embodiment = task_embodiment(task, embodiment)
        self.cfg = cfg
        self.aerial = self.task.embodiment == "aerial"
        if self.aerial:
            self.kin = None
            self.sim = AerialSim(self.task.scene_config(oracle=self.embodiment == "oracle"))
        else:
            self.kin = arm_from_config(cfg.embodiment)
            self.sim = ArmSim(self.task.scene_config(), self.kin.joint_names)
        self.period = int(round(NS / cfg.timing.control_rate_hz))
        self.steps = int(round(self.task.duration_s * cfg.timing.control_rate_hz))

    def ee_state(self) -> np.ndarray:
        """The policy's state: end-effector pose (position + 6-D rotation) + gripper (none here: 0)."""
        if self.aerial:
            p = self.sim.ee_pose()
            pose = np.concatenate((p[:3], quat_xyzw_to_rot6d(p[3:])))
        else:
            pose = self.kin.fk(torch.as_tensor(self.sim.joints())).numpy()
        return np.concatenate((pose, [0.0]))

    def close(self):
        self.sim.close()


@dataclass
class Episode:
    seed: int
    success: bool
    steps: int
    initial: dict
    frames: list = field(default_factory=list)
    trace: list = field(default_factory=list)  # task.trace per control period (cube x, y; or t, force, depth)
    tip_path: list = field(default_factory=list)
    inference_ms: list = field(default_factory=list)
    holds: int = 0
    failure: str = ""


STATE_RATE_HZ = 50.0  # joint_states and the wrist wrench, as the sim node and sim bags publish them


def sub_steps(t0: int, t1: int, rate_hz: float = STATE_RATE_HZ) -> list[int]:
    """Sensor sample times in (t0, t1] at the state rate (t1 always included)."""
    dt = int(round(NS / rate_hz))
    return [*range(t0 + dt, t1, dt), t1]


def expert_episode(env: SimEnv, seed: int, num_points: int, frames: bool = False,
                   bag=None) -> tuple[Episode, dict]:
    """One scripted demonstration; returns the episode and its data (DP3 keys: point_cloud, state,
    wrench, action). The wrench is the wrist sensor at the state rate through the node's own filter
    (``force`` parameters), sampled at each control period as the runtime samples it.
    ``bag``: a ``sim.record.BagRecording`` that also gets every sensor message and command, as the
    robot's drivers would publish them."""
    from ..perception.force import WrenchProcessor

    sim, task = env.sim, env.task
    if bag is not None and env.aerial:
        raise ConfigError("collect --format bags: the aerial tasks are recorded as zarr only so far")
    initial = task.reset(sim, env.kin, seed)
    expert = task.expert(sim)
    pcfg = dataclasses.replace(env.cfg.point_cloud, num_points=num_points)
    cloud = PointCloudPipeline(pcfg, sim.camera)
    wrench = WrenchProcessor(env.cfg.force)
    filtered = wrench.add(0, sim.wrench())
    if env.aerial:
        pose = sim.ee_pose()
        ref, rot6d = pose[:3], quat_xyzw_to_rot6d(pose[3:])
    else:
        tracker = ArmTracker(env.kin, dt=env.period / NS, damping=env.cfg.embodiment.ik_damping)
        ref, rot6d = sim.flange_pose()[:3], ROT6D_DOWN
        q_cmd = torch.as_tensor(sim.joints())[None]
    data = {"point_cloud": [], "state": [], "wrench": [], "action": []}
    ep = Episode(seed, False, 0, initial)
    after_done = 0
    for k in range(env.steps):
        t = k * env.period
        rgb, depth = sim.render()
        if bag is not None:
            bag.camera(t, rgb, depth)
        data["point_cloud"].append(cloud(depth.astype(np.float32) * np.float32(0.001), seed=0).astype(np.float32))
        data["state"].append(env.ee_state().astype(np.float32))
        data["wrench"].append(filtered.astype(np.float32))
        data["action"].append(np.concatenate((ref, rot6d, [0.0])).astype(np.float32))
        record_step(ep, env, rgb, frames)
        if expert.phase == "done":
            after_done += 1
            if after_done > 3:
                break
        ref = expert.next_target(ref)
        if env.aerial:  # a MultiDOFJointTrajectory point: the end-effector target one period ahead
            sim.follower.set(TimedTrajectory(np.array([t + env.period], np.int64), ref[None]), t)
        else:
            target = torch.as_tensor(np.concatenate((ref, ROT6D_DOWN)))[None, None]
            with torch.no_grad():
                q_cmd = tracker.rollout(target, q_cmd)[:, -1]
            sim.follower.set(TimedTrajectory(np.array([t + env.period], np.int64), q_cmd.numpy()), t)
            if bag is not None:
                bag.command(t, t + env.period, q_cmd.numpy()[0])
        for sub in sub_steps(t, t + env.period):
            sim.advance(sub)
            task.update(sim)
            filtered = wrench.add(sub, sim.wrench())
            if bag is not None:
                bag.state(sub)
    ep.success, ep.steps = task.success(sim), len(data["action"])
    ep.failure = task.failure(sim)
    return ep, {k: np.stack(v) for k, v in data.items()}


def record_step(ep: Episode, env: SimEnv, rgb: np.ndarray, frames: bool) -> None:
    """Append the task's trace and the tool position (and the frame, if ``frames``) to the episode."""
    ep.trace.append(env.task.trace(env.sim))
    ep.tip_path.append(env.sim.tip_position()[:2].tolist())
    if frames:
        ep.frames.append(rgb)


def policy_episode(env: SimEnv, runtime, seed: int, frames: bool = False) -> Episode:
    """One closed-loop episode of ``runtime`` (a PolicyRuntime on env.cfg); ends at success or time-out."""
    sim, task = env.sim, env.task
    ep = Episode(seed, False, 0, task.reset(sim, env.kin, seed))
    runtime.reset(clear_observations=True)  # sim time restarts at 0
    runtime.set_camera(sim.camera)
    runtime.add_wrench(0, sim.wrench())
    for k in range(env.steps):
        t = k * env.period
        rgb, depth = sim.render()
        record_step(ep, env, rgb, frames)
        if "color" in runtime.window.buffers:
            runtime.add_color(t, rgb)
        runtime.add_depth(t, depth.astype(np.float32) * np.float32(0.001))
        if env.aerial:
            runtime.add_ee_pose(t, sim.ee_pose())
        else:
            runtime.add_joints(t, sim.joints())
        result = runtime.step(t)
        if result.command is not None:
            traj = result.command.trajectory
            if env.aerial:  # end-effector waypoints [position, 6-D rotation(, gripper)]: the sim follows positions
                traj = TimedTrajectory(traj.times_ns, traj.values[:, :3])
            sim.follower.set(traj, t)
            if result.status == "command":
                ep.inference_ms.append(result.inference_ms + result.perception_ms)
            else:
                ep.holds += 1
        for sub in sub_steps(t, t + env.period):
            sim.advance(sub)
            task.update(sim)
            runtime.add_wrench(sub, sim.wrench())
        ep.steps = k + 1
        ep.failure = task.failure(sim)
        if ep.failure:
            break
        if task.success(sim):
            ep.success = True
            break
    return ep


def wilson_ci95(successes: int, n: int) -> tuple[float, float]:
    """95 % Wilson score interval of a success rate (sensible at 0 % and 100 %, unlike mean ± 1.96·se)."""
    if n == 0:
        return 0.0, 1.0
    z, p = 1.959964, successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    return (0.0 if successes == 0 else lo), (1.0 if successes == n else hi)


def collect(task: str, episodes: int, out: str | Path, seed: int = 1000, num_points: int = 256,
            embodiment: str | None = None, progress: bool = True, overwrite: bool = False) -> dict:
    """Scripted demonstrations (seeds seed, seed+1, …) into a zarr dataset; failed ones are left out.
    Aerial tasks are demonstrated with the oracle gripper unless ``embodiment`` says otherwise."""
    from ..data import ReplayBuffer

    if embodiment is None and make_task(task).embodiment == "aerial":
        embodiment = "oracle"
    embodiment = task_embodiment(task, embodiment)
    env = SimEnv(task, sim_deploy_config(embodiment), embodiment)
    buf = ReplayBuffer.create(out, overwrite=overwrite)
    kept, failed, steps = 0, [], 0
    try:
        for s in tqdm(range(seed, seed + episodes), desc=f"collect {task}", disable=not progress):
            ep, data = expert_episode(env, s, num_points)
            if not ep.success:
                failed.append(s)
                continue
            buf.add_episode(data)
            kept, steps = kept + 1, steps + ep.steps
    finally:
        env.close()
    return {"dataset": str(out), "task": task, "episodes": kept, "failed_seeds": failed, "steps": steps,
            "seeds": [seed, seed + episodes - 1]}


def eval_config(task: str, checkpoint, embodiment: str, deploy_config: str | None, overrides: dict | None
                ) -> DeployConfig:
    """The sim deploy config with ``--set`` overrides; unknown tasks, parameters or checkpoints fail here."""
    from ..config import deploy_config_from_dict, flatten_params, unflatten_params

    cfg = sim_deploy_config(task_embodiment(task, embodiment), deploy_config)
    if overrides:
        flat = flatten_params(cfg)
        unknown = sorted(set(overrides) - set(flat))
        if unknown:
            raise ConfigError(f"--set: unknown parameters {unknown}, expected names like {sorted(flat)[:4]}")
        flat.update(overrides)
        cfg = deploy_config_from_dict(unflatten_params(flat), "--set")
    if not Path(checkpoint).exists():
        raise ConfigError(f"--checkpoint: expected a checkpoint folder (dpros train's DIR/checkpoint), got "
                          f"'{checkpoint}' (not found)")
    return cfg


def evaluate(task: str, checkpoint: str, episodes: int, seed: int = 0, embodiment: str | None = None,
             deploy_config: str | None = None, overrides: dict | None = None, out: str | Path | None = None,
             videos: int = 2, progress: bool = True) -> dict:
    """Closed-loop success over seeds seed … seed+episodes-1 (keep them apart from the training seeds)."""
    from ..policy import Policy
    from ..runtime.controller import PolicyRuntime

    cfg = eval_config(task, checkpoint, embodiment, deploy_config, overrides)
    policy = Policy.from_checkpoint(checkpoint, solver=cfg.sampling.solver or None,
                                    num_inference_steps=cfg.sampling.num_inference_steps or None)
    env = SimEnv(task, cfg, embodiment)
    embodiment = env.embodiment
    runtime = PolicyRuntime(policy, cfg, env.kin)
    eps = []
    t0 = time.perf_counter()
    try:
        bar = tqdm(range(seed, seed + episodes), desc=f"sim-eval {task}", disable=not progress)
        for s in bar:
            eps.append(policy_episode(env, runtime, s, frames=len(eps) < videos and out is not None))
            bar.set_postfix(success=f"{sum(e.success for e in eps)}/{len(eps)}")
    finally:
        env.close()
    return summarize(env.task, embodiment, checkpoint, eps, seed, [m for e in eps for m in e.inference_ms],
                     time.perf_counter() - t0, out)


def summarize(task, embodiment: str, checkpoint, eps: list[Episode], seed: int, latencies_ms: list[float],
              wall_s: float, out: str | Path | None, **extra) -> dict:
    wins = sum(e.success for e in eps)
    lat = np.asarray(latencies_ms if latencies_ms else [np.nan])
    summary = {"task": task.name, "embodiment": embodiment, "checkpoint": str(checkpoint), "episodes": len(eps),
               "seeds": [seed, seed + len(eps) - 1], "successes": wins, "success_rate": wins / max(1, len(eps)),
               "ci95": list(wilson_ci95(wins, len(eps))), "p50_latency_ms": float(np.percentile(lat, 50)),
               "p99_latency_ms": float(np.percentile(lat, 99)), "holds": sum(e.holds for e in eps),
               "wall_s": wall_s, **extra,
               "per_episode": [{"seed": e.seed, "success": e.success, "steps": e.steps,
                                **({"failure": e.failure} if e.failure else {})} for e in eps]}
    if out is not None:
        from .report import write_report

        summary["files"] = write_report(Path(out), task, eps, summary)
    return summary
