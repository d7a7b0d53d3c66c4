"""Typed configuration: one dataclass per concern, validated on construction.

Config files live in ``config/*.yaml``. A file holds ``policy:`` and ``train:`` sections and may hold
``variants:`` (named partial overrides, e.g. ``small`` for CPU training). ``load_config`` merges
file → variant → ``key.path=value`` overrides, then builds the dataclasses with dacite (strict: an
unknown key is an error that names it).
"""
from __future__ import annotations

import ast
import copy
import dataclasses
import functools
import io
import math
import sys
import tokenize
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dacite
import yaml

from . import constants as C
from .errors import ConfigError

NORMALIZE_MODES = ("limits", "gaussian", "shared", "identity")


def _require(cond: bool, name: str, expected: str, got: Any) -> None:
    if not cond:
        raise ConfigError(f"config field '{name}': expected {expected}, got {got!r}")


@dataclass
class ObservationSpec:
    """One observation stream: its type, per-step shape and where the dataset keeps it."""

    type: str
    shape: tuple[int, ...]
    dataset_key: str | None = None  # key under data/ in the zarr store; None → the observation key
    normalize: str = "limits"  # limits ([-1, 1] from min/max) | gaussian (mean/std) | shared (one std, the largest) | identity

    def __post_init__(self):
        _require(self.type in C.OBS_TYPES, "observations.*.type", f"one of {C.OBS_TYPES}", self.type)
        _require(all(int(s) > 0 for s in self.shape), "observations.*.shape", "positive sizes", self.shape)
        _require(self.normalize in NORMALIZE_MODES, "observations.*.normalize", f"one of {NORMALIZE_MODES}",
                 self.normalize)
        if self.type == C.OBS_POINT_CLOUD:
            _require(len(self.shape) == 2 and self.shape[1] in (3, 6), "observations.<point_cloud>.shape",
                     "[num_points, 3 (xyz) or 6 (xyz+rgb)]", self.shape)
        elif self.type == C.OBS_RGB:
            _require(len(self.shape) == 3 and self.shape[2] == 3, "observations.<rgb>.shape",
                     "[height, width, 3] (HWC, uint8)", self.shape)
        elif self.type == C.OBS_WRENCH:
            _require(tuple(self.shape) == (6,), "observations.<wrench>.shape", "[6] (force xyz, torque xyz)",
                     self.shape)
        else:
            _require(len(self.shape) == 1, "observations.<low_dim>.shape", "[dim]", self.shape)


@dataclass
class ActionConfig:
    representation: str = C.ACTION_ABS_EE
    dim: int = 10
    dataset_key: str = C.ACTION
    normalize: str = "limits"
    # Observation key whose first 9 values are the current end-effector pose (position + 6D
    # rotation); needed by rel_ee to express actions in the current end-effector frame.
    pose_key: str | None = None
    # Discrete channels (e.g. [9], the gripper of a 10-D end-effector action) are normalised to
    # [-discrete_scale, discrete_scale] instead of [-1, 1] (RTI-DP's scaling): a warm-started chunk
    # re-denoised for a few steps can then still flip them. Set before training; 1 = off.
    discrete_dims: tuple[int, ...] = ()
    discrete_scale: float = 1.0

    def __post_init__(self):
        _require(all(0 <= i < self.dim for i in self.discrete_dims), "action.discrete_dims",
                 f"channel indices in [0, {self.dim})", self.discrete_dims)
        _require(0.0 < self.discrete_scale <= 1.0, "action.discrete_scale", "in (0, 1]", self.discrete_scale)
        _require(self.representation in C.ACTION_REPRESENTATIONS, "action.representation",
                 f"one of {C.ACTION_REPRESENTATIONS}", self.representation)
        _require(self.dim > 0, "action.dim", "> 0", self.dim)
        _require(self.normalize in NORMALIZE_MODES, "action.normalize", f"one of {NORMALIZE_MODES}",
                 self.normalize)
        if self.representation in (C.ACTION_ABS_EE, C.ACTION_REL_EE):
            _require(self.dim in (C.EE_POSE_DIM, C.EE_POSE_DIM + 1), "action.dim",
                     "9 (position + 6D rotation) or 10 (+ gripper) for an end-effector representation",
                     self.dim)
        if self.representation == C.ACTION_REL_EE:
            _require(self.pose_key is not None, "action.pose_key",
                     "the observation key holding the current end-effector pose", self.pose_key)


@dataclass
class PointEncoderConfig:
    kind: str = "dp3"  # dp3 (DP3's per-point MLP + max-pool) | idp3 (iDP3 multi-stage)
    hidden_dims: tuple[int, ...] = (64, 128, 256)
    out_dim: int = 64

    def __post_init__(self):
        _require(self.kind in ("dp3", "idp3"), "encoders.point_cloud.kind", "dp3 or idp3", self.kind)
        _require(len(self.hidden_dims) >= 1 and min(self.hidden_dims) > 0,
                 "encoders.point_cloud.hidden_dims", "a non-empty list of positive widths", self.hidden_dims)
        _require(self.out_dim > 0, "encoders.point_cloud.out_dim", "> 0", self.out_dim)


@dataclass
class ImageEncoderConfig:
    crop_shape: tuple[int, int] = (84, 84)  # random crop when training, center crop at inference
    num_keypoints: int = 32  # spatial-softmax keypoints
    out_dim: int = 64

    def __post_init__(self):
        _require(len(self.crop_shape) == 2 and min(self.crop_shape) >= 32, "encoders.image.crop_shape",
                 "[height, width], each >= 32", self.crop_shape)
        _require(self.num_keypoints > 0, "encoders.image.num_keypoints", "> 0", self.num_keypoints)


