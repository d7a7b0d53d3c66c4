"""Recorded rosbags → training episodes in the zarr replay buffer (``dpros convert``).

Each bag is one episode. Its messages go, in log-time order, through the same decoders and the same
``PolicyRuntime`` observation path the live node uses (``ros/inputs.py``), so a dataset is decoded
exactly as the robot will see it. Samples are taken every observation period: each stream's latest
message at or before the sample time (what had arrived by then: no future leakage), older than
``timing.max_observation_age_s`` → a gap. Actions are absolute, in the policy's action space:
``measured`` = the robot's state one period later; ``commanded`` = the command topic (PoseStamped
targets, or a JointTrajectory evaluated one period later).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..config import Config, DeployConfig
from ..errors import BagError, DatasetError, DiffusionPolicyRosError, ObservationError
from ..geometry import quat_xyzw_to_rot6d
from ..io import msgs as M
from ..io.bags import BagReader
from ..io.feeder import header_stamp, in_stamp_order
from ..io.inputs import runtime_inputs
from ..runtime.controller import PolicyRuntime
from ..runtime.deployment import build_runtime
from .replay_buffer import ReplayBuffer

log = logging.getLogger(__name__)
ACTION_SOURCES = ("measured", "commanded")
COMMAND_TYPES = ("geometry_msgs/msg/PoseStamped", "trajectory_msgs/msg/JointTrajectory")


@dataclass
class BagEpisode:
    data: dict[str, np.ndarray]
    steps: int
    dropped: dict[str, int] = field(default_factory=dict)  # messages that failed to decode, per input
    truncated: str = ""  # why the episode ended before the bag did


def observation_runtime(cfg: Config, deploy: DeployConfig) -> PolicyRuntime:
    return build_runtime(deploy, training=cfg)


class _Command:
    """The latest command message, evaluated in the policy's action space at a time."""

    def __init__(self, rt: PolicyRuntime, msgtype: str):
        if msgtype not in COMMAND_TYPES:
            raise BagError(f"command topic: expected one of {COMMAND_TYPES} for commanded actions, got {msgtype}")
        self.rt, self.msgtype, self.msg, self.log_ns = rt, msgtype, None, 0

    def at(self, t_ns: int, measured: np.ndarray) -> np.ndarray | None:
        if self.msg is None:
            return None
        rt, dim = self.rt, self.rt.pcfg.action.dim
        if self.msgtype == COMMAND_TYPES[0]:
            p = M.decode_pose(self.msg)
            out = np.concatenate((p[:3], quat_xyzw_to_rot6d(p[3:])))
            return np.concatenate((out, measured[len(out):dim]))
        traj = M.decode_joint_trajectory(self.msg)
        if not len(traj.time_from_start_ns):
            return None
        t0 = traj.stamp_ns or self.log_ns  # stamp 0: "start now" (joint_trajectory_controller)
        times = t0 + traj.time_from_start_ns
        names = rt.joint_state_names
        q = measured.copy() if rt.joint_repr else None
        index = {n: i for i, n in enumerate(traj.joint_names)}
        missing = [n for n in rt.joint_names if n not in index]
        if missing:
            raise M.MessageError(f"joint_trajectory.joint_names: expected {rt.joint_names}, missing {missing}")
        cmd = {n: float(np.interp(t_ns, times, traj.positions[:, i])) for n, i in index.items()}
        if rt.joint_repr:
            return np.array([cmd.get(n, q[k]) for k, n in enumerate(names)])
        joints = torch.as_tensor([cmd[n] for n in rt.joint_names], dtype=torch.float64)
        pose = rt.arm.fk(joints).numpy()
        return np.concatenate((pose, measured[len(pose):dim]))


