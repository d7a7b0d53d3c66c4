"""ROS message ⇄ numpy: the only place that converts messages, for every driver.

Decoders are duck-typed on field names, so the same function reads an rclpy message (live node) and
a ``rosbags`` message (replay, dataset conversion). Encoders build messages through ``RosTypes``:
rclpy's generated classes by default, or a rosbags typestore (``RosTypes(typestore)``) for bags and
for tests. Nothing here imports rclpy at module level.

Every decoder validates what it reads and raises ``MessageError`` naming the field, the expected and
the received value. Conventions: time is integer nanoseconds; depth is float32 metres with 0 for
invalid; colour is RGB uint8; quaternions are (x, y, z, w) as in ROS.
"""
from __future__ import annotations

import importlib
import struct
from array import array
from dataclasses import dataclass

import numpy as np

from ..errors import DiffusionPolicyRosError
from ..perception.pointcloud import Intrinsics  # noqa: F401  (CameraInfo's decoded form)


class MessageError(DiffusionPolicyRosError, ValueError):
    """A message is malformed: wrong size, unknown encoding, non-finite values, missing names."""


def _fail(field: str, expected: str, got) -> MessageError:
    return MessageError(f"{field}: expected {expected}, got {got}")


# --- time ----------------------------------------------------------------------------------------
def stamp_to_ns(stamp) -> int:
    """builtin_interfaces/Time or Duration → integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def header_ns(msg) -> int:
    return stamp_to_ns(msg.header.stamp)


def _split_ns(ns: int) -> tuple[int, int]:
    sec, nanosec = divmod(int(ns), 1_000_000_000)
    return sec, nanosec


# --- message construction --------------------------------------------------------------------------
class RosTypes:
    """Where encoders get message classes: rclpy's generated modules, or a rosbags typestore."""

    def __init__(self, typestore=None):
        self.typestore = typestore
        self._cache: dict[str, type] = {}

    def cls(self, typename: str) -> type:
        if typename not in self._cache:
            if self.typestore is not None:
                self._cache[typename] = self.typestore.types[typename]
            else:
                pkg, kind, name = typename.split("/")
                self._cache[typename] = getattr(importlib.import_module(f"{pkg}.{kind}"), name)
        return self._cache[typename]

    def new(self, typename: str, **fields):
        return self.cls(typename)(**fields)

    # Array fields: rosbags wants numpy arrays; rclpy wants array.array / bytes for variable-size
    # sequences and numpy for fixed-size ones.
    def u8(self, data: np.ndarray):
        data = np.ascontiguousarray(data, dtype=np.uint8).reshape(-1)
        return data if self.typestore is not None else data.tobytes()

    def f64(self, values, fixed: bool = False):
        a = np.asarray(values, dtype=np.float64).reshape(-1)
        if self.typestore is not None or fixed:
            return a
        return array("d", a.tobytes())

    def f32(self, values):
        a = np.asarray(values, dtype=np.float32).reshape(-1)
        return a if self.typestore is not None else array("f", a.tobytes())

    def i32(self, values):
        a = np.asarray(values, dtype=np.int32).reshape(-1)
        return a if self.typestore is not None else array("i", a.tobytes())

    def time(self, ns: int):
        sec, nanosec = _split_ns(ns)
        return self.new("builtin_interfaces/msg/Time", sec=sec, nanosec=nanosec)

    def duration(self, ns: int):
        sec, nanosec = _split_ns(ns)
        return self.new("builtin_interfaces/msg/Duration", sec=sec, nanosec=nanosec)

    def header(self, stamp_ns: int, frame_id: str):
        return self.new("std_msgs/msg/Header", stamp=self.time(stamp_ns), frame_id=frame_id)


# --- sensor_msgs/Image ---------------------------------------------------------------------------
# encoding → (numpy dtype, channels)
IMAGE_ENCODINGS = {
    "rgb8": (np.uint8, 3), "bgr8": (np.uint8, 3), "rgba8": (np.uint8, 4), "bgra8": (np.uint8, 4),
    "mono8": (np.uint8, 1), "8UC1": (np.uint8, 1), "8UC3": (np.uint8, 3),
    "mono16": (np.uint16, 1), "16UC1": (np.uint16, 1), "32FC1": (np.float32, 1),
}
COLOR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC3")
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")