@dataclass
class StateEncoderConfig:
    hidden_dims: tuple[int, ...] = (64,)
    out_dim: int = 64
    # LayerNorm after each hidden layer. DP3's state MLP (pointnet_extractor.py, create_mlp) has none:
    # Linear → ReLU → Linear; the Meta-World benchmark sets it false to match.
    layer_norm: bool = True


@dataclass
class ForceEncoderConfig:
    d_model: int = 64  # width of the force query tokens and of the fused feature
    num_heads: int = 4
    hidden_dims: tuple[int, ...] = (64,)
    # raw: the (normalised) 6-D wrench; magnitude_direction: [log(1+|f|), f/|f|, log(1+|τ|), τ/|τ|]
    # computed from the wrench in physical units (set the wrench's normalize to identity).
    features: str = "raw"

    def __post_init__(self):
        _require(self.features in ("raw", "magnitude_direction"), "encoders.force.features",
                 "raw or magnitude_direction", self.features)
        _require(self.d_model % self.num_heads == 0, "encoders.force.d_model",
                 f"a multiple of num_heads={self.num_heads}", self.d_model)


@dataclass
class EncoderConfig:
    point_cloud: PointEncoderConfig = field(default_factory=PointEncoderConfig)
    image: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    state: StateEncoderConfig = field(default_factory=StateEncoderConfig)
    force: ForceEncoderConfig = field(default_factory=ForceEncoderConfig)


@dataclass
class DenoiserConfig:
    kind: str = "unet1d"
    down_dims: tuple[int, ...] = (128, 256, 512)
    kernel_size: int = 5
    n_groups: int = 8
    diffusion_step_embed_dim: int = 128

    def __post_init__(self):
        _require(self.kind == "unet1d", "denoiser.kind", "unet1d", self.kind)
        _require(len(self.down_dims) >= 1, "denoiser.down_dims", "at least one level", self.down_dims)
        for d in self.down_dims:
            _require(d % self.n_groups == 0, "denoiser.down_dims",
                     f"widths divisible by n_groups={self.n_groups}", self.down_dims)


@dataclass
class NoiseConfig:
    num_train_timesteps: int = 100
    beta_schedule: str = "squaredcos_cap_v2"
    prediction_type: str = "epsilon"  # epsilon (Diffusion Policy) | sample (DP3)
    clip_sample: bool = True

    def __post_init__(self):
        _require(self.num_train_timesteps >= 2, "noise.num_train_timesteps", ">= 2", self.num_train_timesteps)
        _require(self.prediction_type in ("epsilon", "sample"), "noise.prediction_type", "epsilon or sample",
                 self.prediction_type)


@dataclass
class InferenceConfig:
    solver: str = C.SOLVER_DDIM
    num_inference_steps: int = 10
    # Run the denoiser as a TorchScript trace (one graph call per step instead of hundreds of Python
    # module calls): 20-40 % faster per chunk on CPU (bench/inference.py) and less exposed to other
    # Python threads holding the GIL. Gradients (guidance) flow through the trace.
    trace: bool = True
    # auto: the fastest installed (OpenVINO, then ONNX Runtime, then torch: bench/inference.py) | torch |
    # onnxruntime | openvino. Guided sampling that needs gradients always runs on torch.
    backend: str = "auto"
    # Where the inference timesteps sit: default (each diffusers solver's own: DDPM/DDIM start one
    # stride below the last training timestep) | trailing (start at it: what one- and two-step
    # distilled students need; one DDIM step would otherwise evaluate the model at t=0 on pure noise).
    timestep_spacing: str = "default"

    def __post_init__(self):
        _require(self.solver in C.SOLVERS, "inference.solver", f"one of {C.SOLVERS}", self.solver)
        _require(self.timestep_spacing in ("default", "trailing"), "inference.timestep_spacing",
                 "default | trailing", self.timestep_spacing)
        _require(self.backend in ("auto", "torch", "onnxruntime", "openvino"), "inference.backend",
                 "auto | torch | onnxruntime | openvino", self.backend)
        _require(self.num_inference_steps >= 1, "inference.num_inference_steps", ">= 1",
                 self.num_inference_steps)


@dataclass
class PolicyConfig:
    observations: dict[str, ObservationSpec]
    action: ActionConfig = field(default_factory=ActionConfig)
    horizon: int = 16
    n_obs_steps: int = 2
    n_action_steps: int = 8
    encoders: EncoderConfig = field(default_factory=EncoderConfig)
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    # Training-time action-prefix conditioning: each training chunk's first d ~ U{0..N} actions are given
    # clean in the noisy sample (their loss masked), so the model learns to continue a known prefix: the
    # running chunk's actions that execute during inference (execution.consistency: prefix). 0: off.
    max_prefix_steps: int = 0

    def __post_init__(self):
        _require(len(self.observations) > 0, "policy.observations", "at least one observation", self.observations)
        _require(self.n_obs_steps >= 1, "policy.n_obs_steps", ">= 1", self.n_obs_steps)
        _require(self.n_action_steps >= 1, "policy.n_action_steps", ">= 1", self.n_action_steps)
        _require(0 <= self.max_prefix_steps < self.horizon, "policy.max_prefix_steps",
                 f"in [0, horizon - 1 = {self.horizon - 1}]", self.max_prefix_steps)
        _require(self.n_obs_steps - 1 + self.n_action_steps <= self.horizon, "policy.n_action_steps",
                 f"<= horizon - n_obs_steps + 1 = {self.horizon - self.n_obs_steps + 1}", self.n_action_steps)
        # The U-Net halves the horizon at every level but the last.
        factor = 2 ** (len(self.denoiser.down_dims) - 1)
        _require(self.horizon % factor == 0, "policy.horizon",
                 f"a multiple of {factor} (2^(len(denoiser.down_dims)-1))", self.horizon)
        types = [s.type for s in self.observations.values()]
        if C.OBS_WRENCH in types:
            _require(any(t in (C.OBS_POINT_CLOUD, C.OBS_RGB) for t in types), "policy.observations",
                     "a point_cloud or rgb observation for the force encoder to attend to", types)
            _require(types.count(C.OBS_WRENCH) == 1, "policy.observations", "at most one wrench observation",
                     types)
        if self.action.pose_key is not None:
            spec = self.observations.get(self.action.pose_key)
            _require(spec is not None and spec.type == C.OBS_LOW_DIM and spec.shape[0] >= C.EE_POSE_DIM,
                     "action.pose_key", "a low_dim observation with >= 9 values", self.action.pose_key)


