"""LeRobotDataset v3 in and out, through the standalone ``lerobot-dataset`` package's own reader and
writer (``ledataset``: LeRobot's dataset code without the rest of LeRobot; ``lerobot`` itself pins
torch < 2.11 up to 0.4.x and needs Python 3.12 from 0.5).

Out (``dpros convert --format lerobot``): each bag episode is sampled every observation period as for
zarr (``convert.bag_episode``), but the *sensors* are stored, not the encoded observations, so any
policy can be trained on it and a point cloud can be rebuilt:

    observation.images.color      video (H, W, 3)     the newest colour frame (lossy: AV1 in mp4)
    observation.depth             float32 (H, W)      aligned depth in metres, exact
    observation.camera_intrinsics float32 (6,)        width, height, fx, fy, cx, cy
    observation.camera_extrinsic  float32 (16,)       camera → base, row-major 4x4
    observation.wrench            float32 (6,)        as the policy observed it (filtered, tared)
    observation.state             float32 (n,)        joint positions (joint_states order) or ee pose9
    action                        float32 (Da,)       the policy's action space, as in the zarr store

``meta/diffusion_policy_ros.json`` keeps what LeRobot's metadata has no place for: the deployment
config the episodes were sampled with (crop box, force filter, topics), provenance, and which source
bag and takeover segment each episode came from.

In (``dpros train`` on a LeRobot folder): every frame is fed into a ``PolicyRuntime`` at its timestamp
(depth with the recorded intrinsics and extrinsic, colour, joints, wrench) and the runtime's own
observation code builds what the policy reads: the same point clouds, images and states a live node
or ``dpros convert`` to zarr makes. Datasets recorded elsewhere train too when they carry these
features (the deployment config then comes from ``--deploy-config``).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import DatasetError

log = logging.getLogger(__name__)

COLOR = "observation.images.color"
DEPTH = "observation.depth"
INTRINSICS = "observation.camera_intrinsics"
EXTRINSIC = "observation.camera_extrinsic"
WRENCH = "observation.wrench"
STATE = "observation.state"
ACTION = "action"
SIDECAR = "diffusion_policy_ros.json"  # in meta/
CODEBASE_VERSION = "v3.0"

NAMES = {INTRINSICS: ["width", "height", "fx", "fy", "cx", "cy"],
         WRENCH: ["fx", "fy", "fz", "tx", "ty", "tz"],
         EXTRINSIC: [f"m{r}{c}" for r in range(4) for c in range(4)]}


def _ledataset():
    try:
        from ledataset.datasets.lerobot_dataset import LeRobotDataset
    except ImportError as e:
        raise DatasetError(f"LeRobot datasets need the lerobot extra (pip install -e '.[lerobot]'): {e}") from None
    return LeRobotDataset


def is_lerobot_dataset(path: str | Path) -> bool:
    return (Path(path) / "meta" / "info.json").is_file()


def _features(sample: dict[str, np.ndarray], state_names: list[str], action_dim: int) -> dict:
    out = {}
    for key, value in sample.items():
        if key == COLOR:
            out[key] = {"dtype": "video", "shape": tuple(value.shape), "names": ["height", "width", "channels"]}
        elif key == DEPTH:
            out[key] = {"dtype": "float32", "shape": tuple(value.shape), "names": ["height", "width"]}
        else:
            names = NAMES.get(key) or (state_names if key == STATE and len(state_names) == value.shape[0] else None)
            out[key] = {"dtype": "float32", "shape": tuple(value.shape), "names": names}
    out[ACTION] = {"dtype": "float32", "shape": (action_dim,), "names": None}
    return out


class LeRobotWriter:
    """Episodes (``convert.BagEpisode`` sampled with ``raw``) → a new LeRobotDataset v3 folder."""

    def __init__(self, out: str | Path, fps: float, action_key: str, *, deploy_dict: dict, robot_type: str,
                 state_names: list[str] | None = None, overwrite: bool = False):
        out = Path(out)
        if abs(fps - round(fps)) > 1e-6:
            raise DatasetError(f"LeRobot: fps (1 / observation period) must be an integer, got {fps:g}")
        if out.exists():
            if not overwrite:
                raise DatasetError(f"LeRobot dataset '{out}' exists already (--overwrite to replace it)")
            shutil.rmtree(out)
        self.out, self.fps, self.action_key, self.robot_type = out, int(round(fps)), action_key, robot_type
        self.state_names, self.deploy_dict = state_names or [], deploy_dict
        self.ds = None
        self.sources: list[dict] = []

    def add(self, episode, task: str, source: dict) -> None:
        raw, action = episode.raw, episode.data[self.action_key]
        if not raw:
            raise DatasetError("LeRobot export: the episode has no sensor samples (bag_episode(raw=True))")
        if self.ds is None:
            features = _features({k: v[0] for k, v in raw.items()}, self.state_names, action.shape[1])
            self.ds = _ledataset().create(repo_id=f"local/{self.out.name}", fps=self.fps, features=features,
                                          root=self.out, robot_type=self.robot_type, use_videos=True)
        for i in range(episode.steps):
            frame = {k: v[i] for k, v in raw.items()}
            frame[ACTION] = action[i].astype(np.float32)
            frame["task"] = task or "demonstration"  # timestamps: frame_index / fps (steps are one period apart)
            self.ds.add_frame(frame)
        self.ds.save_episode()
        self.sources.append(source)

    def close(self, provenance: dict | None = None) -> int:
        """Finish the files and write the sidecar; → episodes written."""
        if self.ds is None:
            return 0
        self.ds.finalize()
        sidecar = {"deploy": self.deploy_dict, "provenance": provenance or {}, "episodes": self.sources}
        (self.out / "meta" / SIDECAR).write_text(json.dumps(sidecar, indent=1))
        return len(self.sources)


def _column(table, key: str, shape) -> np.ndarray:
    """One column of an Arrow table (``datasets`` Array2D/Sequence storage) as an (n, *shape) array."""
    import pyarrow as pa

    arr = table.column(key).combine_chunks()
    values = arr.storage if isinstance(arr.type, pa.ExtensionType) else arr
    while pa.types.is_list(values.type) or pa.types.is_fixed_size_list(values.type) \
            or pa.types.is_large_list(values.type):
        values = values.flatten()
    return values.to_numpy(zero_copy_only=False).reshape(len(arr), *shape)


def _video_frames(path: Path, timestamps: np.ndarray, tolerance_s: float) -> np.ndarray:
    """(n, H, W, 3) uint8 frames of an mp4 at ``timestamps`` (s, in the file), each the frame nearest
    its time. PyAV directly: LeRobot's own pyav path calls torchvision.io.VideoReader, which
    torchvision 0.29 removed, and its torchcodec path needs FFmpeg's shared libraries and a torchcodec
    built for this torch."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        lo, hi = float(timestamps.min()) - tolerance_s, float(timestamps.max()) + tolerance_s
        container.seek(max(0, int(lo / stream.time_base)), stream=stream, backward=True)
        times, frames = [], []
        for frame in container.decode(stream):
            t = float(frame.pts * stream.time_base)
            if t > hi:
                break
            if t >= lo:
                times.append(t)
                frames.append(frame.to_ndarray(format="rgb24"))
    times = np.asarray(times)
    if not len(times):
        raise DatasetError(f"LeRobot video '{path}': no frames between {lo:.3f} and {hi:.3f} s")
    nearest = np.abs(times[None, :] - timestamps[:, None]).argmin(axis=1)
    off = np.abs(times[nearest] - timestamps)
    if off.max() > tolerance_s:
        raise DatasetError(f"LeRobot video '{path}': a frame {off.max() * 1e3:.1f} ms from its timestamp, expected "
                           f"<= {tolerance_s * 1e3:.1f} ms")
    return np.stack([frames[i] for i in nearest])


