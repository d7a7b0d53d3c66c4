"""Message decoding round trips against real CDR bytes from rosbags:
build with rosbags' classes → serialise → deserialise → decode (ours) → encode (ours) → serialise → same bytes."""
import struct

import cv2
import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from diffusion_policy_ros.io import msgs as M

TS = get_typestore(Stores.ROS2_JAZZY)
T = TS.types
RT = M.RosTypes(TS)
STAMP = 1_700_000_123_456_789_012


def hdr(frame="cam"):
    return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=STAMP // 10**9, nanosec=STAMP % 10**9),
                                    frame_id=frame)


def cdr_round(msg):
    """Serialise with rosbags and read back: what a bag or DDS would deliver."""
    raw = TS.serialize_cdr(msg, msg.__msgtype__)
    return raw, TS.deserialize_cdr(raw, msg.__msgtype__)


def same_bytes(a, b):
    return bytes(TS.serialize_cdr(a, a.__msgtype__)) == bytes(TS.serialize_cdr(b, b.__msgtype__))


def rosbags_image(arr, encoding, step_pad=0, bigendian=False):
    h, w = arr.shape[:2]
    row = arr.reshape(h, -1).astype(arr.dtype.newbyteorder(">" if bigendian else "<")).view(np.uint8)
    data = np.concatenate([row, np.zeros((h, step_pad), np.uint8)], axis=1)
    return T["sensor_msgs/msg/Image"](header=hdr(), height=h, width=w, encoding=encoding, is_bigendian=int(bigendian),
                                      step=row.shape[1] + step_pad, data=data.reshape(-1))


RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 255, (5, 7, 3), dtype=np.uint8)


@pytest.mark.parametrize("encoding, arr, expected", [
    ("rgb8", RGB, RGB),
    ("bgr8", RGB[..., ::-1].copy(), RGB),
    ("rgba8", np.concatenate([RGB, np.full((5, 7, 1), 9, np.uint8)], 2), RGB),
    ("bgra8", np.concatenate([RGB[..., ::-1], np.full((5, 7, 1), 9, np.uint8)], 2), RGB),
    ("mono8", RGB[..., 0].copy(), np.repeat(RGB[..., :1], 3, 2)),
])
@pytest.mark.parametrize("pad", [0, 3])
def test_colour_images(encoding, arr, expected, pad):
    _, msg = cdr_round(rosbags_image(arr, encoding, step_pad=pad))
    assert np.array_equal(M.decode_rgb(msg), expected)
    assert M.header_ns(msg) == STAMP
    if pad == 0:  # re-encoding writes the tight step
        assert same_bytes(msg, M.numpy_to_image(RT, M.image_to_numpy(msg), encoding, STAMP, "cam"))


@pytest.mark.parametrize("bigendian", [False, True])
def test_depth_16uc1_millimetres_and_32fc1_metres(bigendian):
    mm = RNG.integers(0, 4000, (6, 8)).astype(np.uint16)
    mm[0, 0] = 0
    _, msg = cdr_round(rosbags_image(mm, "16UC1", step_pad=2, bigendian=bigendian))
    d = M.decode_depth(msg)
    assert d.dtype == np.float32 and d[0, 0] == 0 and np.allclose(d, mm * 0.001)
    m = (mm * 0.001).astype(np.float32)
    m[1, 1], m[2, 2] = np.nan, -1.0
    _, msg = cdr_round(rosbags_image(m, "32FC1", bigendian=bigendian))
    d = M.decode_depth(msg)
    assert d[1, 1] == 0 and d[2, 2] == 0 and np.allclose(d[3:], m[3:])
    if not bigendian:
        assert same_bytes(msg, M.numpy_to_image(RT, M.image_to_numpy(msg), "32FC1", STAMP, "cam"))


@pytest.mark.parametrize("mutate, field", [
    (dict(encoding="yuv422"), "image.encoding"),
    (dict(step=5), "image.step"),
    (dict(height=0), "image.height/width"),
])
def test_bad_images_are_rejected_with_the_field(mutate, field):
    msg = rosbags_image(RGB, "rgb8")
    for k, v in mutate.items():
        setattr(msg, k, v)
    with pytest.raises(M.MessageError, match=field):
        M.decode_rgb(msg)


