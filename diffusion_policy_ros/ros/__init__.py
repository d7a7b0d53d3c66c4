"""The ROS 2 room: message conversion (msgs.py, importable without rclpy) and the nodes, the only
modules that import rclpy."""