def image_to_numpy(msg) -> np.ndarray:
    """Pixels as stored: (H, W) or (H, W, C) in the encoding's dtype; honours step and endianness."""
    enc = msg.encoding
    if enc not in IMAGE_ENCODINGS:
        raise _fail("image.encoding", f"one of {sorted(IMAGE_ENCODINGS)}", repr(enc))
    dtype, ch = IMAGE_ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise _fail("image.height/width", "positive sizes", f"{h}x{w}")
    row_bytes = w * ch * np.dtype(dtype).itemsize
    if step < row_bytes:
        raise _fail("image.step", f">= width*channels*bytes = {row_bytes}", step)
    buf = np.frombuffer(bytes(msg.data) if not isinstance(msg.data, np.ndarray) else msg.data, np.uint8)
    if buf.size < h * step:
        raise _fail("image.data", f"{h * step} bytes (height*step)", f"{buf.size} bytes")
    rows = buf[: h * step].reshape(h, step)[:, :row_bytes]
    dt = np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<")
    img = np.ascontiguousarray(rows).view(dt).astype(dtype, copy=False).reshape(h, w, ch)
    return img[..., 0] if ch == 1 else img


def decode_rgb(msg) -> np.ndarray:
    """Colour image → (H, W, 3) uint8 RGB."""
    if msg.encoding not in COLOR_ENCODINGS:
        raise _fail("image.encoding", f"a colour encoding {COLOR_ENCODINGS}", repr(msg.encoding))
    img = image_to_numpy(msg)
    if msg.encoding == "mono8":
        return np.repeat(img[..., None], 3, axis=2)
    if msg.encoding.startswith("bgr") or msg.encoding == "8UC3":  # 8UC3 is OpenCV's BGR
        img = img[..., 2::-1]
    return np.ascontiguousarray(img[..., :3])


def decode_depth(msg, depth_scale: float = 0.001) -> np.ndarray:
    """Depth image → (H, W) float32 metres, 0 = invalid. 16UC1/mono16 are millimetres (scale 0.001)."""
    if msg.encoding not in DEPTH_ENCODINGS:
        raise _fail("image.encoding", f"a depth encoding {DEPTH_ENCODINGS}", repr(msg.encoding))
    img = image_to_numpy(msg)
    if img.dtype == np.uint16:
        return img.astype(np.float32) * np.float32(depth_scale)
    depth = img.astype(np.float32, copy=True)
    depth[~np.isfinite(depth) | (depth < 0)] = 0.0
    return depth


def numpy_to_image(types: RosTypes, img: np.ndarray, encoding: str, stamp_ns: int, frame_id: str = ""):
    if encoding not in IMAGE_ENCODINGS:
        raise _fail("encoding", f"one of {sorted(IMAGE_ENCODINGS)}", repr(encoding))
    dtype, ch = IMAGE_ENCODINGS[encoding]
    img = np.asarray(img)
    expected_ndim = 2 if ch == 1 else 3
    if img.dtype != dtype or img.ndim != expected_ndim or (ch > 1 and img.shape[2] != ch):
        raise _fail(f"image array for {encoding}", f"dtype {np.dtype(dtype)} with {ch} channel(s)",
                    f"{img.dtype} of shape {img.shape}")
    h, w = img.shape[:2]
    data = np.ascontiguousarray(img.astype(np.dtype(dtype).newbyteorder("<"))).view(np.uint8)
    return types.new("sensor_msgs/msg/Image", header=types.header(stamp_ns, frame_id), height=h, width=w,
                     encoding=encoding, is_bigendian=0, step=w * ch * np.dtype(dtype).itemsize, data=types.u8(data))


# --- sensor_msgs/CompressedImage -----------------------------------------------------------------
_DEPTH_HEADER = struct.Struct("<iff")  # image_transport compressedDepth ConfigHeader: format, depthQuantA/B