def test_truncated_image_data():
    msg = rosbags_image(RGB, "rgb8")
    msg.data = msg.data[:-10]
    with pytest.raises(M.MessageError, match=r"image.data: expected 105 bytes \(height\*step\), got 95 bytes"):
        M.decode_rgb(msg)
    with pytest.raises(M.MessageError, match="a depth encoding"):
        M.decode_depth(rosbags_image(RGB, "rgb8"))


def test_compressed_colour_png_and_jpeg():
    ok, png = cv2.imencode(".png", RGB[..., ::-1])
    msg = T["sensor_msgs/msg/CompressedImage"](header=hdr(), format="rgb8; png compressed bgr8", data=png.reshape(-1))
    _, msg = cdr_round(msg)
    img, kind = M.decode_compressed(msg)
    assert kind == "rgb" and np.array_equal(img, RGB)
    smooth = np.tile(np.linspace(0, 255, 32, dtype=np.uint8)[None, :, None], (16, 1, 3))
    _, jmsg = cdr_round(M.encode_compressed_rgb(RT, smooth, STAMP, "cam"))
    img, kind = M.decode_compressed(jmsg)
    assert kind == "rgb" and np.abs(img.astype(int) - smooth).max() <= 4
    bad = T["sensor_msgs/msg/CompressedImage"](header=hdr(), format="jpeg", data=np.arange(20, dtype=np.uint8))
    with pytest.raises(M.MessageError, match="undecodable"):
        M.decode_compressed(bad)
    with pytest.raises(M.MessageError, match="compressed_image.format"):
        M.decode_compressed(T["sensor_msgs/msg/CompressedImage"](header=hdr(), format="h264", data=png.reshape(-1)))


def test_compressed_depth_as_image_transport_writes_it():
    mm = RNG.integers(0, 5000, (12, 10)).astype(np.uint16)
    ok, png = cv2.imencode(".png", mm)
    data = np.concatenate([np.frombuffer(struct.pack("<iff", 0, 0.0, 0.0), np.uint8), png.reshape(-1)])
    msg = T["sensor_msgs/msg/CompressedImage"](header=hdr(), format="16UC1; compressedDepth png", data=data)
    _, msg = cdr_round(msg)
    depth, kind = M.decode_compressed(msg)
    assert kind == "depth" and np.allclose(depth, mm * 0.001)
    assert same_bytes(msg, M.encode_compressed_depth(RT, mm, STAMP, "cam"))
    # 32FC1 inverse-depth quantisation: value = A / depth + B
    a, b = 100.0, -10.0
    metres = np.full((4, 4), 2.0, np.float32)
    q = np.round(a / metres + b).astype(np.uint16)
    q[0, 0] = 0  # invalid
    ok, png = cv2.imencode(".png", q)
    data = np.concatenate([np.frombuffer(struct.pack("<iff", 0, a, b), np.uint8), png.reshape(-1)])
    depth, _ = M.decode_compressed(T["sensor_msgs/msg/CompressedImage"](header=hdr(), format="32FC1; compressedDepth",
                                                                       data=data))
    assert depth[0, 0] == 0 and np.allclose(depth[1:], 2.0, atol=0.05)