STREAM_FEATURES = {"depth": (DEPTH, INTRINSICS, EXTRINSIC), "color": (COLOR,), "wrench": (WRENCH,),
                   "joints": (STATE,), "ee_pose": (STATE,)}
T0_NS = 1_000_000_000  # frame stamps start here (the runtime's clock must not start at 0 or below)


class LeRobotSource:
    """A local LeRobotDataset v3 folder, read as ``ReplayBuffer`` is (``keys``, ``load``,
    ``episode_ends``, ``provenance``), with the policy's observations rebuilt by a ``PolicyRuntime``.
    ``deploy``: the perception settings (crop box, point count, force frame); default: the ones the
    dataset was written with (meta/diffusion_policy_ros.json)."""

    def __init__(self, path: str | Path, cfg, deploy=None, *, progress: bool = True):
        from ..config import deploy_config_from_dict

        self.path = path = Path(path)
        info = json.loads((path / "meta" / "info.json").read_text())
        if info.get("codebase_version") != CODEBASE_VERSION:
            raise DatasetError(f"LeRobot dataset '{path}': meta/info.json codebase_version expected "
                               f"{CODEBASE_VERSION}, got {info.get('codebase_version')!r}")
        side = path / "meta" / SIDECAR
        sidecar = json.loads(side.read_text()) if side.is_file() else {}
        if deploy is None:
            if "deploy" not in sidecar:
                raise DatasetError(f"LeRobot dataset '{path}': no meta/{SIDECAR} (not written by dpros convert): "
                                   f"give the perception settings with --deploy-config")
            deploy = deploy_config_from_dict(sidecar["deploy"])
        self.ds = _ledataset()(repo_id=f"local/{path.name}", root=path)
        self.provenance = {**sidecar.get("provenance", {}), "format": "lerobot", "lerobot_root": str(path)}
        self.sources = sidecar.get("episodes", [])
        self._data, self.episode_ends = self._build(cfg, deploy, progress)

    @property
    def keys(self) -> list[str]:
        return sorted(self._data)

    @property
    def n_episodes(self) -> int:
        return len(self.episode_ends)

    @property
    def n_steps(self) -> int:
        return int(self.episode_ends[-1]) if len(self.episode_ends) else 0

    def load(self, keys: list[str]) -> dict[str, np.ndarray]:
        missing = [k for k in keys if k not in self._data]
        if missing:
            raise DatasetError(f"LeRobot dataset '{self.path}': keys {missing} not built; available: {self.keys}")
        return {k: self._data[k] for k in keys}

    def _runtime(self, cfg, deploy, extrinsic: np.ndarray | None):
        from ..runtime.deployment import build_runtime

        if extrinsic is not None:
            pcl = dataclasses.replace(deploy.point_cloud, extrinsic=tuple(float(x) for x in extrinsic))
            deploy = dataclasses.replace(deploy, point_cloud=pcl)
        return build_runtime(deploy, training=cfg)

    def _build(self, cfg, deploy, progress: bool) -> tuple[dict[str, np.ndarray], np.ndarray]:
        from types import SimpleNamespace

        from ..errors import ObservationError
        from ..geometry import rot6d_to_quat_xyzw

        pc, feats = cfg.policy, self.ds.meta.features
        rt = self._runtime(cfg, deploy, None)
        streams = sorted(rt.window.buffers)
        for stream in streams:
            for key in STREAM_FEATURES.get(stream, ()):
                if key not in feats:
                    raise DatasetError(f"LeRobot dataset '{self.path}': the policy reads {stream}, which needs "
                                       f"feature {key}; the dataset has {sorted(feats)}")
        shape = list(feats.get(ACTION, {}).get("shape", []))
        if shape != [pc.action.dim]:
            raise DatasetError(f"LeRobot dataset '{self.path}': feature {ACTION} expected shape [{pc.action.dim}] "
                               f"(policy.action.dim), got {shape or 'none'}")
        columns = [k for k in (DEPTH, INTRINSICS, EXTRINSIC, WRENCH, STATE) if k in feats and any(
            k in STREAM_FEATURES[s] for s in streams)] + [ACTION, "timestamp"]
        # Arrow, not datasets' numpy formatter (it imports torchvision.io.VideoReader, gone in 0.29).
        hf = self.ds.hf_dataset.select_columns(columns).with_format("arrow")
        episodes = self.ds.meta.episodes
        bounds = [(int(e["dataset_from_index"]), int(e["dataset_to_index"])) for e in episodes]
        keys = {k: (spec.dataset_key or k) for k, spec in pc.observations.items()}
        out: dict[str, list] = {dk: [] for dk in keys.values()}
        out[pc.action.dataset_key] = []
        ends, extrinsic = [], None
        for e, (a, b) in enumerate(tqdm(bounds, desc="lerobot", unit="episode", disable=not progress)):
            table = hf[a:b]
            rows = {k: _column(table, k, () if k == "timestamp" else feats[k]["shape"]) for k in columns}
            if "color" in streams:
                video = episodes[e][f"videos/{COLOR}/from_timestamp"]
                rows[COLOR] = _video_frames(self.path / self.ds.meta.get_video_file_path(e, COLOR),
                                            video + rows["timestamp"], 0.5 / self.ds.fps)
            if EXTRINSIC in rows:
                ext = np.asarray(rows[EXTRINSIC], np.float64)
                if not np.allclose(ext, ext[0]):
                    raise DatasetError(f"LeRobot dataset '{self.path}': episode {e}: {EXTRINSIC} changes within "
                                       f"the episode; expected one camera pose per episode")
                if extrinsic is None or not np.array_equal(ext[0], extrinsic):
                    extrinsic = ext[0]
                    rt = self._runtime(cfg, deploy, extrinsic)
            rt.reset(clear_observations=True)
            for i in range(int(b - a)):
                t = T0_NS + int(round(float(rows["timestamp"][i]) * 1e9))
                try:
                    if "depth" in streams:
                        w, h, fx, fy, cx, cy = (float(x) for x in rows[INTRINSICS][i])
                        rt.set_camera(SimpleNamespace(width=int(w), height=int(h), fx=fx, fy=fy, cx=cx, cy=cy))
                        rt.add_depth(t, np.asarray(rows[DEPTH][i], np.float32))
                    if "color" in streams:
                        rt.add_color(t, rows[COLOR][i])
                    if "wrench" in streams:
                        rt.add_observed_wrench(t, rows[WRENCH][i])
                    if "joints" in streams:
                        rt.add_joints(t, np.asarray(rows[STATE][i], np.float64))
                    if "ee_pose" in streams:
                        p = np.asarray(rows[STATE][i], np.float64)
                        rt.add_ee_pose(t, np.concatenate((p[:3], rot6d_to_quat_xyzw(p[3:9]))))
                    obs, _, _ = rt.observe(t)
                except ObservationError as err:
                    raise DatasetError(f"LeRobot dataset '{self.path}': episode {e} frame {i}: {err}") from None
                for k, v in obs.items():
                    out[keys[k]].append(v[-1])
            out[pc.action.dataset_key].extend(np.asarray(rows[ACTION], np.float32))
            ends.append(int(b))
        data = {k: np.stack(v) for k, v in out.items()}
        data = {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in data.items()}
        return data, np.asarray(ends, np.int64)
