"""Scripted demonstrations written as rosbags, message for message what the robot's drivers publish
(realsense-ros colour, aligned depth and camera_info; the F/T broadcaster's wrench; joint_states; the
commanded JointTrajectory), so ``dpros convert`` and ``dpros replay`` see sim data as they would
see a recording from a robot.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..config import TopicsConfig
from ..io import msgs as M
from ..io.bags import BagWriter
from ..constants import NS

EPISODE_META = "episode.json"  # beside metadata.yaml in each episode's bag folder


@dataclass
class BagOptions:
    storage: str = "mcap"  # mcap | sqlite3
    typestore: str = "jazzy"  # jazzy | humble | ...
    state_rate_hz: float = 50.0  # joint_states and wrench
    compressed_color: bool = False  # sensor_msgs/CompressedImage (jpeg) on <color>/compressed
    camera_frame: str = "camera_color_optical_frame"


class BagRecording:
    """Receives the sim's sensor data and commands during an expert episode and writes them."""

    def __init__(self, path: str | Path, sim, topics: TopicsConfig, opts: BagOptions = BagOptions()):
        self.sim, self.topics, self.opts = sim, topics, opts
        self.writer = BagWriter(path, storage=opts.storage, store=opts.typestore)
        self.types = M.RosTypes(self.writer.store)
        t = topics
        self.color_topic = t.color + "/compressed" if opts.compressed_color else t.color
        for topic, kind, reliable in (
                (self.color_topic, "CompressedImage" if opts.compressed_color else "Image", False),
                (t.depth, "Image", False), (t.camera_info, "CameraInfo", False)):
            self.writer.add_topic(topic, f"sensor_msgs/msg/{kind}", reliable)
        self.writer.add_topic(t.wrench, "geometry_msgs/msg/WrenchStamped")
        self.writer.add_topic(t.joint_states, "sensor_msgs/msg/JointState", reliable=True)
        self.writer.add_topic(t.command, "trajectory_msgs/msg/JointTrajectory", reliable=True)
        cam = sim.camera
        self.intrinsics = M.Intrinsics(cam.width, cam.height, np.array([[cam.fx, 0, cam.cx], [0, cam.fy, cam.cy],
                                                                        [0, 0, 1.0]]), np.zeros(5), "plumb_bob",
                                       opts.camera_frame)
        self.dt = int(round(NS / opts.state_rate_hz))
        self.started = False

    def state_times(self, t0: int, t1: int) -> list[int]:
        """Sub-step times in (t0, t1] at the state rate (t1 always included)."""
        return [*range(t0 + self.dt, t1, self.dt), t1]

    def state(self, t: int) -> None:
        T, s, tp = self.types, self.sim, self.topics
        self.writer.write(tp.joint_states, t, M.encode_joint_state(T, s.joint_names, s.joints(), t))
        self.writer.write(tp.wrench, t, M.encode_wrench(T, s.wrench(), t, "ft_sensor"))

    def camera(self, t: int, rgb: np.ndarray, depth_mm: np.ndarray) -> None:
        if not self.started:
            self.state(t)
            self.started = True
        T, tp, frame = self.types, self.topics, self.opts.camera_frame
        color = (M.encode_compressed_rgb(T, rgb, t, frame) if self.opts.compressed_color
                 else M.numpy_to_image(T, rgb, "rgb8", t, frame))
        self.writer.write(self.color_topic, t, color)
        self.writer.write(tp.depth, t, M.numpy_to_image(T, depth_mm, "16UC1", t, frame))
        self.writer.write(tp.camera_info, t, M.encode_camera_info(T, self.intrinsics, t))

    def command(self, t: int, t_target: int, q: np.ndarray) -> None:
        data = M.JointTrajectoryData(list(self.sim.joint_names), t, np.array([t_target - t], np.int64), q[None])
        self.writer.write(self.topics.command, t, M.encode_joint_trajectory(self.types, data))

    def close(self) -> None:
        self.writer.close()


def collect_bags(task: str, episodes: int, out: str | Path, seed: int = 1000, opts: BagOptions = BagOptions(),
                 topics: TopicsConfig | None = None, progress: bool = True, expert: str | None = None) -> dict:
    """Scripted demonstrations, one rosbag2 folder each (``out/episode_<seed>``), with episode.json
    (task, seed, success). Failed demonstrations are kept and marked ``success: false``."""
    from .env import SimEnv, sim_deploy_config
    from .experts import expert_episode, set_expert_profile

    env = SimEnv(task, sim_deploy_config("arm"))
    topics = topics or env.cfg.topics
    out = Path(out)
    bags, failed = [], []
    try:
        profile = set_expert_profile(env.task, expert)
        out.mkdir(parents=True, exist_ok=True)
        for s in tqdm(range(seed, seed + episodes), desc=f"collect {task} (bags)", disable=not progress):
            path = out / f"episode_{s:06d}"
            rec = BagRecording(path, env.sim, topics, opts)
            try:
                ep, _ = expert_episode(env, s, env.cfg.point_cloud.num_points, bag=rec)
            finally:
                rec.close()
            (path / EPISODE_META).write_text(json.dumps({"task": task, "seed": s, "success": bool(ep.success),
                                                         "steps": ep.steps, "source": "scripted expert",
                                                         **({"expert": profile} if profile else {})}))
            bags.append(str(path))
            if not ep.success:
                failed.append(s)
    finally:
        env.close()
    return {"bags": bags, "task": task, "episodes": len(bags), "failed_seeds": failed}
