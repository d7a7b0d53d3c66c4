"""Meta-World v3 tasks under 3D Diffusion Policy's protocol (Ze et al. 2024, arXiv 2403.03954), for
any Meta-World task name: ``metaworld/<name>`` (``button-press``, ``drawer-open`` …, as Meta-World
names them without the version suffix).

Meta-World 3.1.1 pins mujoco 3.3.0 while the project pins 3.14.0, so this runs in its own environment
(``make setup-metaworld`` → ``.venv-metaworld``). Nothing here is per task: the environment, its
scripted expert (``metaworld.policies``) and its success flag all come from Meta-World by name.

The protocol, as DP3's MetaWorldEnv sets it:
- camera: Meta-World's ``corner2``, moved to (0.6, 0.295, 0.8) with its orientation from the XML,
  128×128, near/far planes 0.1 / 1.5 of the model extent;
- point cloud: every depth pixel, no colour, 512 points by farthest-point sampling, returned in the
  world frame (the camera's pose read from MuJoCo). ``crop="dp3"`` (the default) crops as DP3 does:
  DP3 rotates corner2's camera-frame points by camera 0's (``topview``) orientation and a hand-tuned
  rotation (61.4° about x, −7° about y) and keeps its box ``DP3_BOUNDS`` there, a box oblique to the
  table that drops most of the table top. ``PointCloudPipeline`` crops and samples in that frame
  (``point_cloud.crop_frame``; FPS only sees distances, so that is sampling in the world frame up to
  ties) and returns world-frame points; ``crop="world"`` is the earlier axis-aligned world box ``CROP_MIN``/``CROP_MAX``
  (table top included). The crop is stored with the demonstrations and read back at evaluation;
- ``agent_pos``: end-effector position and the two finger pads (9 values); actions: the
  environment's 4-D command (xyz move, gripper effort in [-1, 1]);
- episodes of 200 steps, success when ``info["success"]`` is true at any step; each seed is its own
  initial condition (Meta-World's random object and goal positions drawn from that seed);
- demonstrations as DP3's generator records them: Meta-World never ends an episode, so each one runs the
  whole 200 steps (the expert goes on after success), kept when ``info["success"]`` held on 5 or more steps
  (``episode_end="full"``). The default, ``"success"``, stops at the first success: at this project's CPU
  budget it trains better (docs/metaworld.md). ``pool`` takes the demonstration seeds farthest-first over
  the task's random initial conditions (``coverage_order``) instead of consecutively: not DP3's protocol,
  whose demonstrations are random draws, but what closes drawer-open's gap at this budget.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from ..config import PointCloudConfig
from ..errors import ConfigError
from ..perception.pointcloud import CameraModel, PointCloudPipeline, extrinsic_matrix

PREFIX = "metaworld/"
CAMERA = "corner2"
CAMERA_POS = (0.6, 0.295, 0.8)  # where DP3 puts corner2
IMAGE_SIZE = 128
ZNEAR, ZFAR = 0.1, 1.5  # of the model's extent, as DP3 sets them
EPISODE_STEPS = 200
# Meta-World's own observation: the hand (entries 0-2), the first object (4-6), the goal (36-38).
RAW_HAND, RAW_OBJECT, RAW_GOAL = slice(0, 3), slice(4, 7), slice(36, 39)
MIN_SUCCESS_STEPS = 5  # DP3's generator keeps a demonstration with success on at least this many steps
EPISODE_ENDS = ("full", "success")
NUM_POINTS = 512
RGB_SIZE = 84  # colour from the same camera for the Diffusion Policy column (dp_image), DP3's image size
CROP_MIN = (-0.7, 0.2, -0.02)  # crop="world" (m): table top and above, in front of the robot's base
CROP_MAX = (0.7, 1.2, 0.8)
# crop="dp3": DP3's MetaWorldEnv box (x, y, z min; x, y, z max) in its frame, and that frame's rotations.
DP3_BOUNDS = ((-0.5, -1.5, -0.795), (1.0, -0.4, 100.0))
DP3_X_DEG, DP3_Y_DEG = 61.4, -7.0
CROPS = ("dp3", "world")


def _metaworld():
    try:
        import metaworld  # noqa: F401
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE
        from metaworld.policies import ENV_POLICY_MAP
    except ImportError as e:
        raise ConfigError(f"Meta-World tasks run in their own environment: make setup-metaworld, then "
                          f".venv-metaworld/bin/dpros … ({e})") from None
    return ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE, ENV_POLICY_MAP


def task_names() -> list[str]:
    """Every Meta-World v3 task that has a scripted expert, without the version suffix."""
    envs, policies = _metaworld()
    names = {k[: -len("-v3-goal-observable")] for k in envs}
    return sorted(n for n in names if f"{n}-v3" in policies)


def is_metaworld(task: str) -> bool:
    return task.startswith(PREFIX)


@dataclass
class MetaWorldStep:
    point_cloud: np.ndarray  # (num_points, 3) world frame
    agent_pos: np.ndarray  # (9,) end effector, right pad, left pad
    raw: np.ndarray  # Meta-World's own observation (the expert reads it)
    success: bool
    rgb: np.ndarray | None = None  # (rgb_size, rgb_size, 3) uint8 from the same camera, when asked for
    depth: np.ndarray | None = None  # (H, W) metres, instead of point_cloud when the task was told clouds=False

    def observation(self, dataset_key: str) -> np.ndarray:
        """This step's value for a policy observation, by its zarr key (``collect``'s layout)."""
        value = {"point_cloud": self.point_cloud, "state": self.agent_pos, "img": self.rgb}.get(dataset_key)
        if value is None:
            raise ConfigError(f"observation '{dataset_key}': expected one of point_cloud, state, img"
                              f"{'' if dataset_key != 'img' else ' (img needs rgb_size > 0)'}")
        return value


class MetaWorldTask:
    """One Meta-World task: ``reset(seed)``, ``step(action)``, ``expert(step)``, DP3's observations."""

    def __init__(self, task: str, num_points: int = NUM_POINTS, image_size: int = IMAGE_SIZE, crop: str = "dp3",
                 rgb_size: int = 0, clouds: bool = True):
        """``clouds=False``: steps carry the depth image instead of the point cloud (a driver that makes
        the cloud itself, as ``PolicyRuntime`` does)."""
        import mujoco

        if crop not in CROPS:
            raise ConfigError(f"crop: expected one of {list(CROPS)}, got {crop!r}")

        name = task[len(PREFIX):] if is_metaworld(task) else task
        envs, policies = _metaworld()
        key = f"{name}-v3-goal-observable"
        if key not in envs or f"{name}-v3" not in policies:
            raise ConfigError(f"task: expected metaworld/<name> with one of {task_names()}, got {task!r}")
        self.name, self._env_cls, self._policy_cls = name, envs[key], policies[f"{name}-v3"]
        self.num_points, self.size, self.crop, self.rgb_size = num_points, image_size, crop, int(rgb_size)
        self.clouds = clouds
        self.env = self._renderer = self._rgb_renderer = self._pipe = None
        self._mujoco = mujoco

    # --- episodes --------------------------------------------------------------------------------
    def reset(self, seed: int) -> MetaWorldStep:
        """A fresh environment whose random object and goal positions come from ``seed``."""
        self.close()
        mj = self._mujoco
        self.env = env = self._env_cls(seed=int(seed))
        env.max_path_length = max(env.max_path_length, EPISODE_STEPS)
        cam = mj.mj_name2id(env.model, mj.mjtObj.mjOBJ_CAMERA, CAMERA)
        env.model.cam_pos[cam] = CAMERA_POS
        env.model.vis.map.znear, env.model.vis.map.zfar = ZNEAR, ZFAR
        self._cam = cam
        self._renderer = mj.Renderer(env.model, self.size, self.size)
        if self.rgb_size > 0:
            self._rgb_renderer = mj.Renderer(env.model, self.rgb_size, self.rgb_size)
        self.expert_policy = self._policy_cls()
        raw, _ = env.reset()
        self.steps = 0
        return self._observe(raw, False)

    def initial_condition(self) -> np.ndarray:
        """This episode's draw from Meta-World's random reset space: object and goal positions in metres, the
        dimensions the task does not vary left out (metres, not scaled to the range: many tasks vary a
        height by a millimetre or two, which scaling would weigh as much as a 20 cm slide)."""
        return _draw(self.env)

    def initial_condition_of(self, seed: int) -> np.ndarray:
        """``initial_condition`` of ``seed``'s episode, without rendering (the environment alone)."""
        env = self._env_cls(seed=int(seed))
        try:
            env.reset()
            return _draw(env)
        finally:
            env.close()

    def step(self, action: np.ndarray) -> MetaWorldStep:
        a = np.asarray(action, np.float32).reshape(-1)
        if a.shape != (4,) or not np.isfinite(a).all():
            raise ConfigError(f"metaworld action: expected 4 finite values (xyz move, gripper), got {a.tolist()}")
        raw, _, _, _, info = self.env.step(np.clip(a, -1.0, 1.0))
        self.steps += 1
        return self._observe(raw, bool(info.get("success", 0.0)))

    def expert(self, step: MetaWorldStep) -> np.ndarray:
        """Meta-World's scripted policy for this task, on its own observation."""
        return np.asarray(self.expert_policy.get_action(step.raw), np.float32)

    def close(self) -> None:
        for r in (self._renderer, self._rgb_renderer):
            if r is not None:
                r.close()
        self._renderer = self._rgb_renderer = None
        if self.env is not None:
            self.env.close()
            self.env = None

    # --- observations --------------------------------------------------------------------------
    def camera(self) -> tuple[CameraModel, list[float]]:
        """The pinhole model (MuJoCo's fovy, centre at (W-1)/2) and the optical frame → world pose."""
        m, d = self.env.model, self.env.data
        f = 0.5 * self.size / np.tan(np.radians(m.cam_fovy[self._cam]) / 2)
        c = (self.size - 1) / 2
        # MuJoCo cameras look along -z with y up; the optical frame is x right, y down, z forward.
        r = d.cam_xmat[self._cam].reshape(3, 3) @ np.diag([1.0, -1.0, -1.0])
        q = Rotation.from_matrix(r).as_quat()
        return CameraModel(self.size, self.size, f, f, c, c), [*map(float, d.cam_xpos[self._cam]), *map(float, q)]

    def depth(self) -> np.ndarray:
        """(H, W) metres along the optical axis from ``corner2`` (0 where nothing is in range)."""
        r = self._renderer
        r.enable_depth_rendering()
        r.update_scene(self.env.data, camera=self._cam)
        z = r.render().astype(np.float32)
        far = ZFAR * self.env.model.stat.extent
        return np.where(z < far * 0.999, z, 0.0).astype(np.float32)

    def rgb(self) -> np.ndarray:
        """(rgb_size, rgb_size, 3) uint8 colour from ``corner2``."""
        r = self._rgb_renderer
        r.update_scene(self.env.data, camera=self._cam)
        return r.render().copy()

    def _dp3_frame(self) -> np.ndarray:
        """4×4 optical frame → DP3's crop frame: camera 0's orientation with the optical → MuJoCo camera
        flip and its body's position (DP3 indexes camera 0, not corner2), then DP3's two rotations."""
        m = self.env.model
        a, b = np.radians(DP3_X_DEG), np.radians(DP3_Y_DEG)
        rx = np.array([[1, 0, 0], [0, np.cos(a), np.sin(a)], [0, -np.sin(a), np.cos(a)]])
        ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
        t = rx @ ry
        frame = np.eye(4)
        frame[:3, :3] = t @ m.cam_mat0[0].reshape(3, 3) @ np.diag([1.0, -1.0, -1.0])
        frame[:3, 3] = t @ m.body_pos[m.cam_bodyid[0]]
        return frame

    def point_cloud_config(self) -> PointCloudConfig:
        """DP3's cloud as a ``PointCloudConfig``: the camera's pose as the extrinsic (world = base frame),
        every pixel, FPS, and the crop: DP3's box in its frame (``crop_frame``) or the world box. The
        adapter and ``PolicyRuntime`` both build their clouds from it (after ``reset``)."""
        _, extrinsic = self.camera()
        to_world = extrinsic_matrix(extrinsic)  # optical frame → world
        if self.crop == "dp3":  # DP3's frame in the world: optical → world after DP3's frame → optical
            (lo, hi), crop_frame = DP3_BOUNDS, to_world @ np.linalg.inv(self._dp3_frame())
        else:
            (lo, hi), crop_frame = (CROP_MIN, CROP_MAX), np.eye(4)
        return PointCloudConfig(num_points=self.num_points, sampling="fps", pixel_stride=1, voxel_size=0.0,
                                min_depth=0.01, max_depth=ZFAR * self.env.model.stat.extent, crop_min=lo, crop_max=hi,
                                extrinsic=tuple(to_world.reshape(-1)), crop_frame=tuple(crop_frame.reshape(-1)))

    def agent_pos(self) -> np.ndarray:
        """(9,) DP3's agent_pos: end effector, right pad, left pad."""
        env = self.env
        return np.concatenate([env.get_endeff_pos(), env._get_site_pos("rightEndEffector"),
                               env._get_site_pos("leftEndEffector")]).astype(np.float32)

    def _observe(self, raw: np.ndarray, success: bool) -> MetaWorldStep:
        rgb = self.rgb() if self._rgb_renderer is not None else None
        if not self.clouds:
            return MetaWorldStep(None, self.agent_pos(), np.asarray(raw), success, rgb, self.depth())
        if self._pipe is None:
            self._pipe = PointCloudPipeline(self.point_cloud_config(), self.camera()[0])
        cloud = self._pipe(self.depth(), seed=0)
        return MetaWorldStep(cloud.astype(np.float32), self.agent_pos(), np.asarray(raw), success, rgb)


