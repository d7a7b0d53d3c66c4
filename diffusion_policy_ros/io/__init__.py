"""ROS messages without rclpy: message ⇄ numpy (msgs.py), rosbag2 files (bags.py), the input table
that says which topic feeds which runtime input (inputs.py), and the bag feeder that replay and dataset
conversion share (replay.py), the recorder's live view (recorder_view.py). Below sim/ and data/; the rclpy
nodes in ros/ build on it."""
