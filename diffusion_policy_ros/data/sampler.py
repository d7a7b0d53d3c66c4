"""Sequence windows over concatenated episodes, with Diffusion Policy's padding at episode edges.

A window of ``horizon`` steps may start up to ``pad_before`` steps before an episode and end up to
``pad_after`` steps after it; out-of-episode steps repeat the first / last step. That is exactly
clipping each window's step indices to the episode, which is how it is done here, vectorised.
"""
from __future__ import annotations

import numpy as np


class SequenceSampler:
    def __init__(self, episode_ends: np.ndarray, horizon: int, pad_before: int = 0, pad_after: int = 0,
                 episode_mask: np.ndarray | None = None):
        ends = np.asarray(episode_ends, dtype=np.int64)
        starts = np.concatenate(([0], ends[:-1]))
        mask = np.ones(len(ends), bool) if episode_mask is None else np.asarray(episode_mask, bool)
        ep_start, ep_len, offset = [], [], []
        for s, e, keep in zip(starts, ends, mask):
            if not keep:
                continue
            length = e - s
            first, last = -pad_before, length - horizon + pad_after
            if last < first:
                continue
            n = last - first + 1
            ep_start.append(np.full(n, s))
            ep_len.append(np.full(n, length))
            offset.append(np.arange(first, last + 1))
        cat = (lambda xs: np.concatenate(xs) if xs else np.zeros(0, np.int64))
        self.ep_start, self.ep_len, self.offset = cat(ep_start), cat(ep_len), cat(offset)
        self.horizon = horizon

    def __len__(self) -> int:
        return len(self.offset)

    def indices(self, i: np.ndarray | int, length: int | None = None) -> np.ndarray:
        """Buffer row indices of the windows ``i``: shape (len(i), length or horizon)."""
        i = np.atleast_1d(i)
        steps = self.offset[i, None] + np.arange(length or self.horizon)[None]
        return self.ep_start[i, None] + np.clip(steps, 0, self.ep_len[i, None] - 1)