def bag_episode(path: str | Path, rt: PolicyRuntime, action: str = "measured", command_topic: str = "",
                typestore: str = "jazzy") -> BagEpisode:
    """One bag → one episode (observation keys as the dataset names them, plus the action key)."""
    if action not in ACTION_SOURCES:
        raise DatasetError(f"action: expected one of {ACTION_SOURCES}, got {action!r}")
    pc, period = rt.pcfg, rt.period
    rt.reset(clear_observations=True)
    inputs = {i.topic: i for i in runtime_inputs(rt, rt.cfg.topics)}
    keys = {k: (spec.dataset_key or k) for k, spec in pc.observations.items()}
    steps: list[dict[str, np.ndarray]] = []
    measured: list[np.ndarray] = []
    commanded: list[np.ndarray | None] = []
    dropped = {i.name: 0 for i in inputs.values()}
    with BagReader(path, fallback_typestore=typestore) as bag:
        bag.require({t: i.msgtype for t, i in inputs.items()})
        command = None
        if action == "commanded":
            topic = command_topic or rt.cfg.topics.command
            if topic not in bag.topics:
                raise BagError(f"bag '{path}': commanded actions need the command topic {topic!r}; it has "
                               f"{sorted(bag.topics)}")
            command = _Command(rt, bag.topics[topic])
        t_next, truncated, first = None, "", None

        def sample(t: int) -> bool:
            """Take the step at t; False once a gap ends the episode."""
            nonlocal truncated
            try:
                obs, samples, _ = rt.observe(t)
            except ObservationError as e:
                if steps:
                    truncated = f"gap at {(t - first) / 1e9:.2f} s: {e}"
                    return False
                return True  # not every stream has started yet
            steps.append({keys[k]: v[-1] for k, v in obs.items()})
            m = rt.measured_action(samples)[-1]
            measured.append(m)
            if command is not None:
                commanded.append(command.at(t + period, m))
            return True

        # Messages in header-stamp order (io/feeder.py); a step is sampled once a message stamped after
        # it comes: each stream's latest message at or before the step.
        topics = list(inputs) + ([command_topic or rt.cfg.topics.command] if command else [])
        clock = None

        def process(stamp: int, topic: str, msg) -> bool:
            nonlocal t_next, first
            if topic not in inputs:
                command.msg, command.log_ns = msg, stamp
                return True
            inp = inputs[topic]
            try:
                while t_next is not None and stamp > t_next and sample(t_next):
                    t_next += period
                if truncated:
                    return False
                inp.feed(rt, msg)
            except (DiffusionPolicyRosError, ValueError, TypeError, AttributeError) as e:
                dropped[inp.name] += 1
                if dropped[inp.name] == 1:
                    log.warning("%s: %s: %s; message dropped", path, topic, e)
                return True
            if t_next is None:
                t_next = first = stamp
            return True

        def stamp_of(topic, msg):  # commands take the bag's clock: a stamp of 0 means "now" (JTC)
            return header_stamp(topic, msg) if topic in inputs else None

        for stamp, topic, msg in in_stamp_order(bag, topics, stamp_of):
            clock = stamp if clock is None else max(clock, stamp)
            if not process(stamp, topic, msg):
                break
        while t_next is not None and clock is not None and not truncated and t_next <= clock and sample(t_next):
            t_next += period
    # Action at step k: the state (or command) one period later; the last step has none.
    n = len(steps) - 1
    if action == "commanded":
        valid = [i for i in range(n) if commanded[i] is not None]
        if len(valid) < n:
            first = valid[0] if valid else n
            steps, measured, commanded = steps[first:], measured[first:], commanded[first:]
            n = len(steps) - 1
        acts = [commanded[i] for i in range(n)]
    else:
        acts = [measured[i + 1] for i in range(n)]
    if n <= 0:
        return BagEpisode({}, 0, dropped, truncated)
    data = {k: np.stack([s[k] for s in steps[:n]]) for k in steps[0]}
    data[pc.action.dataset_key] = np.stack(acts).astype(np.float32)
    for k, v in data.items():
        if v.dtype == np.float64:
            data[k] = v.astype(np.float32)
    return BagEpisode(data, n, dropped, truncated)


def convert_bags(bags, cfg: Config, deploy: DeployConfig, out: str | Path, *, action: str = "measured",
                 command_topic: str = "", typestore: str = "jazzy", overwrite: bool = False,
                 progress: bool = True) -> dict:
    """Bags → episodes appended to ``out`` (created if missing). Unusable bags are skipped with a
    warning; an episode is committed whole or not at all, so the store is never left half-written."""
    rt = observation_runtime(cfg, deploy)
    horizon = cfg.policy.horizon
    buf = ReplayBuffer.create(out, overwrite=overwrite)
    kept, skipped, steps, dropped = [], [], 0, {}
    for path in tqdm(list(bags), desc="convert", unit="bag", disable=not progress):
        try:
            ep = bag_episode(path, rt, action, command_topic, typestore)
        except (BagError, DatasetError) as e:
            log.warning("skipped: %s", e)
            skipped.append({"bag": str(path), "reason": str(e)})
            continue
        for k, v in ep.dropped.items():
            dropped[k] = dropped.get(k, 0) + v
        if ep.steps < horizon:
            reason = (f"{ep.steps} steps, shorter than the policy horizon ({horizon})"
                      + (f"; {ep.truncated}" if ep.truncated else ""))
            log.warning("skipped %s: %s", path, reason)
            skipped.append({"bag": str(path), "reason": reason})
            continue
        if ep.truncated:
            log.warning("%s: episode ends early (%s); kept %d steps", path, ep.truncated, ep.steps)
        buf.add_episode(ep.data)
        kept.append(str(path))
        steps += ep.steps
    return {"dataset": str(out), "episodes": len(kept), "steps": steps, "skipped": skipped,
            "dropped_messages": dropped, "total_episodes": buf.n_episodes, "action": action}
