"""Self-describing checkpoints: a folder with a readable config and a weights file.

    <ckpt>/config.yaml          format version, package version, step, the full Config,
                                action representation and observation shapes (readable)
    <ckpt>/model.safetensors    inference weights (EMA when trained with EMA), normalizer included
    <ckpt>/train_state.pt       optional: raw weights, optimizer, LR schedule, EMA, step, RNG (resume)

No pickled live objects: the model is rebuilt from the config and the weights loaded into it.
"""
from __future__ import annotations

import datetime as _dt
import os
import shutil
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file, save_file

from . import __version__
from . import constants as C
from .config import Config, config_from_dict, config_to_dict
from .errors import CheckpointError


def save_checkpoint(path: str | Path, config: Config, model: torch.nn.Module, *, step: int = 0,
                    train_state: dict | None = None, extra: dict | None = None) -> Path:
    """Write atomically-enough: files go to a temporary folder that is renamed into place."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    meta = {
        "format_version": C.CKPT_FORMAT_VERSION,
        "package_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "step": int(step),
        "action_representation": config.policy.action.representation,
        "observations": {k: {"type": s.type, "shape": list(s.shape)} for k, s in config.policy.observations.items()},
        "config": config_to_dict(config),
        **(extra or {}),
    }
    (tmp / C.CKPT_CONFIG).write_text(yaml.safe_dump(meta, sort_keys=False))
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(tmp / C.CKPT_WEIGHTS), metadata={"package_version": __version__})
    if train_state is not None:
        torch.save(train_state, tmp / C.CKPT_TRAIN_STATE)
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)
    return path


def read_checkpoint_meta(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint '{path}': expected a folder holding {C.CKPT_CONFIG} and "
                              f"{C.CKPT_WEIGHTS}, got {'a file' if path.exists() else 'nothing there'}")
    for name in (C.CKPT_CONFIG, C.CKPT_WEIGHTS):
        if not (path / name).is_file():
            raise CheckpointError(f"checkpoint '{path}': missing {name}")
    meta = yaml.safe_load((path / C.CKPT_CONFIG).read_text()) or {}
    version = meta.get("format_version")
    if version != C.CKPT_FORMAT_VERSION:
        raise CheckpointError(f"checkpoint '{path}': format_version expected {C.CKPT_FORMAT_VERSION}, "
                              f"got {version!r}")
    return meta


def checkpoint_config(path: str | Path) -> Config:
    """The training config a checkpoint was made with (to convert more data for it, or retrain)."""
    return config_from_dict(read_checkpoint_meta(path)["config"], source=f"{path}/{C.CKPT_CONFIG}")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[Config, dict]:
    """→ (Config, weights as a state dict). ``DiffusionPolicy.from_checkpoint`` builds the model from
    them: this module stays below policy.py (no import cycle)."""
    meta = read_checkpoint_meta(path)
    config = config_from_dict(meta["config"], source=f"{path}/{C.CKPT_CONFIG}")
    return config, load_file(str(Path(path) / C.CKPT_WEIGHTS), device=str(map_location))
