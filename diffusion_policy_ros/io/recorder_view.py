"""The recorder's live view: the topics ``recorder_node`` records, as they arrive, in Rerun (its ``rerun``
parameter). It decodes messages, so it lives with the message code (``io``), above the runtime's view."""
from __future__ import annotations

from ..constants import NS
from ..runtime.live_view import WRENCH_AXES, open_recording
from . import msgs as M


class RecorderView:
    """A live view of what ``recorder_node`` records (its ``rerun`` parameter): each recorded topic as it
    arrives, at most ``rate_hz`` messages per topic (decoding every 500 Hz wrench would cost the
    recorder more than the recording), on a ``time`` timeline in seconds of the recorder's log clock:

        camera/<topic>        colour and depth images (sensor_msgs/Image, CompressedImage)
        wrench/<topic>/{fx..tz}, joints/<topic>/<name>, command/<topic>/<joint>   (first point of a trajectory)
        recording             episode start / stop events

    Only what the messages themselves carry: the point cloud needs the policy's crop and extrinsic, which
    the policy node's own view shows."""

    def __init__(self, target: str, app: str = "recorder_node", rate_hz: float = 10.0):
        self.rr, self.rec = open_recording(target, app)
        self.min_gap_ns = int(NS / rate_hz) if rate_hz > 0 else 0
        self._last: dict[str, int] = {}

    def wants(self, topic: str, t_ns: int) -> bool:
        """Whether a message of ``topic`` at ``t_ns`` is due (the per-topic rate limit); cheap, no decoding."""
        last = self._last.get(topic)
        if last is not None and 0 <= t_ns - last < self.min_gap_ns:
            return False
        self._last[topic] = t_ns
        return True

    def message(self, topic: str, type_name: str, t_ns: int, msg) -> None:
        """Log one decoded message (rclpy or rosbags object)."""
        rr, rec = self.rr, self.rec
        rec.set_time("time", duration=t_ns / NS)
        name = topic.strip("/").replace("/", ".")
        if type_name == "sensor_msgs/msg/Image":
            if msg.encoding in ("16UC1", "mono16", "32FC1"):
                rec.log(f"camera/{name}", rr.DepthImage(M.decode_depth(msg), meter=1.0))
            else:
                rec.log(f"camera/{name}", rr.Image(M.decode_rgb(msg)))
        elif type_name == "sensor_msgs/msg/CompressedImage":
            img, kind = M.decode_compressed(msg)
            rec.log(f"camera/{name}", rr.DepthImage(img, meter=1.0) if kind == "depth" else rr.Image(img))
        elif type_name == "sensor_msgs/msg/JointState":
            for joint, v in zip(msg.name, msg.position):
                rec.log(f"joints/{name}/{joint}", rr.Scalars(float(v)))
        elif type_name == "geometry_msgs/msg/WrenchStamped":
            for axis, v in zip(WRENCH_AXES, M.decode_wrench(msg)):
                rec.log(f"wrench/{name}/{axis}", rr.Scalars(float(v)))
        elif type_name == "trajectory_msgs/msg/JointTrajectory" and len(msg.points):
            for joint, v in zip(msg.joint_names, msg.points[0].positions):
                rec.log(f"command/{name}/{joint}", rr.Scalars(float(v)))

    def event(self, t_ns: int, text: str) -> None:
        self.rec.set_time("time", duration=t_ns / NS)
        self.rec.log("recording", self.rr.TextLog(text))

    def close(self) -> None:
        self.rec.flush()
        self.rec.disconnect()