def decode_compressed(msg, depth_scale: float = 0.001) -> tuple[np.ndarray, str]:
    """→ (array, kind): ('rgb', (H, W, 3) uint8) for jpeg/png colour, ('depth', (H, W) float32 m) for
    image_transport's compressedDepth as realsense-ros publishes it."""
    import cv2

    fmt = str(msg.format)
    raw = np.frombuffer(bytes(msg.data) if not isinstance(msg.data, np.ndarray) else msg.data, np.uint8)
    if "compressedDepth" in fmt:
        if raw.size <= _DEPTH_HEADER.size:
            raise _fail("compressed_image.data", f"> {_DEPTH_HEADER.size} bytes (header + PNG)", raw.size)
        _, quant_a, quant_b = _DEPTH_HEADER.unpack(raw[: _DEPTH_HEADER.size].tobytes())
        img = cv2.imdecode(raw[_DEPTH_HEADER.size:], cv2.IMREAD_UNCHANGED)
        if img is None or img.dtype != np.uint16 or img.ndim != 2:
            raise _fail("compressed_image.data", "a 16-bit single-channel PNG after the 12-byte header",
                        "undecodable data" if img is None else f"{img.dtype} {img.shape}")
        if fmt.startswith("32FC1"):
            v = img.astype(np.float32)
            with np.errstate(divide="ignore"):
                depth = np.where(img > 0, quant_a / (v - quant_b), 0.0).astype(np.float32)
            depth[~np.isfinite(depth) | (depth < 0)] = 0.0
            return depth, "depth"
        return img.astype(np.float32) * np.float32(depth_scale), "depth"
    if not any(k in fmt for k in ("jpeg", "jpg", "png")):
        raise _fail("compressed_image.format", "jpeg, png or compressedDepth", repr(fmt))
    img = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise _fail("compressed_image.data", f"a decodable {fmt}", f"{raw.size} undecodable bytes")
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.dtype != np.uint8:
        raise _fail("compressed_image.data", "8-bit colour", str(img.dtype))
    # OpenCV decodes to BGR; image_transport compresses rgb8 as "rgb8; jpeg compressed bgr8".
    return np.ascontiguousarray(img[..., 2::-1] if img.shape[2] >= 3 else img), "rgb"


def encode_compressed_rgb(types: RosTypes, rgb: np.ndarray, stamp_ns: int, frame_id: str = "", fmt: str = "jpeg",
                          quality: int = 95):
    import cv2

    ext = ".jpg" if fmt == "jpeg" else ".png"
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise _fail("rgb", "an (H, W, 3) uint8 image", f"{rgb.dtype} {rgb.shape}")
    return types.new("sensor_msgs/msg/CompressedImage", header=types.header(stamp_ns, frame_id),
                     format=f"rgb8; {fmt} compressed bgr8", data=types.u8(buf))


def encode_compressed_depth(types: RosTypes, depth_mm: np.ndarray, stamp_ns: int, frame_id: str = ""):
    """16UC1 millimetres → compressedDepth (12-byte header + 16-bit PNG), as image_transport writes it."""
    import cv2

    ok, png = cv2.imencode(".png", np.ascontiguousarray(depth_mm, dtype=np.uint16))
    if not ok:
        raise _fail("depth_mm", "an (H, W) uint16 image", f"{depth_mm.dtype} {depth_mm.shape}")
    data = np.concatenate((np.frombuffer(_DEPTH_HEADER.pack(0, 0.0, 0.0), np.uint8), png.reshape(-1)))
    return types.new("sensor_msgs/msg/CompressedImage", header=types.header(stamp_ns, frame_id),
                     format="16UC1; compressedDepth png", data=types.u8(data))


# --- sensor_msgs/CameraInfo ----------------------------------------------------------------------
def decode_camera_info(msg) -> Intrinsics:
    k = np.asarray(msg.k, dtype=np.float64).reshape(-1)
    if k.size != 9 or not np.isfinite(k).all() or k[0] <= 0 or k[4] <= 0:
        raise _fail("camera_info.k", "9 finite values with fx, fy > 0", k.tolist())
    if int(msg.width) <= 0 or int(msg.height) <= 0:
        raise _fail("camera_info.width/height", "positive sizes", f"{msg.width}x{msg.height}")
    return Intrinsics(int(msg.width), int(msg.height), k.reshape(3, 3), np.asarray(msg.d, np.float64).copy(),
                      str(msg.distortion_model), str(msg.header.frame_id))


