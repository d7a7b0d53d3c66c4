"""Rosbags of simulator demonstrations → `dpros convert` → training → `dpros replay`, on real rosbag2
files (MCAP and sqlite3, Jazzy and Humble message definitions) written with `rosbags`."""
import dataclasses
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.spatial import cKDTree

from diffusion_policy_ros.cli import main
from diffusion_policy_ros.checkpoint import checkpoint_config
from diffusion_policy_ros.config import load_config, resolve_shipped_checkpoint
from diffusion_policy_ros.data import ReplayBuffer
from diffusion_policy_ros.data.convert import bag_episode, convert_bags, observation_runtime
from diffusion_policy_ros.errors import BagError
from diffusion_policy_ros.perception.image import prepare_rgb
from diffusion_policy_ros.policy import Policy
from diffusion_policy_ros.io.bags import BagReader
from diffusion_policy_ros.io.replay import PREDICTED_TOPIC, replay
from diffusion_policy_ros.sim.env import SimEnv, sim_deploy_config
from diffusion_policy_ros.sim.experts import expert_episode
from diffusion_policy_ros.sim.record import BagOptions, BagRecording, collect_bags

from .spinning import SpinEach


def push_config(**train):
    """The shipped sim checkpoint's own training config."""
    cfg = checkpoint_config(resolve_shipped_checkpoint("push_dp3"))
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **train)) if train else cfg


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    out = tmp_path_factory.mktemp("bags")
    summary = collect_bags("push", 5, out, seed=1000, progress=False)
    assert summary["failed_seeds"] == []
    return [out / f"episode_{s:06d}" for s in range(1000, 1005)]