def _draw(env) -> np.ndarray:
    space = env._random_reset_space
    return np.asarray(env._last_rand_vec, float)[space.high > space.low]


def coverage_order(env: MetaWorldTask, seeds) -> list[int]:
    """``seeds`` reordered to spread over the task's initial conditions: the first seed, then each time the
    seed whose initial condition (``initial_condition``) lies farthest from those already taken."""
    seeds = [int(s) for s in seeds]
    points = np.stack([env.initial_condition_of(s) for s in seeds])
    order, nearest = [0], np.linalg.norm(points - points[0], axis=1)
    while len(order) < len(seeds):
        nearest[order] = -1.0
        i = int(np.argmax(nearest))
        order.append(i)
        nearest = np.minimum(nearest, np.linalg.norm(points - points[i], axis=1))
    return [seeds[i] for i in order]


def distance_to_demonstrations(env: MetaWorldTask, demo_seeds, seeds) -> np.ndarray:
    """For each of ``seeds``, how far its initial condition lies from the nearest demonstration's (metres,
    over the dimensions the task varies): how far outside what was demonstrated an evaluation episode starts."""
    demos = np.stack([env.initial_condition_of(s) for s in demo_seeds])
    return np.array([np.linalg.norm(demos - env.initial_condition_of(s), axis=1).min() for s in seeds])


