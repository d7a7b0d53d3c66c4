"""The ROS 2 room: nodes, entry points and launch helpers, the only modules that import rclpy.
Message conversion, bags and the input table live below, in the rclpy-free io/."""
