"""Exceptions raised by the package. Each message names the thing, what was expected and what came."""


class DiffusionPolicyRosError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(DiffusionPolicyRosError, ValueError):
    """A config value is missing, unknown or out of range."""


class ObservationError(DiffusionPolicyRosError, ValueError):
    """An observation is missing a key, or has the wrong shape, dtype or non-finite values."""


class DatasetError(DiffusionPolicyRosError, ValueError):
    """A dataset does not have the layout or keys a config needs."""


class CheckpointError(DiffusionPolicyRosError, ValueError):
    """A checkpoint folder is missing files or was written by an incompatible version."""


class NonFiniteActionError(DiffusionPolicyRosError, RuntimeError):
    """Sampling produced NaN or inf; the action is never returned."""


class SimError(DiffusionPolicyRosError, RuntimeError):
    """The simulation diverged or cannot run the requested task."""


class BagError(DiffusionPolicyRosError, ValueError):
    """A rosbag that cannot be read or written: missing, corrupt, or without the topics asked for."""


class UnsafeCommandError(DiffusionPolicyRosError, RuntimeError):
    """A command cannot be made safe (non-finite values, impossible limits); it must not be sent."""