def encode_camera_info(types: RosTypes, intr: Intrinsics, stamp_ns: int):
    p = np.zeros((3, 4))
    p[:, :3] = intr.K
    roi = types.new("sensor_msgs/msg/RegionOfInterest", x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return types.new("sensor_msgs/msg/CameraInfo", header=types.header(stamp_ns, intr.frame_id), height=intr.height,
                     width=intr.width, distortion_model=intr.distortion_model, d=types.f64(intr.D),
                     k=types.f64(intr.K, fixed=True), r=types.f64(np.eye(3), fixed=True), p=types.f64(p, fixed=True),
                     binning_x=0, binning_y=0, roi=roi)


# --- sensor_msgs/PointCloud2 ---------------------------------------------------------------------
_PF_DTYPES = {1: np.int8, 2: np.uint8, 3: np.int16, 4: np.uint16, 5: np.int32, 6: np.uint32, 7: np.float32,
              8: np.float64}


def decode_pointcloud2(msg, *, with_rgb: bool = False, skip_nans: bool = True):
    """→ xyz (N, 3) float32 [, rgb (N, 3) uint8]. Organised clouds flatten row-major; NaN points dropped
    unless skip_nans=False. Reads any point_step / row_step padding and field order."""
    fields = {f.name: f for f in msg.fields}
    for name in ("x", "y", "z") + (("rgb",) if with_rgb and "rgba" not in fields else ()):
        if name not in fields and not (name == "rgb" and "rgba" in fields):
            raise _fail("pointcloud2.fields", f"a field '{name}'", sorted(fields))
    h, w, ps, rs = int(msg.height), int(msg.width), int(msg.point_step), int(msg.row_step)
    order = ">" if msg.is_bigendian else "<"
    names, formats, offsets = [], [], []
    for name in ("x", "y", "z", "rgb", "rgba"):
        f = fields.get(name)
        if f is None or (name in ("rgb", "rgba") and not with_rgb):
            continue
        if f.datatype not in _PF_DTYPES:
            raise _fail(f"pointcloud2.fields[{name}].datatype", "1..8", f.datatype)
        names.append(name)
        formats.append(np.dtype(_PF_DTYPES[f.datatype]).newbyteorder(order))
        offsets.append(int(f.offset))
    if ps <= 0 or max(o + fm.itemsize for o, fm in zip(offsets, formats)) > ps:
        raise _fail("pointcloud2.point_step", "large enough for every field", ps)
    if rs < w * ps:
        raise _fail("pointcloud2.row_step", f">= width*point_step = {w * ps}", rs)
    buf = np.frombuffer(bytes(msg.data) if not isinstance(msg.data, np.ndarray) else msg.data, np.uint8)
    if buf.size < h * rs:
        raise _fail("pointcloud2.data", f"{h * rs} bytes (height*row_step)", f"{buf.size} bytes")
    rows = np.ascontiguousarray(buf[: h * rs].reshape(h, rs)[:, : w * ps]).reshape(-1)
    pts = rows.view(np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": ps}))
    xyz = np.stack([pts["x"], pts["y"], pts["z"]], axis=-1).astype(np.float32)
    keep = np.isfinite(xyz).all(axis=1) if skip_nans else slice(None)
    xyz = xyz[keep]
    if not with_rgb:
        return xyz
    packed = pts["rgb" if "rgb" in names else "rgba"]
    packed = packed.view(np.uint32) if packed.dtype.itemsize == 4 else packed.astype(np.uint32)
    packed = packed.astype(np.uint32)[keep]
    rgb = np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], axis=-1).astype(np.uint8)
    return xyz, rgb


