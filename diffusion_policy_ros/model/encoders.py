"""Observation encoders. Each takes one frame per row (B·To rows) and returns
``(feature (N, D), tokens (N, T, Dt) | None)``; tokens are what the force encoder attends to.

- ``DP3PointEncoder``: DP3's per-point MLP with LayerNorm, max-pool, projection.
- ``MultiStagePointEncoder``: iDP3-style stages, each re-injecting its max-pooled global feature.
- ``ResNetImageEncoder``: torchvision ResNet-18 from scratch, GroupNorm in place of BatchNorm,
  spatial-softmax keypoints; per-sample random crop when training, center crop at inference.
- ``StateEncoder``: MLP on a low-dim vector.
- ``ForceEncoder``: wrench MLP → query tokens that cross-attend to the visual tokens, so a 6-D
  wrench is not drowned by a wide visual feature.
``ObservationEncoder`` builds the subset a config names and concatenates their features per step.
"""
from __future__ import annotations

import torch
import torchvision
from torch import nn

from .. import constants as C
from ..config import PolicyConfig


def mlp(in_dim: int, dims: tuple[int, ...], norm: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = []
    for d in dims:
        layers += [nn.Linear(in_dim, d)] + ([nn.LayerNorm(d)] if norm else []) + [nn.ReLU()]
        in_dim = d
    return nn.Sequential(*layers)


class DP3PointEncoder(nn.Module):
    def __init__(self, in_channels: int, hidden_dims: tuple[int, ...], out_dim: int):
        super().__init__()
        self.mlp = mlp(in_channels, hidden_dims)
        self.proj = nn.Sequential(nn.Linear(hidden_dims[-1], out_dim), nn.LayerNorm(out_dim))
        self.out_dim, self.token_dim = out_dim, hidden_dims[-1]

    def forward(self, points: torch.Tensor):
        h = self.mlp(points)  # (N, P, H)
        return self.proj(h.max(dim=1).values), h


class MultiStagePointEncoder(nn.Module):
    """iDP3's encoder: after every stage the max-pooled feature is concatenated back onto each
    point; the stage maxima together form the global feature."""

    def __init__(self, in_channels: int, hidden_dims: tuple[int, ...], out_dim: int):
        super().__init__()
        self.stages = nn.ModuleList()
        d_in = in_channels
        for d in hidden_dims:
            self.stages.append(nn.Sequential(nn.Linear(d_in, d), nn.LayerNorm(d), nn.LeakyReLU()))
            d_in = 2 * d
        self.proj = nn.Sequential(nn.Linear(sum(hidden_dims), out_dim), nn.LayerNorm(out_dim))
        self.out_dim, self.token_dim = out_dim, hidden_dims[-1]

    def forward(self, points: torch.Tensor):
        h, pooled = points, []
        for stage in self.stages:
            y = stage(h)
            g = y.max(dim=1, keepdim=True).values
            pooled.append(g.squeeze(1))
            h = torch.cat((y, g.expand_as(y)), dim=-1)
        return self.proj(torch.cat(pooled, dim=-1)), y


class SpatialSoftmax(nn.Module):
    """Feature map (N, C, H, W) → expected image coordinates of K learned keypoints (N, K, 2)."""

    def __init__(self, in_channels: int, num_keypoints: int, height: int, width: int):
        super().__init__()
        self.keypoints = nn.Conv2d(in_channels, num_keypoints, kernel_size=1)
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
        self.register_buffer("grid", torch.stack((xs.reshape(-1), ys.reshape(-1)), dim=-1), persistent=False)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        logits = self.keypoints(fmap).flatten(2)  # (N, K, H·W)
        return torch.softmax(logits, dim=-1) @ self.grid


class ResNetImageEncoder(nn.Module):
    def __init__(self, image_shape: tuple[int, int, int], crop_shape: tuple[int, int], num_keypoints: int,
                 out_dim: int):
        super().__init__()
        h, w, _ = image_shape
        ch, cw = min(crop_shape[0], h), min(crop_shape[1], w)
        self.crop_shape = (ch, cw)
        net = torchvision.models.resnet18(weights=None, norm_layer=lambda c: nn.GroupNorm(c // 16, c))
        self.backbone = nn.Sequential(*list(net.children())[:-2])  # drop avgpool + fc
        with torch.no_grad():
            fh, fw = self.backbone(torch.zeros(1, 3, ch, cw)).shape[-2:]
        self.pool = SpatialSoftmax(512, num_keypoints, fh, fw)
        self.proj = nn.Sequential(nn.Linear(2 * num_keypoints, out_dim), nn.LayerNorm(out_dim))
        self.out_dim, self.token_dim = out_dim, 512

    def crop(self, img: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) → (N, C, ch, cw): a random window per sample when training, else the centre."""
        n, _, h, w = img.shape
        ch, cw = self.crop_shape
        if self.training:
            oy = torch.randint(0, h - ch + 1, (n,), device=img.device)
            ox = torch.randint(0, w - cw + 1, (n,), device=img.device)
        else:
            oy = torch.full((n,), (h - ch) // 2, device=img.device)
            ox = torch.full((n,), (w - cw) // 2, device=img.device)
        rows = (oy[:, None] + torch.arange(ch, device=img.device))[:, :, None]
        cols = (ox[:, None] + torch.arange(cw, device=img.device))[:, None, :]
        return img.permute(0, 2, 3, 1)[torch.arange(n, device=img.device)[:, None, None], rows, cols].permute(
            0, 3, 1, 2)

    def forward(self, image: torch.Tensor):
        """image (N, H, W, 3), uint8 or float in [0, 255]."""
        x = image.permute(0, 3, 1, 2).float() * (2.0 / 255.0) - 1.0
        fmap = self.backbone(self.crop(x))
        feature = self.proj(self.pool(fmap).flatten(1))
        return feature, fmap.flatten(2).transpose(1, 2)


class StateEncoder(nn.Module):
    def __init__(self, in_dim: int, hidden_dims: tuple[int, ...], out_dim: int, layer_norm: bool = True):
        super().__init__()
        last = hidden_dims[-1] if hidden_dims else in_dim
        self.net = nn.Sequential(mlp(in_dim, hidden_dims, norm=layer_norm), nn.Linear(last, out_dim))
        self.out_dim, self.token_dim = out_dim, None

    def forward(self, x: torch.Tensor):
        return self.net(x), None


def wrench_features(wrench: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """(..., 6) → (..., 8): [log(1+|f|), f/|f|, log(1+|τ|), τ/|τ|]; scale-free direction, compressed size."""
    f, t = wrench[..., :3], wrench[..., 3:6]
    fn, tn = f.norm(dim=-1, keepdim=True), t.norm(dim=-1, keepdim=True)
    return torch.cat((torch.log1p(fn), f / (fn + eps), torch.log1p(tn), t / (tn + eps)), dim=-1)


class ForceEncoder(nn.Module):
    """Wrench → query token; cross-attention over the visual tokens; output [wrench emb, fused]."""

    def __init__(self, token_dims: list[int], d_model: int, num_heads: int, hidden_dims: tuple[int, ...],
                 features: str = "raw"):
        super().__init__()
        self.features = features
        d_in = 8 if features == "magnitude_direction" else 6
        self.embed = nn.Sequential(mlp(d_in, hidden_dims), nn.Linear(hidden_dims[-1] if hidden_dims else d_in, d_model))
        self.kv_proj = nn.ModuleList(nn.Linear(d, d_model) for d in token_dims)
        self.attn = nn.MultiheadAttention(d_model, num_heads, batch_first=True)
        self.norm = nn.LayerNorm(d_model)
        self.out_dim = 2 * d_model

    def forward(self, wrench: torch.Tensor, tokens: list[torch.Tensor]):
        x = wrench_features(wrench) if self.features == "magnitude_direction" else wrench
        q = self.embed(x).unsqueeze(1)  # (N, 1, d)
        kv = torch.cat([p(t) for p, t in zip(self.kv_proj, tokens)], dim=1)
        fused, _ = self.attn(q, kv, kv, need_weights=False)
        fused = self.norm(fused + q).squeeze(1)
        return torch.cat((q.squeeze(1), fused), dim=-1), None


class ObservationEncoder(nn.Module):
    """Encodes every observation a config declares; returns (B, To·D) conditioning features."""

    def __init__(self, cfg: PolicyConfig):
        super().__init__()
        enc = cfg.encoders
        self.encoders = nn.ModuleDict()
        self.force_key: str | None = None
        for key, spec in cfg.observations.items():
            if spec.type == C.OBS_POINT_CLOUD:
                cls = DP3PointEncoder if enc.point_cloud.kind == "dp3" else MultiStagePointEncoder
                self.encoders[key] = cls(spec.shape[1], enc.point_cloud.hidden_dims, enc.point_cloud.out_dim)
            elif spec.type == C.OBS_RGB:
                self.encoders[key] = ResNetImageEncoder(spec.shape, enc.image.crop_shape, enc.image.num_keypoints,
                                                        enc.image.out_dim)
            elif spec.type == C.OBS_LOW_DIM:
                self.encoders[key] = StateEncoder(spec.shape[0], enc.state.hidden_dims, enc.state.out_dim,
                                                  enc.state.layer_norm)
            else:
                self.force_key = key
        self.visual_keys = [k for k in self.encoders if self.encoders[k].token_dim is not None]
        self.force = None
        if self.force_key is not None:
            self.force = ForceEncoder([self.encoders[k].token_dim for k in self.visual_keys], enc.force.d_model,
                                      enc.force.num_heads, enc.force.hidden_dims, enc.force.features)
        self.step_dim = sum(e.out_dim for e in self.encoders.values()) + (self.force.out_dim if self.force else 0)

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """obs[key]: (B, To, *shape), already normalised. Returns (B, To·step_dim)."""
        any_obs = next(iter(obs.values()))
        b, to = any_obs.shape[:2]
        feats, tokens = [], []
        for key, encoder in self.encoders.items():
            f, tok = encoder(obs[key].flatten(0, 1))
            feats.append(f)
            if key in self.visual_keys:
                tokens.append(tok)
        if self.force is not None:
            feats.append(self.force(obs[self.force_key].flatten(0, 1), tokens)[0])
        return torch.cat(feats, dim=-1).reshape(b, to * self.step_dim)
