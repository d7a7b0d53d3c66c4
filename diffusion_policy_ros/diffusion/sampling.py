"""The sampling loop: one function for every solver, policy variant and guidance mode.

A guidance hook is called after each solver step with a ``GuidanceContext`` and returns a
correction to add to the sample (or None). It sees the current sample, the timestep, ᾱ_t and the
model's clean-sample estimate x̂₀, which is what embodiment costs are evaluated on. An optional
``prepare(x)`` attribute edits the initial sample (and a re-noised one), e.g. to give a known prefix.
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
    alpha_bar_prev: float = 1.0  # ᾱ after this step (the noise level of ``sample``)


GuidanceFn = Callable[[GuidanceContext], Optional[torch.Tensor]]


def predicted_original(model_output: torch.Tensor, x: torch.Tensor, alpha_bar: torch.Tensor,
                       prediction_type: str) -> torch.Tensor:
    if prediction_type == "sample":
        return model_output
    return (x - (1 - alpha_bar).sqrt() * model_output) / alpha_bar.sqrt()


def sample(denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], scheduler, shape: tuple[int, ...], *,
           num_inference_steps: int, generator: torch.Generator | None = None, device=None,
           dtype=torch.float32, guidance: GuidanceFn | None = None,
           initial: torch.Tensor | None = None, start_index: int = 0, substeps: int = 1) -> torch.Tensor:
    """Run the reverse process and return x₀. ``denoise(x, t)`` is the conditioned model.

    From pure noise by default. With ``initial`` (a clean guess, e.g. the previous chunk shifted
    by the executed steps) and ``start_index`` k > 0, the guess is noised to the level of the k-th
    inference timestep and only the remaining steps run: warm start across control cycles, or
    post-hoc refinement of a trajectory.

    ``substeps`` K > 1 (with guidance): each step is taken K times, re-noising the guided result
    back to the step's noise level in between (universal guidance's recurrence), so the guidance
    gradient acts K times per noise level. Single-step solvers only (DDPM, DDIM)."""
    scheduler.set_timesteps(num_inference_steps, device=device)
    timesteps = scheduler.timesteps
    if not 0 <= start_index < len(timesteps):
        raise ValueError(f"start_index: expected 0 <= k < {len(timesteps)} (inference steps), got {start_index}")
    noise = torch.randn(shape, generator=generator, device=device, dtype=dtype)
    if start_index == 0 and initial is None:
        x = noise * scheduler.init_noise_sigma
    else:
        if initial is None or tuple(initial.shape) != tuple(shape):
            raise ValueError(f"initial: expected a clean sample of shape {tuple(shape)} to warm-start from, got "
                             f"{None if initial is None else tuple(initial.shape)}")
        t0 = timesteps[start_index]
        x = scheduler.add_noise(initial.to(dtype), noise, t0.reshape(1)) if start_index > 0 else \
            noise * scheduler.init_noise_sigma
        timesteps = timesteps[start_index:]
        if hasattr(scheduler, "set_begin_index"):  # multistep solvers count their own step index
            scheduler.set_begin_index(start_index)
    if guidance is not None and hasattr(guidance, "prepare"):  # e.g. a known prefix, given before the first step
        x = guidance.prepare(x)
    if substeps < 1 or (substeps > 1 and hasattr(scheduler, "model_outputs")):
        raise ValueError(f"substeps: expected 1, or > 1 with a single-step solver (ddpm, ddim), got {substeps} "
                         f"with {type(scheduler).__name__}")
    alphas = scheduler.alphas_cumprod.to(device=x.device, dtype=x.dtype)
    # Guidance sees x̂₀ as the solver uses it: clipped where the scheduler clips.
    clip = float(scheduler.config.get("clip_sample_range", 1.0)) if scheduler.config.get("clip_sample") else None
    prediction_type = scheduler.config.prediction_type
    one = torch.ones((), dtype=x.dtype, device=x.device)
    for i, t in enumerate(timesteps):
        a = alphas[int(t)]
        a_prev = alphas[int(timesteps[i + 1])] if i + 1 < len(timesteps) else one  # ᾱ after this step
        for k in range(substeps):
            out = denoise(scheduler.scale_model_input(x, t), t)
            x_prev = scheduler.step(out, t, x, generator=generator).prev_sample
            if guidance is not None:
                x0 = predicted_original(out, x, a, prediction_type)
                ctx = GuidanceContext(sample=x_prev, pred_original=x0 if clip is None else x0.clamp(-clip, clip),
                                      timestep=int(t), step_index=start_index + i, num_steps=num_inference_steps,
                                      alpha_bar=float(a), alpha_bar_prev=float(a_prev))
                correction = guidance(ctx)
                if correction is not None:
                    x_prev = x_prev + correction
            if k < substeps - 1:  # back to this step's noise level: x_t = √(ᾱ_t/ᾱ_prev)·x_prev + √(1−ᾱ_t/ᾱ_prev)·ε
                ratio = a / a_prev
                eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
                x = ratio.sqrt() * x_prev + (1 - ratio).sqrt() * eps
                if hasattr(guidance, "prepare"):
                    x = guidance.prepare(x)
            else:
                x = x_prev
    return x