def test_camera_info():
    k = np.array([600.0, 0, 320, 0, 601.0, 240, 0, 0, 1])
    p = np.zeros(12)
    p[[0, 2, 5, 6, 10]] = [600, 320, 601, 240, 1]
    msg = T["sensor_msgs/msg/CameraInfo"](
        header=hdr("cam_optical"), height=480, width=640, distortion_model="plumb_bob", d=np.array([0.1, -0.2, 0, 0, 0]),
        k=k, r=np.eye(3).reshape(-1), p=p, binning_x=0, binning_y=0,
        roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
    _, msg = cdr_round(msg)
    intr = M.decode_camera_info(msg)
    assert (intr.fx, intr.fy, intr.cx, intr.cy) == (600, 601, 320, 240) and intr.frame_id == "cam_optical"
    assert same_bytes(msg, M.encode_camera_info(RT, intr, STAMP))
    msg.k = np.zeros(9)
    with pytest.raises(M.MessageError, match="camera_info.k"):
        M.decode_camera_info(msg)


def rosbags_cloud(xyz, rgb, organised=(1, None), pad=4, row_pad=0):
    n = len(xyz)
    h = organised[0]
    w = n // h
    ps = 16 + pad
    fields = [T["sensor_msgs/msg/PointField"](name=nm, offset=off, datatype=7, count=1)
              for nm, off in (("rgb", 0), ("x", 4), ("y", 8), ("z", 12))]  # unusual order on purpose
    buf = np.zeros((h, w * ps + row_pad), np.uint8)
    pts = buf[:, : w * ps].reshape(h, w, ps)
    packed = ((rgb[:, 0].astype(np.uint32) << 16) | (rgb[:, 1].astype(np.uint32) << 8) | rgb[:, 2]).view(np.float32)
    vals = np.column_stack([packed, xyz]).astype("<f4").reshape(h, w, 4)
    pts[..., :16] = vals.view(np.uint8).reshape(h, w, 16)
    return T["sensor_msgs/msg/PointCloud2"](header=hdr(), height=h, width=w, fields=fields, is_bigendian=False,
                                            point_step=ps, row_step=w * ps + row_pad, data=buf.reshape(-1),
                                            is_dense=False)


@pytest.mark.parametrize("organised, row_pad", [((1, None), 0), ((4, None), 8)])
def test_pointcloud2_any_layout(organised, row_pad):
    xyz = RNG.normal(size=(40, 3)).astype(np.float32)
    xyz[3] = np.nan
    rgb = RNG.integers(0, 255, (40, 3), dtype=np.uint8)
    _, msg = cdr_round(rosbags_cloud(xyz, rgb, organised, row_pad=row_pad))
    pts, col = M.decode_pointcloud2(msg, with_rgb=True)
    keep = np.isfinite(xyz).all(1)
    assert np.array_equal(pts, xyz[keep]) and np.array_equal(col, rgb[keep])
    assert len(M.decode_pointcloud2(msg, skip_nans=False)) == 40
    # encode → serialise → decode is lossless
    _, back = cdr_round(M.encode_pointcloud2(RT, pts, STAMP, "cam", rgb=col))
    p2, c2 = M.decode_pointcloud2(back, with_rgb=True)
    assert np.array_equal(p2, pts) and np.array_equal(c2, col)
    msg.data = msg.data[:50]
    with pytest.raises(M.MessageError, match="pointcloud2.data"):
        M.decode_pointcloud2(msg)


def test_joint_state_reordered_by_name_and_rejections():
    msg = T["sensor_msgs/msg/JointState"](header=hdr(""), name=["b", "a", "c"], position=np.array([2.0, 1.0, 3.0]),
                                          velocity=np.array([0.2, 0.1, 0.3]), effort=np.array([], np.float64))
    _, msg = cdr_round(msg)
    pos, vel, eff = M.decode_joint_state(msg, ["a", "b", "c"])
    assert list(pos) == [1, 2, 3] and list(vel) == [0.1, 0.2, 0.3] and eff is None
    assert same_bytes(msg, M.encode_joint_state(RT, ["b", "a", "c"], [2.0, 1.0, 3.0], STAMP, velocities=[0.2, 0.1, 0.3]))
    with pytest.raises(M.MessageError, match=r"missing \['elbow'\]"):
        M.decode_joint_state(msg, ["a", "elbow"])
    msg.position = np.array([np.nan, 1.0, 3.0])
    with pytest.raises(M.MessageError, match="joint_state.position: expected finite"):
        M.decode_joint_state(msg, ["a", "b"])


def test_wrench_pose_twist_joy():
    V3, Q = T["geometry_msgs/msg/Vector3"], T["geometry_msgs/msg/Quaternion"]
    w = T["geometry_msgs/msg/WrenchStamped"](header=hdr("tool0"), wrench=T["geometry_msgs/msg/Wrench"](
        force=V3(x=1.0, y=2.0, z=3.0), torque=V3(x=0.1, y=0.2, z=0.3)))
    _, w = cdr_round(w)
    assert list(M.decode_wrench(w)) == [1, 2, 3, 0.1, 0.2, 0.3]
    assert same_bytes(w, M.encode_wrench(RT, M.decode_wrench(w), STAMP, "tool0"))
    w.wrench.force.x = float("nan")
    with pytest.raises(M.MessageError, match="wrench: expected finite values"):
        M.decode_wrench(w)

    pose = T["geometry_msgs/msg/PoseStamped"](header=hdr("base"), pose=T["geometry_msgs/msg/Pose"](
        position=T["geometry_msgs/msg/Point"](x=0.5, y=0.0, z=0.3), orientation=Q(x=0.0, y=0.0, z=0.0, w=1.0)))
    _, pose = cdr_round(pose)
    assert list(M.decode_pose(pose)) == [0.5, 0, 0.3, 0, 0, 0, 1]
    assert same_bytes(pose, M.encode_pose(RT, M.decode_pose(pose), STAMP, "base"))
    pose.pose.orientation.w = 0.0
    with pytest.raises(M.MessageError, match="non-zero quaternion"):
        M.decode_pose(pose)

    tw = T["geometry_msgs/msg/TwistStamped"](header=hdr("base"), twist=T["geometry_msgs/msg/Twist"](
        linear=V3(x=0.1, y=0.0, z=0.0), angular=V3(x=0.0, y=0.0, z=0.5)))
    _, tw = cdr_round(tw)
    assert list(M.decode_twist(tw)) == [0.1, 0, 0, 0, 0, 0.5]
    assert same_bytes(tw, M.encode_twist(RT, M.decode_twist(tw), STAMP, "base"))

    joy = T["sensor_msgs/msg/Joy"](header=hdr(""), axes=np.array([0.5, -1.0], np.float32),
                                   buttons=np.array([0, 1, 1], np.int32))
    _, joy = cdr_round(joy)
    axes, buttons = M.decode_joy(joy)
    assert list(axes) == [0.5, -1.0] and list(buttons) == [0, 1, 1]
    assert same_bytes(joy, M.encode_joy(RT, axes, buttons, STAMP))


def test_joint_and_multidof_trajectories():
    D = T["builtin_interfaces/msg/Duration"]
    pts = [T["trajectory_msgs/msg/JointTrajectoryPoint"](
        positions=np.array([0.1 * k, 0.2 * k]), velocities=np.array([0.1, 0.2]), accelerations=np.array([], np.float64),
        effort=np.array([], np.float64), time_from_start=D(sec=0, nanosec=100_000_000 * (k + 1))) for k in range(3)]
    jt = T["trajectory_msgs/msg/JointTrajectory"](header=hdr("base"), joint_names=["j1", "j2"], points=pts)
    _, jt = cdr_round(jt)
    d = M.decode_joint_trajectory(jt)
    assert list(d.time_from_start_ns) == [100_000_000, 200_000_000, 300_000_000] and d.stamp_ns == STAMP
    assert np.allclose(d.positions[2], [0.2, 0.4]) and d.velocities.shape == (3, 2)
    assert same_bytes(jt, M.encode_joint_trajectory(RT, d, "base"))

    V3, Q = T["geometry_msgs/msg/Vector3"], T["geometry_msgs/msg/Quaternion"]
    mp = [T["trajectory_msgs/msg/MultiDOFJointTrajectoryPoint"](
        transforms=[T["geometry_msgs/msg/Transform"](translation=V3(x=1.0 * k, y=0.0, z=2.0),
                                                     rotation=Q(x=0.0, y=0.0, z=0.0, w=1.0))],
        velocities=[], accelerations=[], time_from_start=D(sec=k, nanosec=0)) for k in range(2)]
    mt = T["trajectory_msgs/msg/MultiDOFJointTrajectory"](header=hdr("world"), joint_names=["base"], points=mp)
    _, mt = cdr_round(mt)
    md = M.decode_multidof_trajectory(mt)
    assert md.poses.shape == (2, 1, 7) and md.poses[1, 0, 0] == 1.0 and md.velocities is None
    assert same_bytes(mt, M.encode_multidof_trajectory(RT, md, "world"))


def test_rclpy_messages_encode_and_decode_the_same():
    """The live node's path: rclpy's generated classes, serialised by rclpy itself."""
    pytest.importorskip("rclpy")
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import Image, JointState, PointCloud2

    rt = M.RosTypes()
    img = M.numpy_to_image(rt, RGB, "rgb8", STAMP, "cam")
    assert isinstance(img, Image)
    back = deserialize_message(serialize_message(img), Image)
    assert np.array_equal(M.decode_rgb(back), RGB) and M.header_ns(back) == STAMP
    # rclpy and rosbags produce the same CDR bytes for the same content
    assert bytes(serialize_message(img)) == bytes(TS.serialize_cdr(M.numpy_to_image(RT, RGB, "rgb8", STAMP, "cam"),
                                                                   "sensor_msgs/msg/Image"))
    js = deserialize_message(serialize_message(M.encode_joint_state(rt, ["a", "b"], [1.0, 2.0], STAMP)), JointState)
    assert list(M.decode_joint_state(js, ["b", "a"])[0]) == [2.0, 1.0]
    xyz = RNG.normal(size=(10, 3)).astype(np.float32)
    pc = deserialize_message(serialize_message(M.encode_pointcloud2(rt, xyz, STAMP)), PointCloud2)
    assert np.array_equal(M.decode_pointcloud2(pc), xyz)
    # The same content encoded for rosbags, serialised by rosbags, parsed by rclpy, decodes to the same
    # values as the rclpy-built message. (Not byte equality: rclpy leaves CDR padding uninitialised, and
    # the Jazzy wheels' serialiser appends trailing bytes that rosbags' strict size check refuses.)
    rb = M.RosTypes(TS)
    cases = [
        (M.encode_camera_info(rt, M.Intrinsics(4, 3, np.eye(3) * 2, np.zeros(5), "plumb_bob"), STAMP),
         lambda m: M.decode_camera_info(m).K),
        (M.encode_joint_trajectory(rt, M.JointTrajectoryData(["a"], STAMP, np.array([10]), np.ones((1, 1)))),
         lambda m: M.decode_joint_trajectory(m).positions),
        (M.encode_multidof_trajectory(rt, M.MultiDOFTrajectoryData(["b"], STAMP, np.array([5]),
                                                                   np.array([[[1, 2, 3, 0, 0, 0, 1.0]]]))),
         lambda m: M.decode_multidof_trajectory(m).poses),
        (M.encode_wrench(rt, np.arange(6.0), STAMP), M.decode_wrench),
        (M.encode_pose(rt, [1, 2, 3, 0, 0, 0, 1.0], STAMP), M.decode_pose),
        (M.encode_twist(rt, np.arange(6.0), STAMP), M.decode_twist),
        (M.encode_joy(rt, [0.5], [1], STAMP), lambda m: M.decode_joy(m)[0]),
        (M.encode_compressed_depth(rt, np.full((4, 4), 1500, np.uint16), STAMP), lambda m: M.decode_compressed(m)[0]),
    ]
    for msg, decode in cases:
        name = _typename(msg)
        rosbags_bytes = bytes(TS.serialize_cdr(_rebuild(rb, msg, name), name))
        parsed = deserialize_message(rosbags_bytes, type(msg))
        assert np.array_equal(decode(msg), decode(parsed)), name
        assert M.header_ns(parsed) == STAMP


def _rebuild(types, msg, name):
    """The same message built for rosbags through our encoders (decode the rclpy one, encode again)."""
    enc = {
        "sensor_msgs/msg/CameraInfo": lambda m: M.encode_camera_info(types, M.decode_camera_info(m), STAMP),
        "trajectory_msgs/msg/JointTrajectory": lambda m: M.encode_joint_trajectory(types, M.decode_joint_trajectory(m)),
        "trajectory_msgs/msg/MultiDOFJointTrajectory":
            lambda m: M.encode_multidof_trajectory(types, M.decode_multidof_trajectory(m)),
        "geometry_msgs/msg/WrenchStamped": lambda m: M.encode_wrench(types, M.decode_wrench(m), STAMP),
        "geometry_msgs/msg/PoseStamped": lambda m: M.encode_pose(types, M.decode_pose(m), STAMP),
        "geometry_msgs/msg/TwistStamped": lambda m: M.encode_twist(types, M.decode_twist(m), STAMP),
        "sensor_msgs/msg/Joy": lambda m: M.encode_joy(types, *M.decode_joy(m), STAMP),
        "sensor_msgs/msg/CompressedImage":
            lambda m: M.encode_compressed_depth(types, np.round(M.decode_compressed(m)[0] * 1000).astype(np.uint16),
                                                STAMP),
    }
    return enc[name](msg)


def _typename(msg):
    mod = type(msg).__module__.split(".")  # e.g. sensor_msgs.msg._image
    return f"{mod[0]}/msg/{type(msg).__name__}"
