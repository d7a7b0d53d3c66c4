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

import json
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
from ..perception.pointcloud import extrinsic_matrix
from ..runtime.controller import PolicyRuntime
from ..runtime.deployment import build_runtime
from . import lerobot as L
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
    times_ns: np.ndarray | None = None  # (steps,) sample time of each step (the bag's clock)
    raw: dict[str, np.ndarray] = field(default_factory=dict)  # sensors as sampled (``raw=True``)
    takeover: np.ndarray | None = None  # (steps,) bool: a person held the deadman (``takeover_topic``)

    def select(self, rows: np.ndarray) -> "BagEpisode":
        """The episode cut to ``rows`` (contiguous step indices)."""
        cut = {k: v[rows] for k, v in self.data.items()}
        return BagEpisode(cut, len(rows), self.dropped, self.truncated,
                          None if self.times_ns is None else self.times_ns[rows],
                          {k: v[rows] for k, v in self.raw.items()},
                          None if self.takeover is None else self.takeover[rows])

    def segments(self, min_steps: int = 1) -> list["BagEpisode"]:
        """The takeover segments as episodes of their own (runs of steps with ``takeover`` true)."""
        if self.takeover is None:
            return []
        flags = np.concatenate(([False], self.takeover, [False])).astype(np.int8)
        starts, ends = np.flatnonzero(np.diff(flags) == 1), np.flatnonzero(np.diff(flags) == -1)
        return [self.select(np.arange(a, b)) for a, b in zip(starts, ends) if b - a >= min_steps]


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


def _raw_sample(rt: PolicyRuntime, samples: dict[str, np.ndarray], color) -> dict[str, np.ndarray]:
    """What the sensors gave at one step, as a LeRobot dataset stores it (``data/lerobot.py``): the
    newest colour and depth frame, the camera's intrinsics and extrinsic, the wrench as the policy saw
    it (filtered, tared), the measured state."""
    out = {}
    if color is not None:
        out[L.COLOR] = color
    if "depth" in samples:
        cam = rt.camera
        out[L.DEPTH] = np.asarray(samples["depth"][-1], np.float32)
        out[L.INTRINSICS] = np.array([cam.width, cam.height, cam.fx, cam.fy, cam.cx, cam.cy], np.float32)
        out[L.EXTRINSIC] = extrinsic_matrix(rt.cfg.point_cloud.extrinsic).astype(np.float32).reshape(16)
    if "wrench" in samples:
        out[L.WRENCH] = np.asarray(samples["wrench"][-1], np.float32)
    if "joints" in samples:
        out[L.STATE] = np.asarray(samples["joints"][-1], np.float32)
    elif "ee_pose" in samples:
        out[L.STATE] = np.asarray(samples["ee_pose"][-1], np.float32)
    return out


def bag_episode(path: str | Path, rt: PolicyRuntime, action: str = "measured", command_topic: str = "",
                typestore: str = "jazzy", *, raw: bool = False, takeover_topic: str = "") -> BagEpisode:
    """One bag → one episode (observation keys as the dataset names them, plus the action key).
    ``raw``: also the sensors as sampled at each step (colour from the colour topic whether the policy
    reads it or not). ``takeover_topic``: a std_msgs/Bool topic (the teleop deadman); each step is
    flagged with its latest value (false before the first)."""
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
    times: list[int] = []
    raws: list[dict[str, np.ndarray]] = []
    flags: list[bool] = []
    passive = {}  # topic → latest message: read for the raw sample or the takeover flag, fed to nothing
    with BagReader(path, fallback_typestore=typestore) as bag:
        bag.require({t: i.msgtype for t, i in inputs.items()})
        command = None
        if action == "commanded":
            topic = command_topic or rt.cfg.topics.command
            if topic not in bag.topics:
                raise BagError(f"bag '{path}': commanded actions need the command topic {topic!r}; it has "
                               f"{sorted(bag.topics)}")
            command = _Command(rt, bag.topics[topic])
        color_topic = next((i.topic for i in inputs.values() if i.name == "color"), None)
        if raw and color_topic is None:
            t = rt.cfg.topics
            color_topic = next((c for c in (t.color, t.color + "/compressed") if c in bag.topics), None)
            if color_topic is not None:
                passive[color_topic] = None
        if takeover_topic:
            if takeover_topic not in bag.topics:
                raise BagError(f"bag '{path}': takeover segments need the topic {takeover_topic!r} "
                               f"(std_msgs/Bool, the teleop deadman); it has {sorted(bag.topics)}")
            passive[takeover_topic] = None
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
            times.append(int(t))
            if takeover_topic:
                msg = passive[takeover_topic]
                flags.append(bool(msg is not None and msg.data))
            if raw:
                color = None
                if color_topic in passive and passive[color_topic] is not None:
                    msg = passive[color_topic]
                    color = M.decode_compressed(msg)[0] if color_topic.endswith("/compressed") else M.decode_rgb(msg)
                elif color_topic is not None and "color" in samples:
                    color = samples["color"][-1]
                raws.append(_raw_sample(rt, samples, color))
            m = rt.measured_action(samples)[-1]
            measured.append(m)
            if command is not None:
                commanded.append(command.at(t + period, m))
            return True

        # Messages in header-stamp order (io/feeder.py); a step is sampled once a message stamped after
        # it comes: each stream's latest message at or before the step.
        topics = list(inputs) + ([command_topic or rt.cfg.topics.command] if command else []) + list(passive)
        clock = None

        def process(stamp: int, topic: str, msg) -> bool:
            nonlocal t_next, first
            if topic in passive:
                while t_next is not None and stamp > t_next and sample(t_next):  # steps before it first
                    t_next += period
                passive[topic] = msg
                return not truncated
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
            return header_stamp(topic, msg) if topic in inputs or topic == color_topic else None

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
            times, raws, flags = times[first:], raws[first:], flags[first:]
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
    raw_data = {k: np.stack([r[k] for r in raws[:n]]) for k in raws[0]} if raws else {}
    return BagEpisode(data, n, dropped, truncated, np.asarray(times[:n], np.int64), raw_data,
                      np.asarray(flags[:n], bool) if takeover_topic else None)


