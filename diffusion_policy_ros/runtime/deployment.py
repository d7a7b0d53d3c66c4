"""One place that turns a deployment config into a runtime: the checkpoint loaded with its sampling
settings resolved once (solver, steps, tracing: the checkpoint's unless the config overrides them),
the embodiment's kinematics, and the ``PolicyRuntime``. The policy node, bag replay, sim-eval and
dataset conversion all build theirs here, so a setting means the same thing in each."""
from __future__ import annotations

from pathlib import Path

from ..config import Config, DeployConfig, resolve_shipped_checkpoint
from ..errors import ConfigError
from ..policy import Policy
from .controller import PolicyRuntime


def load_policy(cfg: DeployConfig, checkpoint: str | Path | None = None) -> Policy:
    """``checkpoint`` (default ``cfg.checkpoint``: a folder, a `dpros train --out` folder, ``~/…``, or a
    shipped name) with ``cfg.sampling``'s overrides applied at load."""
    path = checkpoint or cfg.checkpoint
    if not path:
        raise ConfigError("checkpoint: expected a checkpoint folder (written by `dpros train`), got ''")
    path = resolve_shipped_checkpoint(path)
    s = cfg.sampling
    return Policy.from_checkpoint(path, device=cfg.device, solver=s.solver or None,
                                  num_inference_steps=s.num_inference_steps or None, trace=s.trace,
                                  backend=s.backend or None)


def deployment_arm(cfg: DeployConfig):
    """The arm's kinematics (URDF) for an arm embodiment, else None (also for output command: no kinematics)."""
    if cfg.embodiment.kind != "arm" or cfg.output == "command":
        return None
    from ..embodiment.arm import arm_from_config

    return arm_from_config(cfg.embodiment)


def build_runtime(cfg: DeployConfig, policy: Policy | None = None, *, arm=None,
                  training: Config | None = None) -> PolicyRuntime:
    """A runtime for ``cfg``: ``policy`` (default: loaded from ``cfg.checkpoint``), ``arm`` (default:
    from ``cfg.embodiment``). ``training`` instead of a policy: observations only (dataset conversion)."""
    arm = deployment_arm(cfg) if arm is None else arm
    if training is not None:
        return PolicyRuntime(None, cfg, arm, policy_cfg=training.policy)
    return PolicyRuntime(load_policy(cfg) if policy is None else policy, cfg, arm)
