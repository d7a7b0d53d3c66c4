"""The diffusion policy.

``DiffusionPolicy`` (torch module) is stateless: ``compute_loss(batch)`` for training and
``predict_action(obs)`` for inference; its normalizer, observation encoder, denoiser and scheduler
are passed in. Chunk scheduling and timing belong to the runtime, not here.

``Policy`` is what drivers (node, replay, sim) use: numpy in, validated; numpy action chunk out,
in the world frame; ``Policy.from_checkpoint(path)`` needs nothing else.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import constants as C
from .action import ActionRepresentation
from .checkpoint import load_checkpoint
from .config import Config, PolicyConfig
from .diffusion import GuidanceFn, make_scheduler, sample
from .diffusion.chunking import PrefixGuidance, compose
from .errors import CheckpointError, NonFiniteActionError, ObservationError
from .model.encoders import ObservationEncoder
from .model.export import RUNNERS, ExportedEncoder, resolve_backend
from .model.normalizer import Normalizer
from .model.unet1d import ConditionalUnet1D


def build_normalizer(cfg: PolicyConfig) -> Normalizer:
    dims = {k: s.shape[-1] for k, s in cfg.observations.items()}
    modes = {k: s.normalize for k, s in cfg.observations.items()}
    dims[C.ACTION], modes[C.ACTION] = cfg.action.dim, cfg.action.normalize
    return Normalizer(dims, modes)


class DiffusionPolicy(nn.Module):
    def __init__(self, cfg: PolicyConfig, normalizer: Normalizer, obs_encoder: ObservationEncoder,
                 denoiser: nn.Module, noise_scheduler):
        super().__init__()
        self.cfg = cfg
        self.normalizer = normalizer
        self.obs_encoder = obs_encoder
        self.denoiser = denoiser
        self.noise_scheduler = noise_scheduler  # DDPM, used for training
        self.action_repr = ActionRepresentation(cfg.action)
        self._inference_schedulers: dict[str, object] = {}
        self._traced: dict[tuple, torch.jit.ScriptModule] = {}
        self._ort: dict[tuple, object] = {}  # exported denoisers / encoders per backend and shapes
        self.checkpoint_dir: Path | None = None  # where exports are cached (set by from_checkpoint)

    @classmethod
    def build(cls, cfg: PolicyConfig) -> "DiffusionPolicy":
        encoder = ObservationEncoder(cfg)
        denoiser = ConditionalUnet1D(cfg.action.dim, encoder.step_dim * cfg.n_obs_steps, cfg.denoiser)
        return cls(cfg, build_normalizer(cfg), encoder, denoiser, make_scheduler(cfg.noise, C.SOLVER_DDPM))

    @classmethod
    def from_checkpoint(cls, path: str | Path, map_location: str | torch.device = "cpu"
                        ) -> tuple[Config, "DiffusionPolicy"]:
        """→ (Config, the model in eval mode with the checkpoint's inference weights)."""
        config, state = load_checkpoint(path, map_location)
        model = cls.build(config.policy)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise CheckpointError(f"checkpoint '{path}': weights do not match the config "
                                  f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
        model.checkpoint_dir = Path(path)
        return config, model.to(map_location).eval()

    # --- observation conditioning -------------------------------------------------------------
    def encode(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Raw observations (B, ≥To, ...) → conditioning vector (B, To·D). Uses the last To steps."""
        return self.obs_encoder(self._normalized(obs))

    def _normalized(self, obs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The last To steps of each observation the config declares, normalised."""
        to = self.cfg.n_obs_steps
        return {k: self.normalizer.normalize(k, obs[k][:, -to:].float()) for k in self.cfg.observations}

    def encode_for_inference(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """``encode`` on the exported backend (inference.backend) for a model in eval mode on the CPU;
        torch otherwise (training, and everywhere gradients may flow)."""
        backend = resolve_backend(self.cfg.inference.backend)
        first = next(iter(obs.values()))
        if self.training or first.device.type != "cpu" or backend not in RUNNERS:
            return self.encode(obs)
        normed = self._normalized(obs)
        key = (backend, "encoder", tuple((k, tuple(v.shape[1:])) for k, v in sorted(normed.items())))
        if key not in self._ort:
            self._ort[key] = ExportedEncoder(backend, self.obs_encoder, normed, checkpoint_dir=self.checkpoint_dir)
        return self._ort[key](normed).to(first.device)

    # --- training ----------------------------------------------------------------------------
    def compute_loss(self, batch: dict) -> torch.Tensor:
        """batch: {'obs': {key: (B, To, ...)}, 'action': (B, H, Da) in the policy's representation}."""
        cond = self.encode(batch[C.OBS])
        x0 = self.normalizer.normalize(C.ACTION, batch[C.ACTION].float())
        noise = torch.randn_like(x0)
        t = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (x0.shape[0],), device=x0.device)
        noisy = self.noise_scheduler.add_noise(x0, noise, t)
        target = noise if self.cfg.noise.prediction_type == "epsilon" else x0
        if self.cfg.max_prefix_steps > 0:  # a clean prefix of d ~ U{0..N} actions, not scored
            d = torch.randint(0, self.cfg.max_prefix_steps + 1, (x0.shape[0], 1, 1), device=x0.device)
            known = torch.arange(x0.shape[1], device=x0.device).reshape(1, -1, 1) < d
            pred = self.denoiser(torch.where(known, x0, noisy), t, cond)
            scored = (~known).to(pred.dtype).expand_as(pred)
            return ((pred.float() - target) ** 2 * scored).sum() / scored.sum()
        pred = self.denoiser(noisy, t, cond)
        return F.mse_loss(pred, target)

    forward = compute_loss  # DistributedDataParallel calls forward()

    # --- inference ---------------------------------------------------------------------------
    def inference_scheduler(self, solver: str | None = None):
        solver = solver or self.cfg.inference.solver
        key = (solver, self.cfg.inference.timestep_spacing)
        if key not in self._inference_schedulers:
            self._inference_schedulers[key] = make_scheduler(self.cfg.noise, solver, key[1])
        return self._inference_schedulers[key]

    def conditional_sample(self, cond: torch.Tensor, *, generator: torch.Generator | None = None,
                           solver: str | None = None, num_inference_steps: int | None = None,
                           guidance: GuidanceFn | None = None, initial: torch.Tensor | None = None,
                           start_index: int = 0, substeps: int = 1) -> torch.Tensor:
        """Conditioning (B, Dc) → normalised action trajectory (B, H, Da). ``initial`` + ``start_index``:
        warm start from a normalised guess (see diffusion.sampling.sample)."""
        shape = (cond.shape[0], self.cfg.horizon, self.cfg.action.dim)
        needs_grad = guidance is not None and getattr(guidance, "needs_grad", True)
        x = sample(self._denoise_fn(cond, shape, needs_grad), self.inference_scheduler(solver), shape,
                   num_inference_steps=num_inference_steps or self.cfg.inference.num_inference_steps,
                   generator=generator, device=cond.device, dtype=cond.dtype, guidance=guidance, initial=initial,
                   start_index=start_index, substeps=substeps)
        return x.clamp(-1.0, 1.0) if self.cfg.noise.clip_sample else x

    def _denoise_fn(self, cond: torch.Tensor, shape: tuple[int, ...], needs_grad: bool = False):
        """The conditioned denoiser call: an exported backend (inference.backend, CPU, no gradients needed), or a
        TorchScript trace per (shape, device, dtype) with inference.trace (it shares the module's
        parameters, so loading new weights needs no re-trace), or the module itself."""
        backend = resolve_backend(self.cfg.inference.backend)
        if not needs_grad and cond.device.type == "cpu" and backend in RUNNERS:
            key = (backend, shape[1], shape[2], cond.shape[1])
            if key not in self._ort:
                self._ort[key] = RUNNERS[backend](self.denoiser, *key[1:], checkpoint_dir=self.checkpoint_dir)
            runner = self._ort[key]
            return lambda x, t: runner(x, t, cond)
        if not self.cfg.inference.trace:
            return lambda x, t: self.denoiser(x, t, cond)
        key = (shape, tuple(cond.shape), cond.device, cond.dtype)
        if key not in self._traced:
            example = (torch.zeros(shape, dtype=cond.dtype, device=cond.device),
                       torch.zeros((), dtype=torch.long, device=cond.device), torch.zeros_like(cond))
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                warnings.simplefilter("ignore", FutureWarning)  # deprecated in 2.14, measured faster (README)
                self._traced[key] = torch.jit.trace(self.denoiser.eval(), example, check_trace=False)
        traced = self._traced[key]
        return lambda x, t: traced(x, torch.as_tensor(t, device=x.device).long().reshape(()), cond)

    def to_world(self, x_normalised: torch.Tensor, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Normalised policy-space trajectory → world-frame actions (differentiable)."""
        action = self.normalizer.unnormalize(C.ACTION, x_normalised)
        pose = obs[self.cfg.action.pose_key][:, -1].float() if self.action_repr.needs_pose else None
        return self.action_repr.to_absolute(action, pose)

    def warm_start_guess(self, previous: torch.Tensor, obs: dict[str, torch.Tensor], shift: int) -> torch.Tensor:
        """Previous world-frame prediction (B, H, Da) → normalised guess for this cycle: advanced by
        ``shift`` executed steps (the tail repeats the last step), re-expressed for the current pose."""
        if shift > 0:
            previous = torch.cat((previous[:, shift:], previous[:, -1:].expand(-1, shift, -1)), dim=1)
        pose = obs[self.cfg.action.pose_key][:, -1].float() if self.action_repr.needs_pose else None
        return self.normalizer.normalize(C.ACTION, self.action_repr.to_policy(previous.float(), pose))

    def predict_action(self, obs: dict[str, torch.Tensor], **kwargs) -> dict[str, torch.Tensor]:
        """obs (B, To, ...) → {'action': (B, n_action_steps, Da), 'action_pred': (B, H, Da)}, world frame.

        The executable slice starts at the last observation step, as in Diffusion Policy."""
        x = self.conditional_sample(self.encode_for_inference(obs), **kwargs)
        action_pred = self.to_world(x, obs)
        start = self.cfg.n_obs_steps - 1
        return {"action": action_pred[:, start:start + self.cfg.n_action_steps], "action_pred": action_pred}


class Policy:
    """Numpy-facing policy for drivers: validates observations, returns world-frame action chunks."""

    def __init__(self, model: DiffusionPolicy, config: Config, device: str | torch.device = "cpu"):
        self.model = model.to(device).eval()
        self.config = config
        self.cfg = config.policy
        self.device = torch.device(device)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu", solver: str | None = None,
                        num_inference_steps: int | None = None, trace: bool | None = None,
                        backend: str | None = None) -> "Policy":
        """None keeps the checkpoint's own inference setting."""
        config, model = DiffusionPolicy.from_checkpoint(path, map_location=device)
        if backend is not None:
            config.policy.inference.backend = backend
        if solver is not None:
            config.policy.inference.solver = solver
        if num_inference_steps is not None:
            config.policy.inference.num_inference_steps = num_inference_steps
        if trace is not None:
            config.policy.inference.trace = trace
        config.policy.inference.__post_init__()
        return cls(model, config, device)

    def _previous_chunk(self, tensors, values, batched: bool, field: str) -> torch.Tensor:
        """A previous world-frame full-horizon prediction (warm start, real-time chunking), checked and batched."""
        prev = torch.as_tensor(np.asarray(values), device=self.device)
        prev = prev if batched else prev.unsqueeze(0)
        expected = (next(iter(tensors.values())).shape[0], self.cfg.horizon, self.cfg.action.dim)
        if tuple(prev.shape) != expected or not torch.isfinite(prev).all():
            raise ObservationError(f"{field}: expected finite previous predictions of shape {expected}, got "
                                   f"{tuple(prev.shape)}")
        return prev

    def _prefix_guidance(self, tensors, prefix, weights, mode, max_weight, batched, seed) -> PrefixGuidance:
        prev = self._previous_chunk(tensors, prefix, batched, "prefix")
        w = torch.as_tensor(np.ones(self.cfg.horizon) if weights is None else np.asarray(weights, np.float64))
        if w.shape != (self.cfg.horizon,) or not torch.isfinite(w).all() or (w < 0).any() or (w > 1).any():
            raise ObservationError(f"prefix_weights: expected {self.cfg.horizon} weights in [0, 1], got "
                                   f"{w.tolist()}")
        target = self.model.warm_start_guess(prev, tensors, 0)
        generator = torch.Generator(device=self.device).manual_seed(int(seed) + 1) if seed is not None else None
        return PrefixGuidance(target, w, mode, max_weight, generator)

    def warm_up(self) -> float:
        """One prediction on a blank observation, so the first real cycle does not pay for the denoiser's
        trace or ONNX export and session (up to a second); → its wall time in ms."""
        import time

        obs = {k: np.zeros((self.cfg.n_obs_steps, *spec.shape), np.uint8 if spec.type == C.OBS_RGB else np.float32)
               for k, spec in self.cfg.observations.items()}
        t0 = time.perf_counter()
        self.predict(obs, seed=0)
        return (time.perf_counter() - t0) * 1e3

    @property
    def observation_keys(self) -> list[str]:
        return list(self.cfg.observations)

    def validate(self, obs: dict[str, np.ndarray]) -> tuple[dict[str, torch.Tensor], bool]:
        """Check every observation the config declares; returns (batched tensors, was_batched)."""
        if not isinstance(obs, dict):
            raise ObservationError(f"observation: expected a dict of arrays, got {type(obs).__name__}")
        to = self.cfg.n_obs_steps
        out, batched = {}, None
        for key, spec in self.cfg.observations.items():
            if key not in obs:
                raise ObservationError(f"observation '{key}' is missing; expected keys {self.observation_keys}, "
                                       f"got {sorted(obs)}")
            arr = np.asarray(obs[key])
            if arr.dtype.kind not in "fiu":
                raise ObservationError(f"observation '{key}': expected a numeric dtype (float, int or uint8), "
                                       f"got {arr.dtype}")
            expected = (to, *spec.shape)
            if arr.shape == expected:
                is_batched = False
            elif arr.ndim == len(expected) + 1 and arr.shape[1:] == expected:
                is_batched = True
            else:
                raise ObservationError(f"observation '{key}': expected shape {expected} (n_obs_steps, *shape) "
                                       f"or (batch, {', '.join(map(str, expected))}), got {arr.shape}")
            if batched is not None and is_batched != batched:
                raise ObservationError(f"observation '{key}': batched and unbatched observations mixed")
            batched = is_batched
            if arr.dtype.kind == "f":
                bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
                if bad:
                    raise ObservationError(f"observation '{key}': expected finite values, got {bad} NaN/inf "
                                           f"entries")
            t = torch.from_numpy(np.ascontiguousarray(arr)).to(self.device)
            out[key] = t if is_batched else t.unsqueeze(0)
        return out, bool(batched)

    @torch.inference_mode()
    def predict(self, obs: dict[str, np.ndarray], *, seed: int | None = None, guidance: GuidanceFn | None = None,
                full_horizon: bool = False, warm_start: np.ndarray | None = None, shift: int = 0,
                start_index: int = 0, substeps: int = 1, prefix: np.ndarray | None = None,
                prefix_weights: np.ndarray | None = None, prefix_mode: str = "rtc",
                prefix_max_weight: float = 1.0) -> np.ndarray:
        """One action chunk (n_action_steps, Da), or (B, n_action_steps, Da) for batched observations.

        ``full_horizon=True`` returns all ``horizon`` predicted steps instead. Warm start: pass the
        previous full-horizon prediction as ``warm_start``, the steps executed since as ``shift``, and
        the inference step to resume from as ``start_index`` (only the remaining steps run). Post-hoc
        refinement: ``warm_start`` = a finished chunk, ``shift=0``, a late ``start_index``, with guidance.
        ``substeps``: K guided sub-steps per noise level (single-step solvers). Real-time chunking:
        ``prefix`` = the running chunk's world-frame actions at this chunk's H step times, with
        ``prefix_weights`` (H,) (``diffusion/chunking.py``; ``prefix_mode`` rtc | inpaint)."""
        tensors, batched = self.validate(obs)
        generator = None
        if seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(int(seed))
        kwargs = {"generator": generator, "substeps": substeps}
        if warm_start is not None:
            prev = self._previous_chunk(tensors, warm_start, batched, "warm_start")
            kwargs.update(initial=self.model.warm_start_guess(prev, tensors, shift), start_index=start_index)
        if prefix is not None:
            guidance = compose(guidance, self._prefix_guidance(tensors, prefix, prefix_weights, prefix_mode,
                                                               prefix_max_weight, batched, seed))
        if guidance is not None and getattr(guidance, "needs_grad", True):
            # Tensors made under inference_mode cannot enter autograd: clone them outside it.
            with torch.inference_mode(False), torch.enable_grad():
                result = self.model.predict_action({k: v.clone() for k, v in tensors.items()}, guidance=guidance,
                                                   **{k: (v.clone() if torch.is_tensor(v) else v)
                                                      for k, v in kwargs.items()})
        else:
            result = self.model.predict_action(tensors, guidance=guidance, **kwargs)
        action = result["action_pred" if full_horizon else "action"].detach().cpu().numpy()
        if not np.isfinite(action).all():
            raise NonFiniteActionError("policy produced NaN/inf actions; nothing returned "
                                       "(check the checkpoint and the observation scales)")
        return action if batched else action[0]