FORMATS = ("zarr", "lerobot")
SEGMENTS = ("all", "takeover")


def _episode_task(path: Path) -> str:
    meta = Path(path) / "episode.json"
    try:
        return str(json.loads(meta.read_text()).get("task") or "") if meta.is_file() else ""
    except (OSError, ValueError):
        return ""


def convert_bags(bags, cfg: Config, deploy: DeployConfig, out: str | Path, *, action: str = "measured",
                 command_topic: str = "", typestore: str = "jazzy", overwrite: bool = False,
                 progress: bool = True, format: str = "zarr", segments: str = "all") -> dict:
    """Bags → episodes appended to ``out`` (created if missing). Unusable bags are skipped with a
    warning; an episode is committed whole or not at all, so the store is never left half-written.
    ``format`` lerobot: a new LeRobotDataset v3 folder with the sensors (``data/lerobot.py``).
    ``segments`` takeover: only the steps a person drove (``topics.takeover`` true), each stretch an
    episode of its own: the corrections of DAgger-style takeovers, to fine-tune on."""
    if format not in FORMATS:
        raise DatasetError(f"format: expected one of {FORMATS}, got {format!r}")
    if segments not in SEGMENTS:
        raise DatasetError(f"segments: expected one of {SEGMENTS}, got {segments!r}")
    takeover_topic = deploy.topics.takeover if segments == "takeover" else ""
    if segments == "takeover" and not takeover_topic:
        raise DatasetError("segments takeover: expected topics.takeover (the deadman's std_msgs/Bool topic), got ''")
    rt = observation_runtime(cfg, deploy)
    horizon = cfg.policy.horizon
    if format == "lerobot":
        from ..config import config_to_dict
        from .lerobot import LeRobotWriter

        writer = LeRobotWriter(out, 1e9 / rt.period, cfg.policy.action.dataset_key, deploy_dict=config_to_dict(deploy),
                               robot_type=deploy.embodiment.kind, state_names=rt.joint_state_names,
                               overwrite=overwrite)
    else:
        buf = ReplayBuffer.create(out, overwrite=overwrite)
    kept, skipped, steps, dropped, written = [], [], 0, {}, 0
    for path in tqdm(list(bags), desc="convert", unit="bag", disable=not progress):
        try:
            ep = bag_episode(path, rt, action, command_topic, typestore, raw=format == "lerobot",
                             takeover_topic=takeover_topic)
        except (BagError, DatasetError) as e:
            log.warning("skipped: %s", e)
            skipped.append({"bag": str(path), "reason": str(e)})
            continue
        for k, v in ep.dropped.items():
            dropped[k] = dropped.get(k, 0) + v
        parts = [(ep, None)]
        if segments == "takeover":
            found = ep.segments()
            parts = [(p, (float((p.times_ns[0] - ep.times_ns[0]) / 1e9), float((p.times_ns[-1] - ep.times_ns[0]) / 1e9)))
                     for p in found]
            if not found:
                skipped.append({"bag": str(path), "reason": "no takeover segment"})
        for part, span in parts:
            where = str(path) if span is None else f"{path} [{span[0]:.2f}, {span[1]:.2f}] s"
            if part.steps < horizon:
                reason = (f"{part.steps} steps, shorter than the policy horizon ({horizon})"
                          + (f"; {part.truncated}" if part.truncated else ""))
                log.warning("skipped %s: %s", where, reason)
                skipped.append({"bag": where, "reason": reason})
                continue
            if part.truncated and span is None:
                log.warning("%s: episode ends early (%s); kept %d steps", path, part.truncated, part.steps)
            if format == "lerobot":
                writer.add(part, _episode_task(path), {"bag": str(path), "segment_s": span})
            else:
                buf.add_episode(part.data)
            written += 1
            steps += part.steps
        if any(p.steps >= horizon for p, _ in parts):
            kept.append(str(path))
    if format == "lerobot":
        total = writer.close({"bags": kept, "segments": segments})
    else:
        total = buf.n_episodes
    return {"dataset": str(out), "format": format, "bags": len(kept), "episodes": written, "steps": steps,
            "skipped": skipped, "dropped_messages": dropped, "total_episodes": total, "action": action,
            "segments": segments}
