"""The demonstration recorder: the robot's topics → one rosbag2 per episode, with episode metadata.

    ros2 run diffusion_policy_ros recorder_node --ros-args -p output_dir:=demos -p task:=push \\
        -p "topics:=[/camera/camera/color/image_raw, /joint_states, ...]"

Messages are taken serialised (no decoding on the callback thread) and written by a writer thread
in arrival order, stamped with the time DDS received them (the node clock under ``use_sim_time``),
so the recorder keeps up with 30 Hz RGB-D and 500 Hz wrench. Each subscription copies the
reliability and durability its publishers offer, as ``ros2 bag record`` does: a reliable publisher is
recorded without loss. Where a topic has one publisher, gaps in its publication sequence numbers are
counted per episode (``lost`` in ``episode.json``, and a warning).

Stopping drains: every message sent before the stop was handled goes into the episode, even if the
subscriptions' executor lags behind or a reliable resend arrives later; the episode closes once each
recorded topic has delivered a message sent after the stop, or none for ``stop_drain_s`` while
messages sent before it are still being taken (at most 30 s). "Sent" is the
DDS source timestamp, or the receive time where that is earlier: clocks of machines in one cell are
expected to agree within milliseconds (chrony/NTP); one running behind moves the cut by its offset.

One thread spins everything (rclpy's MultiThreadedExecutor costs ~3x the CPU per message and fell
behind 500 Hz here); the stop and discard services are coroutines that wait for the drain without
holding that thread, so the subscriptions go on being taken while a stop waits for them.

Latched topics (``optional_topics``: ``/tf_static`` and ``/robot_description`` by default, recorded when
something publishes them; any topic whose publishers are transient-local) are published once: their
last message is written at the start of every episode, so each bag is self-contained. A listed topic
that never appears is warned about (after ``topic_timeout_s``, and in ``episode.json`` as ``missing``).

An episode is written to ``<output_dir>/episode_<n>.partial`` and renamed to ``episode_<n>`` when it
is closed, with ``episode.json`` (task, note, success, message counts, per-topic rates, missing
topics, the camera extrinsic) beside ``metadata.yaml``; a
killed recorder leaves earlier episodes intact and the unfinished one marked ``.partial`` (which
``dpros convert`` skips).

Takeover segments: ``takeover_topic`` (std_msgs/Bool, teleop_node's deadman while policy_node drives)
is recorded when something publishes it, and each stretch it is true goes into ``episode.json`` as
``takeover: [{start_s, end_s}]`` (seconds from the episode start; ``dpros convert --segments takeover``
reads the topic itself from the bag).

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
from dataclasses import dataclass, field
from pathlib import Path

import rclpy
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.serialization import serialize_message
from rclpy.task import Future
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Bool
from std_srvs.srv import SetBool, Trigger

from ..config import TopicsConfig
from ..errors import BagError, ConfigError
from ..io.bags import BagWriter, typestore
from .entry import run_node

NODE_NAME = "recorder_node"
EPISODE_META = "episode.json"
MAX_DRAIN_S = 30.0  # a stop waits at most this long for a lagging executor


def default_topics() -> list[str]:
    """What a policy needs, with the node's default (realsense-ros, ros2_control) names."""
    t = TopicsConfig()
    info = t.camera_info
    return [t.color, t.depth, info, t.color.rsplit("/", 1)[0] + "/camera_info", t.wrench, t.joint_states, t.command]


@dataclass(eq=False)
class _Episode:
    writer: BagWriter
    path: Path
    started_ns: int
    stop_ns: int = 0  # wall time the stop was handled; messages sent until then belong here
    stop_mono: float = 0.0
    active: set = field(default_factory=set)  # topics with messages in this episode
    passed: set = field(default_factory=set)  # topics that delivered a message received after the stop
    lost: dict = field(default_factory=dict)  # topic → publication sequence numbers never received
    takeover: list = field(default_factory=list)  # [start_ns, end_ns or None] while the deadman was held
    span: dict = field(default_factory=dict)  # topic → [first, last] send time (ns) in this episode
    last_taken: float = 0.0  # monotonic time a message sent before the stop was last taken
    drained: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    success: bool | None = None
    discard: bool = False
    result: str = ""


