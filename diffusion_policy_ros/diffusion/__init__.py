"""Noise schedulers (diffusers) and the one sampling loop every policy and guidance mode shares."""
from .sampling import GuidanceContext, GuidanceFn, sample  # noqa: F401
from .schedulers import make_scheduler  # noqa: F401
