"""Distillation of a trained policy into a one- or two-step student (`dpros distill`).

Method: the teacher's deployed sampler (e.g. DDIM-10, deterministic) is a map (observation, initial
noise) → action chunk. The student, a copy of the teacher's network initialised with its weights,
learns that map directly: for a batch of dataset observations and fresh noise, the teacher's chunk is
computed on the fly, and the student's own N-step DDIM run (trailing timesteps, sample prediction) from
the *same* noise is regressed onto it (Luhman & Luhman 2021, "knowledge distillation in iterative
generative models"). Because each noise keeps its own teacher sample, modes stay separate (a student
fitted to the data's mean would average them).

Why this and not consistency distillation (Consistency Policy, ManiCM) or OneDP: both need more
machinery to train on a 2-core CPU (a target network and a schedule of discretisation steps; OneDP a
second score network and a KL objective), and they pay off when the student must also work at many
steps or beat the teacher. Here the student only has to reproduce the sampler the teacher is deployed
with; measured in bench/inference.py (action error vs DDPM-100 samples, on a two-mode checkpoint too)
and in closed loop (docs/benchmarks.md).

The student is an ordinary checkpoint: its config says ``inference: {solver: ddim, num_inference_steps:
N, timestep_spacing: trailing}`` and ``noise.prediction_type: sample``; every driver loads it as any
other. Resumable (``--resume``), progress bar, provenance (teacher, its demonstration seeds) kept.
"""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.optimization import get_scheduler
from tqdm import tqdm

from .. import constants as C
from ..checkpoint import load_checkpoint, read_checkpoint_meta, save_checkpoint
from ..config import Config
from ..data import PolicyDataset, ReplayBuffer, split_episodes
from ..diffusion import make_scheduler, sample
from ..errors import CheckpointError, ConfigError, DatasetError
from ..policy import DiffusionPolicy
from .trainer import CHECKPOINT_DIR, plot_losses


def student_config(teacher: Config, student_steps: int) -> Config:
    """The teacher's config with the student's sampler: DDIM, ``student_steps`` trailing steps, x₀ output."""
    if student_steps not in (1, 2):
        raise ConfigError(f"--student-steps: expected 1 or 2, got {student_steps}")
    cfg = copy.deepcopy(teacher)
    cfg.policy.noise.prediction_type = "sample"
    inf = cfg.policy.inference
    inf.solver, inf.num_inference_steps, inf.timestep_spacing = C.SOLVER_DDIM, student_steps, "trailing"
    inf.__post_init__()
    return cfg