def declared_parameters() -> dict[str, object]:
    """Every parameter the node declares, with its default (launch files and tests check against this)."""
    return {"output_dir": "recordings", "topics": default_topics(), "storage": "mcap", "typestore": "jazzy",
            "task": "", "note": "", "max_episode_s": 0.0, "start_recording": False, "keys": True,
            "serialized": True, "stop_drain_s": 2.0, "optional_topics": ["/tf_static", "/robot_description"],
            "topic_timeout_s": 5.0, "extrinsic": [0.0], "rerun": "", "rerun_rate_hz": 10.0,
            "takeover_topic": "/teleop/takeover"}


# What each parameter does (``ros2 param describe``).
DESCRIPTIONS = {
    "output_dir": "folder the episodes are written to (~ expanded)",
    "topics": "topics to record; each one that never appears is warned about",
    "storage": "rosbag2 storage: mcap | sqlite3",
    "typestore": "message definitions for the bags (rosbags typestore name, e.g. jazzy)",
    "task": "task name stored in every episode.json",
    "note": "operator note stored in every episode.json",
    "max_episode_s": "stop an episode after this many seconds (0: no limit)",
    "start_recording": "start an episode as soon as the node is up",
    "keys": "keyboard control on a terminal (s start, y/n stop, d discard, q quit)",
    "serialized": "record serialized messages (false: decode and encode again, for bench/recorder.py)",
    "stop_drain_s": "after a stop, wait up to this long for messages sent before it",
    "optional_topics": "recorded when something publishes them, no warning otherwise (latched: written "
                       "at every episode start)",
    "topic_timeout_s": "warn about a listed topic not seen this long after start-up",
    "extrinsic": "camera→base transform (7: xyz + quaternion xyzw, or 16: row-major 4x4) stored in "
                 "episode.json; [0.0]: unknown",
    "rerun": "live view of the recorded topics in Rerun: spawn (a viewer) or FILE.rrd; empty: none",
    "rerun_rate_hz": "live view: at most this many messages per topic and second are decoded and shown",
    "takeover_topic": "std_msgs/Bool of the teleop deadman during policy takeover: recorded when published, its "
                      "true stretches listed in episode.json (empty: none)",
}


def message_class(type_name: str):
    pkg, kind, name = type_name.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)


