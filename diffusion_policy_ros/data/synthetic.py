"""A generated demonstration set with two distinct modes: the end effector moves from a start
point to a goal past a box, going round it on the left or on the right (50/50).

From the start every demonstration looks the same, so a good policy must commit to one side: a
regression policy averages the modes and drives into the box. Every observation type the shipped
configs use is produced, all consistent with the same scene: end-effector state, a point cloud
(box + table + gripper), a top-down RGB image and a wrist wrench.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .replay_buffer import ReplayBuffer

IDENTITY_ROT6D = np.array([1, 0, 0, 0, 1, 0], np.float32)


@dataclass(frozen=True)
class ObstacleScene:
    start: tuple = (0.0, 0.0, 0.3)
    goal: tuple = (0.0, 0.6, 0.3)
    box_center: tuple = (0.0, 0.3, 0.3)
    box_half: tuple = (0.06, 0.05, 0.1)
    table_z: float = 0.2
    detour: float = 0.15  # lateral offset of each mode at the box
    steps: int = 24
    num_points: int = 256
    image_size: int = 96

    def trajectory(self, rng: np.random.Generator, side: int) -> np.ndarray:
        """(steps, 3) end-effector positions for one demonstration; side -1 = left, +1 = right."""
        s = np.linspace(0.0, 1.0, self.steps) ** rng.uniform(0.9, 1.1)
        amp = side * rng.uniform(0.85, 1.15) * self.detour
        start = np.asarray(self.start) + rng.normal(0, 0.004, 3) * (1, 1, 0)
        pos = start + (np.asarray(self.goal) - start) * s[:, None]
        pos[:, 0] += amp * np.sin(np.pi * s)
        return pos.astype(np.float32)

    def point_cloud(self, ee: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n_box, n_grip = self.num_points // 2, self.num_points // 8
        n_table = self.num_points - n_box - n_grip
        c, h = np.asarray(self.box_center), np.asarray(self.box_half)
        box = rng.uniform(-1, 1, (n_box, 3))
        face = rng.integers(0, 3, n_box)
        box[np.arange(n_box), face] = np.sign(box[np.arange(n_box), face])  # project onto a face
        box = c + box * h
        table = np.column_stack((rng.uniform(-0.3, 0.3, n_table), rng.uniform(-0.1, 0.7, n_table),
                                 np.full(n_table, self.table_z)))
        grip = ee + rng.normal(0, 0.01, (n_grip, 3))
        return np.concatenate((box, table, grip)).astype(np.float32)

    def image(self, ee: np.ndarray) -> np.ndarray:
        """Top-down view: x ∈ [-0.3, 0.3] → columns, y ∈ [-0.1, 0.7] → rows."""
        n = self.image_size
        img = np.full((n, n, 3), 200, np.uint8)

        def col(x):
            return int(np.clip(round((x + 0.3) / 0.6 * (n - 1)), 0, n - 1))

        def row(y):
            return int(np.clip(round((y + 0.1) / 0.8 * (n - 1)), 0, n - 1))
        c, h = self.box_center, self.box_half
        img[row(c[1] - h[1]):row(c[1] + h[1]) + 1, col(c[0] - h[0]):col(c[0] + h[0]) + 1] = (60, 60, 160)
        gr, gc = row(self.goal[1]), col(self.goal[0])
        img[max(gr - 2, 0):gr + 3, max(gc - 2, 0):gc + 3] = (40, 160, 40)
        er, ec = row(ee[1]), col(ee[0])
        img[max(er - 2, 0):er + 3, max(ec - 2, 0):ec + 3] = (200, 40, 40)
        return img

    def wrench(self, ee: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Sensor noise plus a push away from the box when the gripper brushes past it."""
        c, h = np.asarray(self.box_center), np.asarray(self.box_half)
        gap = np.abs(ee - c) - h
        dist = np.linalg.norm(np.maximum(gap, 0.0))
        force = np.zeros(3)
        if dist < 0.05:
            away = np.sign(ee - c) * (gap == gap.max())
            force = 40.0 * (0.05 - dist) * away
        return np.concatenate((force, 0.1 * np.cross([0, 0, 0.05], force))).astype(np.float32) + rng.normal(
            0, 0.05, 6).astype(np.float32)

    def episode(self, rng: np.random.Generator, side: int) -> dict[str, np.ndarray]:
        pos = self.trajectory(rng, side)
        t = len(pos)
        gripper = (np.linspace(0, 1, t) > 0.9).astype(np.float32)[:, None]
        pose = np.concatenate((pos, np.tile(IDENTITY_ROT6D, (t, 1)), gripper), axis=1)
        action = np.concatenate((pose[1:], pose[-1:]))  # command: the next pose
        return {
            "state": pose,
            "action": action,
            "point_cloud": np.stack([self.point_cloud(p, rng) for p in pos]),
            "img": np.stack([self.image(p) for p in pos]),
            "wrench": np.stack([self.wrench(p, rng) for p in pos]),
        }

    def start_observation(self, n_obs_steps: int, seed: int = 0) -> dict[str, np.ndarray]:
        """The first observation of an episode, repeated n_obs_steps times (as the dataset pads it)."""
        ep = self.episode(np.random.default_rng(seed), side=1)
        return {k: np.repeat(v[:1], n_obs_steps, axis=0) for k, v in ep.items() if k != "action"}

    def policy_observation(self, policy_cfg, seed: int = 0) -> dict[str, np.ndarray]:
        """The start observation keyed as the policy expects (each observation's dataset_key mapped)."""
        raw = self.start_observation(policy_cfg.n_obs_steps, seed=seed)
        return {k: raw[spec.dataset_key or k] for k, spec in policy_cfg.observations.items()}

    def lateral_offset(self, actions: np.ndarray) -> np.ndarray:
        """Signed mean x of the predicted positions while passing the box: ≈ ±0.1 per mode, 0 = average."""
        return actions[..., :, 0].mean(axis=-1)


def make_obstacle_dataset(path: str | Path, n_episodes: int = 100, seed: int = 0, scene: ObstacleScene | None = None,
                          overwrite: bool = True, progress: bool = True) -> Path:
    scene = scene or ObstacleScene()
    rng = np.random.default_rng(seed)
    buffer = ReplayBuffer.create(path, overwrite=overwrite)
    sides = np.where(np.arange(n_episodes) % 2 == 0, -1, 1)
    rng.shuffle(sides)
    episodes = [scene.episode(rng, int(side))
                for side in tqdm(sides, desc="generating demonstrations", disable=not progress, leave=False)]
    buffer.add_episodes(episodes)
    buffer.set_provenance(task="two-mode obstacle scene", rng_seed=seed, episodes=n_episodes)
    return Path(path)


def state_policy_config(**train):
    """The smallest real policy for this scene: end-effector state → end-effector actions (DP3-style
    sample prediction), 600 training steps (about 45 s on 2 CPU cores). Used by tests and benchmarks."""
    from ..config import config_from_dict

    return config_from_dict({
        "name": "scene_state",
        "policy": {
            "observations": {"agent_pos": {"type": "low_dim", "shape": [10], "dataset_key": "state"}},
            "action": {"representation": "abs_ee", "dim": 10},
            "encoders": {"state": {"hidden_dims": [64], "out_dim": 32}},
            "denoiser": {"down_dims": [32, 64], "diffusion_step_embed_dim": 32},
            "noise": {"prediction_type": "sample"},
        },
        "train": {"batch_size": 128, "max_steps": 600, "lr": 2e-3, "warmup_steps": 50, "checkpoint_every": 10000,
                  "val_every": 100, "log_every": 100, **train},
    })