class Distiller:
    def __init__(self, teacher_path: str | Path, dataset: str | Path, out_dir: str | Path, *,
                 student_steps: int = 1, max_steps: int = 1000, batch_size: int = 64, lr: float = 1e-4,
                 seed: int = 0, log_every: int = 50, checkpoint_every: int = 500, resume: bool = False,
                 progress: bool = True):
        self.teacher_path = Path(teacher_path)
        self.dataset_path = Path(dataset)
        self.out = Path(out_dir)
        self.student_steps, self.max_steps, self.batch_size, self.lr = student_steps, max_steps, batch_size, lr
        self.seed, self.log_every, self.checkpoint_every = seed, log_every, checkpoint_every
        self.resume, self.progress = resume, progress
        if max_steps < 1 or batch_size < 1:
            raise ConfigError(f"distill: expected max_steps >= 1 and batch_size >= 1, got {max_steps}, {batch_size}")

    def _teacher_sample(self, teacher: DiffusionPolicy, cond: torch.Tensor, seed: int) -> torch.Tensor:
        """The teacher's deployed sampler from the noise drawn with ``seed`` (normalised, clipped as deployed)."""
        g = torch.Generator().manual_seed(seed)
        return teacher.conditional_sample(cond, generator=g)

    def _student_sample(self, student: DiffusionPolicy, scheduler, cond: torch.Tensor, shape, seed: int):
        """The student's N-step DDIM run from the same noise, differentiable."""
        g = torch.Generator().manual_seed(seed)
        x = sample(lambda x, t: student.denoiser(x, t, cond),
                   scheduler, shape, num_inference_steps=self.student_steps, generator=g, dtype=cond.dtype)
        return x.clamp(-1.0, 1.0) if student.cfg.noise.clip_sample else x

    def run(self) -> Path:
        torch.manual_seed(self.seed)
        tconfig, teacher = DiffusionPolicy.from_checkpoint(self.teacher_path)
        scfg = student_config(tconfig, self.student_steps)
        teacher.cfg.inference.trace = False  # plain module calls: no trace per batch shape
        teacher.cfg.inference.backend = "torch"
        for p in teacher.parameters():
            p.requires_grad_(False)
        student = DiffusionPolicy.build(scfg.policy)
        student.load_state_dict(teacher.state_dict())
        student.train()
        scheduler = make_scheduler(scfg.policy.noise, C.SOLVER_DDIM, "trailing")

        buffer = ReplayBuffer.open(self.dataset_path)
        train_mask, val_mask = split_episodes(buffer.n_episodes, tconfig.train.val_ratio, tconfig.train.seed)
        data = PolicyDataset.from_path(self.dataset_path, tconfig.policy, train_mask, buffer=buffer)
        try:  # a fixed check on the teacher's validation episodes, fixed noise: student vs teacher
            val = PolicyDataset(data.data, buffer.episode_ends, tconfig.policy, val_mask, source=str(self.dataset_path))
        except DatasetError:
            val = data
        val_obs = val.get_batch(np.random.default_rng(12345).integers(0, len(val), 64))[C.OBS]
        meta = read_checkpoint_meta(self.teacher_path)

        opt = torch.optim.AdamW(student.parameters(), lr=self.lr, weight_decay=1e-6)
        sched = get_scheduler("cosine", opt, num_warmup_steps=min(100, self.max_steps // 10),
                              num_training_steps=self.max_steps)
        ckpt_dir = self.out / CHECKPOINT_DIR
        step, history = 0, []
        if self.resume and (ckpt_dir / C.CKPT_TRAIN_STATE).is_file():
            try:
                state = torch.load(ckpt_dir / C.CKPT_TRAIN_STATE, weights_only=False)
            except Exception as e:  # a truncated file raises several types
                raise CheckpointError(f"resume: cannot read {ckpt_dir / C.CKPT_TRAIN_STATE}: {e}") from None
            student.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["lr_scheduler"])
            step, history = int(state["step"]), list(state.get("history", []))
        self.out.mkdir(parents=True, exist_ok=True)

        rng = np.random.default_rng(self.seed + step)
        shape_of = lambda b: (b, scfg.policy.horizon, scfg.policy.action.dim)  # noqa: E731
        bar = tqdm(total=self.max_steps, initial=step, desc="distilling", disable=not self.progress,
                   dynamic_ncols=True)

        def val_loss() -> float:
            student.eval()
            with torch.no_grad():
                shape = shape_of(len(next(iter(val_obs.values()))))
                target = self._teacher_sample(teacher, teacher.encode(val_obs), 12345)
                pred = self._student_sample(student, scheduler, student.encode(val_obs), shape, 12345)
            student.train()
            return float(F.mse_loss(pred, target))

        if not history:  # the teacher's weights run at N steps, undistilled
            history.append({"step": 0, "val_loss": val_loss()})
            with open(self.out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(history[0]) + "\n")
        # The checkpoint's weights: those with the smallest validation gap so far (on a policy that already
        # nearly matches its teacher in one step, early updates can widen the gap before they narrow it).
        best = min(history, key=lambda h: h["val_loss"])
        self._best = (best["step"], best["val_loss"],
                      copy.deepcopy(student.state_dict()) if best["step"] == step else self._best_state(ckpt_dir))
        running, t0 = [], time.time()
        while step < self.max_steps:
            idx = rng.integers(0, len(data), min(self.batch_size, len(data)))
            obs = data.get_batch(idx)[C.OBS]
            noise_seed = int(rng.integers(0, 2**62))
            with torch.no_grad():
                target = self._teacher_sample(teacher, teacher.encode(obs), noise_seed)
            pred = self._student_sample(student, scheduler, student.encode(obs), shape_of(len(idx)), noise_seed)
            loss = F.mse_loss(pred, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            running.append(loss.item())
            bar.update(1)
            if step % self.log_every == 0 or step == self.max_steps:
                rec = {"step": step, "loss": float(np.mean(running)), "val_loss": val_loss(),
                       "lr": sched.get_last_lr()[0], "elapsed_s": round(time.time() - t0, 2)}
                running = []
                history.append(rec)
                if rec["val_loss"] < self._best[1]:
                    self._best = (step, rec["val_loss"], copy.deepcopy(student.state_dict()))
                bar.set_postfix(loss=f"{rec['loss']:.5f}", val=f"{rec['val_loss']:.5f}")
                with open(self.out / "metrics.jsonl", "a") as f:
                    f.write(json.dumps(rec) + "\n")
            if step % self.checkpoint_every == 0 or step == self.max_steps:
                self._save(ckpt_dir, scfg, student, opt, sched, step, history, meta)
        bar.close()
        return ckpt_dir

    @staticmethod
    def _best_state(ckpt_dir: Path) -> dict:
        """On resume: the best weights saved so far are the checkpoint's own."""
        return load_checkpoint(ckpt_dir)[1]

    def _save(self, ckpt_dir, scfg, student, opt, sched, step, history, meta):
        """The latest state for resume (train_state); the best validation weights for inference."""
        train_state = {"step": step, "model": student.state_dict(), "optimizer": opt.state_dict(),
                       "lr_scheduler": sched.state_dict(), "history": history}
        best_step, best_val, best_state = self._best
        inference = DiffusionPolicy.build(scfg.policy)
        inference.load_state_dict(best_state)
        extra = {"dataset": str(self.dataset_path), "provenance": meta.get("provenance", {}),
                 "distilled_from": {"checkpoint": str(self.teacher_path), "teacher_step": meta.get("step"),
                                    "teacher_inference": meta["config"]["policy"]["inference"],
                                    "student_steps": self.student_steps, "distill_steps": step,
                                    "weights_from_step": best_step, "validation_gap": best_val,
                                    "undistilled_gap": history[0]["val_loss"],
                                    "batch_size": self.batch_size, "seed": self.seed}}
        save_checkpoint(ckpt_dir, scfg, inference, step=step, train_state=train_state, extra=extra)
        plot_losses(history, self.out / "loss.png", ylabel="student vs teacher chunk (MSE, normalised)",
                    val_label="validation episodes, fixed noise")