@dataclass
class TrainConfig:
    batch_size: int = 64
    max_steps: int = 20000
    lr: float = 1e-4
    weight_decay: float = 1e-6
    betas: tuple[float, float] = (0.95, 0.999)
    warmup_steps: int = 500
    use_ema: bool = True
    ema_power: float = 0.75
    ema_max_decay: float = 0.9999
    checkpoint_every: int = 2000
    # > 0: every this many steps also keep the EMA policy as it is then, in snapshots/step_NNNNNN (weights
    # and config, no optimizer state), to evaluate checkpoints along training; 0 keeps only the last.
    snapshot_every: int = 0
    val_every: int = 500
    val_ratio: float = 0.1  # fraction of episodes held out for validation loss
    log_every: int = 50
    seed: int = 42
    num_workers: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # fp32 | bf16: bf16 runs the forward pass and the loss under torch.autocast (bfloat16 matmuls and
    # convolutions; weights, gradients, optimizer and EMA stay float32). 1.6-1.9x a step on a CPU
    # with AVX512-BF16 (bench/training.py); slower where bfloat16 is emulated.
    precision: str = "fp32"

    def __post_init__(self):
        for name in ("batch_size", "max_steps", "checkpoint_every", "val_every", "log_every"):
            _require(getattr(self, name) > 0, f"train.{name}", "> 0", getattr(self, name))
        _require(self.snapshot_every >= 0, "train.snapshot_every", ">= 0 (0: no snapshots)", self.snapshot_every)
        _require(self.precision in ("fp32", "bf16"), "train.precision", "fp32 or bf16", self.precision)
        _require(self.lr > 0 and math.isfinite(self.lr), "train.lr", "a positive number", self.lr)
        _require(0.0 <= self.val_ratio < 1.0, "train.val_ratio", "in [0, 1)", self.val_ratio)


@dataclass
class PointCloudConfig:
    """Depth → point cloud for DP3-style policies (perception/pointcloud.py)."""

    num_points: int = 1024  # points per cloud (at deployment: the checkpoint's)
    sampling: str = "fps"  # fps (DP3) | uniform (iDP3)
    use_rgb: bool = False  # xyz+rgb (6 channels) instead of xyz
    pixel_stride: int = 3  # every n-th pixel each way: 3 px ≈ 4 mm at 0.8 m, finer than voxel_size
    min_depth: float = 0.1  # metres
    max_depth: float = 2.0  # metres; farther pixels are dropped
    voxel_size: float = 0.01  # metres; 0 disables the voxel filter
    crop_min: tuple[float, float, float] = (-1.0, -1.0, -1.0)  # workspace box in the base frame
    crop_max: tuple[float, float, float] = (1.0, 1.0, 1.0)  # upper corner of the crop box
    # camera→base transform: x, y, z, qx, qy, qz, qw (7 values) or a row-major 4x4 (16 values)
    extrinsic: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    # the crop box's frame in the base frame (7 or 16 values, as extrinsic): crop_min/crop_max apply to
    # the points expressed there (a box oblique to the base, as DP3's Meta-World crop); the cloud is
    # still returned in the base frame. Identity: the box is in the base frame.
    crop_frame: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)

    def __post_init__(self):
        _require(self.num_points > 0, "point_cloud.num_points", "> 0", self.num_points)
        _require(self.sampling in ("fps", "uniform"), "point_cloud.sampling", "fps or uniform", self.sampling)
        _require(self.pixel_stride >= 1, "point_cloud.pixel_stride", ">= 1", self.pixel_stride)
        _require(0 <= self.min_depth < self.max_depth, "point_cloud.min_depth/max_depth", "0 <= min < max",
                 (self.min_depth, self.max_depth))
        _require(self.voxel_size >= 0, "point_cloud.voxel_size", ">= 0", self.voxel_size)
        _require(len(self.crop_min) == 3 and len(self.crop_max) == 3
                 and all(a < b for a, b in zip(self.crop_min, self.crop_max)),
                 "point_cloud.crop_min/crop_max", "three values each with min < max", (self.crop_min, self.crop_max))
        for name in ("extrinsic", "crop_frame"):
            _require(len(getattr(self, name)) in (7, 16), f"point_cloud.{name}",
                     "7 values (xyz + quaternion xyzw) or 16 (row-major 4x4)", len(getattr(self, name)))