def encode_pointcloud2(types: RosTypes, xyz: np.ndarray, stamp_ns: int, frame_id: str = "",
                       rgb: np.ndarray | None = None):
    """(N, 3) points [+ (N, 3) uint8 colours packed as PCL's float32 'rgb'] → unorganised PointCloud2."""
    xyz = np.asarray(xyz, np.float32).reshape(-1, 3)
    n = len(xyz)
    dt = np.dtype({"names": ["x", "y", "z", "rgb"], "formats": ["<f4"] * 3 + ["<u4"], "offsets": [0, 4, 8, 12],
                   "itemsize": 16})
    arr = np.zeros(n, dt)
    arr["x"], arr["y"], arr["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    names = ["x", "y", "z"]
    if rgb is not None:
        c = np.asarray(rgb, np.uint32).reshape(-1, 3)
        arr["rgb"] = (c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]
        names.append("rgb")
    fields = [types.new("sensor_msgs/msg/PointField", name=nm, offset=4 * i, datatype=7, count=1)
              for i, nm in enumerate(names)]
    return types.new("sensor_msgs/msg/PointCloud2", header=types.header(stamp_ns, frame_id), height=1, width=n,
                     fields=fields, is_bigendian=False, point_step=16, row_step=16 * n,
                     data=types.u8(arr.view(np.uint8)), is_dense=bool(np.isfinite(xyz).all()))


# --- proprioception and commands -------------------------------------------------------------------
def _finite(values: np.ndarray, field: str) -> np.ndarray:
    if not np.isfinite(values).all():
        raise _fail(field, "finite values", values.tolist())
    return values


def decode_joint_state(msg, names: list[str]) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """→ (positions, velocities or None, efforts or None) in the order of ``names``."""
    msg_names = list(msg.name)
    index = {n: i for i, n in enumerate(msg_names)}
    missing = [n for n in names if n not in index]
    if missing:
        raise _fail("joint_state.name", f"joints {names}", f"{msg_names} (missing {missing})")
    idx = [index[n] for n in names]
    pos = np.asarray(msg.position, np.float64)
    if pos.size != len(msg_names):
        raise _fail("joint_state.position", f"{len(msg_names)} values (one per name)", pos.size)
    out = [_finite(pos[idx], "joint_state.position")]
    for field in ("velocity", "effort"):
        v = np.asarray(getattr(msg, field), np.float64)
        out.append(v[idx] if v.size == len(msg_names) else None)
    return out[0], out[1], out[2]


def encode_joint_state(types: RosTypes, names, positions, stamp_ns: int, velocities=None, efforts=None):
    return types.new("sensor_msgs/msg/JointState", header=types.header(stamp_ns, ""), name=list(names),
                     position=types.f64(positions), velocity=types.f64([] if velocities is None else velocities),
                     effort=types.f64([] if efforts is None else efforts))


def decode_wrench(msg) -> np.ndarray:
    """WrenchStamped → (6,) float64 [fx, fy, fz, tx, ty, tz]."""
    w = msg.wrench
    v = np.array([w.force.x, w.force.y, w.force.z, w.torque.x, w.torque.y, w.torque.z], np.float64)
    return _finite(v, "wrench")


def _vec3(types, typename, v):
    return types.new(typename, x=float(v[0]), y=float(v[1]), z=float(v[2]))


def encode_wrench(types: RosTypes, wrench, stamp_ns: int, frame_id: str = ""):
    w = types.new("geometry_msgs/msg/Wrench", force=_vec3(types, "geometry_msgs/msg/Vector3", wrench[:3]),
                  torque=_vec3(types, "geometry_msgs/msg/Vector3", wrench[3:6]))
    return types.new("geometry_msgs/msg/WrenchStamped", header=types.header(stamp_ns, frame_id), wrench=w)


def _pose7(pose, field: str) -> np.ndarray:
    p, q = pose.position, pose.orientation
    v = _finite(np.array([p.x, p.y, p.z, q.x, q.y, q.z, q.w], np.float64), field)
    norm = np.linalg.norm(v[3:])
    if norm < 1e-6:
        raise _fail(f"{field}.orientation", "a non-zero quaternion", v[3:].tolist())
    v[3:] /= norm
    return v


def decode_pose(msg) -> np.ndarray:
    """PoseStamped → (7,) [x, y, z, qx, qy, qz, qw], quaternion normalised."""
    return _pose7(msg.pose, "pose")


def _pose_msg(types, pose7):
    return types.new("geometry_msgs/msg/Pose", position=_vec3(types, "geometry_msgs/msg/Point", pose7[:3]),
                     orientation=types.new("geometry_msgs/msg/Quaternion", x=float(pose7[3]), y=float(pose7[4]),
                                           z=float(pose7[5]), w=float(pose7[6])))


def encode_pose(types: RosTypes, pose7, stamp_ns: int, frame_id: str = ""):
    return types.new("geometry_msgs/msg/PoseStamped", header=types.header(stamp_ns, frame_id),
                     pose=_pose_msg(types, pose7))


def decode_twist(msg) -> np.ndarray:
    """TwistStamped → (6,) [vx, vy, vz, wx, wy, wz]."""
    t = msg.twist
    return _finite(np.array([t.linear.x, t.linear.y, t.linear.z, t.angular.x, t.angular.y, t.angular.z]), "twist")


def _twist_msg(types, v):
    return types.new("geometry_msgs/msg/Twist", linear=_vec3(types, "geometry_msgs/msg/Vector3", v[:3]),
                     angular=_vec3(types, "geometry_msgs/msg/Vector3", v[3:6]))


def encode_twist(types: RosTypes, twist, stamp_ns: int, frame_id: str = ""):
    return types.new("geometry_msgs/msg/TwistStamped", header=types.header(stamp_ns, frame_id),
                     twist=_twist_msg(types, twist))


def decode_joy(msg) -> tuple[np.ndarray, np.ndarray]:
    """Joy → (axes float32, buttons int32)."""
    return _finite(np.asarray(msg.axes, np.float32), "joy.axes"), np.asarray(msg.buttons, np.int32)


def encode_joy(types: RosTypes, axes, buttons, stamp_ns: int):
    return types.new("sensor_msgs/msg/Joy", header=types.header(stamp_ns, ""), axes=types.f32(axes),
                     buttons=types.i32(buttons))


@dataclass
class JointTrajectoryData:
    joint_names: list[str]
    stamp_ns: int
    time_from_start_ns: np.ndarray  # (K,) int64
    positions: np.ndarray  # (K, J)
    velocities: np.ndarray | None = None  # (K, J)


def decode_joint_trajectory(msg) -> JointTrajectoryData:
    names = list(msg.joint_names)
    pts = list(msg.points)
    t = np.array([stamp_to_ns(p.time_from_start) for p in pts], np.int64)
    pos = np.array([np.asarray(p.positions, np.float64) for p in pts]).reshape(len(pts), -1)
    if pos.shape[1] != len(names) and len(pts):
        raise _fail("joint_trajectory.points[].positions", f"{len(names)} values per point", pos.shape[1])
    _finite(pos, "joint_trajectory.points[].positions")
    vel = None
    if pts and all(len(p.velocities) == len(names) for p in pts):
        vel = np.array([np.asarray(p.velocities, np.float64) for p in pts])
    return JointTrajectoryData(names, header_ns(msg), t, pos, vel)


def encode_joint_trajectory(types: RosTypes, data: JointTrajectoryData, frame_id: str = ""):
    points = []
    for k in range(len(data.time_from_start_ns)):
        vel = data.velocities[k] if data.velocities is not None else []
        points.append(types.new("trajectory_msgs/msg/JointTrajectoryPoint", positions=types.f64(data.positions[k]),
                                velocities=types.f64(vel), accelerations=types.f64([]), effort=types.f64([]),
                                time_from_start=types.duration(int(data.time_from_start_ns[k]))))
    return types.new("trajectory_msgs/msg/JointTrajectory", header=types.header(data.stamp_ns, frame_id),
                     joint_names=list(data.joint_names), points=points)


@dataclass
class MultiDOFTrajectoryData:
    joint_names: list[str]
    stamp_ns: int
    time_from_start_ns: np.ndarray  # (K,)
    poses: np.ndarray  # (K, J, 7) [x, y, z, qx, qy, qz, qw]
    velocities: np.ndarray | None = None  # (K, J, 6)


def decode_multidof_trajectory(msg) -> MultiDOFTrajectoryData:
    names = list(msg.joint_names)
    pts = list(msg.points)
    poses = np.zeros((len(pts), len(names), 7))
    vel = np.zeros((len(pts), len(names), 6)) if pts and all(len(p.velocities) == len(names) for p in pts) else None
    for k, p in enumerate(pts):
        if len(p.transforms) != len(names):
            raise _fail(f"multi_dof_trajectory.points[{k}].transforms", f"{len(names)} transforms", len(p.transforms))
        for j, tf in enumerate(p.transforms):
            tr, q = tf.translation, tf.rotation
            poses[k, j] = [tr.x, tr.y, tr.z, q.x, q.y, q.z, q.w]
            if vel is not None:
                t = p.velocities[j]
                vel[k, j] = [t.linear.x, t.linear.y, t.linear.z, t.angular.x, t.angular.y, t.angular.z]
    _finite(poses, "multi_dof_trajectory.points[].transforms")
    t = np.array([stamp_to_ns(p.time_from_start) for p in pts], np.int64)
    return MultiDOFTrajectoryData(names, header_ns(msg), t, poses, vel)


def encode_multidof_trajectory(types: RosTypes, data: MultiDOFTrajectoryData, frame_id: str = ""):
    points = []
    for k in range(len(data.time_from_start_ns)):
        tfs = [types.new("geometry_msgs/msg/Transform",
                         translation=_vec3(types, "geometry_msgs/msg/Vector3", p[:3]),
                         rotation=types.new("geometry_msgs/msg/Quaternion", x=float(p[3]), y=float(p[4]),
                                            z=float(p[5]), w=float(p[6])))
               for p in data.poses[k]]
        vels = [] if data.velocities is None else [_twist_msg(types, v) for v in data.velocities[k]]
        points.append(types.new("trajectory_msgs/msg/MultiDOFJointTrajectoryPoint", transforms=tfs, velocities=vels,
                                accelerations=[], time_from_start=types.duration(int(data.time_from_start_ns[k]))))
    return types.new("trajectory_msgs/msg/MultiDOFJointTrajectory", header=types.header(data.stamp_ns, frame_id),
                     joint_names=list(data.joint_names), points=points)