def collect(task: str, episodes: int, out: str | Path, *, seed: int = 1000, num_points: int = NUM_POINTS,
            crop: str = "dp3", rgb_size: int = RGB_SIZE, overwrite: bool = False, progress: bool = True,
            max_attempts: int | None = None, episode_end: str = "success", pool: int = 0) -> dict:
    """DP3's demonstrations: the scripted expert, seed after seed until ``episodes`` are kept → a
    zarr store in DP3's layout (``point_cloud``, ``state`` = agent_pos, ``action`` 4-D, ``img`` colour when
    ``rgb_size`` > 0) with the seeds used, the crop and ``episode_end``. ``episode_end="full"`` (DP3's
    generator): every episode runs ``EPISODE_STEPS`` steps and is kept when it succeeded on at least
    ``MIN_SUCCESS_STEPS`` of them; ``"success"``: it ends at the first success, kept if there is one.
    ``pool`` > 0: the seeds are ``seed`` … ``seed + pool - 1`` taken in ``coverage_order`` (demonstrations spread
    over the task's initial conditions) instead of consecutively; all of them count as demonstration seeds."""
    from tqdm import tqdm

    from ..data.replay_buffer import ReplayBuffer

    if episode_end not in EPISODE_ENDS:
        raise ConfigError(f"episode_end: expected one of {list(EPISODE_ENDS)}, got {episode_end!r}")
    if pool < 0 or (pool and pool < episodes):
        raise ConfigError(f"pool: expected 0 (consecutive seeds) or at least episodes ({episodes}), got {pool}")
    env = MetaWorldTask(task, num_points=num_points, crop=crop, rgb_size=rgb_size)
    buf = ReplayBuffer.create(out, overwrite=overwrite)
    kept, failed, steps = [], [], 0
    candidates = coverage_order(env, range(seed, seed + pool)) if pool else \
        range(seed, seed + (max_attempts or 5 * episodes))
    bar = tqdm(total=episodes, desc=f"collect {env.name}", unit="episode", disable=not progress)
    last = seed
    try:
        for s in candidates:
            if len(kept) >= episodes:
                break
            last = max(last, s)
            obs = env.reset(s)
            clouds, states, actions, images, successes = [], [], [], [], 0
            for _ in range(EPISODE_STEPS):
                a = env.expert(obs)
                clouds.append(obs.point_cloud)
                if obs.rgb is not None:
                    images.append(obs.rgb)
                states.append(obs.agent_pos)
                actions.append(a)
                obs = env.step(a)
                successes += obs.success
                if obs.success and episode_end == "success":
                    break
            if successes >= (MIN_SUCCESS_STEPS if episode_end == "full" else 1):
                buf.add_episode({"point_cloud": np.stack(clouds), "state": np.stack(states),
                                 "action": np.stack(actions).astype(np.float32),
                                 **({"img": np.stack(images)} if images else {})})
                kept.append(s)
                steps += len(actions)
                bar.update(1)
            else:
                failed.append(s)
    finally:
        bar.close()
        env.close()
    last_seed = seed + pool - 1 if pool else last
    buf.set_provenance(task=f"{PREFIX}{env.name}", demo_seeds=[seed, last_seed], kept_seeds=kept, crop=crop,
                       episode_end=episode_end, demo_selection=f"coverage of {pool} seeds" if pool else "consecutive",
                       protocol="DP3 (arXiv 2403.03954): corner2 camera, 512-point FPS cloud, agent_pos 9, action 4")
    return {"dataset": str(out), "task": f"{PREFIX}{env.name}", "episodes": len(kept), "steps": steps,
            "kept_seeds": kept, "failed_seeds": failed, "seeds": [seed, last_seed], "crop": crop,
            "episode_end": episode_end, "pool": pool}


