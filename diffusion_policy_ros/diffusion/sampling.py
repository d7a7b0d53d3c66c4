"""The sampling loop: one function for every solver, policy variant and guidance mode.

A guidance hook is called after each solver step with a ``GuidanceContext`` and returns a
correction to add to the sample (or None). It sees the current sample, the timestep, ᾱ_t and the
model's clean-sample estimate x̂₀, which is what embodiment costs are evaluated on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch


@dataclass
class GuidanceContext:
    sample: torch.Tensor  # x_t after the solver step (normalised policy space)
    pred_original: torch.Tensor  # x̂₀ estimated at this step
    timestep: int
    step_index: int
    num_steps: int
    alpha_bar: float  # ᾱ at the timestep the model was evaluated at


GuidanceFn = Callable[[GuidanceContext], Optional[torch.Tensor]]


def predicted_original(model_output: torch.Tensor, x: torch.Tensor, alpha_bar: torch.Tensor,
                       prediction_type: str) -> torch.Tensor:
    if prediction_type == "sample":
        return model_output
    return (x - (1 - alpha_bar).sqrt() * model_output) / alpha_bar.sqrt()


def sample(denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], scheduler, shape: tuple[int, ...], *,
           num_inference_steps: int, generator: torch.Generator | None = None, device=None,
           dtype=torch.float32, guidance: GuidanceFn | None = None,
           initial: torch.Tensor | None = None) -> torch.Tensor:
    """Run the reverse process from noise (or from ``initial``, already at the first timestep's
    noise level) and return x₀. ``denoise(x, t)`` is the conditioned model."""
    scheduler.set_timesteps(num_inference_steps, device=device)
    x = initial if initial is not None else torch.randn(shape, generator=generator, device=device, dtype=dtype)
    x = x * scheduler.init_noise_sigma
    alphas = scheduler.alphas_cumprod.to(device=x.device, dtype=x.dtype)
    prediction_type = scheduler.config.prediction_type
    timesteps = scheduler.timesteps
    for i, t in enumerate(timesteps):
        out = denoise(scheduler.scale_model_input(x, t), t)
        x_prev = scheduler.step(out, t, x, generator=generator).prev_sample
        if guidance is not None:
            a = alphas[int(t)]
            ctx = GuidanceContext(sample=x_prev, pred_original=predicted_original(out, x, a, prediction_type),
                                  timestep=int(t), step_index=i, num_steps=len(timesteps), alpha_bar=float(a))
            correction = guidance(ctx)
            if correction is not None:
                x_prev = x_prev + correction
        x = x_prev
    return x
