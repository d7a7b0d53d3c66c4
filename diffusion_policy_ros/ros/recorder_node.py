"""The demonstration recorder: the robot's topics → one rosbag2 per episode, with episode metadata.

    ros2 run diffusion_policy_ros recorder_node --ros-args -p output_dir:=demos -p task:=push \\
        -p "topics:=[/camera/camera/color/image_raw, /joint_states, ...]"

Messages are taken serialised (no decoding on the callback thread) and written by a writer thread
in arrival order, stamped with the node clock (``use_sim_time`` honoured), so the recorder keeps up
with 30 Hz RGB-D and 500 Hz wrench. Each subscription copies the reliability and durability its
publishers offer, as ``ros2 bag record`` does: a reliable publisher is recorded without loss.

An episode is written to ``<output_dir>/episode_<n>.partial`` and renamed to ``episode_<n>`` when it
is closed, with ``episode.json`` (task, note, success, message counts) beside ``metadata.yaml``; a
killed recorder leaves earlier episodes intact and the unfinished one marked ``.partial`` (which
``dpros convert`` skips).

Services: ``~/start`` (std_srvs/Trigger), ``~/stop`` (std_srvs/SetBool: data = success),
``~/discard`` (std_srvs/Trigger). ``serialized:=false`` decodes each message on the callback thread
and encodes it again (what a recorder written against typed callbacks does; bench/recorder.py compares). Interactive (a terminal on stdin, ``keys`` true): s start,
y stop as success, n stop as failure, d discard, q quit. Status: ``~/recording`` (std_msgs/Bool).
"""
from __future__ import annotations

import importlib
import json
import queue
import shutil
import sys
import threading
import time
from pathlib import Path

import rclpy
from rclpy.node import Node
from rclpy.serialization import serialize_message
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Bool
from std_srvs.srv import SetBool, Trigger

from ..config import TopicsConfig
from ..errors import BagError, ConfigError
from .bags import BagWriter, typestore
from .entry import run_node

NODE_NAME = "recorder_node"
EPISODE_META = "episode.json"


def default_topics() -> list[str]:
    """What a policy needs, with the node's default (realsense-ros, ros2_control) names."""
    t = TopicsConfig()
    info = t.camera_info
    return [t.color, t.depth, info, t.color.rsplit("/", 1)[0] + "/camera_info", t.wrench, t.joint_states, t.command]


def message_class(type_name: str):
    pkg, kind, name = type_name.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)


