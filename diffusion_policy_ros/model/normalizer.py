"""Per-key normalisation held as module buffers, so its statistics travel in the state_dict.

Statistics are per channel over the last dimension (a point cloud's xyz, a state's entries).
``limits`` maps [min, max] to [-1, 1]; ``gaussian`` to zero mean, unit std; ``shared`` to zero mean
with one scale for every channel, the largest std (for a wrench: a component that barely moved in
the demonstrations, a sideways force or a twist, is not blown up to tens of stds by the first contact
a policy makes a little differently); ``identity`` is a no-op (images are scaled by their encoder).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

_EPS = 1e-4


class _Field(nn.Module):
    def __init__(self, dim: int, mode: str):
        super().__init__()
        self.mode = mode
        self.register_buffer("scale", torch.ones(dim))
        self.register_buffer("offset", torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.offset

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.offset) / self.scale


class Normalizer(nn.Module):
    def __init__(self, dims: dict[str, int], modes: dict[str, str]):
        super().__init__()
        self.fields = nn.ModuleDict({k: _Field(dims[k], modes[k]) for k in dims})

    def fit(self, key: str, data: np.ndarray | torch.Tensor, gain: dict[int, float] | None = None) -> None:
        """Fit one key from samples whose last dimension is the channel dimension. ``gain``: channel →
        factor applied to the normalised value (e.g. {9: 0.5}: that channel spans [-0.5, 0.5])."""
        f = self.fields[key]
        x = torch.as_tensor(np.asarray(data), dtype=torch.float64).reshape(-1, f.scale.shape[0])
        if f.mode == "limits":
            lo, hi = x.min(0).values, x.max(0).values
            rng = hi - lo
            # Constant channels map to 0 instead of dividing by ~0 (DP does the same).
            scale = torch.where(rng < _EPS, torch.ones_like(rng), 2.0 / rng.clamp_min(_EPS))
            offset = torch.where(rng < _EPS, -lo, -1.0 - lo * scale)
        elif f.mode in ("gaussian", "shared"):
            mean, std = x.mean(0), x.std(0)
            if f.mode == "shared":
                std = std.max().expand_as(std)
            scale = 1.0 / std.clamp_min(_EPS)
            offset = -mean * scale
        else:
            return
        for i, g in (gain or {}).items():
            scale[i], offset[i] = scale[i] * g, offset[i] * g
        f.scale.copy_(scale.to(f.scale.dtype))
        f.offset.copy_(offset.to(f.offset.dtype))

    def normalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        return self.fields[key](x)

    def unnormalize(self, key: str, y: torch.Tensor) -> torch.Tensor:
        return self.fields[key].inverse(y)
