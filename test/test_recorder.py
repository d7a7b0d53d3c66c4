"""The recorder node over real rclpy + Fast DDS: episodes via services, no message lost from reliable
publishers, discard, and a killed recorder leaving earlier episodes intact."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from .spinning import SpinEach

pytest.importorskip("rclpy")

COLOR, WRENCH, JOINTS = "/cam/color/image_raw", "/ft/wrench", "/joint_states"


class Peer:
    """Publishes reliable colour, wrench and joint_states; calls the recorder's services."""

    def __init__(self, context, recorder="/recorder_node"):
        from geometry_msgs.msg import WrenchStamped
        from rclpy.node import Node
        from sensor_msgs.msg import Image, JointState
        from std_srvs.srv import SetBool, Trigger

        from diffusion_policy_ros.io import msgs as M

        self.M, self.types = M, M.RosTypes()
        self.node = node = Node("peer", context=context)
        self.pubs = {COLOR: node.create_publisher(Image, COLOR, 100), WRENCH: node.create_publisher(WrenchStamped, WRENCH, 100),
                     JOINTS: node.create_publisher(JointState, JOINTS, 100)}
        self.clients = {"start": node.create_client(Trigger, recorder + "/start"),
                        "stop": node.create_client(SetBool, recorder + "/stop"),
                        "discard": node.create_client(Trigger, recorder + "/discard")}
        self.sent = {t: 0 for t in self.pubs}
        self.stamps = {t: [] for t in self.pubs}
        self.rgb = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)

    def wait_subscribed(self, timeout=20.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if all(p.get_subscription_count() > 0 for p in self.pubs.values()):
                return
            time.sleep(0.05)
        raise AssertionError("the recorder did not subscribe to every topic")

    def publish(self, seconds: float, camera_hz=30, wrench_hz=500, until: threading.Event | None = None):
        """Wrench at wrench_hz, colour every wrench_hz/camera_hz, joints every other wrench message, for
        `seconds` or until `until` is set. Each message's header stamp (wall ns) is kept in self.stamps."""
        T, M = self.types, self.M
        every = wrench_hz // camera_hz
        t0, k = time.monotonic(), 0
        while (until.is_set() is False) if until is not None else (time.monotonic() - t0 < seconds):
            now = self.node.get_clock().now().nanoseconds
            sent = [(WRENCH, M.encode_wrench(T, np.full(6, k * 0.001), now))]
            if k % 2 == 0:
                sent.append((JOINTS, M.encode_joint_state(T, ["a", "b"], [k * 0.01, 0.0], now)))
            if k % every == 0:
                sent.append((COLOR, M.numpy_to_image(T, self.rgb, "rgb8", now)))
            for topic, msg in sent:
                self.pubs[topic].publish(msg)
                self.sent[topic] += 1
                self.stamps[topic].append(now)
            k += 1
            time.sleep(max(0.0, t0 + k / wrench_hz - time.monotonic()))

    def publishing(self):
        """Publish in a thread until the returned event is set; → (event, thread)."""
        done = threading.Event()
        t = threading.Thread(target=self.publish, args=(0.0,), kwargs={"until": done}, daemon=True)
        t.start()
        return done, t

    def call(self, name, **fields):
        client = self.clients[name]
        assert client.wait_for_service(timeout_sec=20)
        req = client.srv_type.Request(**fields)
        future = client.call_async(req)
        done = threading.Event()
        future.add_done_callback(lambda f: done.set())
        assert done.wait(30), f"{name}: no response"
        return future.result()


def test_episodes_record_every_message_and_discard_leaves_nothing(ros_context, tmp_path):
    from rclpy.parameter import Parameter

    from diffusion_policy_ros.io import msgs as M
    from diffusion_policy_ros.io.bags import BagReader
    from diffusion_policy_ros.ros.recorder_node import RecorderNode

    rec = RecorderNode(context=ros_context, parameter_overrides=[
        Parameter("output_dir", value=str(tmp_path)), Parameter("topics", value=[COLOR, WRENCH, JOINTS]),
        Parameter("task", value="wipe"), Parameter("keys", value=False)])
    peer = Peer(ros_context)
    ex = SpinEach(ros_context, rec, peer.node)
    try:
        peer.wait_subscribed()
        assert peer.call("start").success
        done, thread = peer.publishing()  # the sensors keep streaming through the stop, as on a robot
        time.sleep(2.0)
        before_stop = time.time_ns()
        r = peer.call("stop", data=True)
        done.set()
        thread.join()
        assert r.success, r.message
        ep = tmp_path / "episode_0000"
        meta = json.loads((ep / "episode.json").read_text())
        assert meta["task"] == "wipe" and meta["success"] is True and meta["lost"] == {}
        with BagReader(ep) as bag:
            counts = {t: bag.count(t) for t in (COLOR, WRENCH, JOINTS)}
            stamps = {t: [M.header_ns(m) for _, _, m in bag.messages([t])] for t in counts}
            colour = next(m for _, _, m in bag.messages([COLOR]))
        for t, got in stamps.items():  # reliable publishers: nothing lost, nothing sent before the stop missing
            assert got == peer.stamps[t][:len(got)], f"{t}: not the published sequence"
            assert got[-1] >= max(s for s in peer.stamps[t] if s < before_stop), f"{t}: cut before the stop"
        np.testing.assert_array_equal(M.decode_rgb(colour), peer.rgb)
        assert meta["messages"] == counts
        # An episode started and discarded leaves no trace; stop without recording is refused.
        assert peer.call("start").success
        peer.publish(0.3)
        assert peer.call("discard").success
        assert sorted(p.name for p in tmp_path.iterdir()) == ["episode_0000"]
        assert not peer.call("stop", data=True).success
    finally:
        ex.shutdown()
        rec.destroy_node()
        peer.node.destroy_node()


def test_killed_recorder_keeps_earlier_episodes_and_marks_the_partial_one(ros_context, tmp_path, capsys):
    from diffusion_policy_ros.cli import main

    env = dict(os.environ)
    proc = subprocess.Popen([sys.executable, "-m", "diffusion_policy_ros.ros.recorder_node", "--ros-args",
                             "-p", f"output_dir:={tmp_path}", "-p", f"topics:=[{COLOR},{WRENCH},{JOINTS}]",
                             "-p", "keys:=false"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    peer = Peer(ros_context)
    ex = SpinEach(ros_context, peer.node)
    try:
        peer.wait_subscribed(timeout=40)
        assert peer.call("start").success
        peer.publish(0.6)
        assert peer.call("stop", data=True).success
        assert peer.call("start").success
        peer.publish(0.6)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=20)
    finally:
        ex.shutdown()
        peer.node.destroy_node()
        if proc.poll() is None:
            proc.kill()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["episode_0000", "episode_0001.partial"], names
    assert json.loads((tmp_path / "episode_0000" / "episode.json").read_text())["success"] is True
    # convert skips the partial one by name; the finished one opens as a bag (its topics are not a
    # policy's, so it is refused for the missing topics, not as corrupt).
    code = main(["convert", str(tmp_path), "--config", "dp3", "--variant", "small", "--out",
                 str(tmp_path / "d.zarr"), "--no-progress", "--json"])
    out = capsys.readouterr()
    assert code == 1 and "episode_0001.partial: partial recording" in out.err
    assert "missing topics" in json.loads(out.out)["skipped"][0]["reason"]


def test_recorder_bench_json_has_the_promised_fields(ros_context):
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(root / "bench" / "recorder.py"), "--seconds", "1.5", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(proc.stdout)
    assert r["published"] > 500 and r["recorded"] + r["dropped"] == r["published"] and r["mb_per_s"] > 1
    assert set(r["modes"]) == {"serialized (default)", "typed (baseline)"}
    for m in r["modes"].values():  # what the recorder saw missing can only be what the bag lacks
        assert 0 <= m["seq_gaps"] <= m["dropped"]


def test_latched_robot_description_opens_every_episode_and_a_missing_topic_is_reported(ros_context, tmp_path):
    """/robot_description (transient local, published once) is written into each episode; a listed topic
    nothing publishes is named in episode.json; rates and the extrinsic are recorded."""
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String

    from diffusion_policy_ros.io.bags import BagReader
    from diffusion_policy_ros.ros.recorder_node import RecorderNode

    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)
    desc_node = Node("robot_state_publisher", context=ros_context)
    desc_node.create_publisher(String, "/robot_description", latched).publish(String(data="<robot name='ur5e'/>"))
    extrinsic = [0.6, 0.0, 0.7, -0.6533, 0.6533, -0.2706, 0.2706]
    rec = RecorderNode(context=ros_context, parameter_overrides=[
        Parameter("output_dir", value=str(tmp_path)), Parameter("topics", value=[WRENCH, "/never/published"]),
        Parameter("keys", value=False), Parameter("extrinsic", value=extrinsic),
        Parameter("topic_timeout_s", value=0.5)])
    peer = Peer(ros_context)
    ex = SpinEach(ros_context, rec, peer.node, desc_node)
    try:
        end = time.monotonic() + 20  # the latched description is delivered when the recorder subscribes
        while (rec.received["/robot_description"] == 0 or peer.pubs[WRENCH].get_subscription_count() == 0) \
                and time.monotonic() < end:
            time.sleep(0.05)
        for n in range(2):  # the description was published once, long before episode 1
            assert peer.call("start").success
            peer.publish(0.5)
            assert peer.call("stop", data=True).success
            ep = tmp_path / f"episode_{n:04d}"
            meta = json.loads((ep / "episode.json").read_text())
            with BagReader(ep) as bag:
                assert bag.count("/robot_description") == 1
                text = next(m for _, _, m in bag.messages(["/robot_description"])).data
            assert text == "<robot name='ur5e'/>"
            assert meta["missing"] == ["/never/published"] and meta["extrinsic"] == extrinsic
            assert 200 < meta["rates_hz"][WRENCH] < 800 and "/robot_description" not in meta["rates_hz"]
    finally:
        ex.shutdown()
        rec.destroy_node()
        peer.node.destroy_node()
        desc_node.destroy_node()


def test_live_view_shows_what_is_recorded_and_the_episode_events(ros_context, tmp_path):
    """`rerun:=FILE.rrd`: colour, wrench and joint states as they arrive (rate-limited), and the episode's
    start and end, in a recording the installed rerun verifies."""
    pytest.importorskip("rerun")
    import shutil

    from rclpy.parameter import Parameter

    from diffusion_policy_ros.ros.recorder_node import RecorderNode

    rrd = tmp_path / "recorder.rrd"
    rec = RecorderNode(context=ros_context, parameter_overrides=[
        Parameter("output_dir", value=str(tmp_path / "eps")), Parameter("topics", value=[COLOR, WRENCH, JOINTS]),
        Parameter("keys", value=False), Parameter("rerun", value=str(rrd)), Parameter("rerun_rate_hz", value=20.0)])
    peer = Peer(ros_context)
    ex = SpinEach(ros_context, rec, peer.node)
    try:
        peer.wait_subscribed()
        assert peer.call("start").success
        peer.publish(1.0)
        assert peer.call("stop", data=True).success
    finally:
        ex.shutdown()
        rec.destroy_node()
        peer.node.destroy_node()
    assert (tmp_path / "eps" / "episode_0000" / "episode.json").is_file()
    cli = shutil.which("rerun") or str(Path(sys.executable).parent / "rerun")
    env = dict(os.environ, RERUN_TELEMETRY_ENABLED="false")
    assert subprocess.run([cli, "rrd", "verify", str(rrd)], env=env, capture_output=True, timeout=120).returncode == 0
    printed = subprocess.run([cli, "rrd", "print", "-v", str(rrd)], env=env, capture_output=True, text=True,
                             timeout=120).stdout
    for entity in ("/camera/cam.color.image_raw", "/wrench/ft.wrench/fz", "/joints/joint_states/a", "/recording"):
        assert entity in printed, entity
    # 500 Hz wrench for a second is not decoded 500 times: about 20 per second reach the view.
    import re

    rows = sum(int(n) for n in re.findall(r"with (\d+) rows? \([^)]*\) - /wrench/ft\.wrench/fz ", printed))
    assert 5 <= rows <= 40, rows
