"""A simulator task ready to run: its scene, the deploy config the policy node would use on it, and
what an episode records. Shared by the scripted demonstrations (``experts.py``), the closed loop
(``closed_loop.py``) and the sim node (``ros/sim_node.py``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config import DeployConfig, load_deploy_config, resolve_shipped
from ..constants import NS
from ..embodiment.arm import arm_from_config
from ..errors import ConfigError
from ..geometry import quat_xyzw_to_rot6d
from .aerial import AerialSim
from .arm import ArmSim
from .tasks import make_task

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
    latency_ms: list = field(default_factory=list)  # per command: cycle start → publish, sim time
    late: int = 0  # chunks not sent: entirely due before they could take over
    contact_stops: int = 0  # safety.max_contact_force exceeded: the running trajectory stopped
    first_point_in_past: int = 0  # trajectories the controller received with their first point past
    max_handover_jump: float = 0.0  # largest step of the commanded position at a hand-over (rad or m)


STATE_RATE_HZ = 50.0  # joint_states and the wrist wrench, as the sim node and sim bags publish them


def sub_steps(t0: int, t1: int, rate_hz: float = STATE_RATE_HZ) -> list[int]:
    """Sensor sample times in (t0, t1] at the state rate (t1 always included)."""
    dt = int(round(NS / rate_hz))
    return [*range(t0 + dt, t1, dt), t1]


def record_step(ep: Episode, env: SimEnv, rgb: np.ndarray, frames: bool) -> None:
    """Append the task's trace and the tool position (and the frame, if ``frames``) to the episode."""
    ep.trace.append(env.task.trace(env.sim))
    ep.tip_path.append(env.sim.tip_position()[:2].tolist())
    if frames:
        ep.frames.append(rgb)


def eval_config(task: str, checkpoint, embodiment: str, deploy_config: str | None, overrides: dict | None
                ) -> DeployConfig:
    """The sim deploy config with ``--set`` overrides; unknown tasks, parameters or checkpoints fail here."""
    from ..config import with_overrides

    cfg = with_overrides(sim_deploy_config(task_embodiment(task, embodiment), deploy_config), overrides)
    if not Path(checkpoint).exists():
        raise ConfigError(f"--checkpoint: expected a checkpoint folder (dpros train's DIR/checkpoint), got "
                          f"'{checkpoint}' (not found)")
    return cfg


def demo_seed_overlap(checkpoint, seed: int, episodes: int) -> str:
    """A warning when evaluation seeds seed … seed+episodes-1 overlap the checkpoint's demonstrations."""
    from ..checkpoint import read_checkpoint_meta

    demo = read_checkpoint_meta(checkpoint).get("provenance", {}).get("demo_seeds")
    if not demo or seed > demo[1] or seed + episodes - 1 < demo[0]:
        return ""
    return (f"evaluation seeds {seed}-{seed + episodes - 1} overlap the demonstrations' {demo[0]}-{demo[1]} "
            f"(checkpoint provenance): those scenes were seen in training")

