"""Training: AdamW (fused where torch has it) + cosine schedule with warmup, optional bfloat16 autocast
(``train.precision``), EMA weights, periodic self-describing checkpoints,
resume, validation loss on held-out episodes, a loss-curve PNG, and DistributedDataParallel when
launched with ``torchrun`` (gloo on CPU, nccl on GPU).

Output folder:
    <out>/checkpoint/     latest checkpoint (inference weights = EMA) + train_state.pt for resume
    <out>/metrics.jsonl   one line per logged step
    <out>/loss.png        train and validation loss
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from tqdm import tqdm

from .. import constants as C
from ..checkpoint import save_checkpoint
from ..config import Config
from ..data import PolicyDataset, ReplayBuffer, identity_collate, split_episodes
from ..data.lerobot import LeRobotSource, is_lerobot_dataset
from ..errors import CheckpointError
from ..policy import DiffusionPolicy

CHECKPOINT_DIR = "checkpoint"
SNAPSHOT_DIR = "snapshots"  # train.snapshot_every: <out>/snapshots/step_000200, …


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: torch.device) -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        name = f"cuda:{local_rank}"
    return torch.device(name)


def make_optimizer(params, tcfg, fused: bool = True) -> torch.optim.AdamW:
    """AdamW with ``fused=True``: one kernel for every parameter's update instead of a dozen passes
    over each (0-14 % of a DP3 step on a 2-core CPU, bench/training.py; more where the optimizer
    weighs more, as on a GPU). The same update up to float rounding; its state loads into either
    form, so --resume works across the switch. ``fused=False``: torch's for-each AdamW."""
    params = list(params)
    kwargs = dict(lr=tcfg.lr, betas=tuple(tcfg.betas), weight_decay=tcfg.weight_decay)
    if not fused:
        return torch.optim.AdamW(params, **kwargs)
    try:
        return torch.optim.AdamW(params, fused=True, **kwargs)
    except (RuntimeError, TypeError):  # a device or dtype without the fused kernel
        return torch.optim.AdamW(params, **kwargs)


def make_ema(params, tcfg, foreach: bool = True) -> EMAModel:
    """The EMA of the weights (inference uses it), updated with for-each kernels over all parameters."""
    return EMAModel(params, decay=tcfg.ema_max_decay, use_ema_warmup=True, inv_gamma=1.0, power=tcfg.ema_power,
                    foreach=foreach)


def autocast(device: torch.device, precision: str):
    """The forward pass's precision context: bfloat16 autocast for ``bf16``, nothing for ``fp32``."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def cpu_bf16_native() -> bool:
    """Whether this CPU runs bfloat16 natively (AVX512-BF16 or AMX through oneDNN); elsewhere torch
    emulates it: on a 2-core AVX2 EPYC a press_dp3_force step took 11x as long as in float32, where a
    Zen 4 with AVX512-BF16 ran the Meta-World recipe 1.66x faster."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def bf16_warning(device: torch.device, precision: str) -> str:
    """Why ``bf16`` would be slow here, or ""."""
    if precision != "bf16" or device.type != "cpu" or cpu_bf16_native():
        return ""
    return (f"train.precision: bf16 on a CPU without native bfloat16 (torch CPU capability "
            f"{torch.backends.cpu.get_cpu_capability()}): torch emulates it, several times slower than fp32; "
            f"use train.precision=fp32 here")


def plot_losses(history: list[dict], path: Path, ylabel: str = "diffusion loss (MSE)",
                val_label: str = "validation (EMA weights, held-out episodes)") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    tr = [(h["step"], h["loss"]) for h in history if "loss" in h]
    va = [(h["step"], h["val_loss"]) for h in history if "val_loss" in h]
    if tr:
        ax.plot(*zip(*tr), label="train (mean over log interval)")
    if va:
        ax.plot(*zip(*va), "o-", label=val_label)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


