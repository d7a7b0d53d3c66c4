"""Names shared across the package: observation types, batch keys, file names."""

# Observation types a config may declare (PolicyConfig.observations[key].type).
OBS_POINT_CLOUD = "point_cloud"
OBS_RGB = "rgb"
OBS_LOW_DIM = "low_dim"
OBS_WRENCH = "wrench"
OBS_TYPES = (OBS_POINT_CLOUD, OBS_RGB, OBS_LOW_DIM, OBS_WRENCH)

# Batch / dataset keys.
ACTION = "action"
OBS = "obs"

# Action representations.
ACTION_ABS_EE = "abs_ee"  # position(3) + rotation 6D(6) + gripper(1), world/base frame
ACTION_REL_EE = "rel_ee"  # the same, expressed in the current end-effector frame
ACTION_JOINT = "joint"  # joint positions (+ gripper), absolute
ACTION_REPRESENTATIONS = (ACTION_ABS_EE, ACTION_REL_EE, ACTION_JOINT)
EE_POSE_DIM = 9  # position(3) + rotation 6D(6)

# Samplers usable at inference.
SOLVER_DDPM = "ddpm"
SOLVER_DDIM = "ddim"
SOLVER_DPMSOLVER = "dpmsolver++"
SOLVERS = (SOLVER_DDPM, SOLVER_DDIM, SOLVER_DPMSOLVER)

# Checkpoint layout: a folder holding these files.
CKPT_CONFIG = "config.yaml"
CKPT_WEIGHTS = "model.safetensors"
CKPT_TRAIN_STATE = "train_state.pt"
CKPT_FORMAT_VERSION = 1

# Zarr replay buffer layout (real-stanford/diffusion_policy and DP3).
ZARR_DATA = "data"
ZARR_META = "meta"
ZARR_EPISODE_ENDS = "episode_ends"

NS = 1_000_000_000  # nanoseconds per second: time is integer ns everywhere
