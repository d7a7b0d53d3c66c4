#!/usr/bin/env python3
"""Sustained recording throughput of the recorder node, and messages lost, against a baseline.

A publisher (this process) sends, over Fast DDS on loopback with reliable QoS, 640x480 rgb8 colour and
16UC1 depth at 30 Hz, camera_info at 30 Hz and a wrench at 500 Hz; ``recorder_node`` runs as its own
process (as ``ros2 run`` starts it) and records one episode. Counted: messages published, messages in
the bag (dropped = the difference), MB/s written. Modes: *serialized* (the default: callbacks take
the serialised bytes, a writer thread writes them) and *typed* (baseline: each message decoded on the
callback thread and encoded again, as a recorder written against typed callbacks does). ``~/stop`` is
called right after the last publish: the recorder itself takes what DDS already received (stop
drain). ``seq_gaps`` is the recorder's own count of messages it never received (publication
sequence gaps, in ``episode.json``), which should agree with ``dropped``.

    python bench/recorder.py                  # 20 s per mode
    python bench/recorder.py --seconds 600 --modes serialized   # the 10-minute figure (~27 GB of bag)
    python bench/recorder.py --json           # {"published", "recorded", "dropped", "mb_per_s", "modes": ...}
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
import time
from pathlib import Path

import numpy as np

from common import machine

TOPICS = {"color": "/camera/camera/color/image_raw", "depth": "/camera/camera/aligned_depth_to_color/image_raw",
          "info": "/camera/camera/aligned_depth_to_color/camera_info", "wrench": "/force_torque_sensor_broadcaster/wrench"}


def run_mode(serialized: bool, seconds: float, out: Path, drain_s: float = 0.0, depth: int = 100) -> dict:
    import rclpy
    from geometry_msgs.msg import WrenchStamped
    from rclpy.node import Node
    from sensor_msgs.msg import CameraInfo, Image
    from std_srvs.srv import SetBool, Trigger

    from diffusion_policy_ros.io import msgs as M
    from diffusion_policy_ros.io.bags import BagReader

    out.mkdir(parents=True)
    proc = subprocess.Popen([sys.executable, "-m", "diffusion_policy_ros.ros.recorder_node", "--ros-args",
                             "-p", f"output_dir:={out}", "-p", f"topics:=[{','.join(TOPICS.values())}]",
                             "-p", "keys:=false", "-p", f"serialized:={'true' if serialized else 'false'}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = Node("bench_publisher", context=ctx)
    T = M.RosTypes()
    pubs = {"color": node.create_publisher(Image, TOPICS["color"], depth),
            "depth": node.create_publisher(Image, TOPICS["depth"], depth),
            "info": node.create_publisher(CameraInfo, TOPICS["info"], depth),
            "wrench": node.create_publisher(WrenchStamped, TOPICS["wrench"], depth)}
    stop = node.create_client(SetBool, "/recorder_node/stop")
    start = node.create_client(Trigger, "/recorder_node/start")
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    depth_mm = rng.integers(300, 3000, (480, 640), dtype=np.uint16)
    intr = M.Intrinsics(640, 480, np.array([[600.0, 0, 320], [0, 600, 240], [0, 0, 1]]), np.zeros(5), "plumb_bob", "cam")
    sent = {k: 0 for k in pubs}
    try:
        end = time.monotonic() + 60
        while time.monotonic() < end and not all(p.get_subscription_count() > 0 for p in pubs.values()):
            time.sleep(0.1)
        for c in (start, stop):
            if not c.wait_for_service(timeout_sec=30):
                raise RuntimeError("recorder services did not appear")
        _call(ctx, node, start, start.srv_type.Request())
        t0, k = time.monotonic(), 0
        while time.monotonic() - t0 < seconds:
            now = node.get_clock().now().nanoseconds
            pubs["wrench"].publish(M.encode_wrench(T, np.full(6, 0.1), now))
            sent["wrench"] += 1
            if k % 17 == 0:  # ~29.4 Hz next to 500 Hz
                pubs["color"].publish(M.numpy_to_image(T, rgb, "rgb8", now))
                pubs["depth"].publish(M.numpy_to_image(T, depth_mm, "16UC1", now))
                pubs["info"].publish(M.encode_camera_info(T, intr, now))
                for key in ("color", "depth", "info"):
                    sent[key] += 1
            k += 1
            time.sleep(max(0.0, t0 + k / 500 - time.monotonic()))
        elapsed = time.monotonic() - t0
        time.sleep(drain_s)
        _call(ctx, node, stop, stop.srv_type.Request(data=True))
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
        proc.send_signal(signal.SIGINT)  # Ctrl-C: the recorder closes its bag and exits
        proc.wait(timeout=30)
    ep = out / "episode_0000"
    with BagReader(ep) as bag:
        recorded = {k: bag.count(t) for k, t in TOPICS.items()}
    size = sum(f.stat().st_size for f in ep.iterdir())
    gaps = json.loads((ep / "episode.json").read_text())["lost"]
    shutil.rmtree(out, ignore_errors=True)
    published, got = sum(sent.values()), sum(recorded.values())
    return {"seconds": round(elapsed, 2), "published": published, "recorded": got, "dropped": published - got,
            "seq_gaps": sum(gaps.values()),
            "per_topic": {k: {"published": sent[k], "recorded": recorded[k]} for k in sent},
            "messages_per_s": round(got / elapsed, 1), "mb_per_s": round(size / elapsed / 1e6, 2)}


def _call(ctx, node, client, request):
    from rclpy.executors import SingleThreadedExecutor

    future = client.call_async(request)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    ex.spin_until_future_complete(future, timeout_sec=120)
    ex.remove_node(node)
    if not future.done() or not future.result().success:
        raise RuntimeError(f"recorder service failed: {future.result() if future.done() else 'no answer'}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--publisher-depth", type=int, default=100,
                    help="publishers' KEEP_LAST history: a reliable publisher overwrites samples a subscriber "
                         "has not acknowledged once it is this many behind")
    ap.add_argument("--drain", type=float, default=0.0, help="seconds between the last publish and ~/stop")
    ap.add_argument("--modes", choices=("both", "serialized", "typed"), default="both")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(150 + os.getpid() % 60))
    root = Path(tempfile.mkdtemp(prefix="dpros_bench_recorder_"))
    try:
        modes = {}
        for name, serialized in (("serialized (default)", True), ("typed (baseline)", False)):
            if args.modes in ("both", name.split()[0]):
                modes[name] = run_mode(serialized, args.seconds, root / name.split()[0], args.drain,
                                       args.publisher_depth)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    d = next(iter(modes.values()))
    if args.json:
        print(json.dumps({"published": d["published"], "recorded": d["recorded"], "dropped": d["dropped"],
                          "mb_per_s": d["mb_per_s"], "publisher_depth": args.publisher_depth, "modes": modes, "machine": machine()}, indent=2))
        return 0
    print(f"recorder, {args.seconds:g} s: 640x480 rgb8 + 16UC1 + camera_info at ~30 Hz, wrench at 500 Hz, reliable, "
          f"publisher depth {args.publisher_depth}")
    print(f"  {'mode':<22}{'published':>10}{'recorded':>10}{'dropped':>9}{'seq gaps':>9}{'msg/s':>9}{'MB/s':>8}")
    for name, r in modes.items():
        print(f"  {name:<22}{r['published']:>10}{r['recorded']:>10}{r['dropped']:>9}{r['seq_gaps']:>9}"
              f"{r['messages_per_s']:>9.1f}{r['mb_per_s']:>8.2f}")
    print(f"machine: {machine()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