class Trainer:
    def __init__(self, config: Config, dataset: str | Path, out_dir: str | Path, *, resume: bool = False,
                 progress: bool = True, deploy=None):
        self.config = config
        self.tcfg = config.train
        self.out = Path(out_dir)
        self.dataset_path = Path(dataset)
        self.provenance: dict = {}
        self.resume = resume
        self.progress = progress
        self.deploy = deploy  # LeRobot datasets: perception settings (default: the dataset's own)

    # --- pieces ------------------------------------------------------------------------------
    def _datasets(self):
        """Training and validation sets over disjoint episodes (validation None if none fit a window)."""
        pcfg = self.config.policy
        if is_lerobot_dataset(self.dataset_path):
            buffer = LeRobotSource(self.dataset_path, self.config, self.deploy, progress=self.progress)
        else:
            buffer = ReplayBuffer.open(self.dataset_path)
        self.provenance = buffer.provenance  # the demonstrations' seed block, into the checkpoint
        train_mask, val_mask = split_episodes(buffer.n_episodes, self.tcfg.val_ratio, self.tcfg.seed)
        train = PolicyDataset.from_path(self.dataset_path, pcfg, train_mask, buffer=buffer)
        val = None
        if val_mask.any() and _has_windows(buffer.episode_ends, val_mask, pcfg):
            val = PolicyDataset(train.data, buffer.episode_ends, pcfg, val_mask, source=str(self.dataset_path))
        return train, val

    def _loader(self, dataset: PolicyDataset, info: DistInfo, epoch_seed: int):
        if info.world_size > 1:
            sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank,
                                                          shuffle=True, seed=self.tcfg.seed, drop_last=True)
            sampler.set_epoch(epoch_seed)
        else:
            g = torch.Generator().manual_seed(self.tcfg.seed + epoch_seed)
            sampler = torch.utils.data.RandomSampler(dataset, generator=g)
        batch = min(self.tcfg.batch_size, max(1, len(dataset) // info.world_size))
        return torch.utils.data.DataLoader(dataset, batch_size=batch, sampler=sampler, drop_last=True,
                                           collate_fn=identity_collate, num_workers=self.tcfg.num_workers)

    @staticmethod
    def _to(batch: dict, device: torch.device) -> dict:
        return {C.OBS: {k: v.to(device, non_blocking=True) for k, v in batch[C.OBS].items()},
                C.ACTION: batch[C.ACTION].to(device, non_blocking=True)}

    @torch.no_grad()
    def _val_loss(self, model: DiffusionPolicy, val: PolicyDataset, device: torch.device, n_batches: int = 8) -> float:
        model.eval()
        losses = []
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(12345)
            rng = np.random.default_rng(12345)
            for _ in range(n_batches):
                idx = rng.integers(0, len(val), min(self.tcfg.batch_size, len(val)))
                losses.append(float(model.compute_loss(self._to(val.get_batch(idx), device))))
        model.train()
        return float(np.mean(losses))

    # --- main loop ---------------------------------------------------------------------------
    def run(self) -> Path:
        device = resolve_device(self.tcfg.device, int(os.environ.get("LOCAL_RANK", "0")))
        info = setup_distributed(device)
        if warning := bf16_warning(device, self.tcfg.precision):
            print(f"warning: {warning}", file=sys.stderr)
        torch.manual_seed(self.tcfg.seed + info.rank)
        np.random.seed(self.tcfg.seed + info.rank)

        train, val = self._datasets()
        model = DiffusionPolicy.build(self.config.policy)
        act = self.config.policy.action
        for key, data in train.normalizer_samples().items():
            gain = {i: act.discrete_scale for i in act.discrete_dims} if key == C.ACTION else None
            model.normalizer.fit(key, data, gain=gain)
        model.to(device)
        ema_model = DiffusionPolicy.build(self.config.policy).to(device) if self.tcfg.use_ema else None

        opt = make_optimizer(model.parameters(), self.tcfg)
        sched = get_scheduler("cosine", opt, num_warmup_steps=self.tcfg.warmup_steps,
                              num_training_steps=self.tcfg.max_steps)
        ema = make_ema(model.parameters(), self.tcfg) if self.tcfg.use_ema else None

        step, history = 0, []
        ckpt_dir = self.out / CHECKPOINT_DIR
        self.datasets = [{"dataset": str(self.dataset_path), "from_step": 0}]
        if self.resume and (ckpt_dir / C.CKPT_TRAIN_STATE).is_file():
            step, history = self._load_state(ckpt_dir, model, opt, sched, ema, device)
            if self.datasets[-1]["dataset"] != str(self.dataset_path):  # fine-tuning on another dataset
                self.datasets.append({"dataset": str(self.dataset_path), "from_step": step})
        elif self.resume and info.is_main:
            print(f"--resume: no {ckpt_dir / C.CKPT_TRAIN_STATE} yet, starting from step 0")

        ddp = model
        if info.world_size > 1:
            ddp = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
        if info.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.yaml").write_text(_config_yaml(self.config))

        model.train()
        bar = tqdm(total=self.tcfg.max_steps, initial=step, desc="training", disable=not (self.progress and info.is_main),
                   dynamic_ncols=True)
        running, epoch, t0 = [], step // max(1, len(train) // self.tcfg.batch_size), time.time()
        while step < self.tcfg.max_steps:
            for batch in self._loader(train, info, epoch):
                with autocast(device, self.tcfg.precision):
                    loss = ddp(self._to(batch, device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                if ema is not None:
                    ema.step(model.parameters())
                step += 1
                running.append(loss.item())
                bar.update(1)
                if step % self.tcfg.log_every == 0 or step == self.tcfg.max_steps:
                    rec = {"step": step, "loss": float(np.mean(running)), "lr": sched.get_last_lr()[0],
                           "elapsed_s": round(time.time() - t0, 2)}
                    running = []
                    if val is not None and (step % self.tcfg.val_every == 0 or step == self.tcfg.max_steps):
                        rec["val_loss"] = self._val_loss(self._ema_weights(model, ema, ema_model), val, device)
                    history.append(rec)
                    bar.set_postfix(loss=f"{rec['loss']:.4f}", **({"val": f"{rec['val_loss']:.4f}"}
                                                                  if "val_loss" in rec else {}))
                    if info.is_main:
                        with open(self.out / "metrics.jsonl", "a") as f:
                            f.write(json.dumps(rec) + "\n")
                if step % self.tcfg.checkpoint_every == 0 or step == self.tcfg.max_steps:
                    if info.is_main:
                        self._save(ckpt_dir, model, ema, ema_model, opt, sched, step, history)
                if self.tcfg.snapshot_every and step % self.tcfg.snapshot_every == 0 and info.is_main:
                    self._snapshot(model, ema, ema_model, step)
                if step >= self.tcfg.max_steps:
                    break
            epoch += 1
        bar.close()
        if info.world_size > 1:
            self._record_rank_sync(model, info)
        return ckpt_dir

    def _record_rank_sync(self, model, info: DistInfo) -> None:
        """Gather a weight checksum from every rank; rank 0 records them (they must be equal)."""
        local = torch.stack([torch.cat([p.detach().double().flatten() for p in model.parameters()]).sum()])
        sums = [torch.zeros_like(local) for _ in range(info.world_size)]
        dist.all_gather(sums, local)
        if info.is_main:
            with open(self.out / "metrics.jsonl", "a") as f:
                f.write(json.dumps({"world_size": info.world_size,
                                    "rank_weight_checksums": [float(x) for x in sums]}) + "\n")
        dist.barrier()

    # --- checkpoints -------------------------------------------------------------------------
    @staticmethod
    def _ema_weights(model, ema, ema_model):
        if ema is None:
            return model
        ema_model.load_state_dict(model.state_dict())  # buffers (normalizer) from the live model
        ema.copy_to(ema_model.parameters())
        return ema_model

    def _save(self, ckpt_dir, model, ema, ema_model, opt, sched, step, history):
        inference = self._ema_weights(model, ema, ema_model)
        train_state = {
            "step": step,
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "lr_scheduler": sched.state_dict(),
            "ema": ema.state_dict() if ema is not None else None,
            "history": history,
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": np.random.get_state(),
            "datasets": self.datasets,
        }
        save_checkpoint(ckpt_dir, self.config, inference, step=step, train_state=train_state,
                        extra=self._checkpoint_extra())
        plot_losses(history, self.out / "loss.png")

    def _checkpoint_extra(self) -> dict:
        """What every checkpoint records beside the weights: where its data came from."""
        return {"dataset": str(self.dataset_path), "provenance": self.provenance, "datasets": self.datasets}

    def _snapshot(self, model, ema, ema_model, step):
        """The policy as it is at ``step`` (EMA weights where EMA is on), loadable as any checkpoint."""
        save_checkpoint(self.out / SNAPSHOT_DIR / f"step_{step:06d}", self.config,
                        self._ema_weights(model, ema, ema_model), step=step,
                        extra=self._checkpoint_extra())

    def _load_state(self, ckpt_dir, model, opt, sched, ema, device):
        try:
            state = torch.load(ckpt_dir / C.CKPT_TRAIN_STATE, map_location=device, weights_only=False)
        except Exception as e:  # a truncated file raises several types
            raise CheckpointError(f"resume: cannot read {ckpt_dir / C.CKPT_TRAIN_STATE}: {e}") from None
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["lr_scheduler"])
        if ema is not None and state.get("ema") is not None:
            ema.load_state_dict(state["ema"])
        torch.set_rng_state(state["torch_rng"])
        np.random.set_state(state["numpy_rng"])
        self.datasets = list(state.get("datasets") or self.datasets)
        return int(state["step"]), list(state.get("history", []))


def _has_windows(episode_ends, mask, pcfg) -> bool:
    from ..data import SequenceSampler

    return len(SequenceSampler(episode_ends, pcfg.horizon, pcfg.n_obs_steps - 1, pcfg.n_action_steps - 1, mask)) > 0


def _config_yaml(config: Config) -> str:
    import yaml

    from ..config import config_to_dict

    return yaml.safe_dump(config_to_dict(config), sort_keys=False)

