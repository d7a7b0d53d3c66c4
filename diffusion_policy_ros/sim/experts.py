"""Scripted demonstrations on the simulator: one expert episode (optionally recorded as a rosbag, as
the robot's drivers would publish it), and many into a zarr dataset."""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..embodiment.arm import ArmTracker
from ..errors import ConfigError
from ..perception.pointcloud import PointCloudPipeline
from ..runtime.schedule import TimedTrajectory
from ..constants import NS
from ..geometry import quat_xyzw_to_rot6d
from .env import Episode, SimEnv, record_step, sim_deploy_config, sub_steps, task_embodiment
from .tasks import PRESS_EXPERTS, ROT6D_DOWN, TAKEOVER_EXPERTS, make_task


def set_expert_profile(task, profile: str | None) -> str | None:
    """Choose a task's scripted expert (``press``: planned or reactive); None keeps the task's default.
    Returns the profile in use (None for tasks with one expert)."""
    have = getattr(task, "expert_profile", None)
    if profile is None:
        return have
    if have is None:
        raise ConfigError(f"--expert: task '{task.name}' has one expert; got --expert {profile}")
    if profile not in PRESS_EXPERTS:
        raise ConfigError(f"--expert: expected one of {PRESS_EXPERTS}, got {profile!r}")
    task.expert_profile = profile
    return profile


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
    tracker = q_cmd = None
    if env.aerial:
        pose = sim.ee_pose()
        ref, rot6d = pose[:3], quat_xyzw_to_rot6d(pose[3:])
    else:
        tracker = ArmTracker(env.kin, dt=env.period / NS, damping=env.cfg.embodiment.ik_damping)
        ref, rot6d = sim.flange_pose()[:3], ROT6D_DOWN
        q_cmd = torch.as_tensor(sim.joints())[None]
    ep = Episode(seed, False, 0, initial)
    data = _expert_steps(env, expert, ep, ref, rot6d, q_cmd, tracker, cloud, wrench, filtered, 0, frames, bag)
    ep.success, ep.steps = task.success(sim), len(data["action"])
    ep.failure = task.failure(sim)
    return ep, {k: np.stack(v) for k, v in data.items()}


