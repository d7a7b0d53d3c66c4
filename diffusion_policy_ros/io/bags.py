"""rosbag2 files (MCAP or sqlite3) read and written with ``rosbags``; no ROS installation needed.

``BagReader`` yields deserialised messages in log-time order (the order a live subscriber would have
received them); bags without stored message definitions (sqlite3 bags from Humble) fall back to a
typestore. ``BagWriter`` writes bags that ``ros2 bag info/play`` accept: message definitions, QoS
profiles, metadata.yaml on close.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import ReaderError, StoragePlugin, Writer, WriterError
from rosbags.typesys import Stores, get_typestore

from ..errors import BagError

TYPESTORES = {"jazzy": Stores.ROS2_JAZZY, "humble": Stores.ROS2_HUMBLE, "iron": Stores.ROS2_IRON,
              "kilted": Stores.ROS2_KILTED}
STORAGE = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
_INFINITE = QosTime(sec=9223372036, nsec=854775807)  # rmw's "infinite" duration, as ros2 bag writes it


def typestore(name: str = "jazzy"):
    if name not in TYPESTORES:
        raise BagError(f"typestore: expected one of {sorted(TYPESTORES)}, got {name!r}")
    return get_typestore(TYPESTORES[name])


def qos(reliable: bool, depth: int = 10) -> Qos:
    """An offered QoS profile: sensor data (best effort) or reliable, keep-last, volatile."""
    return Qos(history=QosHistory.KEEP_LAST, depth=depth,
               reliability=QosReliability.RELIABLE if reliable else QosReliability.BEST_EFFORT,
               durability=QosDurability.VOLATILE, deadline=_INFINITE, lifespan=_INFINITE,
               liveliness=QosLiveliness.AUTOMATIC, liveliness_lease_duration=_INFINITE,
               avoid_ros_namespace_conventions=False)


class BagReader:
    """One rosbag2 folder (or a ROS 1 .bag). Use as a context manager."""

    def __init__(self, path: str | Path, fallback_typestore: str = "jazzy"):
        self.path = Path(path)
        if not self.path.exists():
            raise BagError(f"bag: expected a rosbag2 folder or file, got '{self.path}' (not found)")
        try:
            self._reader = AnyReader([self.path], default_typestore=typestore(fallback_typestore))
            self._reader.open()
        except (AnyReaderError, ReaderError, OSError, ValueError, KeyError) as e:
            raise BagError(f"bag '{self.path}': cannot be opened ({type(e).__name__}: {e})") from None

    def __enter__(self) -> "BagReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._reader.close()

    @property
    def topics(self) -> dict[str, str]:
        """topic → message type."""
        return {c.topic: c.msgtype for c in self._reader.connections}

    @property
    def start_ns(self) -> int:
        return int(self._reader.start_time)

    @property
    def end_ns(self) -> int:
        return int(self._reader.end_time)

    def count(self, topic: str) -> int:
        return sum(c.msgcount for c in self._reader.connections if c.topic == topic)

    def require(self, wanted: dict[str, str]) -> None:
        """wanted: topic → expected type. A BagError lists what is missing and what the bag has."""
        have = self.topics
        missing = [f"{t} ({m})" for t, m in wanted.items() if t not in have]
        if missing:
            raise BagError(f"bag '{self.path}': missing topics {missing}; it has "
                           f"{sorted(f'{t} ({m})' for t, m in have.items())}")
        wrong = [f"{t}: expected {m}, got {have[t]}" for t, m in wanted.items() if have[t] != m]
        if wrong:
            raise BagError(f"bag '{self.path}': wrong message types: {wrong}")

    def messages(self, topics) -> Iterator[tuple[str, int, object]]:
        """(topic, log time ns, message) in log-time order. Truncated data → BagError."""
        conns = [c for c in self._reader.connections if c.topic in set(topics)]
        try:
            for conn, log_ns, raw in self._reader.messages(connections=conns):
                yield conn.topic, int(log_ns), self._reader.deserialize(raw, conn.msgtype)
        except (AnyReaderError, ReaderError, OSError, ValueError, KeyError, IndexError) as e:
            raise BagError(f"bag '{self.path}': unreadable data ({type(e).__name__}: {e})") from None


class BagWriter:
    """A new rosbag2 folder; ``write`` takes messages of the writer's typestore (``self.types``)."""

    def __init__(self, path: str | Path, storage: str = "mcap", store: str = "jazzy"):
        if storage not in STORAGE:
            raise BagError(f"storage: expected one of {sorted(STORAGE)}, got {storage!r}")
        self.path, self.store = Path(path), typestore(store)
        try:
            self._writer = Writer(self.path, version=9, storage_plugin=STORAGE[storage])
            self._writer.open()
        except (WriterError, OSError) as e:
            raise BagError(f"bag '{self.path}': cannot be created ({e})") from None
        self._conns: dict[str, object] = {}
        self.counts: dict[str, int] = {}

    def __enter__(self) -> "BagWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def add_topic(self, topic: str, msgtype: str, reliable: bool = False) -> None:
        if topic not in self._conns:
            self._conns[topic] = self._writer.add_connection(topic, msgtype, typestore=self.store,
                                                             offered_qos_profiles=[qos(reliable)])
            self.counts[topic] = 0

    def write(self, topic: str, log_ns: int, msg) -> None:
        conn = self._conns[topic]
        self.write_raw(topic, log_ns, self.store.serialize_cdr(msg, conn.msgtype))

    @property
    def closed(self) -> bool:
        return self._writer is None

    def write_raw(self, topic: str, log_ns: int, data: bytes | memoryview) -> None:
        if self._writer is None:
            raise BagError(f"bag '{self.path}': closed, cannot write {topic}")
        self._writer.write(self._conns[topic], int(log_ns), data)
        self.counts[topic] += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