def checkpoint_crop(checkpoint: str | Path) -> str:
    """The crop a checkpoint's demonstrations were made with (stores from before the option: "world")."""
    from ..checkpoint import read_checkpoint_meta

    crop = (read_checkpoint_meta(checkpoint).get("provenance") or {}).get("crop", "world")
    if crop not in CROPS:
        raise ConfigError(f"checkpoint '{checkpoint}': provenance crop expected one of {list(CROPS)}, got {crop!r}")
    return crop


def config_overrides(num_points: int = NUM_POINTS) -> list[str]:
    """``dpros train dp3 --set …`` values that fit the DP3 config to these observations and actions, with
    DP3's Meta-World recipe: horizon 4, 2 observations, 3 actions executed a chunk, every demonstration
    trained on (DP3's val_ratio 0.02 of 10 episodes rounds to none held out), and DP3's state MLP (no LayerNorm)."""
    return [f"policy.observations.point_cloud.shape=[{num_points},3]", "policy.observations.agent_pos.shape=[9]",
            "policy.action.representation=joint", "policy.action.dim=4", "policy.horizon=4",
            "policy.n_obs_steps=2", "policy.n_action_steps=3", "policy.encoders.state.layer_norm=false",
            "train.val_ratio=0.0"]


def image_config_overrides(rgb_size: int = RGB_SIZE) -> list[str]:
    """``dpros train dp_image --set …`` for the Diffusion Policy column: ``collect``'s colour images, the
    same state, actions and temporal recipe as the DP3 column (horizon 4, 3 actions a chunk)."""
    crop = int(round(rgb_size * 0.9 / 2)) * 2  # DP's random crop (76 of 84)
    return [f"policy.observations.image.shape=[{rgb_size},{rgb_size},3]",
            f"policy.encoders.image.crop_shape=[{crop},{crop}]", *config_overrides()[1:]]