class RecorderNode(Node):
    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        p = {name: self.declare_parameter(name, default).value for name, default in (
            ("output_dir", "recordings"), ("topics", default_topics()), ("storage", "mcap"),
            ("typestore", "jazzy"), ("task", ""), ("note", ""), ("max_episode_s", 0.0),
            ("start_recording", False), ("keys", True), ("serialized", True))}
        if p["storage"] not in ("mcap", "sqlite3"):
            raise ConfigError(f"storage: expected mcap or sqlite3, got {p['storage']!r}")
        self.p = p
        self.store = typestore(p["typestore"])
        self.out = Path(p["output_dir"])
        self.out.mkdir(parents=True, exist_ok=True)
        self.wanted = [t for t in p["topics"] if t]
        if not self.wanted:
            raise ConfigError("topics: expected at least one topic to record, got []")
        self.types: dict[str, str] = {}  # topic → type, once discovered
        self.qos: dict[str, QoSProfile] = {}
        self.received = {t: 0 for t in self.wanted}
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self.writer: BagWriter | None = None
        self.episode: Path | None = None
        self.episode_counts: dict[str, int] = {}
        self.started_ns = 0
        self.episodes_written = 0
        self._writer_thread = threading.Thread(target=self._write_loop, name="recorder_writer", daemon=True)
        self._writer_thread.start()
        self.status_pub = self.create_publisher(Bool, "~/recording", 10)
        self.create_service(Trigger, "~/start", self._on_start)
        self.create_service(SetBool, "~/stop", self._on_stop)
        self.create_service(Trigger, "~/discard", self._on_discard)
        self.create_timer(0.5, self._discover)
        self.create_timer(0.5, self._tick)
        self._discover()
        if p["start_recording"]:
            self.start()
        if p["keys"] and sys.stdin is not None and sys.stdin.isatty():
            threading.Thread(target=self._keys, name="recorder_keys", daemon=True).start()
        self.get_logger().info(f"recorder ready: {len(self.wanted)} topics → {self.out} ({p['storage']}); "
                               f"~/start, ~/stop, ~/discard")

    # --- subscriptions ---------------------------------------------------------------------------------
    def _discover(self) -> None:
        """Subscribe to each wanted topic once its type is known, with its publishers' QoS."""
        graph = dict(self.get_topic_names_and_types())
        for topic in self.wanted:
            if topic in self.types or topic not in graph:
                continue
            type_name = graph[topic][0]
            if type_name not in self.store.types:
                self.get_logger().error(f"{topic}: type {type_name} has no message definition in the "
                                        f"{self.p['typestore']} typestore; not recorded")
                self.types[topic] = ""
                continue
            pubs = self.get_publishers_info_by_topic(topic)
            reliable = bool(pubs) and all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in pubs)
            latched = bool(pubs) and all(i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for i in pubs)
            # Reliable: keep every sample until it is taken (KEEP_LAST would overwrite unread ones
            # whenever the executor falls behind by the depth, e.g. a GC pause at 500 Hz).
            qos = QoSProfile(history=HistoryPolicy.KEEP_ALL if reliable else HistoryPolicy.KEEP_LAST, depth=1000,
                             reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)
            self.types[topic], self.qos[topic] = type_name, qos
            self.create_subscription(message_class(type_name), topic, self._callback(topic), qos,
                                     raw=self.p["serialized"])
            self.get_logger().info(f"recording {topic} ({type_name}, {'reliable' if reliable else 'best effort'})")
            with self._lock:
                if self.writer is not None:
                    self._queue.put(("topic", self.writer, topic, None))

    def _callback(self, topic: str):
        def callback(data) -> None:
            self.received[topic] += 1
            if not self.p["serialized"]:  # the naive way, for bench/recorder.py: decode, then encode again
                data = serialize_message(data)
            writer = self.writer
            if writer is not None:
                self._queue.put(("msg", writer, topic, (self.get_clock().now().nanoseconds, data)))
        return callback

    # --- writing (one thread, arrival order) --------------------------------------------------------------
    def _write_loop(self) -> None:
        while True:
            kind, writer, topic, item = self._queue.get()
            try:
                if kind == "quit":
                    return
                if writer.closed:
                    continue  # arrived after the episode was closed
                if kind == "close":
                    writer.close()
                    continue
                if topic not in writer.counts:
                    qos = self.qos[topic]
                    writer.add_topic(topic, self.types[topic], reliable=qos.reliability == ReliabilityPolicy.RELIABLE)
                if kind == "msg":
                    writer.write_raw(topic, *item)
            except Exception as e:  # noqa: BLE001 - a bad write is logged, the recorder keeps going
                self.get_logger().error(f"{topic}: write failed: {e!r}")
            finally:
                self._queue.task_done()

    # --- episodes -----------------------------------------------------------------------------------------
    def start(self) -> str:
        with self._lock:
            if self.writer is not None:
                return f"already recording {self.episode.name}"
            n = 1 + max([int(p.name.split("_")[1].split(".")[0]) for p in self.out.glob("episode_*")
                         if p.name.split("_")[1].split(".")[0].isdigit()], default=-1)
            self.episode = self.out / f"episode_{n:04d}.partial"
            try:
                self.writer = BagWriter(self.episode, storage=self.p["storage"], store=self.p["typestore"])
            except BagError as e:
                self.writer = None
                return str(e)
            self.started_ns = self.get_clock().now().nanoseconds
            for topic, t in self.types.items():
                if t:
                    self._queue.put(("topic", self.writer, topic, None))
        self.get_logger().info(f"recording {self.episode.name}")
        return f"recording {self.episode.name}"

    def stop(self, success: bool | None, discard: bool = False) -> str:
        with self._lock:
            if self.writer is None:
                return "not recording"
            writer, episode, started = self.writer, self.episode, self.started_ns
            self.writer = None
        self._queue.put(("close", writer, "", None))
        self._queue.join()  # every message queued before stop is in the bag, and the bag is closed
        counts = dict(writer.counts)
        if discard:
            shutil.rmtree(episode, ignore_errors=True)
            self.get_logger().info(f"discarded {episode.name}")
            return f"discarded {episode.name}"
        final = episode.with_suffix("")
        meta = {"task": self.p["task"], "note": self.p["note"], "success": success,
                "duration_s": (self.get_clock().now().nanoseconds - started) / 1e9, "messages": counts,
                "recorded": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        (episode / EPISODE_META).write_text(json.dumps(meta, indent=2))
        episode.rename(final)
        self.episodes_written += 1
        self.get_logger().info(f"saved {final.name}: {sum(counts.values())} messages, success={success}")
        return f"saved {final}"

    def _on_start(self, request, response):
        response.message = self.start()
        response.success = response.message.startswith("recording")
        return response

    def _on_stop(self, request, response):
        response.message = self.stop(bool(request.data))
        response.success = response.message.startswith("saved")
        return response

    def _on_discard(self, request, response):
        response.message = self.stop(None, discard=True)
        response.success = response.message.startswith("discarded")
        return response

    def _tick(self) -> None:
        recording = self.writer is not None
        self.status_pub.publish(Bool(data=recording))
        limit = self.p["max_episode_s"]
        if recording and limit > 0 and (self.get_clock().now().nanoseconds - self.started_ns) / 1e9 > limit:
            self.get_logger().warning(f"episode longer than max_episode_s = {limit}: stopped (success unknown)")
            self.stop(None)

    def _keys(self) -> None:
        print("recorder: s start, y stop (success), n stop (failure), d discard, q quit", flush=True)
        for line in sys.stdin:
            key = line.strip()[:1].lower()
            if key == "s":
                print(self.start(), flush=True)
            elif key in ("y", "n"):
                print(self.stop(key == "y"), flush=True)
            elif key == "d":
                print(self.stop(None, discard=True), flush=True)
            elif key == "q":
                self.stop(None)
                rclpy.try_shutdown(context=self.context)
                return

    def destroy_node(self):
        """Ctrl-C or shutdown: the running episode is closed and kept, success unknown."""
        self.stop(None)
        self._queue.put(("quit", None, "", None))
        self._writer_thread.join(timeout=10)
        return super().destroy_node()


def main(args=None) -> None:
    run_node(RecorderNode, NODE_NAME, args)


if __name__ == "__main__":
    main()