@dataclass
class ForceConfig:
    """Wrench stream processing (perception/force.py)."""

    sample_rate_hz: float = 500.0  # nominal sensor rate the low-pass filter is designed for
    cutoff_hz: float = 20.0  # Butterworth low-pass cut-off; 0 disables filtering
    filter_order: int = 2  # Butterworth filter order
    tool_mass: float = 0.0  # kg, below the sensor; 0 disables gravity compensation
    tool_com: tuple[float, float, float] = (0.0, 0.0, 0.0)  # tool centre of mass in the sensor frame, m
    gravity: tuple[float, float, float] = (0.0, 0.0, -9.81)  # in the base frame
    force_limit: float = 200.0  # N per axis: a sample beyond it is flagged saturated
    torque_limit: float = 20.0  # N·m per axis
    tare_samples: int = 50  # samples averaged by tare()
    # URDF link the policy reads the wrench in; a message whose header.frame_id names another URDF link
    # is transformed into it (force and torque, through the arm's kinematics); empty: as published
    frame: str = ""
    # zero the sensor on the first tare_samples samples after every enable (the node) and at every
    # episode start (dpros convert, with the same config), so training data and deployment agree
    tare_on_enable: bool = False
    history_s: float = 2.0  # how much filtered signal is kept for windows

    def __post_init__(self):
        _require(self.sample_rate_hz > 0, "force.sample_rate_hz", "> 0", self.sample_rate_hz)
        _require(0 <= self.cutoff_hz < self.sample_rate_hz / 2, "force.cutoff_hz",
                 f"in [0, {self.sample_rate_hz / 2}) (below Nyquist)", self.cutoff_hz)
        _require(self.filter_order >= 1, "force.filter_order", ">= 1", self.filter_order)
        _require(self.tool_mass >= 0, "force.tool_mass", ">= 0", self.tool_mass)
        _require(self.force_limit > 0 and self.torque_limit > 0, "force.force_limit/torque_limit", "> 0",
                 (self.force_limit, self.torque_limit))
        _require(self.tare_samples >= 1, "force.tare_samples", ">= 1", self.tare_samples)


@dataclass
class Config:
    policy: PolicyConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    name: str = "unnamed"
    description: str = ""


_DACITE = dacite.Config(strict=True, cast=[tuple])


def config_from_dict(data: dict, source: str = "<dict>") -> Config:
    """Build a Config from plain data; errors name the source and the field."""
    try:
        return dacite.from_dict(Config, data, config=_DACITE)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    except (dacite.DaciteError, TypeError, ValueError) as e:
        raise ConfigError(f"{source}: {e}") from None


def config_to_dict(cfg: Config) -> dict:
    """Plain data (lists instead of tuples) that config_from_dict reads back to an equal Config."""

    def plain(x):
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        return x

    return plain(dataclasses.asdict(cfg))


def share_dirs(sub: str) -> list[Path]:
    """Where shipped files of a kind (config, urdf, launch) live: the source tree, then the installed
    share folder (pip prefix, then a ROS install's)."""
    here = Path(__file__).resolve().parent
    dirs = [here.parent / sub, Path(sys.prefix) / "share" / "diffusion_policy_ros" / sub]
    try:  # a ROS install
        from ament_index_python.packages import get_package_share_directory

        dirs.append(Path(get_package_share_directory("diffusion_policy_ros")) / sub)
    except Exception:  # noqa: BLE001 - ament_index is optional and raises its own types
        pass
    return [d for d in dirs if d.is_dir()]


def config_dirs() -> list[Path]:
    return share_dirs("config")


def resolve_shipped(sub: str, name_or_path: str | Path, field_name: str) -> Path:
    """A path as given if it exists (``~`` expanded), else a file of that name shipped under ``sub``."""
    p = Path(name_or_path).expanduser()
    if p.is_file():
        return p
    for d in share_dirs(sub):
        if (d / p.name).is_file():
            return d / p.name
    raise ConfigError(f"{field_name}: expected a file, got '{name_or_path}' (not found, nor shipped in {sub}/)")


def resolve_shipped_checkpoint(name_or_path: str | Path) -> Path:
    """A checkpoint folder as given (or its ``checkpoint/`` sub-folder, as `dpros train` writes it), else
    a checkpoint shipped under ``checkpoints/``. ``~`` is expanded (ROS parameters arrive unexpanded)."""
    p = Path(name_or_path).expanduser()
    candidates = [p] + [d / p.name for d in share_dirs("checkpoints")]
    for c in candidates:
        if (c / "checkpoint").is_dir():
            c = c / "checkpoint"
        if c.is_dir() and any(c.iterdir()):
            return c
    shipped = sorted(x.name for d in share_dirs("checkpoints") for x in d.iterdir())
    raise ConfigError(f"--checkpoint: expected a checkpoint folder or a shipped name {shipped}, got "
                      f"'{name_or_path}' (not found)")


def shipped_configs() -> list[str]:
    names = set()
    for d in config_dirs():
        for p in d.glob("*.yaml"):
            data = yaml.safe_load(p.read_text()) or {}
            if isinstance(data, dict) and "policy" in data:
                names.add(p.stem)
    return sorted(names)


