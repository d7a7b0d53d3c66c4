"""Training dataset: a replay buffer read into memory, windows from the sequence sampler, actions
converted to the policy's representation (so the normalizer is fitted on what the model predicts)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .. import constants as C
from ..action import ActionRepresentation
from ..config import PolicyConfig
from ..errors import DatasetError
from .replay_buffer import ReplayBuffer
from .sampler import SequenceSampler


def split_episodes(n_episodes: int, val_ratio: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (train, val); at least one training episode, validation only if it fits."""
    n_val = int(round(n_episodes * val_ratio))
    n_val = min(max(n_val, 1 if val_ratio > 0 and n_episodes > 1 else 0), n_episodes - 1)
    val = np.zeros(n_episodes, bool)
    val[np.random.default_rng(seed).choice(n_episodes, size=n_val, replace=False)] = True
    return ~val, val


class PolicyDataset(torch.utils.data.Dataset):
    def __init__(self, data: dict[str, np.ndarray], episode_ends: np.ndarray, cfg: PolicyConfig,
                 episode_mask: np.ndarray | None = None, source: str = "<memory>"):
        self.cfg = cfg
        self.source = source
        self.obs_keys = {k: (s.dataset_key or k) for k, s in cfg.observations.items()}
        for key, dkey in self.obs_keys.items():
            expected = tuple(cfg.observations[key].shape)
            if dkey not in data:
                raise DatasetError(f"dataset '{source}': observation '{key}' needs data/{dkey}; "
                                   f"available: {sorted(data)}")
            if data[dkey].shape[1:] != expected:
                raise DatasetError(f"dataset '{source}': data/{dkey} (observation '{key}') expected per-step "
                                   f"shape {expected}, got {data[dkey].shape[1:]}")
        akey = cfg.action.dataset_key
        if akey not in data:
            raise DatasetError(f"dataset '{source}': actions need data/{akey}; available: {sorted(data)}")
        if data[akey].shape[1:] != (cfg.action.dim,):
            raise DatasetError(f"dataset '{source}': data/{akey} expected per-step shape ({cfg.action.dim},), "
                               f"got {data[akey].shape[1:]}")
        self.data = data
        self.action_repr = ActionRepresentation(cfg.action)
        self.sampler = SequenceSampler(episode_ends, cfg.horizon, pad_before=cfg.n_obs_steps - 1,
                                       pad_after=cfg.n_action_steps - 1, episode_mask=episode_mask)
        if len(self.sampler) == 0:
            raise DatasetError(f"dataset '{source}': no training windows (episodes shorter than the horizon "
                               f"{cfg.horizon} with padding, or none selected)")

    @classmethod
    def from_path(cls, path: str | Path, cfg: PolicyConfig, episode_mask: np.ndarray | None = None,
                  buffer: ReplayBuffer | None = None) -> "PolicyDataset":
        buffer = buffer or ReplayBuffer.open(path)
        keys = sorted({s.dataset_key or k for k, s in cfg.observations.items()} | {cfg.action.dataset_key})
        missing = [k for k in keys if k not in buffer.keys]
        if missing:
            raise DatasetError(f"dataset '{path}': keys {missing} needed by the config are missing; "
                               f"available: {buffer.keys}")
        return cls(buffer.load(keys), buffer.episode_ends, cfg, episode_mask, source=str(path))

    def __len__(self) -> int:
        return len(self.sampler)

    def get_batch(self, i) -> dict:
        rows = self.sampler.indices(np.asarray(i))
        obs_rows = rows[:, : self.cfg.n_obs_steps]
        obs = {k: torch.from_numpy(self.data[dk][obs_rows]) for k, dk in self.obs_keys.items()}
        action = torch.from_numpy(self.data[self.cfg.action.dataset_key][rows]).float()
        if self.action_repr.needs_pose:
            pose = obs[self.cfg.action.pose_key][:, -1].float()
            action = self.action_repr.to_policy(action, pose)
        return {C.OBS: obs, C.ACTION: action}

    def __getitems__(self, indices: list[int]) -> dict:
        """Batched fetch (DataLoader uses it when present); collate with ``identity_collate``."""
        return self.get_batch(indices)

    def __getitem__(self, i: int) -> dict:
        b = self.get_batch([i])
        return {C.OBS: {k: v[0] for k, v in b[C.OBS].items()}, C.ACTION: b[C.ACTION][0]}

    def normalizer_samples(self, chunk: int = 4096) -> dict[str, np.ndarray]:
        """What to fit the normalizer on: observations as stored, actions in policy space."""
        out = {k: self.data[dk] for k, dk in self.obs_keys.items()}
        if not self.action_repr.needs_pose:
            out[C.ACTION] = self.data[self.cfg.action.dataset_key]
        else:
            parts = [self.get_batch(np.arange(s, min(s + chunk, len(self))))[C.ACTION].numpy()
                     for s in range(0, len(self), chunk)]
            out[C.ACTION] = np.concatenate(parts)
        return out


def identity_collate(batch):
    return batch
