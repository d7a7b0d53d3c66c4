"""Training loop, EMA, checkpoints, resume, distributed training; distillation into a few-step student."""
from .trainer import Trainer  # noqa: F401
from .distill import Distiller  # noqa: F401
