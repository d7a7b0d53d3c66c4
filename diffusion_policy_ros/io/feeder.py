"""A bag's messages in header-stamp order: the one order in which replay and dataset conversion feed a
runtime, as the live node sees them (each sample placed by its stamp).

Arrival order across topics is not guaranteed (a recorder stamps receipt, DDS delivers each topic on
its own, and a loaded recorder serves topics seconds apart), but each topic arrives in order. So this
is a merge of per-topic streams: a message is released once every topic with messages still to come
has shown one stamped at or after it, or has been silent for ``MAX_HOLD_NS`` of stamps.
"""
from __future__ import annotations

import heapq
from typing import Callable, Iterator

from . import msgs as M

MAX_HOLD_NS = 5_000_000_000  # a topic silent for longer no longer holds the others back


def header_stamp(topic: str, msg) -> int | None:
    """The message's header stamp (0 is a time: sim bags start there), or None without a header."""
    try:
        return M.header_ns(msg)
    except (AttributeError, ValueError, TypeError):
        return None  # fed as read; the decoder names what is wrong


def command_stamp(topic: str, msg) -> int | None:
    """A command's stamp, None for 0 ("start now", joint_trajectory_controller's convention)."""
    return header_stamp(topic, msg) or None


def in_stamp_order(bag, topics: list[str],
                   stamp_of: Callable[[str, object], int | None] = header_stamp) -> Iterator[tuple[int, str, object]]:
    """(stamp, topic, message) of ``topics`` from an open ``io.bags.BagReader``, in stamp order.
    A message without a stamp (``stamp_of`` → None) takes the newest stamp read so far."""
    clock, heap, seq = None, [], 0
    left = {t: bag.count(t) for t in topics}
    newest: dict[str, int] = {}
    for topic, _, msg in bag.messages(topics):
        stamp = stamp_of(topic, msg)
        if stamp is None:
            stamp = clock or 0
        clock = stamp if clock is None else max(clock, stamp)
        newest[topic] = max(newest.get(topic, stamp), stamp)
        left[topic] -= 1
        heapq.heappush(heap, (stamp, seq, topic, msg))
        seq += 1
        waiting = [newest.get(t) for t, n in left.items() if n > 0]
        bound = clock - MAX_HOLD_NS
        if all(w is not None for w in waiting):
            bound = max(bound, min(waiting, default=clock))
        while heap and heap[0][0] <= bound:
            s, _, t, m = heapq.heappop(heap)
            yield s, t, m
    while heap:
        s, _, t, m = heapq.heappop(heap)
        yield s, t, m
