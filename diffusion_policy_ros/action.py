"""Action representations: how a world-frame action chunk maps to what the denoiser predicts.

Datasets store absolute actions. ``to_policy`` maps them into the policy's space (before
normalisation) and ``to_absolute`` maps samples back; both are torch and differentiable, so
guidance can push cost gradients through them.
"""
from __future__ import annotations

import torch

from . import constants as C
from .config import ActionConfig
from .geometry import compose_pose9, relative_pose9


class ActionRepresentation:
    def __init__(self, cfg: ActionConfig):
        self.cfg = cfg

    @property
    def needs_pose(self) -> bool:
        return self.cfg.representation == C.ACTION_REL_EE

    def _split(self, a: torch.Tensor):
        return a[..., : C.EE_POSE_DIM], a[..., C.EE_POSE_DIM :]

    def to_policy(self, action: torch.Tensor, pose: torch.Tensor | None = None) -> torch.Tensor:
        """action (..., T, D) absolute → policy space. pose (..., ≥9): current end-effector pose."""
        if not self.needs_pose:
            return action
        ee, rest = self._split(action)
        rel = relative_pose9(pose[..., None, : C.EE_POSE_DIM], ee)
        return torch.cat((rel, rest), dim=-1)

    def to_absolute(self, action: torch.Tensor, pose: torch.Tensor | None = None) -> torch.Tensor:
        if not self.needs_pose:
            return action
        ee, rest = self._split(action)
        absolute = compose_pose9(pose[..., None, : C.EE_POSE_DIM], ee)
        return torch.cat((absolute, rest), dim=-1)