def _expert_steps(env: SimEnv, expert, ep: Episode, ref, rot6d, q_cmd, tracker, cloud, wrench, filtered,
                  t0: int, frames: bool, bag) -> dict:
    """The expert acting each control period from sim time ``t0`` to the episode's end (or 3 periods
    after it is done), the follower one period behind its target; → the recorded data."""
    sim, task = env.sim, env.task
    data = {"point_cloud": [], "state": [], "wrench": [], "action": []}
    after_done = 0
    for k in range(env.steps - t0 // env.period):
        t = t0 + k * env.period
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
    return data


def takeover_episode(env: SimEnv, runtime, seed: int, latency, contact_periods: int,
                     num_points: int) -> tuple[Episode, dict | None]:
    """DAgger under latency: the policy (``runtime``, its inferences charged ``latency``) acts until it
    has been in contact (the task's force above 0.2 N) for ``contact_periods`` control periods; then the
    expert (``PressExpert.take_over``: it acts from any state) takes over from the commanded pose and is
    recorded to the end of its hold. → (the episode, the expert's data from the take-over, or None when
    the policy succeeded or failed first, or the expert did not finish its hold)."""
    from .closed_loop import policy_episode

    sim, task = env.sim, env.task
    contact = [0]

    def hand_over(ep: Episode) -> bool:
        contact[0] += task.force(sim) > 0.2
        return contact[0] > contact_periods

    ep = policy_episode(env, runtime, seed, latency=latency, hand_over=hand_over)
    if ep.success or ep.failure or contact[0] <= contact_periods:
        return ep, None
    t0 = ep.steps * env.period
    expert = task.expert(sim)
    q_cmd = torch.as_tensor(sim.follower.command(t0))[None]
    with torch.no_grad():
        ref = env.kin.fk(q_cmd[0]).numpy()[:3].astype(np.float64)
    expert.take_over(ref)
    tracker = ArmTracker(env.kin, dt=env.period / NS, damping=env.cfg.embodiment.ik_damping)
    cloud = PointCloudPipeline(dataclasses.replace(env.cfg.point_cloud, num_points=num_points), sim.camera)
    wrench = copy.deepcopy(runtime.wrench)  # the filter as the policy's runtime has fed it
    filtered = wrench.history()[1][-1]
    seg = Episode(seed, False, 0, {})
    data = _expert_steps(env, expert, seg, ref, ROT6D_DOWN, q_cmd, tracker, cloud, wrench, filtered, t0,
                         False, None)
    if expert.phase != "done" or task.failure(sim):
        return ep, None
    return ep, {k: np.stack(v) for k, v in data.items()}


def collect(task: str, episodes: int, out: str | Path, seed: int = 1000, num_points: int = 256,
            embodiment: str | None = None, progress: bool = True, overwrite: bool = False,
            expert: str | None = None) -> dict:
    """Scripted demonstrations (seeds seed, seed+1, …) into a zarr dataset; failed ones are left out.
    Aerial tasks are demonstrated with the oracle gripper unless ``embodiment`` says otherwise."""
    from ..data import ReplayBuffer

    if embodiment is None and make_task(task).embodiment == "aerial":
        embodiment = "oracle"
    embodiment = task_embodiment(task, embodiment)
    env = SimEnv(task, sim_deploy_config(embodiment), embodiment)
    kept, failed, steps = 0, [], 0
    try:
        profile = set_expert_profile(env.task, expert)
        buf = ReplayBuffer.create(out, overwrite=overwrite)
        for s in tqdm(range(seed, seed + episodes), desc=f"collect {task}", disable=not progress):
            ep, data = expert_episode(env, s, num_points)
            if not ep.success:
                failed.append(s)
                continue
            buf.add_episode(data)
            kept, steps = kept + 1, steps + ep.steps
    finally:
        env.close()
    # Evaluation must use seeds outside this block: it travels into every checkpoint trained on the data.
    extra = {"expert": profile} if profile else {}
    buf.set_provenance(task=task, embodiment=embodiment, demo_seeds=[seed, seed + episodes - 1],
                       failed_seeds=failed, **extra)
    return {"dataset": str(out), "task": task, "episodes": kept, "failed_seeds": failed, "steps": steps,
            "seeds": [seed, seed + episodes - 1], **extra}


def collect_takeover(task: str, checkpoint: str, episodes: int, out: str | Path, seed: int = 1000,
                     delay: str | float = 400, draws: int = 2, max_contact_periods: int = 30,
                     num_points: int = 256, expert: str = "servo", progress: bool = True) -> dict:
    """DAgger under latency (``takeover_episode``): for each seed ``draws`` roll-outs of ``checkpoint``
    with ``delay`` charged to each inference, each handed to the expert after a number of periods in
    contact drawn from 0..``max_contact_periods`` (fixed per seed and draw); the expert's segments are
    added to the dataset ``out`` (created if absent: aggregate them with demonstrations by pointing at
    their dataset). Its provenance records the checkpoint, delay and seeds."""
    from ..config import resolve_shipped_checkpoint
    from ..data import ReplayBuffer
    from ..runtime.deployment import build_runtime, load_policy
    from .closed_loop import Latency
    from .env import eval_config

    if expert not in TAKEOVER_EXPERTS:
        raise ConfigError(f"--expert: with --takeover, expected servo or proportional (the press experts that act "
                          f"from any state), got {expert!r}")
    latency = Latency.parse(delay)
    checkpoint = str(resolve_shipped_checkpoint(checkpoint))
    cfg = eval_config(task, checkpoint, None, None, None)
    env = SimEnv(task, cfg, None)
    if getattr(env.task, "expert_profile", None) is None:
        env.close()
        raise ConfigError(f"--takeover: task '{task}' has no expert that acts from any state (press has)")
    added, skipped, steps = 0, {"policy_succeeded": 0, "policy_failed": 0, "expert_unfinished": 0}, 0
    try:
        set_expert_profile(env.task, expert)
        runtime = build_runtime(cfg, load_policy(cfg, checkpoint), arm=env.kin)
        buf = ReplayBuffer.open(out, mode="a") if Path(out).exists() else ReplayBuffer.create(out)
        for s in tqdm(range(seed, seed + episodes), desc=f"takeover {task}", disable=not progress):
            for draw in range(draws):
                periods = int(np.random.default_rng([s, draw]).integers(0, max_contact_periods + 1))
                ep, data = takeover_episode(env, runtime, s, latency, periods, num_points)
                if data is None:
                    key = ("policy_succeeded" if ep.success else "policy_failed" if ep.failure
                           else "expert_unfinished")
                    skipped[key] += 1
                    continue
                buf.add_episode(data)
                added, steps = added + 1, steps + len(data["action"])
    finally:
        env.close()
    record = {"checkpoint": str(checkpoint), "delay_ms": latency.label, "seeds": [seed, seed + episodes - 1],
              "draws": draws, "expert": expert, "segments": added}
    prov = buf.provenance
    demo = prov.get("demo_seeds") or record["seeds"]  # the scenes trained on: evaluation warns on them
    buf.set_provenance(takeover=[*prov.get("takeover", []), record],
                       demo_seeds=[min(demo[0], seed), max(demo[1], seed + episodes - 1)],
                       **({} if "task" in prov else {"task": task, "embodiment": env.embodiment}))
    return {"dataset": str(out), "task": task, **record, "skipped": skipped, "steps": steps,
            "episodes": buf.n_episodes}
