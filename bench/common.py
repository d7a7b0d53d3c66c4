"""Shared by the bench scripts (run as `python bench/<name>.py`, so this imports as `common`)."""
from __future__ import annotations

import os
import platform
import time

import numpy as np


def time_ms(fn, runs: int, warmup: int = 3) -> np.ndarray:
    """Wall time of `fn()` in milliseconds, `runs` times after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    out = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter_ns()
        fn()
        out[i] = (time.perf_counter_ns() - t0) / 1e6
    return out


def machine(**extra) -> dict:
    import torch

    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), **extra}
