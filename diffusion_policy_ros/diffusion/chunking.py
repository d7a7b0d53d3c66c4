"""Real-time chunking: a new chunk made consistent with the actions that execute while it is computed.

While the next chunk is denoised the robot keeps executing the running one; the new chunk's first
``d`` actions (d = ⌈latency / dt⌉) will already have run when it lands, so they must equal the running
chunk's, and the rest of the overlap should agree with it as far as the observation allows.
Three modes of one guidance hook for the one sampling loop (``diffusion/sampling.py``), each given
the running chunk re-expressed for this cycle (``target``, normalised policy space, (B, H, Da)) and
per-step weights (H,) in [0, 1]:

- ``rtc``: real-time chunking's soft-masked guidance (Black, Galliker, Levine 2025, arXiv
  2506.07339): each step pulls the model's clean estimate x̂₀ toward the target by
  ``min(max_weight, 1) · W ⊙ (target − x̂₀)`` — weight 1 on the frozen prefix, decaying weights over
  the rest of the overlap, 0 beyond — and moves the sample so that the solver's next x̂₀ carries the
  pull (for DDIM exactly: Δx_{t-1} = (√ᾱ_{t-1} − √(1−ᾱ_{t-1})·√(ᾱ_t/(1−ᾱ_t))) Δx̂₀). The paper takes
  the guidance through the denoiser's Jacobian (a backward pass per step); here the Jacobian is the
  identity, which keeps a guided step as cheap as an unguided one on a CPU, and the next denoiser
  call spreads the pulled prefix to the free actions. The weight cap is the paper's β.
- ``inpaint``: replacement inpainting: after each step the frozen prefix of the sample is replaced
  by the target noised to the sample's noise level (exact at the last step); no soft overlap.
- ``prefix``: for checkpoints trained with action-prefix conditioning (``policy.max_prefix_steps``,
  as in training-time RTC, Black et al. 2025, arXiv 2512.05964): the frozen prefix is given clean
  from the first denoiser call on (``prepare``) and after every step, as in training; the model
  continues it rather than being pulled to it.

All work for epsilon- and sample-prediction checkpoints (``rtc`` and ``inpaint`` use x̂₀ from the loop,
``prefix`` only the sample) and for every solver, and compose with cost guidance (``compose``): their
corrections add.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .sampling import GuidanceContext, GuidanceFn

MODES = ("rtc", "inpaint", "prefix")


def prefix_weights(step_times_ns: np.ndarray, frozen_until_ns: int, overlap_until_ns: int, period_ns: int,
                   mode: str) -> np.ndarray:
    """Per-step weights of a new chunk whose steps fall at ``step_times_ns``: 1 for steps that execute
    before the chunk can take over (≤ ``frozen_until_ns``); for ``rtc``, RTC's exponentially decaying
    soft mask c·(eᶜ − 1)/(e − 1) over the rest of the running chunk (≤ ``overlap_until_ns``); 0 after."""
    t = np.asarray(step_times_ns, np.int64)
    w = (t <= frozen_until_ns).astype(np.float64)
    if mode == "rtc":
        soft = (t > frozen_until_ns) & (t <= overlap_until_ns)
        c = (overlap_until_ns - t[soft]) / float(overlap_until_ns - frozen_until_ns + period_ns)
        w[soft] = c * (np.exp(c) - 1.0) / (math.e - 1.0)
    return w


class PrefixGuidance:
    """A guidance hook keeping the sample's frozen prefix on ``target`` (see the module docstring)."""

    needs_grad = False  # no autograd: the sampling loop can stay in inference mode

    def __init__(self, target: torch.Tensor, weights: torch.Tensor, mode: str = "rtc", max_weight: float = 1.0,
                 generator: torch.Generator | None = None):
        if mode not in MODES:
            raise ValueError(f"execution.consistency: expected one of {MODES}, got {mode!r}")
        self.target, self.mode, self.generator = target, mode, generator
        self.weights = weights.to(target).reshape(1, -1, 1)
        self.gain = min(float(max_weight), 1.0)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """The initial sample: ``prefix`` mode gives the frozen prefix clean before the first step."""
        if self.mode != "prefix":
            return x
        known = self.weights >= 1.0
        return torch.where(known, self.target.to(x.dtype), x)

    def __call__(self, ctx: GuidanceContext) -> torch.Tensor | None:
        x, x0 = ctx.sample, ctx.pred_original
        a, a_prev = ctx.alpha_bar, ctx.alpha_bar_prev
        if self.mode == "prefix":
            return (self.weights >= 1.0).to(x.dtype) * (self.target - x)
        if self.mode == "inpaint":
            mask = (self.weights >= 1.0).to(x.dtype)  # the frozen prefix only
            noise = torch.randn(x.shape, generator=self.generator, dtype=x.dtype, device=x.device)
            known = math.sqrt(a_prev) * self.target + math.sqrt(max(1.0 - a_prev, 0.0)) * noise
            return mask * (known - x)
        pull = self.gain * self.weights * (self.target - x0)
        kappa = math.sqrt(a_prev) - (math.sqrt(1.0 - a_prev) * math.sqrt(a / (1.0 - a)) if a < 1.0 else 0.0)
        return kappa * pull


def compose(*hooks: GuidanceFn | None) -> GuidanceFn | None:
    """One hook whose correction is the sum of the given hooks' (None entries ignored)."""
    hooks = [h for h in hooks if h is not None]
    if len(hooks) <= 1:
        return hooks[0] if hooks else None

    def combined(ctx: GuidanceContext):
        out = None
        for h in hooks:
            c = h(ctx)
            if c is not None:
                out = c if out is None else out + c
        return out

    def prepare(x: torch.Tensor) -> torch.Tensor:
        for h in hooks:
            x = h.prepare(x) if hasattr(h, "prepare") else x
        return x

    combined.needs_grad = any(getattr(h, "needs_grad", True) for h in hooks)
    combined.prepare = prepare
    combined.hooks = hooks
    return combined