def resolve_config_path(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise ConfigError(f"config file '{p}' does not exist")
        return p
    for d in config_dirs():
        cand = d / f"{name_or_path}.yaml"
        if cand.is_file():
            return cand
    raise ConfigError(f"config '{name_or_path}': expected a .yaml path or one of {shipped_configs()}")


def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def apply_override(data: dict, item: str) -> dict:
    """Apply one ``dotted.key=yaml_value`` override, e.g. ``train.batch_size=32``."""
    if "=" not in item:
        raise ConfigError(f"override '{item}': expected key.path=value")
    key, raw = item.split("=", 1)
    value = yaml.safe_load(raw)
    node: dict = {}
    root = node
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node[part] = {}
        node = node[part]
    node[parts[-1]] = value
    return deep_merge(data, root)


def load_config(name_or_path: str | Path, variant: str | None = None, overrides: list[str] | tuple = ()) -> Config:
    path = resolve_config_path(name_or_path)
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at top level, got {type(data).__name__}")
    variants = data.pop("variants", {}) or {}
    data.setdefault("name", path.stem)
    if variant:
        if variant not in variants:
            raise ConfigError(f"{path}: variant '{variant}' not found; expected one of {sorted(variants)}")
        data = deep_merge(data, variants[variant])
        data["name"] = f"{path.stem}:{variant}"
    for item in overrides:
        data = apply_override(data, item)
    return config_from_dict(data, source=str(path))


# --- Deployment: what the policy node (and replay / sim drivers) need besides the checkpoint --------
# Kept flat enough to be ROS parameters: nested dataclasses become dotted names (topics.color, ...),
# tuples of floats become double arrays. config/arm.yaml and config/aerial.yaml hold them as a ROS
# parameter file (``policy_node: ros__parameters: ...``); ``load_deploy_config`` reads the same file.
OUTPUTS = ("joint_trajectory", "pose", "multidof", "px4", "command")
EMBODIMENTS = ("arm", "aerial", "oracle")


@dataclass
class TopicsConfig:
    """Topic names; defaults are realsense-ros 4.x (camera namespace 'camera', name 'camera')."""

    color: str = "/camera/camera/color/image_raw"  # sensor_msgs/Image (rgb8/bgr8)
    depth: str = "/camera/camera/aligned_depth_to_color/image_raw"  # sensor_msgs/Image 16UC1 mm or 32FC1 m
    camera_info: str = "/camera/camera/aligned_depth_to_color/camera_info"  # sensor_msgs/CameraInfo of the depth stream
    compressed_color: bool = False  # subscribe sensor_msgs/CompressedImage on <color>/compressed instead
    compressed_depth: bool = False  # subscribe <depth>/compressedDepth (compressed_depth_image_transport)
    wrench: str = "/force_torque_sensor_broadcaster/wrench"  # geometry_msgs/WrenchStamped
    joint_states: str = "/joint_states"  # sensor_msgs/JointState
    ee_pose: str = ""  # geometry_msgs/PoseStamped; empty: the state comes from joint_states through FK
    command: str = "/joint_trajectory_controller/joint_trajectory"  # where the output goes
    # where the gripper goes (embodiment.gripper_output): forward_command_controller's Float64MultiArray
    # topic, or a gripper-only joint_trajectory_controller's joint_trajectory topic
    gripper_command: str = "/gripper_controller/commands"
    # Robot state (std_msgs/Bool, empty: not watched). A stop → hold and disable; enabling is refused
    # while it lasts. UR: /io_and_status_controller/robot_program_running (false = stopped).
    program_running: str = ""
    estop: str = ""  # true = emergency or protective stop active (e.g. a safety PLC relay)
    # px4 output (px4_msgs; the message version suffix _vN of the installed px4_msgs is added to these):
    vehicle_status: str = "/fmu/out/vehicle_status"  # leaving offboard or disarming = pilot takeover → disable
    vehicle_odometry: str = "/fmu/out/vehicle_odometry"  # where the vehicle holds before enable and after disable
    arm_command: str = "/arm_controller/joint_trajectory"  # the aerial arm's JointTrajectory (empty: not sent)
    # Takeover (DAgger-style corrections): std_msgs/Bool, true while a person holds the teleop deadman
    # (teleop_node publishes it). The policy pauses and the node streams the teleop twist from where the
    # command is; on release the policy takes over again from there. Empty: no takeover.
    takeover: str = "/teleop/takeover"
    teleop_twist: str = "/teleop/twist"  # geometry_msgs/TwistStamped of the teleop device during takeover
    teleop_gripper: str = "/teleop/gripper"  # std_msgs/Float64 gripper during takeover (0 open, 1 closed)


@dataclass
class TimingConfig:
    control_rate_hz: float = 10.0  # one observation period = one action step (the training data's rate)
    camera_latency_s: float = 0.0  # exposure → message stamp; subtracted from camera stamps
    robot_latency_s: float = 0.0  # same for joint states, end-effector pose and wrench
    action_latency_s: float = 0.01  # command publish → the robot acting on it; earlier waypoints are dropped
    max_observation_age_s: float = 0.3  # a stream older than this → hold, no new trajectory
    sync_slop_s: float = 0.02  # colour and depth frames further apart than this are not paired
    blend_steps: int = 2  # waypoints over which a new chunk blends in from the running trajectory
    # The new chunk's weight where the running trajectory also planned: an exponential average over the
    # chunks that predicted each waypoint, as ACT's temporal ensembling (less jitter from far predictions,
    # a slower reaction); 1: the new chunk replaces the running one after the blend (docs/realtime.md)
    ensemble: float = 0.5
    command_rate_hz: float = 50.0  # streamed setpoints (pose / px4 outputs)
    # timer: cycles on the node clock at control_rate_hz; observation: a cycle starts as soon as a camera
    # frame (or, without a camera, a state sample) arrives at least one period after the last cycle —
    # the freshest frame, lowest latency; falls back to the timer when frames stop (so stale → hold).
    trigger: str = "timer"

    def __post_init__(self):
        _require(self.trigger in ("timer", "observation"), "timing.trigger", "timer or observation", self.trigger)
        _require(self.control_rate_hz > 0, "timing.control_rate_hz", "> 0", self.control_rate_hz)
        _require(self.command_rate_hz > 0, "timing.command_rate_hz", "> 0", self.command_rate_hz)
        for name in ("camera_latency_s", "robot_latency_s", "action_latency_s", "sync_slop_s"):
            _require(getattr(self, name) >= 0, f"timing.{name}", ">= 0", getattr(self, name))
        _require(self.max_observation_age_s > 0, "timing.max_observation_age_s", "> 0", self.max_observation_age_s)
        _require(self.blend_steps >= 0, "timing.blend_steps", ">= 0", self.blend_steps)
        _require(0 < self.ensemble <= 1, "timing.ensemble", "in (0, 1]", self.ensemble)


@dataclass
class SamplingConfig:
    """Inference settings that override the checkpoint's (0 / empty: keep the checkpoint's)."""

    solver: str = ""  # ddpm | ddim | dpmsolver++
    num_inference_steps: int = 0  # denoising steps (0: the checkpoint's)
    n_action_steps: int = 0  # waypoints sent per chunk (0: the checkpoint's)
    # Periods between inferences at most: sync mode replans every replan_steps periods (0 = n_action_steps,
    # Diffusion Policy's execute-then-replan); async mode also starts early when the chunk runs low.
    replan_steps: int = 0
    warm_start_index: int = 0  # > 0: start from the previous chunk, shifted, at this inference step
    trace: bool = True  # TorchScript-trace the denoiser (sets the checkpoint's inference.trace)
    backend: str = ""  # auto | torch | onnxruntime | openvino (empty: the checkpoint's, default auto)
    seed: int = -1  # >= 0: a fixed noise seed per cycle (reproducible runs)

    def __post_init__(self):
        _require(self.solver in ("",) + C.SOLVERS, "sampling.solver", f"empty or one of {C.SOLVERS}", self.solver)
        _require(self.backend in ("", "auto", "torch", "onnxruntime", "openvino"), "sampling.backend",
                 "empty, auto, torch, onnxruntime or openvino", self.backend)
        _require(min(self.num_inference_steps, self.n_action_steps, self.warm_start_index, self.replan_steps) >= 0,
                 "sampling.num_inference_steps/n_action_steps/warm_start_index/replan_steps", ">= 0",
                 (self.num_inference_steps, self.n_action_steps, self.warm_start_index, self.replan_steps))


@dataclass
class ExecutionConfig:
    """How inference meets the running trajectory (runtime/controller.py, diffusion/chunking.py)."""

    # async: the next inference starts when the running chunk's remaining time falls to the predicted
    # latency + margin_s (or after sampling.replan_steps periods, if > 0), so the robot never waits on
    # the model | sync: every replan_steps periods (0: n_action_steps), whatever the latency
    mode: str = "async"
    # How a new chunk agrees with the actions that execute while it is computed: rtc (real-time
    # chunking's soft-masked guidance) | inpaint (the frozen prefix replaced at each denoising step) |
    # prefix (the frozen prefix given clean at every step, for checkpoints trained with
    # policy.max_prefix_steps > 0) | none (only the scheduler's blend over timing.blend_steps)
    consistency: str = "rtc"
    latency_percentile: float = 95.0  # the predicted latency: this percentile of recent inferences ...
    latency_window: int = 20  # ... over this many
    initial_latency_s: float = 0.2  # predicted latency before any inference was measured
    margin_s: float = 0.1  # start this much earlier than the predicted latency requires (one 10 Hz period)
    # async: extend each chunk by the steps the predicted latency covers, so it still executes
    # n_action_steps once it lands | false: n_action_steps, of which the latency eats the first ones
    extend_by_latency: bool = True
    rtc_max_weight: float = 1.0  # RTC's guidance-weight cap (β), at most 1 in this identity-Jacobian form

    def __post_init__(self):
        _require(self.mode in ("async", "sync"), "execution.mode", "async | sync", self.mode)
        _require(self.consistency in ("rtc", "inpaint", "prefix", "none"), "execution.consistency",
                 "rtc | inpaint | prefix | none", self.consistency)
        _require(0 < self.latency_percentile <= 100, "execution.latency_percentile", "in (0, 100]",
                 self.latency_percentile)
        _require(self.latency_window >= 1, "execution.latency_window", ">= 1", self.latency_window)
        _require(self.initial_latency_s >= 0 and self.margin_s >= 0, "execution.initial_latency_s/margin_s",
                 ">= 0", (self.initial_latency_s, self.margin_s))
        _require(0 < self.rtc_max_weight <= 1, "execution.rtc_max_weight", "in (0, 1]", self.rtc_max_weight)


@dataclass
class EmbodimentConfig:
    kind: str = "arm"  # arm | aerial | oracle (tracks any end-effector target)
    urdf: str = ""  # empty: the shipped urdf/ur5e_like.urdf
    ee_link: str = "tool0"  # URDF link the end-effector actions refer to (the flange)
    joint_names: tuple[str, ...] = ()  # empty: the URDF chain's movable joints, base to ee_link
    gripper_joint: str = ""  # joint_states name of the gripper; empty: no gripper
    gripper_open: float = 0.0  # gripper joint position at action 0 (open) ...
    gripper_closed: float = 0.04  # ... and at action 1 (closed)
    gripper_max_velocity: float = 0.1  # gripper joint units per second
    # forward: std_msgs/Float64MultiArray [position] streamed at timing.command_rate_hz (a
    # forward_command_controller); trajectory: a JointTrajectory of the gripper joint alone (its own
    # joint_trajectory_controller); none: not sent. Never part of the arm's JointTrajectory.
    gripper_output: str = "forward"
    ik_damping: float = 0.05  # damped-least-squares IK for end-effector actions → joint trajectories

    def __post_init__(self):
        _require(self.kind in EMBODIMENTS, "embodiment.kind", f"one of {EMBODIMENTS}", self.kind)
        _require(self.gripper_open != self.gripper_closed, "embodiment.gripper_open/gripper_closed", "different",
                 (self.gripper_open, self.gripper_closed))
        _require(self.gripper_output in ("forward", "trajectory", "none"), "embodiment.gripper_output",
                 "forward | trajectory | none", self.gripper_output)
        _require(self.gripper_max_velocity > 0 and self.ik_damping > 0,
                 "embodiment.gripper_max_velocity/ik_damping", "> 0", (self.gripper_max_velocity, self.ik_damping))


@dataclass
class SafetyConfig:
    workspace_min: tuple[float, float, float] = (-1.0, -1.0, 0.0)  # end-effector box, base frame, metres
    workspace_max: tuple[float, float, float] = (1.0, 1.0, 1.2)  # upper corner of the end-effector box
    velocity_scale: float = 1.0  # fraction of the URDF joint velocity limits allowed
    # the tool tip in the ee_link (flange) frame, metres: the workspace box applies to the tip
    tcp_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    # End-effector outputs (pose, multidof, px4): limits on the commanded motion, from the measured pose
    max_linear_velocity: float = 1.0  # m/s
    max_angular_velocity: float = 2.0  # rad/s
    max_linear_acceleration: float = 5.0  # m/s²
    max_angular_acceleration: float = 10.0  # rad/s²
    # Contact guard (N; 0: off), checked on every wrench sample, between inferences: when the force's
    # magnitude exceeds it, the running trajectory stops where its command is, and until the force falls
    # below contact_release × max_contact_force no waypoint may go deeper than that stop point along
    # the approach (the commanded motion over the last period). The wrench as the policy reads it
    # (filtered, tared), else as published.
    max_contact_force: float = 0.0
    contact_release: float = 0.5  # fraction of max_contact_force below which the guard lets go
    command_limit: float = 1.0  # command output: every value clamped to ±command_limit

    def __post_init__(self):
        for name in ("max_linear_velocity", "max_angular_velocity", "max_linear_acceleration",
                     "max_angular_acceleration"):
            _require(getattr(self, name) > 0, f"safety.{name}", "> 0", getattr(self, name))
        _require(self.max_contact_force >= 0, "safety.max_contact_force", ">= 0 (0: off)", self.max_contact_force)
        _require(0 <= self.contact_release < 1, "safety.contact_release", "in [0, 1)", self.contact_release)
        _require(self.command_limit > 0, "safety.command_limit", "> 0", self.command_limit)
        _require(len(self.workspace_min) == 3 and len(self.workspace_max) == 3
                 and all(a < b for a, b in zip(self.workspace_min, self.workspace_max)),
                 "safety.workspace_min/workspace_max", "three values each with min < max",
                 (self.workspace_min, self.workspace_max))
        _require(0 < self.velocity_scale <= 1, "safety.velocity_scale", "in (0, 1]", self.velocity_scale)


@dataclass
class GuidanceDeployConfig:
    """Guided denoising at deployment (diffusion/guidance.py); strength 0 turns it off."""

    strength: float = 0.0  # guidance step size; 0 turns guidance off
    schedule: str = "alpha_bar"  # alpha_bar (strongest near the end of denoising) | constant
    embodiment_weight: float = 1.0  # the embodiment's tracking cost
    # plan: the flight against the plan (plan and flight agree; the plan may bend toward the robot's
    # error) | intent: the flight against the denoiser's own x̂₀ (the command leads corners, brakes early)
    embodiment_target: str = "plan"
    workspace_weight: float = 0.0  # squared violation of the safety workspace box
    joint_limit_weight: float = 0.0  # arm: barrier on joints within joint_limit_margin of their limits
    joint_limit_margin: float = 0.1  # rad
    clearance_weight: float = 0.0  # squared intrusion into clearance_margin around the current point cloud
    clearance_margin: float = 0.03  # m
    # plan: the planned waypoints keep clearance | flight: the embodiment's predicted flight does (its
    # body points, embodiment/base.py), with the cloud's points within clearance_self_radius of the
    # end effector dropped (the gripper sees itself)
    clearance_on: str = "plan"
    clearance_self_radius: float = 0.1  # m
    clearance_goal_radius: float = 0.0  # m; > 0: points this close to the chunk's last waypoint are its goal
    candidates: int = 1  # N > 1: sample N chunks, send the one with the lowest guidance cost (best of N)
    clip_position: float = 0.1  # per-waypoint clip of a guidance step, metres
    clip_rotation: float = 0.1  # per-waypoint clip of a guidance step, 6-D rotation units
    substeps: int = 1  # K guided sub-steps with re-noising per noise level
    iterations: int = 1  # small clipped gradient steps per denoising step (10: see bench/guidance.py)
    last_steps: int = 0  # guide only the last N denoising steps (0: all; fewer rollouts per chunk)

    def __post_init__(self):
        _require(self.iterations >= 1, "guidance.iterations", ">= 1", self.iterations)
        _require(min(self.joint_limit_weight, self.clearance_weight, self.joint_limit_margin,
                     self.clearance_margin) >= 0, "guidance.joint_limit_*/clearance_*", ">= 0",
                 (self.joint_limit_weight, self.joint_limit_margin, self.clearance_weight, self.clearance_margin))
        _require(self.strength >= 0 and self.embodiment_weight >= 0 and self.workspace_weight >= 0,
                 "guidance.strength/embodiment_weight/workspace_weight", ">= 0",
                 (self.strength, self.embodiment_weight, self.workspace_weight))
        _require(self.substeps >= 1, "guidance.substeps", ">= 1", self.substeps)
        _require(self.last_steps >= 0, "guidance.last_steps", ">= 0", self.last_steps)
        _require(self.candidates >= 1, "guidance.candidates", ">= 1", self.candidates)
        _require(self.clearance_on in ("plan", "flight"), "guidance.clearance_on", "plan | flight", self.clearance_on)
        _require(self.embodiment_target in ("plan", "intent"), "guidance.embodiment_target", "plan | intent",
                 self.embodiment_target)


@dataclass
class DeployConfig:
    checkpoint: str = ""  # checkpoint folder written by `dpros train`
    device: str = "cpu"  # cpu | cuda | cuda:N
    torch_threads: int = 0  # CPU inference threads; 0: torch's default (1 measured faster beside busy drivers)
    # joint_trajectory | pose | multidof | px4 | command (the policy's action vector as it is, one per
    # control period, no kinematics: a forward_command_controller's Float64MultiArray, Meta-World's 4-D
    # move; needs policy.action.representation joint and, for a state observation, embodiment.joint_names)
    output: str = "joint_trajectory"
    frame_id: str = "base_link"  # frame of end-effector outputs and of the point cloud
    start_enabled: bool = False  # otherwise call ~/enable (std_srvs/SetBool) first
    # ~/enable is refused while nothing subscribes to topics.command (the controller is not active)
    require_subscriber: bool = True
    rerun: str = ""  # live view in Rerun (runtime/live_view.py): spawn | a FILE.rrd to record | empty: off
    topics: TopicsConfig = field(default_factory=TopicsConfig)
    timing: TimingConfig = field(default_factory=TimingConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    embodiment: EmbodimentConfig = field(default_factory=EmbodimentConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    guidance: GuidanceDeployConfig = field(default_factory=GuidanceDeployConfig)
    point_cloud: PointCloudConfig = field(default_factory=PointCloudConfig)  # num_points comes from the policy
    force: ForceConfig = field(default_factory=ForceConfig)

    def __post_init__(self):
        _require(self.output in OUTPUTS, "output", f"one of {OUTPUTS}", self.output)
        _require(self.torch_threads >= 0, "torch_threads", ">= 0", self.torch_threads)
        _require(not (self.output == "joint_trajectory" and self.embodiment.kind != "arm"), "output",
                 "joint_trajectory only with embodiment.kind arm", (self.output, self.embodiment.kind))
        _require(not (self.output == "command" and self.safety.max_contact_force > 0), "safety.max_contact_force",
                 "0 with output command (the guard stops the end effector: a command vector has none)",
                 self.safety.max_contact_force)

    def execution_label(self) -> str:
        """How chunks are executed, for reports: mode+consistency, plus the ensembling weight below 1."""
        e, w = self.execution, self.timing.ensemble
        return f"{e.mode}+{e.consistency}" + (f"+ensemble{w:g}" if w < 1 else "")


_DEPLOY_DACITE = dacite.Config(strict=True, cast=[tuple], type_hooks={float: float})


def deploy_config_from_dict(data: dict, source: str = "<dict>") -> DeployConfig:
    try:
        return dacite.from_dict(DeployConfig, data, config=_DEPLOY_DACITE)
    except (ConfigError, dacite.DaciteError, TypeError, ValueError) as e:
        raise ConfigError(f"{source}: {e}") from None


@functools.lru_cache(maxsize=None)
def _field_comments(path: str) -> dict[tuple[str, str], str]:
    """{(class name, field name): its comment} read from a module's source: the comment lines right
    above a dataclass field plus the one after it. The comments in this file are the documentation
    of every parameter (``ros2 param describe``), so there is one place to keep them."""
    src = Path(path).read_text()
    comments = {t.start[0]: t.string.lstrip("#").strip()
                for t in tokenize.generate_tokens(io.StringIO(src).readline) if t.type == tokenize.COMMENT}
    lines = src.splitlines()
    out = {}
    for node in ast.parse(src).body:
        if not isinstance(node, ast.ClassDef):
            continue
        for st in node.body:
            if isinstance(st, ast.AnnAssign) and isinstance(st.target, ast.Name):
                above, line = [], st.lineno - 1
                while line in comments and lines[line - 1].lstrip().startswith("#"):
                    above.insert(0, comments[line])
                    line -= 1
                after = [comments[n] for n in range(st.lineno, st.end_lineno + 1) if n in comments]
                out[(node.name, st.target.id)] = " ".join(above + after)
    return out


def _leaf_fields(obj, prefix: str = ""):
    """(dotted.name, owning dataclass, field name, value) for every leaf field of a nested dataclass."""
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v):
            yield from _leaf_fields(v, f"{prefix}{f.name}.")
        else:
            yield prefix + f.name, obj, f.name, v


def field_docs(obj) -> dict[str, str]:
    """{dotted.name: description} for every leaf field of a (nested) dataclass instance."""
    return {name: _field_comments(sys.modules[type(owner).__module__].__file__).get((type(owner).__name__, f), "")
            for name, owner, f, _ in _leaf_fields(obj)}


def flatten_params(obj) -> dict[str, Any]:
    """A (nested) dataclass → {dotted.name: value}: the ROS parameter names and defaults."""
    return {name: list(v) if isinstance(v, tuple) else v for name, _, _, v in _leaf_fields(obj)}


def unflatten_params(flat: dict[str, Any]) -> dict:
    out: dict = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def with_overrides(cfg: DeployConfig, overrides: dict | None, source: str = "--set") -> DeployConfig:
    """``cfg`` with dotted-name overrides (``--set execution.mode=async``); an unknown name fails here."""
    if not overrides:
        return cfg
    flat = flatten_params(cfg)
    unknown = sorted(set(overrides) - set(flat))
    if unknown:
        raise ConfigError(f"{source}: unknown parameters {unknown}, expected names like {sorted(flat)[:4]}")
    flat.update(overrides)
    return deploy_config_from_dict(unflatten_params(flat), source)


def load_deploy_config(path: str | Path, node_name: str = "policy_node", overrides: dict | None = None
                       ) -> DeployConfig:
    """Read a ROS parameter file (``/**/<node_name>:``, ``<node_name>:`` or ``/**:`` then ``ros__parameters:``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"deployment config: expected a ROS parameter file, got '{path}' (not found)")
    data = yaml.safe_load(path.read_text()) or {}
    for key in (f"/**/{node_name}", node_name, f"/{node_name}", "/**"):
        if isinstance(data.get(key), dict) and "ros__parameters" in data[key]:
            params = data[key]["ros__parameters"]
            break
    else:
        raise ConfigError(f"{path}: expected a '{node_name}: ros__parameters:' section, got keys {sorted(data)}")
    if overrides:
        params = deep_merge(params, unflatten_params(overrides))
    return deploy_config_from_dict(params, source=str(path))
