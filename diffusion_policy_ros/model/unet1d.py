"""1-D temporal U-Net with FiLM conditioning, the Diffusion Policy denoiser.

Written here because diffusers' UNet1DModel has no FiLM path for a global conditioning vector (the
observation features); the diffusion-step embedding does come from diffusers (``Timesteps``).
"""
from __future__ import annotations

import torch
from diffusers.models.embeddings import Timesteps
from torch import nn

from ..config import DenoiserConfig


class Conv1dBlock(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel_size: int, n_groups: int):
        super().__init__(nn.Conv1d(c_in, c_out, kernel_size, padding=kernel_size // 2),
                         nn.GroupNorm(n_groups, c_out), nn.Mish())


class FiLMResBlock(nn.Module):
    """Two conv blocks; the conditioning vector predicts a per-channel scale and bias between them."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int, kernel_size: int, n_groups: int):
        super().__init__()
        self.block1 = Conv1dBlock(c_in, c_out, kernel_size, n_groups)
        self.block2 = Conv1dBlock(c_out, c_out, kernel_size, n_groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * c_out))
        self.residual = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, bias = self.film(cond).unsqueeze(-1).chunk(2, dim=1)
        h = self.block1(x) * scale + bias
        return self.block2(h) + self.residual(x)


class ConditionalUnet1D(nn.Module):
    def __init__(self, action_dim: int, global_cond_dim: int, cfg: DenoiserConfig):
        super().__init__()
        dsed = cfg.diffusion_step_embed_dim
        self.step_embed = nn.Sequential(
            Timesteps(dsed, flip_sin_to_cos=False, downscale_freq_shift=1),
            nn.Linear(dsed, 4 * dsed), nn.Mish(), nn.Linear(4 * dsed, dsed),
        )
        cond_dim = dsed + global_cond_dim
        dims = [action_dim, *cfg.down_dims]
        k, g = cfg.kernel_size, cfg.n_groups

        def res(a, b):
            return FiLMResBlock(a, b, cond_dim, k, g)

        n = len(cfg.down_dims)
        self.down = nn.ModuleList()
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            last = i == n - 1
            self.down.append(nn.ModuleList(
                [res(a, b), res(b, b), nn.Conv1d(b, b, 3, stride=2, padding=1) if not last else nn.Identity()]))
        mid = dims[-1]
        self.mid = nn.ModuleList([res(mid, mid), res(mid, mid)])
        self.up = nn.ModuleList()
        for i, (a, b) in enumerate(reversed(list(zip(dims[1:-1], dims[2:])))):
            self.up.append(nn.ModuleList(
                [res(2 * b, a), res(a, a), nn.ConvTranspose1d(a, a, 4, stride=2, padding=1)]))
        self.final = nn.Sequential(Conv1dBlock(dims[1], dims[1], k, g), nn.Conv1d(dims[1], action_dim, 1))

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | int, global_cond: torch.Tensor) -> torch.Tensor:
        """sample (B, T, Da), timestep scalar or (B,), global_cond (B, Dc) → (B, T, Da)."""
        x = sample.transpose(1, 2)
        t = torch.as_tensor(timestep, device=x.device)
        t = t.expand(x.shape[0]) if t.ndim == 0 else t
        cond = torch.cat((self.step_embed(t).to(global_cond.dtype), global_cond), dim=-1)
        skips = []
        for r1, r2, down in self.down:
            x = r2(r1(x, cond), cond)
            skips.append(x)
            x = down(x)
        for r in self.mid:
            x = r(x, cond)
        for r1, r2, up in self.up:
            x = torch.cat((x, skips.pop()), dim=1)
            x = up(r2(r1(x, cond), cond))
        return self.final(x).transpose(1, 2)
