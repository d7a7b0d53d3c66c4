"""The one way our executables start a node: init, build it (a bad config is a fatal log line and exit
code 2, not a traceback), spin, and shut down cleanly on Ctrl-C or an external shutdown."""
from __future__ import annotations

from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from ..errors import DiffusionPolicyRosError


def run_node(make_node: Callable[[], Node], name: str, args=None) -> None:
    rclpy.init(args=args)
    try:
        try:
            node = make_node()
        except DiffusionPolicyRosError as e:
            rclpy.logging.get_logger(name).fatal(str(e))
            raise SystemExit(2) from None
        try:
            rclpy.spin(node)
        except RuntimeError:  # RCLError is one
            # Ctrl-C's handler can shut the context down while the executor builds its wait set, or
            # while it takes a message: those races raise RCLError ("context is not valid") or a
            # RuntimeError from the binding ("Unable to convert call argument") instead of
            # ExternalShutdownException. Any such error while the context is still valid is real.
            if rclpy.ok():
                raise
        finally:
            node.destroy_node()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        rclpy.try_shutdown()