# The state vector's entries (DP3's agent_pos) as the runtime reads them: "joint_states" of these names.
AGENT_POS_NAMES = tuple(f"{part}_{axis}" for part in ("hand", "right_pad", "left_pad") for axis in "xyz")


def deploy_config(env: MetaWorldTask, overrides: dict | None = None, sampling_seed: int = 0):
    """``PolicyRuntime``'s configuration for a Meta-World task (after ``env.reset``): the 4-D action out
    as it is (``output: command``), one per environment step (``env.dt``, 80 Hz), ``agent_pos`` as the
    state, DP3's cloud (``point_cloud_config``), and DP3's lockstep protocol: a new chunk every
    n_action_steps (``execution.mode: sync``), each chunk on its own (no real-time chunking, no blend),
    no action latency. ``overrides``:
    dotted names (``--set``), e.g. ``{"execution.mode": "async"}``."""
    import dataclasses

    from ..config import deploy_config_from_dict, with_overrides

    dt = float(env.env.dt)
    pc = {k: list(v) if isinstance(v, tuple) else v
          for k, v in dataclasses.asdict(env.point_cloud_config()).items()}
    base = {"output": "command", "frame_id": "world",
            "timing": {"control_rate_hz": 1.0 / dt, "action_latency_s": 0.0, "blend_steps": 0,
                       "ensemble": 1.0, "max_observation_age_s": 1.0},
            "execution": {"mode": "sync", "consistency": "none", "margin_s": dt},
            "sampling": {"seed": int(sampling_seed)},
            "embodiment": {"joint_names": list(AGENT_POS_NAMES)},
            "point_cloud": pc}
    return with_overrides(deploy_config_from_dict(base, "metaworld"), overrides)