class RecorderNode(Node):
    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        from rcl_interfaces.msg import ParameterDescriptor

        p = {name: self.declare_parameter(name, default, ParameterDescriptor(description=DESCRIPTIONS[name],
                                                                              read_only=True)).value
             for name, default in declared_parameters().items()}
        if len(p["extrinsic"]) not in (1, 7, 16):
            raise ConfigError(f"extrinsic: expected 7 values (xyz + quaternion xyzw) or 16 (row-major 4x4), got "
                              f"{len(p['extrinsic'])}")
        if p["storage"] not in ("mcap", "sqlite3"):
            raise ConfigError(f"storage: expected mcap or sqlite3, got {p['storage']!r}")
        self.p = p
        self.store = typestore(p["typestore"])
        self.out = Path(p["output_dir"]).expanduser()  # `-p output_dir:=~/demos` reaches us unexpanded
        self.out.mkdir(parents=True, exist_ok=True)
        self.wanted = [t for t in p["topics"] if t]
        if not self.wanted:
            raise ConfigError("topics: expected at least one topic to record, got []")
        extra = [p["takeover_topic"]] if p["takeover_topic"] else []
        self.optional = [t for t in list(p["optional_topics"]) + extra if t and t not in self.wanted]
        self.wanted += self.optional
        self._latched: dict[str, tuple[int, object]] = {}  # topic → its last message (written at each start)
        self._started_mono = time.monotonic()
        self._warned_missing: set[str] = set()
        self.types: dict[str, str] = {}  # topic → type, once discovered
        self.qos: dict[str, QoSProfile] = {}
        self.received = {t: 0 for t in self.wanted}
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self.current: _Episode | None = None
        self._closing: list[_Episode] = []  # stopped, still taking messages received before their stop
        self._closed_until = 0  # messages received before this (wall ns) belong to closed episodes
        self.late = 0  # such messages taken after their episode closed (executor lag > stop_drain_s)
        self._last_seq: dict[str, int] = {}
        self._takeover = False  # the deadman's last state
        self._single_publisher: dict[str, bool] = {}
        self._sim_time = self.get_parameter("use_sim_time").value
        self._async = ReentrantCallbackGroup()  # stop coroutines and the timers they wait on
        self.episodes_written = 0
        self.view = None
        self._view_warned: set[str] = set()
        if p["rerun"]:
            from ..io.recorder_view import RecorderView

            target = p["rerun"] if p["rerun"] == "spawn" else str(Path(p["rerun"]).expanduser())
            self.view = RecorderView(target, rate_hz=p["rerun_rate_hz"])
        self._writer_thread = threading.Thread(target=self._write_loop, name="recorder_writer", daemon=True)
        self._writer_thread.start()
        self.status_pub = self.create_publisher(Bool, "~/recording", 10)
        self.create_service(Trigger, "~/start", self._on_start)
        self.create_service(SetBool, "~/stop", self._on_stop, callback_group=self._async)
        self.create_service(Trigger, "~/discard", self._on_discard, callback_group=self._async)
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
            self._single_publisher[topic] = len(pubs) == 1
            reliable = bool(pubs) and all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in pubs)
            latched = bool(pubs) and all(i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for i in pubs)
            # Reliable: keep every sample until it is taken (KEEP_LAST would overwrite unread ones
            # whenever the executor falls behind by the depth, e.g. a GC pause at 500 Hz).
            qos = QoSProfile(history=HistoryPolicy.KEEP_ALL if reliable else HistoryPolicy.KEEP_LAST, depth=1000,
                             reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)
            try:
                cls = message_class(type_name)
            except ImportError:
                self.get_logger().error(f"{topic}: the {type_name.split('/')[0]} Python package is not "
                                        f"installed here; not recorded")
                self.types[topic] = ""
                continue
            self.types[topic], self.qos[topic] = type_name, qos
            self.create_subscription(cls, topic, self._callback(topic, latched), qos, raw=self.p["serialized"])
            self.get_logger().info(f"recording {topic} ({type_name}, {'reliable' if reliable else 'best effort'})")
            with self._lock:
                if self.current is not None:
                    self._queue.put(("topic", self.current.writer, topic, None))
        for topic in self.types:  # sequence gaps mean something only with one publisher
            self._single_publisher[topic] = self.count_publishers(topic) == 1
        if time.monotonic() - self._started_mono > self.p["topic_timeout_s"]:
            for topic in self.wanted:
                if topic not in self.types and topic not in self.optional and topic not in self._warned_missing:
                    self._warned_missing.add(topic)
                    self.get_logger().warning(f"{topic}: listed in topics but nothing publishes it "
                                              f"({self.p['topic_timeout_s']:g} s after start-up); not recorded "
                                              f"until it appears")

    def _callback(self, topic: str, latched: bool = False):
        def callback(data, info) -> None:
            self.received[topic] += 1
            if latched:  # kept for every later episode's start
                self._latched[topic] = data if self.p["serialized"] else serialize_message(data)
            rx = info.get("received_timestamp") or time.time_ns()
            # Which episode: by when it was sent (a reliable resend arrives late), or received if that
            # is earlier (a publisher clock running ahead of this machine's).
            sent = min(rx, info.get("source_timestamp") or rx)
            seq, last = info.get("publication_sequence_number"), self._last_seq.get(topic)
            if seq:
                self._last_seq[topic] = seq
            if not self.p["serialized"]:  # the naive way, for bench/recorder.py: decode, then encode again
                data = serialize_message(data)
            if topic == self.p["takeover_topic"]:  # whether recording or not: an episode may start mid-takeover
                self._mark_takeover(data, self.get_clock().now().nanoseconds if self._sim_time else rx)
            if self.view is not None and self.view.wants(topic, rx):  # decoded on the writer thread
                self._queue.put(("view", None, topic, (rx, data)))
            with self._lock:
                ep = self._episode_of(topic, sent)
                if ep is None:
                    return
                ep.active.add(topic)
                span = ep.span.setdefault(topic, [sent, sent])
                span[1] = sent
                if seq and last and seq > last + 1 and self._single_publisher.get(topic):
                    ep.lost[topic] = ep.lost.get(topic, 0) + seq - last - 1
            log_ns = self.get_clock().now().nanoseconds if self._sim_time else rx
            self._queue.put(("msg", ep.writer, topic, (log_ns, data)))
        return callback

    def _mark_takeover(self, data: bytes, t_ns: int) -> None:
        """A deadman message (serialised Bool): open or close a takeover segment of the running episode."""
        from rclpy.serialization import deserialize_message

        held = bool(deserialize_message(data, Bool).data)
        with self._lock:
            ep = self.current
            if held != self._takeover and ep is not None:
                if held:
                    ep.takeover.append([t_ns, None])
                elif ep.takeover and ep.takeover[-1][1] is None:
                    ep.takeover[-1][1] = t_ns
            self._takeover = held

    def _episode_of(self, topic: str, sent: int) -> _Episode | None:
        """The episode a message sent at ``sent`` belongs to; call with the lock held."""
        for ep in self._closing:  # oldest stop first
            if sent <= ep.stop_ns:
                ep.last_taken = time.monotonic()
                return ep
            if topic not in ep.passed:
                ep.passed.add(topic)
                if ep.active <= ep.passed:
                    ep.drained.set()
        if sent <= self._closed_until:
            self.late += 1
            if self.late == 1 or self.late % 1000 == 0:
                self.get_logger().warning(f"{self.late} message(s) received before a stop were taken after "
                                          f"their episode closed (executor lag > stop_drain_s); not recorded")
            return None
        return self.current

    # --- writing (one thread, arrival order) --------------------------------------------------------------
    def _write_loop(self) -> None:
        while True:
            kind, writer, topic, item = self._queue.get()
            try:
                if kind == "quit":
                    return
                if kind == "view":
                    self._show(topic, *item)
                    continue
                if kind == "event":
                    self.view.event(*item)
                    continue
                if writer.closed:
                    continue  # arrived after the episode was closed
                if kind == "close":
                    writer.close()
                    self._finalise(item)
                    continue
                if topic not in writer.counts:
                    qos = self.qos[topic]
                    writer.add_topic(topic, self.types[topic], reliable=qos.reliability == ReliabilityPolicy.RELIABLE)
                if kind == "msg":
                    writer.write_raw(topic, *item)
            except Exception as e:  # noqa: BLE001 - a bad write is logged, the recorder keeps going
                self.get_logger().error(f"{topic or kind}: write failed: {e!r}")
                if kind == "close":
                    item.result = f"failed to close {item.path.name}: {e!r}"
                    item.done.set()
            finally:
                self._queue.task_done()

    def _show(self, topic: str, t_ns: int, data: bytes) -> None:
        """Live view of one message (writer thread): decoded here, never on the subscription thread."""
        from rclpy.serialization import deserialize_message

        try:
            self.view.message(topic, self.types[topic], t_ns,
                              deserialize_message(data, message_class(self.types[topic])))
        except Exception as e:  # noqa: BLE001 - a message the view cannot show is skipped, recording goes on
            if topic not in self._view_warned:
                self._view_warned.add(topic)
                self.get_logger().warning(f"{topic}: not shown in the live view: {e}")

    # --- episodes -----------------------------------------------------------------------------------------
    def start(self) -> str:
        with self._lock:
            if self.current is not None:
                return f"already recording {self.current.path.name}"
            names = [p.name.split("_")[1].split(".")[0] for p in self.out.glob("episode_*")]
            names += [ep.path.name.split("_")[1].split(".")[0] for ep in self._closing]
            n = 1 + max([int(x) for x in names if x.isdigit()], default=-1)
            path = self.out / f"episode_{n:04d}.partial"
            try:
                writer = BagWriter(path, storage=self.p["storage"], store=self.p["typestore"])
            except BagError as e:
                return str(e)
            self.current = _Episode(writer, path, self.get_clock().now().nanoseconds)
            if self._takeover:  # started while someone holds the deadman
                self.current.takeover.append([self.current.started_ns, None])
            for topic, t in self.types.items():
                if t:
                    self._queue.put(("topic", writer, topic, None))
            for topic, data in self._latched.items():  # /tf_static, /robot_description: once per bag
                self.current.active.add(topic)
                self.current.passed.add(topic)  # nothing more will come: do not wait for it at the stop
                self._queue.put(("msg", writer, topic, (self.current.started_ns, data)))
        self.get_logger().info(f"recording {path.name}")
        if self.view is not None:
            self._queue.put(("event", None, "", (time.time_ns(), f"recording {path.name}")))
        return f"recording {path.name}"

    def stop(self, success: bool | None, discard: bool = False, drain_s: float | None = None) -> str:
        """Close the running episode once the messages sent before now are in it. Blocks for up to
        ``stop_drain_s`` (``drain_s``) while the subscriptions catch up: call it from a thread other
        than the one spinning the node (the services use ``stop_async``)."""
        ep, drain = self._begin_stop(success, discard, drain_s)
        if ep is None:
            return "not recording"
        while ep.active and not ep.drained.is_set() and self._draining(ep, drain):
            ep.drained.wait(0.01)
        self._end_stop(ep, drain)
        if not ep.done.wait(60.0):
            return f"{ep.path.name}: the writer did not close the bag within 60 s"
        return ep.result

    async def stop_async(self, success: bool | None, discard: bool = False, drain_s: float | None = None) -> str:
        """``stop`` as a coroutine for the executor's own thread: it waits without blocking the spin."""
        ep, drain = self._begin_stop(success, discard, drain_s)
        if ep is None:
            return "not recording"
        while ep.active and not ep.drained.is_set() and self._draining(ep, drain):
            await self._sleep(0.01)
        self._end_stop(ep, drain)
        deadline = time.monotonic() + 60.0
        while not ep.done.is_set():
            if time.monotonic() > deadline:
                return f"{ep.path.name}: the writer did not close the bag within 60 s"
            await self._sleep(0.01)
        return ep.result

    async def _sleep(self, seconds: float) -> None:
        """Yield to the executor for ``seconds`` (a one-shot timer completes a future)."""
        done = Future()
        timer = self.create_timer(seconds, lambda: done.done() or done.set_result(None), callback_group=self._async)
        try:
            await done
        finally:
            self.destroy_timer(timer)

    def _begin_stop(self, success, discard, drain_s) -> tuple[_Episode | None, float]:
        drain = max(0.0, self.p["stop_drain_s"] if drain_s is None else drain_s)
        with self._lock:
            ep = self.current
            if ep is None:
                return None, drain
            self.current = None
            ep.success, ep.discard, ep.stop_ns, ep.stop_mono = success, discard, time.time_ns(), time.monotonic()
            self._closing.append(ep)
        if self.view is not None:
            what = "discarded" if discard else {True: "success", False: "failure", None: "stopped"}[success]
            self._queue.put(("event", None, "", (ep.stop_ns, f"{ep.path.name}: {what}")))
        return ep, drain

    @staticmethod
    def _draining(ep: _Episode, drain: float) -> bool:
        """Go on waiting: within ``drain`` of the stop, or of the last message sent before it that was
        taken (the executor is still catching up), at most MAX_DRAIN_S."""
        now = time.monotonic()
        return now - ep.stop_mono < min(MAX_DRAIN_S, drain) or (
            now - ep.last_taken < drain and now - ep.stop_mono < MAX_DRAIN_S)

    def _end_stop(self, ep: _Episode, drain: float) -> None:
        if ep.active and drain > 0 and not ep.drained.is_set():
            quiet = sorted(ep.active - ep.passed)
            self.get_logger().info(f"{ep.path.name}: closed after stop_drain_s = {drain} s without a newer "
                                   f"message on {quiet}")
        with self._lock:
            self._closing.remove(ep)
            self._closed_until = max(self._closed_until, ep.stop_ns)
            self._queue.put(("close", ep.writer, "", ep))

    def _finalise(self, ep: _Episode) -> None:
        """On the writer thread, after the bag is closed: metadata and the final name, or nothing."""
        counts = dict(ep.writer.counts)
        if ep.discard:
            shutil.rmtree(ep.path, ignore_errors=True)
            ep.result = f"discarded {ep.path.name}"
        else:
            final = ep.path.with_suffix("")
            duration = (self.get_clock().now().nanoseconds - ep.started_ns) / 1e9
            listed = [t for t in self.wanted if t not in self.optional]
            missing = [t for t in listed if not counts.get(t)]
            if missing:
                self.get_logger().warning(f"{final.name}: no message on {missing}")
            meta = {"task": self.p["task"], "note": self.p["note"], "success": ep.success,
                    "duration_s": duration, "messages": counts,
                    # messages per second between a topic's first and last message in the episode
                    "rates_hz": {t: round((counts[t] - 1) / ((b - a) / 1e9), 2) for t, (a, b) in ep.span.items()
                                 if b > a and counts.get(t, 0) > 1 and t not in self._latched},
                    "missing": missing, "lost": ep.lost,
                    "takeover": [{"start_s": round((a - ep.started_ns) / 1e9, 3),
                                  "end_s": round(((b or ep.started_ns + int(duration * 1e9)) - ep.started_ns) / 1e9, 3)}
                                 for a, b in ep.takeover],
                    "extrinsic": list(self.p["extrinsic"]) if len(self.p["extrinsic"]) > 1 else None,
                    "recorded": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            (ep.path / EPISODE_META).write_text(json.dumps(meta, indent=2))
            ep.path.rename(final)
            self.episodes_written += 1
            ep.result = f"saved {final}"
            if ep.lost:
                self.get_logger().warning(f"{final.name}: publication sequence gaps (messages never received): "
                                          f"{ep.lost}")
        self.get_logger().info(f"{ep.result.split(' ')[0]} {ep.path.with_suffix('').name}: "
                               f"{sum(counts.values())} messages, success={ep.success}")
        ep.done.set()

    def _on_start(self, request, response):
        response.message = self.start()
        response.success = response.message.startswith("recording")
        return response

    async def _on_stop(self, request, response):
        response.message = await self.stop_async(bool(request.data))
        response.success = response.message.startswith("saved")
        return response

    async def _on_discard(self, request, response):
        response.message = await self.stop_async(None, discard=True)
        response.success = response.message.startswith("discarded")
        return response

    def _tick(self) -> None:
        ep = self.current
        self.status_pub.publish(Bool(data=ep is not None))
        limit = self.p["max_episode_s"]
        if ep is not None and limit > 0 and (self.get_clock().now().nanoseconds - ep.started_ns) / 1e9 > limit:
            self.get_logger().warning(f"episode longer than max_episode_s = {limit}: stopped (success unknown)")
            self.executor.create_task(self.stop_async(None))

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
        """Ctrl-C or shutdown: the running episode is closed and kept, success unknown (nothing spins
        the subscriptions any more, so no drain)."""
        self.stop(None, drain_s=0.0)
        self._queue.put(("quit", None, "", None))
        self._writer_thread.join(timeout=10)
        if self.view is not None:
            self.view.close()
        return super().destroy_node()


def main(args=None) -> None:
    run_node(RecorderNode, NODE_NAME, args)


if __name__ == "__main__":
    main()
