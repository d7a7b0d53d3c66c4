"""Scheduler construction from config. Training always uses DDPM; inference picks a solver."""
from __future__ import annotations

from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

from .. import constants as C
from ..config import NoiseConfig
from ..errors import ConfigError


def make_scheduler(noise: NoiseConfig, solver: str = C.SOLVER_DDPM, timestep_spacing: str = "default"):
    common = dict(num_train_timesteps=noise.num_train_timesteps, beta_schedule=noise.beta_schedule,
                  prediction_type=noise.prediction_type)
    if timestep_spacing != "default":
        common["timestep_spacing"] = timestep_spacing
    if solver == C.SOLVER_DDPM:
        return DDPMScheduler(**common, clip_sample=noise.clip_sample, variance_type="fixed_small")
    if solver == C.SOLVER_DDIM:
        return DDIMScheduler(**common, clip_sample=noise.clip_sample, set_alpha_to_one=True, steps_offset=0)
    if solver == C.SOLVER_DPMSOLVER:
        # Second-order multistep DPM-Solver++ in data prediction, the recommended few-step setting.
        return DPMSolverMultistepScheduler(**common, algorithm_type="dpmsolver++", solver_order=2,
                                           lower_order_final=True)
    raise ConfigError(f"inference.solver: expected one of {C.SOLVERS}, got {solver!r}")