def runtime_episode(env: MetaWorldTask, runtime, seed: int, latency) -> dict:
    """One episode through ``PolicyRuntime``, as every simulator task runs: each environment step feeds
    the depth image (the runtime makes DP3's cloud) and ``agent_pos`` stamped with the step's time; the
    runtime plans when due, and its command trajectory is applied step by step (``command_at``: the value
    that holds over the step; zero after the trajectory's end: the hand stays). ``latency`` (closed_loop.Latency):
    sim time charged to each inference, during which the environment keeps stepping on the running
    command."""
    from ..runtime.schedule import command_at
    from .closed_loop import charge_latency

    step = env.reset(seed)
    runtime.reset(clear_observations=True)
    runtime.set_camera(env.camera()[0])
    period, dim = runtime.period, runtime.pcfg.action.dim
    state = {"traj": None, "late": 0, "holds": 0}
    inference_ms, pending, success, steps = [], None, False, 0

    def apply(res) -> None:
        state["late"] += res.status == "late"
        if res.command is None:
            return
        state["traj"] = res.command.trajectory
        if res.status == "command":
            inference_ms.append(res.inference_ms + res.perception_ms)
        else:
            state["holds"] += 1

    for k in range(EPISODE_STEPS):
        t = k * period
        if "depth" in runtime.window.buffers:
            runtime.add_depth(t, step.depth)
        if "color" in runtime.window.buffers:
            runtime.add_color(t, step.rgb)
        if runtime.needs_joints:
            runtime.add_joints(t, step.agent_pos)
        pending = charge_latency(runtime, t, pending, latency, apply)
        action = command_at(state["traj"], t, period, dim)
        step = env.step(action)
        steps += 1
        if step.success:
            success = True
            break
    return {"seed": seed, "success": success, "steps": steps, "late_chunks": state["late"],
            "holds": state["holds"], "inference_ms": inference_ms}


def direct_episode(env: MetaWorldTask, policy, seed: int, sampling_seed: int = 0, *,
                   max_steps: int = EPISODE_STEPS, stop_on_success: bool = True) -> dict:
    """One episode of DP3's own evaluation loop: n_obs_steps observations (the first repeated at the
    start), the first n_action_steps actions of each chunk executed, lockstep, the policy called on the
    adapter's clouds; chunk i sampled with seed ``sampling_seed`` + i."""
    import time
    from collections import deque

    pc = policy.cfg
    keys = {k: (s.dataset_key or k) for k, s in pc.observations.items()}
    obs = env.reset(seed)
    object_start = np.array(obs.raw[RAW_OBJECT], float)
    history = deque([obs] * pc.n_obs_steps, maxlen=pc.n_obs_steps)
    success, chunk_i, steps, inference_ms = False, 0, 0, []
    while steps < max_steps and not (success and stop_on_success):
        batch = {k: np.stack([o.observation(keys[k]) for o in history]) for k in keys}
        t0 = time.perf_counter()
        chunk = policy.predict(batch, seed=sampling_seed + chunk_i)
        inference_ms.append((time.perf_counter() - t0) * 1e3)
        chunk_i += 1
        for a in chunk:
            obs = env.step(a)
            history.append(obs)
            steps += 1
            success = success or obs.success
            if (success and stop_on_success) or steps >= max_steps:
                break
    return {"seed": seed, "success": success, "steps": steps, "inference_ms": inference_ms,
            "object_start": object_start, "hand": np.array(obs.raw[RAW_HAND], float),
            "object": np.array(obs.raw[RAW_OBJECT], float), "goal": np.array(obs.raw[RAW_GOAL], float)}


