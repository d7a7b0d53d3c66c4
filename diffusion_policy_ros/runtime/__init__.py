"""The runtime shared by every driver (node, replay, simulator): observation window, action
scheduling, safety. Pure Python: no rclpy, no wall clock (drivers pass now_ns)."""
