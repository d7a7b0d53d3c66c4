#!/usr/bin/env python3
"""Observation publish → trajectory receipt over DDS, through the real policy node process.

A peer node in this process plays the robot: a RealSense-like 640x480 colour (rgb8) + aligned depth
(16UC1) + camera_info at 30 Hz and joint_states at 250 Hz; it receives the node's JointTrajectory
messages. The policy node runs as its own process (`policy_node`, as `ros2 run` starts it) with the
default DP3 config (point cloud + state, 18 M parameters, weights from a 2-step training run: latency
does not depend on their values), triggered by camera frames (timing.trigger: observation).

Latency of a trajectory = its receipt time − the stamp of the observation it was computed from (the
node stamps t_obs on the waypoint grid; stamps are publish times on the shared system clock).
Each sampler setting runs in the same invocation; the baseline is *this node* sampling with DDPM-100
(the sampler of Diffusion Policy's default config, not Diffusion Policy's own code), untraced, over
at most 20 cycles (so its p99 is close to its maximum). The student row runs the same network's
`dpros distill` student (one DDIM step), distilled as briefly as the teacher was trained. `lost` = node cycles after the first trajectory that did not reach the peer.

    python bench/node_latency.py                       # table
    python bench/node_latency.py --cycles 200 --json   # {"p50_ms", "p99_ms", "node_vs_standalone", "student_p99_ms", ...}
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from common import machine

ROOT = Path(__file__).resolve().parents[1]
PERIOD_NS = 100_000_000
UR_JOINTS = ["shoulder_pan_joint", "shoulder_lift_joint", "elbow_joint", "wrist_1_joint", "wrist_2_joint",
             "wrist_3_joint"]
HOME = [3.141592653589793, -1.2, 1.4, -1.77, -1.57, 0.0]
SETTINGS = {  # name → node parameters
    "this node at ddpm_100, untraced (baseline, <= 20 cycles)": {
        "sampling.solver": "ddpm", "sampling.num_inference_steps": 100, "sampling.trace": "false"},
    "ddim_10 (default: the fastest installed backend)": {},
    "ddim_10 onnxruntime": {"sampling.backend": "onnxruntime"},
    "ddim_10 torch traced": {"sampling.backend": "torch"},
    "ddim_10 torch eager": {"sampling.trace": "false", "sampling.backend": "torch"},
    "dpmsolver++_5": {"sampling.solver": "dpmsolver++", "sampling.num_inference_steps": 5},
    "ddim_10 warm start 5": {"sampling.warm_start_index": 5},
    "ddim_10 warm start 7": {"sampling.warm_start_index": 7},
    "dpmsolver++_5, 1 thread": {"sampling.solver": "dpmsolver++", "sampling.num_inference_steps": 5,
                                "torch_threads": 1},
    "student_1 (distilled one-step, default backend)": {"checkpoint": "student"},
}
STUDENT = "student_1 (distilled one-step, default backend)"


def make_checkpoint(out: Path) -> Path:
    from diffusion_policy_ros.config import load_config
    from diffusion_policy_ros.data.synthetic import ObstacleScene, make_obstacle_dataset
    from diffusion_policy_ros.train import Trainer

    data = make_obstacle_dataset(out / "data.zarr", n_episodes=6, scene=ObstacleScene(num_points=1024),
                                 progress=False)
    cfg = load_config("dp3", overrides=["train.max_steps=2", "train.batch_size=4", "train.warmup_steps=1",
                                        "train.checkpoint_every=2", "train.val_every=2", "train.log_every=1"])
    return Trainer(cfg, data, out / "run", progress=False).run()


def make_student(teacher: Path, out: Path) -> Path:
    """Its `dpros distill` student, distilled as briefly as the teacher was trained (latency only)."""
    from diffusion_policy_ros.train import Distiller

    return Distiller(teacher, out / "data.zarr", out / "student", max_steps=2, batch_size=4, log_every=1,
                     progress=False).run()


class Peer:
    def __init__(self, context):
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.node import Node
        from sensor_msgs.msg import CameraInfo, Image, JointState
        from trajectory_msgs.msg import JointTrajectory

        from diffusion_policy_ros.perception.synthetic import D435_640, tabletop_depth
        from diffusion_policy_ros.io import msgs as M
        from diffusion_policy_ros.perception.pointcloud import Intrinsics

        self.M, self.types = M, M.RosTypes()
        self.node = n = Node("bench_robot", context=context)
        depth, self.rgb = tabletop_depth(D435_640)
        self.depth_mm = np.round(depth * 1000).astype(np.uint16)
        c = D435_640
        self.intr = Intrinsics(c.width, c.height, np.array([[c.fx, 0, c.cx], [0, c.fy, c.cy], [0, 0, 1.0]]),
                               np.zeros(5), "plumb_bob", "camera_color_optical_frame")
        self.pub = {"color": n.create_publisher(Image, "/camera/camera/color/image_raw", 10),
                    "depth": n.create_publisher(Image, "/camera/camera/aligned_depth_to_color/image_raw", 10),
                    "info": n.create_publisher(CameraInfo, "/camera/camera/aligned_depth_to_color/camera_info", 10),
                    "joints": n.create_publisher(JointState, "/joint_states", 10)}
        self.stamps: list[int] = []
        self.received: list[tuple[int, object]] = []
        self.diag: dict[str, str] = {}
        n.create_subscription(JointTrajectory, "/joint_trajectory_controller/joint_trajectory",
                              lambda m: self.received.append((time.time_ns(), M.decode_joint_trajectory(m))), 50)
        n.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        n.create_timer(1 / 30, self._camera)
        n.create_timer(1 / 250, self._joints)

    def _on_diag(self, msg):
        if msg.status and msg.status[0].name.startswith("policy_node"):
            self.diag = {kv.key: kv.value for kv in msg.status[0].values}

    def _camera(self):
        M, t = self.M, time.time_ns()
        self.pub["info"].publish(M.encode_camera_info(self.types, self.intr, t))
        self.pub["color"].publish(M.numpy_to_image(self.types, self.rgb, "rgb8", t, "camera_color_optical_frame"))
        self.pub["depth"].publish(M.numpy_to_image(self.types, self.depth_mm, "16UC1", t, "camera_color_optical_frame"))
        self.stamps.append(t)

    def _joints(self):
        t = time.time_ns()
        self.pub["joints"].publish(self.M.encode_joint_state(self.types, UR_JOINTS, HOME, t))
        self.stamps.append(t)


def t_obs_of(data, stamps: np.ndarray) -> int | None:
    """The published stamp the trajectory was computed from: on its waypoint grid, at or before publish."""
    last = int(data.stamp_ns + data.time_from_start_ns[-1])
    cand = stamps[(stamps <= data.stamp_ns) & (stamps > data.stamp_ns - 2_000_000_000)]
    hits = cand[(last - cand) % PERIOD_NS == 0]
    return int(hits.max()) if hits.size else None


def standalone_inference_ms(ckpt: Path, runs: int = 30) -> float:
    """Median wall ms of one chunk (the node's default sampling) in this process, nothing else running."""
    from diffusion_policy_ros.policy import Policy

    policy = Policy.from_checkpoint(ckpt)
    policy.warm_up()
    obs = {k: np.random.default_rng(0).normal(size=(policy.cfg.n_obs_steps, *spec.shape)).astype(np.float32)
           for k, spec in policy.cfg.observations.items()}
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        policy.predict(obs, seed=0)
        times.append((time.perf_counter() - t0) * 1e3)
    return round(float(np.median(times)), 2)


def run_setting(context, peer, ckpt: Path, params: dict, cycles: int, log: Path) -> dict:
    node_exe = shutil.which("policy_node") or str(Path(sys.executable).parent / "policy_node")
    params = dict(params)
    ckpt = params.pop("checkpoint", ckpt)
    cmd = [node_exe, "--ros-args", "-p", f"checkpoint:={ckpt}", "-p", "start_enabled:=true",
           "-p", "timing.trigger:=observation", "-p", "timing.max_observation_age_s:=1.0",
           "-p", "sampling.replan_steps:=1",  # a new chunk every cycle: one trajectory per observation
           "-p", "point_cloud.crop_min:=[-1.0, -1.0, 0.0]", "-p", "point_cloud.crop_max:=[1.0, 1.0, 1.5]",
           "-p", "point_cloud.max_depth:=1.5"]
    for k, v in params.items():
        cmd += ["-p", f"{k}:={v}"]
    peer.received.clear()
    peer.diag = {}
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while len(peer.received) < 1 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.1)
        if not peer.received:
            raise RuntimeError(f"no trajectory from the policy node; see {log}")
        first_cycles = None
        while len(peer.received) < cycles + 1 and proc.poll() is None:
            if first_cycles is None and peer.diag.get("cycles"):
                first_cycles = int(peer.diag["cycles"])
            time.sleep(0.1)
        time.sleep(1.1)  # one more diagnostics message
        diag = dict(peer.diag)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    stamps = np.array(sorted(peer.stamps), np.int64)
    lat = []
    for recv, data in peer.received[1:cycles + 1]:  # the first includes start-up
        t = t_obs_of(data, stamps)
        if t is not None:
            lat.append((recv - t) / 1e6)
    lat = np.array(lat)
    node_cycles = int(diag.get("cycles", 0)) - (first_cycles or 0)
    received_after = len(peer.received) - 1
    return {"p50_ms": round(float(np.median(lat)), 1), "p99_ms": round(float(np.percentile(lat, 99)), 1),
            "max_ms": round(float(lat.max()), 1), "cycles": int(lat.size),
            "lost": max(0, node_cycles - received_after) if first_cycles is not None else None,
            "node_inference_ms_p50": float(diag.get("inference_ms_p50") or "nan"),
            "unmatched": received_after - int(lat.size) if received_after <= cycles else 0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=int, default=200, help="trajectories per setting (baseline: at most 20)")
    ap.add_argument("--settings", nargs="*", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    tmp = Path(tempfile.mkdtemp(prefix="node_latency_"))
    ckpt = make_checkpoint(tmp)
    student = make_student(ckpt, tmp) if STUDENT in args.settings else None
    standalone = standalone_inference_ms(ckpt)  # before any node or peer runs: the model alone
    context = rclpy.Context()
    rclpy.init(context=context)
    peer = Peer(context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(peer.node)
    threading.Thread(target=executor.spin, daemon=True).start()
    results = {}
    try:
        for name in args.settings:
            n = min(args.cycles, 20) if "baseline" in name else args.cycles
            params = {k: (student if v == "student" else v) for k, v in SETTINGS[name].items()}
            results[name] = run_setting(context, peer, ckpt, params, n, tmp / f"{name.split()[0]}.log")
            if not args.json:
                r = results[name]
                print(f"{name:<24} p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  cycles {r['cycles']:4d}  "
                      f"lost {r['lost']}  node inference p50 {r['node_inference_ms_p50']:.1f} ms", flush=True)
    finally:
        executor.shutdown(timeout_sec=5)
        peer.node.destroy_node()
        context.try_shutdown()
    default = results.get("ddim_10 (default: the fastest installed backend)") or next(iter(results.values()))
    out = {"p50_ms": default["p50_ms"], "p99_ms": default["p99_ms"], "cycles": default["cycles"],
           "lost": default["lost"], "standalone_inference_ms": standalone,
           # the default setting's inference inside the node (under the peer's load) / the same alone
           "node_vs_standalone": round(default["node_inference_ms_p50"] / standalone, 2),
           **({"student_p50_ms": results[STUDENT]["p50_ms"], "student_p99_ms": results[STUDENT]["p99_ms"]}
              if STUDENT in results else {}),
           "settings": results,
           "machine": machine(device="cpu", config="dp3 (default)", camera="640x480 30 Hz", joint_states_hz=250)}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"machine: {out['machine']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