def env_for_checkpoint(task: str, policy, checkpoint: str | Path, clouds: bool = True) -> MetaWorldTask:
    """The task rendered as the checkpoint was trained: its cloud size and crop, its image size."""
    shapes = {s.type: s.shape for s in policy.cfg.observations.values()}
    return MetaWorldTask(task, num_points=shapes["point_cloud"][0] if "point_cloud" in shapes else NUM_POINTS,
                         crop=checkpoint_crop(checkpoint), rgb_size=shapes["rgb"][0] if "rgb" in shapes else 0,
                         clouds=clouds)


def evaluate(task: str, checkpoint: str | Path, episodes: int, seed: int, *, sampling_seed: int = 0,
             progress: bool = True, direct: bool = False, delay: str | float = 0,
             overrides: dict | None = None) -> dict:
    """Closed-loop success of a checkpoint trained on ``collect``'s data: ``EPISODE_STEPS`` steps, success
    at any step, seeds ``seed`` … ``seed + episodes - 1``, the clouds cropped as the checkpoint's
    demonstrations were.

    By default through ``PolicyRuntime`` (``runtime_episode``), as every simulator task: the runtime
    makes the clouds from depth, schedules and stamps each chunk; sampling seed ``sampling_seed`` for
    every chunk (the runtime's ``sampling.seed``); ``delay``: the latency charged to each inference
    (``--delay-ms``), ``overrides``: deployment parameters (``--set``). ``direct``: DP3's own evaluation
    loop, the policy called on the adapter's clouds, lockstep, n_action_steps actions a chunk, sampling
    seeded ``sampling_seed`` + chunk index."""
    from tqdm import tqdm

    from ..policy import Policy
    from .closed_loop import Latency
    from .stats import wilson_ci95

    policy = Policy.from_checkpoint(checkpoint)
    env = env_for_checkpoint(task, policy, checkpoint, clouds=direct)
    latency = Latency.parse(delay)
    if direct and (latency.factor or latency.fixed_ms or overrides):
        raise ConfigError("metaworld --direct: DP3's lockstep loop; --delay-ms and --set need the runtime "
                          "(drop --direct)")
    results, latencies, runtime, cfg = [], [], None, None
    try:
        bar = tqdm(range(seed, seed + episodes), desc=f"eval {env.name}", unit="episode", disable=not progress)
        for s in bar:
            if direct:
                r = direct_episode(env, policy, s, sampling_seed)
            else:
                if runtime is None:
                    from ..runtime.controller import PolicyRuntime

                    env.reset(s)
                    cfg = deploy_config(env, overrides, sampling_seed)
                    runtime = PolicyRuntime(policy, cfg)
                r = runtime_episode(env, runtime, s, latency)
            latencies.extend(r.pop("inference_ms"))
            results.append(r)
            bar.set_postfix(success=f"{sum(x['success'] for x in results)}/{len(results)}")
    finally:
        env.close()
    wins = sum(r["success"] for r in results)
    out = {"task": f"{PREFIX}{env.name}", "checkpoint": str(checkpoint), "episodes": episodes,
           "seeds": [seed, seed + episodes - 1], "sampling_seed": sampling_seed, "crop": env.crop, "successes": wins,
           "success_rate": wins / max(1, episodes), "ci95": list(wilson_ci95(wins, episodes)),
           "evaluation": "direct" if direct else "runtime",
           "p50_inference_ms": float(np.percentile(latencies, 50)) if latencies else None}
    if not direct:
        out.update(delay_ms=latency.label, execution=cfg.execution_label(),
                   late_chunks=sum(r["late_chunks"] for r in results))
    return {**out, "episodes_detail": results}
