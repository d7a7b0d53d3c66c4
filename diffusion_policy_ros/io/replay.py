"""Offline evaluation: a recorded bag's observations through the live node's runtime (``dpros replay``).

Messages are fed in header-stamp order (``io/feeder.py``, the order dataset conversion uses) through
the node's own input table (``io/inputs.py``) into a ``PolicyRuntime``; cycles follow header stamps, so bags recorded on wall or sim time replay
alike. A control cycle runs every observation period of bag time. As fast as possible (default) the
policy takes no bag time, as in lockstep simulation; with ``rate`` the bag plays at that multiple of
real time and inference takes real time too: messages that arrive meanwhile queue, overrun cycles are
skipped, exactly as on the robot.

Written to ``out``: ``replay/`` (an MCAP bag with the predicted trajectories on
``/replay/predicted_trajectory`` next to the recorded command topic), ``summary.json`` and one PNG of
predicted against recorded values per output dimension. No rclpy: runs anywhere.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..config import DeployConfig
from ..errors import BagError, DiffusionPolicyRosError
from ..geometry import quat_xyzw_to_rot6d
from ..constants import NS
from ..runtime.controller import PolicyRuntime
from ..runtime.deployment import build_runtime
from ..runtime.live_view import LiveView
from . import msgs as M
from .bags import BagReader, BagWriter
from .feeder import command_stamp, header_stamp, in_stamp_order
from .inputs import runtime_inputs

log = logging.getLogger(__name__)
PREDICTED_TOPIC = "/replay/predicted_trajectory"


class _Recorded:
    """The robot's recorded state in the runtime's output space: joints, or the end-effector pose."""

    def __init__(self, rt: PolicyRuntime):
        self.rt, self.t, self.v = rt, [], []

    def add(self, name: str, msg) -> None:
        rt = self.rt
        if name == "joint_states" and not rt.ee_output:
            q, _, _ = M.decode_joint_state(msg, rt.output_names)
        elif name == "ee_pose" and rt.ee_output:
            p = M.decode_pose(msg)
            q = np.concatenate((p[:3], quat_xyzw_to_rot6d(p[3:])))
        elif name == "joint_states" and rt.ee_output and rt.arm is not None and not rt.state_from_pose:
            joints, _, _ = M.decode_joint_state(msg, rt.joint_names)
            q = rt.arm.fk(torch.as_tensor(joints)).numpy()
        else:
            return
        self.t.append(M.header_ns(msg))
        self.v.append(q)

    def at(self, times: np.ndarray) -> np.ndarray | None:
        if len(self.t) < 2:
            return None
        t, v = np.asarray(self.t, np.int64), np.asarray(self.v)
        order = np.argsort(t, kind="stable")
        t, v = t[order], v[order]
        return np.stack([np.interp(times, t, v[:, j]) for j in range(v.shape[1])], -1)


def replay(bag_path: str | Path, policy, deploy: DeployConfig, out: str | Path, *, arm=None, rate: float = 0.0,
           typestore: str = "jazzy", progress: bool = True, plots: bool = True, rerun: str = "") -> dict:
    """Replay one bag through ``policy`` (a loaded ``Policy``); returns the summary (also in summary.json).
    ``rerun``: a live view (``spawn``, or a ``.rrd`` file to write; runtime/live_view.py)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rt = build_runtime(deploy, policy, arm=arm)
    view = LiveView(rerun, rt, app="dpros replay") if rerun else None
    period = rt.period
    inputs = {i.topic: i for i in runtime_inputs(rt, deploy.topics)}
    recorded = _Recorded(rt)
    preds: list[tuple[int, np.ndarray, np.ndarray]] = []  # (cycle time, waypoint times, values)
    dropped = {i.name: 0 for i in inputs.values()}
    holds: dict[str, int] = {}
    infer_ms: list[float] = []
    cycles = overruns = 0
    command_topic = deploy.topics.command
    out_bag = out / "replay"
    if out_bag.exists():
        raise BagError(f"--out: '{out_bag}' exists already; choose another folder")
    with BagReader(bag_path, fallback_typestore=typestore) as bag, \
            BagWriter(out_bag, storage="mcap", store=typestore) as writer:
        bag.require({t: i.msgtype for t, i in inputs.items()})
        types = M.RosTypes(writer.store)
        copy_command = bag.topics.get(command_topic) == "trajectory_msgs/msg/JointTrajectory"
        if copy_command:
            writer.add_topic(command_topic, "trajectory_msgs/msg/JointTrajectory", reliable=True)
        writer.add_topic(PREDICTED_TOPIC, "trajectory_msgs/msg/JointTrajectory", reliable=True)
        extra = [t for t in {deploy.topics.joint_states, deploy.topics.ee_pose} if t and t in bag.topics]
        topics = list(inputs) + [t for t in extra if t not in inputs] + ([command_topic] if copy_command else [])
        total = sum(bag.count(t) for t in topics)
        t_next = None
        wall0 = bag0 = None

        def cycle(t: int) -> None:
            nonlocal cycles, t_next, overruns
            cycles += 1
            res = rt.step(t)
            if view is not None:
                view.cycle(t, res)
            if res.status == "hold":
                key = res.reason.split(":")[0]
                holds[key] = holds.get(key, 0) + 1
            if res.status == "command" and res.command is not None:
                infer_ms.append(res.inference_ms + res.perception_ms)
                tr = res.command.trajectory
                preds.append((t, tr.times_ns.copy(), tr.values.copy()))
                data = M.JointTrajectoryData(res.command.names, t, tr.times_ns - t, tr.values)
                writer.write(PREDICTED_TOPIC, t, M.encode_joint_trajectory(types, data))
            if rate > 0:  # inference took real time: the bag moved on meanwhile
                now = bag0 + int((time.monotonic() - wall0) * rate * NS)
                skipped = max(0, (now - t) // period)
                overruns += int(skipped)
                t_next = t + (skipped + 1) * period
            else:
                t_next = t + period

        bar = tqdm(total=total, desc="replay", unit="msg", disable=not progress)
        def stamp_of(topic, msg):
            return command_stamp(topic, msg) if topic == command_topic else header_stamp(topic, msg)

        for stamp, topic, msg in in_stamp_order(bag, topics, stamp_of):  # header-stamp order, as conversion
            bar.update()
            if topic == command_topic and copy_command and topic not in inputs:
                writer.write(command_topic, stamp, _reencode(types, msg))  # the reader's classes may be another distro's
                continue
            name = inputs[topic].name if topic in inputs else ("joint_states" if topic == deploy.topics.joint_states
                                                                else "ee_pose")
            try:
                if rate > 0:
                    if wall0 is None:
                        wall0, bag0 = time.monotonic(), stamp
                    ahead = (stamp - bag0) / NS / rate - (time.monotonic() - wall0)
                    if ahead > 0:
                        time.sleep(ahead)
                while t_next is not None and stamp > t_next:
                    cycle(t_next)
                recorded.add(name, msg)
                if topic in inputs:
                    inputs[topic].feed(rt, msg)
            except (DiffusionPolicyRosError, ValueError, TypeError, AttributeError) as e:
                if name in dropped:
                    dropped[name] += 1
                log.warning("%s: %s; message dropped", topic, e)
                continue
            if t_next is None:
                t_next = stamp
        bar.close()
    if view is not None:
        view.close()
    summary = _summarize(bag_path, rt, preds, recorded, cycles, overruns, holds, dropped, infer_ms, rate)
    if rerun and rerun != "spawn":
        summary["rerun"] = str(rerun)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    if plots and preds:
        summary["plot"] = str(_plot(out / "predicted_vs_recorded.png", rt, preds, recorded))
    summary["bag_out"] = str(out_bag)
    return summary


def _reencode(types, msg):
    return M.encode_joint_trajectory(types, M.decode_joint_trajectory(msg))


def _summarize(bag_path, rt, preds, recorded, cycles, overruns, holds, dropped, infer_ms, rate) -> dict:
    errs, by_step = [], {}
    for _, times, values in preds:
        ref = recorded.at(times)
        if ref is None:
            continue
        d = min(ref.shape[1], values.shape[1])
        e = values[:, :d] - ref[:, :d]
        errs.append(e)
        for i, row in enumerate(e):
            by_step.setdefault(i, []).append(row)
    out = {"bag": str(bag_path), "cycles": cycles, "commands": len(preds), "holds": sum(holds.values()),
           "hold_reasons": holds, "overrun_cycles": overruns, "dropped_messages": dropped,
           "rejected_samples": dict(rt.stats.rejected), "unsynced_cycles": rt.stats.unsynced,
           "rate": rate or "as fast as possible", "output_names": rt.output_names}
    if infer_ms:
        out.update(cycle_p50_ms=round(float(np.percentile(infer_ms, 50)), 2),
                   cycle_p99_ms=round(float(np.percentile(infer_ms, 99)), 2))
    if errs:
        e = np.concatenate(errs)
        out["action_rmse"] = round(float(np.sqrt((e ** 2).mean())), 6)
        out["action_rmse_per_dim"] = [round(float(x), 6) for x in np.sqrt((e ** 2).mean(0))]
        out["action_rmse_per_waypoint"] = [round(float(np.sqrt((np.stack(v) ** 2).mean())), 6)
                                           for _, v in sorted(by_step.items())]
        if rt.ee_output:
            out["position_rmse_m"] = round(float(np.sqrt((e[:, :3] ** 2).sum(1).mean())), 6)
    return out


def _plot(path: Path, rt, preds, recorded) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t_all = np.concatenate([times for _, times, _ in preds])
    ref = recorded.at(np.sort(t_all))
    dims = preds[0][2].shape[1]
    names = rt.output_names if len(rt.output_names) == dims else [f"dim {j}" for j in range(dims)]
    cols = 3 if dims > 4 else dims
    rows = -(-dims // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.6 * rows), squeeze=False, sharex=True)
    t0 = preds[0][0]
    for j in range(dims):
        ax = axes[j // cols][j % cols]
        for k, (_, times, values) in enumerate(preds):
            ax.plot((times - t0) / NS, values[:, j], color="tab:orange", lw=0.8, alpha=0.5,
                    label="predicted" if k == 0 else None)
        if ref is not None and j < ref.shape[1]:
            ax.plot((np.sort(t_all) - t0) / NS, ref[:, j], color="k", lw=1.2, label="recorded")
        ax.set_title(names[j], fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("bag time (s)")
    for j in range(dims, rows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.suptitle("replay: predicted trajectories (every cycle) vs the recorded robot state")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
