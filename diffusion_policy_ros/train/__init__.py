"""Training loop, EMA, checkpoints, resume, distributed training."""
from .trainer import Trainer  # noqa: F401
