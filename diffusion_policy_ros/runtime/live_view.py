"""A live view of what the policy sees and does, in Rerun (``rerun-sdk``, the package's [view] extra).

One ``LiveView`` per driver (policy node, ``dpros replay``, ``dpros sim-eval``): after every control
cycle it logs, on a ``time`` timeline in seconds of the driver's clock,

    camera/color             the colour image the cycle used (when the policy reads colour)
    world/cloud              the cropped point cloud in the base frame, and world/crop_box
    world/prediction         the policy's full-horizon end-effector prediction (world frame)
    world/command            the commanded trajectory (end effector; joint outputs through FK)
    world/executed           the measured end-effector path so far
    wrench/{fx..tz}          the filtered wrench the policy reads
    joints/<name>            measured joint positions
    guidance/cost            the guidance cost of the chunk (guided or best-of-N cycles)
    latency/{inference_ms, perception_ms, publish_ms}, status   per cycle

Target: ``spawn`` (a viewer window), or a path ending in ``.rrd`` (saved for later: headless machines,
CI, bug reports; open it with ``rerun FILE.rrd``).
"""
from __future__ import annotations

import numpy as np
import torch

from .. import constants as C
from ..constants import NS
from ..errors import ConfigError

WRENCH_AXES = ("fx", "fy", "fz", "tx", "ty", "tz")


def open_recording(target: str, app: str):
    """→ (the rerun module, a RecordingStream to a spawned viewer or an .rrd file)."""
    try:
        import rerun as rr
    except ImportError:
        raise ConfigError("rerun: expected the rerun-sdk package (pip install rerun-sdk, or the package's "
                          "[view] extra), it is not installed") from None
    if target != "spawn" and not str(target).endswith(".rrd"):
        raise ConfigError(f"rerun: expected 'spawn' or a file name ending in .rrd, got {target!r}")
    rec = rr.RecordingStream(app)
    if target == "spawn":
        rec.spawn()
    else:
        rec.save(str(target))
    return rr, rec


class LiveView:
    def __init__(self, target: str, runtime, app: str = "diffusion_policy_ros"):
        self.rr, self.rec = open_recording(target, app)
        self.rt = runtime
        rr = self.rr
        self.executed: list[np.ndarray] = []
        pc = runtime.cfg.point_cloud
        lo, hi = np.asarray(pc.crop_min, float), np.asarray(pc.crop_max, float)
        self.rec.log("world/crop_box", rr.Boxes3D(mins=[lo], sizes=[hi - lo]), static=True)

    def _positions(self, values: np.ndarray, joints: bool) -> np.ndarray:
        """Waypoints → end-effector positions (joint positions through the arm's FK)."""
        rt = self.rt
        if not joints or rt.arm is None:
            return np.asarray(values, float)[:, :3]
        q = torch.as_tensor(np.asarray(values, float)[:, :rt.arm.dof])
        return rt.arm.fk(q)[:, :3].numpy()

    def cycle(self, t_ns: int, result) -> None:
        """Log one control cycle (a ``CycleResult``) and what the runtime observed for it."""
        rr, rec, rt = self.rr, self.rec, self.rt
        rec.set_time("time", duration=t_ns / NS)
        rec.log("status", rr.TextLog(f"{result.status}: {result.reason}" if result.reason else result.status))
        seen = rt.last_observation
        if seen is not None:
            obs, samples = seen
            for key, spec in rt.pcfg.observations.items():
                value = obs.get(key)
                if value is None:
                    continue
                if spec.type == C.OBS_POINT_CLOUD:
                    rec.log("world/cloud", rr.Points3D(np.asarray(value[-1])[:, :3], radii=0.003))
                elif spec.type == C.OBS_WRENCH:
                    for axis, v in zip(WRENCH_AXES, np.asarray(value[-1], float)):
                        rec.log(f"wrench/{axis}", rr.Scalars(float(v)))
            if "color" in samples:
                rec.log("camera/color", rr.Image(np.asarray(samples["color"][-1])))
            if "joints" in samples:
                for name, v in zip(rt.joint_state_names, np.asarray(samples["joints"][-1], float)):
                    rec.log(f"joints/{name}", rr.Scalars(float(v)))
            try:
                state = rt.measured_action(samples)[-1]  # joints for joint-space policies, else the pose
                self.executed.append(self._positions(state[None], rt.joint_repr)[0])
            except Exception:  # noqa: BLE001 - a state the view cannot place is left out, never fatal
                pass
            if self.executed:
                rec.log("world/executed", rr.LineStrips3D([np.asarray(self.executed)]))
        if rt.last_prediction is not None:
            rec.log("world/prediction", rr.LineStrips3D([self._positions(rt.last_prediction, rt.joint_repr)]))
        if result.command is not None:
            rec.log("world/command", rr.LineStrips3D([self._positions(result.command.trajectory.values,
                                                                     not rt.ee_output)]))
        if result.status == "command" and getattr(rt, "last_guidance_cost", None) is not None:
            rec.log("guidance/cost", rr.Scalars(float(rt.last_guidance_cost)))
        if result.status == "command":
            rec.log("latency/inference_ms", rr.Scalars(float(result.inference_ms)))
            rec.log("latency/perception_ms", rr.Scalars(float(result.perception_ms)))
            rec.log("latency/publish_ms", rr.Scalars(float(result.latency_ms)))

    def close(self) -> None:
        self.rec.flush()
        self.rec.disconnect()

