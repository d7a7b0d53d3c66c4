"""Spinning nodes in tests the way their processes spin them."""
from __future__ import annotations

import threading


class SpinEach:
    """Each node on its own single-threaded executor and thread, as ``ros2 run`` spins one node.

    One executor shared by a recorder and the test's publishers would make the recorder wait on the
    publishers' callbacks, a lag production never has (and, on a loaded machine, a flaky test)."""

    def __init__(self, context, *nodes):
        from rclpy.executors import SingleThreadedExecutor

        self.executors, self.threads = [], []
        for n in nodes:
            ex = SingleThreadedExecutor(context=context)
            ex.add_node(n)
            t = threading.Thread(target=ex.spin, daemon=True)
            t.start()
            self.executors.append(ex)
            self.threads.append(t)

    def shutdown(self, timeout: float = 5.0):
        """Stop spinning and wait for the threads, so no callback runs on a node destroyed after this."""
        for ex in self.executors:
            ex.shutdown(timeout_sec=timeout)
        for t in self.threads:
            t.join(timeout=timeout)


def interrupt(proc, timeout: float = 10.0) -> None:
    """Ctrl-C a node process as a terminal would; kill it if it does not exit."""
    import signal
    import subprocess

    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