def test_sim_bag_is_a_complete_rosbag2_with_the_drivers_topics(bags):
    dep = sim_deploy_config()
    meta = yaml.safe_load((bags[0] / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["storage_identifier"] == "mcap"
    with BagReader(bags[0]) as bag:
        t = bag.topics
        assert t[dep.topics.depth] == "sensor_msgs/msg/Image" and t[dep.topics.command] == \
            "trajectory_msgs/msg/JointTrajectory"
        assert bag.count(dep.topics.joint_states) > 4 * bag.count(dep.topics.depth)  # 50 Hz vs 10 Hz
    for topic in meta["topics_with_message_count"]:  # QoS and definitions, so `ros2 bag play` accepts it
        assert topic["topic_metadata"]["offered_qos_profiles"] and topic["topic_metadata"]["type_description_hash"]
    assert json.loads((bags[0] / "episode.json").read_text())["success"] is True


def test_conversion_reproduces_what_the_simulator_itself_records(bags, tmp_path):
    """Decoding the bag through the live runtime's path gives the expert episode's own observations."""
    cfg, dep = push_config(), sim_deploy_config()
    ep = bag_episode(bags[0], observation_runtime(cfg, dep))
    assert ep.dropped == {"depth": 0, "camera_info": 0, "joint_states": 0} and not ep.truncated
    env = SimEnv("push", dep)
    try:
        _, ref = expert_episode(env, 1000, cfg.policy.observations["point_cloud"].shape[0])
    finally:
        env.close()
    n = ep.steps
    assert n == len(ref["state"]) - 1  # the last step has no next state to act towards
    np.testing.assert_allclose(ep.data["state"], ref["state"][:n], atol=1e-6)
    for k in (0, n // 2, n - 1):  # the same points (farthest-point ties may order them differently)
        assert cKDTree(ref["point_cloud"][k]).query(ep.data["point_cloud"][k])[0].max() < 1e-5
    # measured action = next state (position + rotation); the expert's target leads it by < 2 cm
    np.testing.assert_allclose(ep.data["action"][:, :9], ref["state"][1:n + 1, :9], atol=1e-6)
    assert np.abs(ep.data["action"][:, :3] - ref["action"][1:n + 1, :3]).max() < 0.02


def test_conversion_does_not_depend_on_arrival_order_across_topics(bags, tmp_path):
    """A loaded recorder stamps some topics seconds late: the same bag with joint states logged 3 s
    and depth 1.5 s after their header stamps converts to exactly the same episode."""
    from diffusion_policy_ros.io.bags import BagWriter

    cfg, dep = push_config(), sim_deploy_config()
    lag = {dep.topics.joint_states: 3_000_000_000, dep.topics.depth: 1_500_000_000}
    with BagReader(bags[0]) as src, BagWriter(tmp_path / "late") as out:
        for topic, msgtype in src.topics.items():
            out.add_topic(topic, msgtype, reliable=True)
        msgs = sorted(((log + lag.get(t, 0), i, t, m) for i, (t, log, m) in enumerate(src.messages(src.topics))),
                      key=lambda x: x[:2])
        for log, _, topic, msg in msgs:
            out.write(topic, log, msg)
    a = bag_episode(bags[0], observation_runtime(cfg, dep))
    b = bag_episode(tmp_path / "late", observation_runtime(cfg, dep))
    assert b.steps == a.steps and not b.truncated
    for k in ("state", "action"):
        np.testing.assert_array_equal(b.data[k], a.data[k])


def test_humble_sqlite3_compressed_colour_and_other_topic_names_convert(tmp_path):
    dep = sim_deploy_config()
    topics = dataclasses.replace(dep.topics, color="/cam/rgb", depth="/cam/depth", camera_info="/cam/info",
                                 joint_states="/robot/joints", wrench="/ft/wrench")
    env = SimEnv("push", dep)
    frames = []
    try:
        rec = BagRecording(tmp_path / "humble", env.sim, topics,
                           BagOptions(storage="sqlite3", typestore="humble", compressed_color=True))
        orig = rec.camera
        rec.camera = lambda t, rgb, depth: (frames.append(rgb), orig(t, rgb, depth))
        try:
            expert_episode(env, 1003, 256, bag=rec)
        finally:
            rec.close()
    finally:
        env.close()
    meta = yaml.safe_load((tmp_path / "humble" / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["storage_identifier"] == "sqlite3"
    # An image policy (dp_image:small) on the renamed topics, colour from the jpeg stream.
    cfg = load_config("dp_image", variant="small")
    dep2 = dataclasses.replace(dep, topics=dataclasses.replace(topics, compressed_color=True))
    r = convert_bags([tmp_path / "humble"], cfg, dep2, tmp_path / "img.zarr", typestore="humble", progress=False)
    assert r["episodes"] == 1 and r["skipped"] == [] and sum(r["dropped_messages"].values()) == 0
    data = ReplayBuffer.open(tmp_path / "img.zarr").load(["img", "state", "action"])
    assert data["img"].shape[1:] == (96, 96, 3) and data["img"].dtype == np.uint8
    first = prepare_rgb(frames[0], 96, 96).astype(float)
    assert np.abs(data["img"][0].astype(float) - first).mean() < 3  # the same frame, through jpeg
    # The point-cloud policy reads the same bag too.
    r = convert_bags([tmp_path / "humble"], push_config(), dep2, tmp_path / "pc.zarr", typestore="humble",
                     progress=False)
    assert r["episodes"] == 1
    # ... and replays through the node's runtime on the renamed topics.
    from diffusion_policy_ros.embodiment.arm import arm_from_config

    s = replay(tmp_path / "humble", Policy.from_checkpoint(resolve_shipped_checkpoint("push_dp3")), dep2,
               tmp_path / "replay", arm=arm_from_config(dep.embodiment), typestore="humble", progress=False)
    assert s["commands"] > 3 and s["holds"] == 0 and s["action_rmse"] < 0.05


def test_bad_bags_are_skipped_with_a_reason_and_the_store_stays_valid(bags, tmp_path):
    cfg, dep = push_config(), sim_deploy_config()
    out = tmp_path / "d.zarr"
    assert convert_bags([bags[0]], cfg, dep, out, progress=False)["episodes"] == 1
    broken = tmp_path / "truncated"
    shutil.copytree(bags[1], broken)
    mcap = next(broken.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 3])  # a killed recorder
    renamed = dataclasses.replace(dep, topics=dataclasses.replace(dep.topics, depth="/nope/depth"))
    r = convert_bags([broken, tmp_path / "missing"], cfg, dep, out, progress=False)
    assert r["episodes"] == 0 and len(r["skipped"]) == 2
    assert "not found" in r["skipped"][1]["reason"]
    with pytest.raises(BagError, match="/nope/depth"):
        bag_episode(bags[2], observation_runtime(cfg, renamed))
    short = push_config()
    short = dataclasses.replace(short, policy=dataclasses.replace(short.policy, horizon=400, n_action_steps=8))
    r = convert_bags([bags[2]], short, dep, out, progress=False)
    assert r["episodes"] == 0 and "shorter than the policy horizon (400)" in r["skipped"][0]["reason"]
    buf = ReplayBuffer.open(out)
    assert buf.n_episodes == 1 and buf.n_steps == len(buf.load(["action"])["action"])


def record_through_the_recorder(bags, out, monkeypatch):
    """Publish each bag's messages over real rclpy + Fast DDS (reliable, in order) into recorder_node,
    one episode per bag, as a teleoperated session would be recorded. → the recorded episode folders."""
    rclpy = pytest.importorskip("rclpy")
    import os
    import time

    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

    from diffusion_policy_ros.io import msgs as M
    from diffusion_policy_ros.ros.recorder_node import RecorderNode, message_class

    monkeypatch.setenv("ROS_DOMAIN_ID", str(101 + os.getpid() % 100))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    encode = {"sensor_msgs/msg/Image": lambda T, m: M.numpy_to_image(T, M.image_to_numpy(m), m.encoding,
                                                                      M.header_ns(m), m.header.frame_id),
              "sensor_msgs/msg/CameraInfo": lambda T, m: M.encode_camera_info(T, M.decode_camera_info(m), M.header_ns(m)),
              "sensor_msgs/msg/JointState": lambda T, m: M.encode_joint_state(T, list(m.name), m.position,
                                                                           M.header_ns(m)),
              "geometry_msgs/msg/WrenchStamped": lambda T, m: M.encode_wrench(T, M.decode_wrench(m), M.header_ns(m),
                                                                             m.header.frame_id),
              "trajectory_msgs/msg/JointTrajectory": lambda T, m: M.encode_joint_trajectory(
                  T, M.decode_joint_trajectory(m))}
    with BagReader(bags[0]) as b:
        topics = b.topics
    rec = RecorderNode(context=ctx, parameter_overrides=[Parameter("output_dir", value=str(out)),
                                                          Parameter("topics", value=list(topics)),
                                                          Parameter("keys", value=False)])
    peer = Node("player", context=ctx)
    qos = QoSProfile(history=HistoryPolicy.KEEP_ALL, depth=1, reliability=ReliabilityPolicy.RELIABLE)
    pubs = {t: peer.create_publisher(message_class(m), t, qos) for t, m in topics.items()}
    ex = SpinEach(ctx, rec, peer)
    T = M.RosTypes()
    try:
        end = time.monotonic() + 30
        while not all(p.get_subscription_count() for p in pubs.values()) and time.monotonic() < end:
            time.sleep(0.05)
        for path in bags:
            assert rec.start().startswith("recording")
            base = dict(rec.received)
            with BagReader(path) as b:
                sent = {t: b.count(t) for t in topics}
                t0, w0 = None, time.monotonic()
                for topic, log_ns, msg in b.messages(list(topics)):
                    t0 = t0 or log_ns  # real time: cross-topic delivery order on DDS is not guaranteed,
                    time.sleep(max(0.0, w0 + (log_ns - t0) / 1e9 - time.monotonic()))  # so not flat out
                    pubs[topic].publish(encode[topics[topic]](T, msg))
            end = time.monotonic() + 60
            while any(rec.received[t] < base[t] + n for t, n in sent.items()) and time.monotonic() < end:
                time.sleep(0.05)
            assert rec.stop(True).startswith("saved")
    finally:
        ex.shutdown()
        rec.destroy_node()
        peer.destroy_node()
        ctx.try_shutdown()
    return sorted(p for p in out.iterdir() if p.is_dir())


def test_round_trip_record_convert_train_replay_beats_an_untrained_policy(bags, tmp_path, monkeypatch):
    """Demonstrations published over DDS → recorder_node → dpros convert → training → replay of a
    held-out recording: the trained policy tracks it better than the same policy before training."""
    from diffusion_policy_ros.embodiment.arm import arm_from_config
    from diffusion_policy_ros.train import Trainer

    dep = sim_deploy_config()
    recorded = record_through_the_recorder(bags[:4], tmp_path / "recorded", monkeypatch)
    assert [p.name for p in recorded] == [f"episode_{i:04d}" for i in range(4)]
    for src, got in zip(bags[:4], recorded):  # nothing lost on the way
        with BagReader(src) as a, BagReader(got) as b:
            assert {t: a.count(t) for t in a.topics} == {t: b.count(t) for t in a.topics}
    assert main(["convert", *map(str, recorded), "--config", str(resolve_shipped_checkpoint("push_dp3")),
                 "--out", str(tmp_path / "d.zarr"),
                 "--deploy-config", str(_sim_yaml()), "--no-progress", "--json"]) == 0
    convert_bags(bags[:4], push_config(), dep, tmp_path / "direct.zarr", progress=False)
    got, want = (ReplayBuffer.open(tmp_path / d) for d in ("d.zarr", "direct.zarr"))
    assert got.episode_ends.tolist() == want.episode_ends.tolist()  # recording lost and shifted nothing
    np.testing.assert_array_equal(got.load(["action"])["action"], want.load(["action"])["action"])
    # The same recordings as a LeRobotDataset v3: LeRobot's own class reads the frames, timestamps and
    # values back; rebuilt through the runtime, they are the zarr store's observations.
    lr = tmp_path / "lerobot"
    assert main(["convert", *map(str, recorded), "--config", str(resolve_shipped_checkpoint("push_dp3")),
                 "--out", str(lr), "--format", "lerobot", "--deploy-config", str(_sim_yaml()), "--no-progress"]) == 0
    check_lerobot_matches(lr, recorded, got, push_config(), dep)
    errors = {}
    for name, steps, data in (("untrained", 1, tmp_path / "d.zarr"), ("trained", 400, lr)):
        cfg = push_config(max_steps=steps, checkpoint_every=steps, val_every=steps, warmup_steps=20)
        ckpt = Trainer(cfg, data, tmp_path / name, progress=False).run()
        s = replay(bags[4], Policy.from_checkpoint(ckpt), dep, tmp_path / f"replay_{name}",
                   arm=arm_from_config(dep.embodiment), progress=False)
        assert s["commands"] > 3 and s["holds"] == 0
        errors[name] = s["action_rmse"]
    assert errors["trained"] < 0.5 * errors["untrained"], errors
    with BagReader(tmp_path / "replay_trained" / "replay") as out:
        assert out.count(PREDICTED_TOPIC) == s["commands"] and out.count(dep.topics.command) > 40
    assert (tmp_path / "replay_trained" / "predicted_vs_recorded.png").stat().st_size > 10_000


def check_lerobot_matches(root, bags, zarr_store, cfg, dep):
    """``root`` (LeRobot v3, converted from ``bags``) holds what ``zarr_store`` (the same bags) holds."""
    from ledataset.datasets.lerobot_dataset import LeRobotDataset

    from diffusion_policy_ros.data import lerobot as L

    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 10
    ds = LeRobotDataset("local/lerobot", root=root)
    ends = zarr_store.episode_ends
    assert ds.num_episodes == len(bags) and ds.num_frames == ends[-1]
    assert set(ds.meta.features) >= {L.COLOR, L.DEPTH, L.INTRINSICS, L.EXTRINSIC, L.STATE, L.ACTION}
    table = ds.hf_dataset.with_format("arrow")[:]
    starts = np.concatenate(([0], ends[:-1]))
    ts = L._column(table, "timestamp", ())
    np.testing.assert_allclose(ts, np.concatenate([np.arange(b - a) / 10 for a, b in zip(starts, ends)]), atol=1e-6)
    want = zarr_store.load(["action", "point_cloud", "state"])
    np.testing.assert_array_equal(L._column(table, L.ACTION, (10,)), want["action"])
    # The sensors: depth exactly as the runtime decoded it; colour through AV1 close to the bag's.
    ep = bag_episode(bags[0], observation_runtime(cfg, dep), raw=True)
    np.testing.assert_array_equal(L._column(table, L.DEPTH, ep.raw[L.DEPTH].shape[1:])[:ends[0]], ep.raw[L.DEPTH])
    video = ds.root / ds.meta.get_video_file_path(0, L.COLOR)
    frames = L._video_frames(video, np.arange(ends[0]) / 10, 0.05)
    assert np.abs(frames.astype(float) - ep.raw[L.COLOR]).mean() < 4, "colour: AV1 in mp4 should be near lossless"
    rebuilt = L.LeRobotSource(root, cfg, progress=False)  # the dataset's own deployment settings
    assert rebuilt.episode_ends.tolist() == ends.tolist()
    np.testing.assert_array_equal(rebuilt.load(["point_cloud"])["point_cloud"], want["point_cloud"])
    np.testing.assert_allclose(rebuilt.load(["state"])["state"], want["state"], atol=1e-5)  # joints stored float32


def test_replay_cli_reports_and_refuses_an_existing_output(bags, tmp_path, capsys):
    args = ["replay", str(bags[4]), "--checkpoint", "push_dp3", "--out", str(tmp_path / "r"),
            "--deploy-config", str(_sim_yaml()), "--no-progress", "--json"]
    assert main(args) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["commands"] > 3 and s["action_rmse"] < 0.05 and s["dropped_messages"]["depth"] == 0
    assert main(args) == 2
    assert "exists already" in capsys.readouterr().err


def _sim_yaml():
    from diffusion_policy_ros.sim.env import sim_config_path

    return sim_config_path("arm")


def test_replay_writes_a_rerun_recording_that_rerun_loads(bags, tmp_path):
    """`dpros replay … --rerun FILE.rrd`: a non-empty recording the installed rerun verifies and
    prints, with the cloud, the prediction, the command, the executed path and the latencies in it."""
    import subprocess

    pytest.importorskip("rerun")
    rrd = tmp_path / "replay.rrd"
    args = ["replay", str(bags[4]), "--checkpoint", "push_dp3", "--out", str(tmp_path / "r"),
            "--deploy-config", str(_sim_yaml()), "--no-progress", "--json", "--rerun", str(rrd)]
    assert main(args) == 0
    assert rrd.stat().st_size > 10_000
    cli = shutil.which("rerun") or str(Path(sys.executable).parent / "rerun")
    env = dict(os.environ, RERUN_TELEMETRY_ENABLED="false")
    assert subprocess.run([cli, "rrd", "verify", str(rrd)], env=env, capture_output=True, timeout=120).returncode == 0
    printed = subprocess.run([cli, "rrd", "print", "-v", str(rrd)], env=env, capture_output=True, text=True,
                             timeout=120).stdout
    for entity in ("/world/cloud", "/world/crop_box", "/world/prediction", "/world/command", "/world/executed",
                   "/latency/inference_ms", "/joints/shoulder_pan_joint"):
        assert entity in printed, entity
