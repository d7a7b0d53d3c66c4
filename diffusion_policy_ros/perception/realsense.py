"""Intel RealSense without realsense-ros: colour + depth aligned to colour, through pyrealsense2.

``RealSenseSource.open_camera(...)`` streams a real camera (rs.pipeline). ``SoftwareCamera`` is a
librealsense ``software_device`` with a depth and a colour sensor: frames injected into it go
through the same syncer and ``rs.align`` as a camera's, so the source and the node are tested
without hardware (and recorded frames can be replayed through librealsense).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import ObservationError
from .pointcloud import Intrinsics


def _rs():
    try:
        import pyrealsense2 as rs
    except ImportError as e:  # pragma: no cover - depends on the machine
        raise ImportError("pyrealsense2 is needed for RealSense input: pip install pyrealsense2 "
                          "(and Debian's libusb-1.0-0)") from e
    return rs


@dataclass
class RealSenseFrame:
    rgb: np.ndarray  # (H, W, 3) uint8
    depth_mm: np.ndarray  # (H, W) uint16, aligned to colour; 0 = invalid (scaled by depth_scale to metres)
    depth_scale: float  # metres per depth unit
    intrinsics: Intrinsics  # of colour, which aligned depth shares
    timestamp_ns: int  # device timestamp
    frame_number: int


def intrinsics_from_profile(profile, frame_id: str = "") -> Intrinsics:
    rs = _rs()
    i = profile.as_video_stream_profile().get_intrinsics()
    k = np.array([[i.fx, 0, i.ppx], [0, i.fy, i.ppy], [0, 0, 1]], np.float64)
    model = "plumb_bob" if i.model in (rs.distortion.brown_conrady, rs.distortion.modified_brown_conrady,
                                       rs.distortion.inverse_brown_conrady, rs.distortion.none) else str(i.model)
    return Intrinsics(i.width, i.height, k, np.asarray(i.coeffs, np.float64), model, frame_id)


class RealSenseSource:
    """Aligned colour + depth frames from anything that yields librealsense framesets."""

    def __init__(self, wait_for_frames: Callable[[int], object], *, close: Callable[[], None] | None = None,
                 frame_id: str = "camera_color_optical_frame"):
        rs = _rs()
        self._wait = wait_for_frames
        self._close = close
        self._align = rs.align(rs.stream.color)
        self.frame_id = frame_id

    @classmethod
    def open_camera(cls, width: int = 640, height: int = 480, fps: int = 30, serial: str | None = None,
                    frame_id: str = "camera_color_optical_frame") -> "RealSenseSource":
        rs = _rs()
        pipe, cfg = rs.pipeline(), rs.config()
        if serial:
            cfg.enable_device(serial)
        cfg.enable_stream(rs.stream.depth, width, height, rs.format.z16, fps)
        cfg.enable_stream(rs.stream.color, width, height, rs.format.rgb8, fps)
        pipe.start(cfg)
        return cls(lambda timeout_ms: pipe.wait_for_frames(timeout_ms), close=pipe.stop, frame_id=frame_id)

    def read(self, timeout_ms: int = 1000) -> RealSenseFrame:
        frames = self._wait(timeout_ms)
        aligned = self._align.process(frames)
        depth, color = aligned.get_depth_frame(), aligned.get_color_frame()
        if not depth or not color:
            raise ObservationError("realsense: expected a frameset with depth and colour, got "
                                   f"{[str(f.profile.stream_type()) for f in frames.as_frameset()]}")
        return RealSenseFrame(
            rgb=np.asanyarray(color.get_data()).copy(),
            depth_mm=np.asanyarray(depth.get_data()).copy(),
            depth_scale=float(depth.get_units()),
            intrinsics=intrinsics_from_profile(color.profile, self.frame_id),
            timestamp_ns=int(round(depth.get_timestamp() * 1e6)),
            frame_number=int(depth.get_frame_number()),
        )

    def close(self) -> None:
        if self._close is not None:
            self._close()
            self._close = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SoftwareCamera:
    """A librealsense software device with depth (z16) and colour (rgb8) sensors sharing one pinhole
    model and identity depth→colour extrinsics. ``push(depth_mm, rgb)`` injects one pair."""

    def __init__(self, width: int, height: int, fx: float, fy: float, cx: float, cy: float, fps: int = 30,
                 depth_scale: float = 0.001):
        rs = _rs()
        self.rs, self.width, self.height, self.fps, self.depth_scale = rs, width, height, fps, depth_scale
        intr = rs.intrinsics()
        intr.width, intr.height, intr.fx, intr.fy, intr.ppx, intr.ppy = width, height, fx, fy, cx, cy
        intr.model, intr.coeffs = rs.distortion.brown_conrady, [0.0] * 5
        self.device = rs.software_device()
        self.depth_sensor = self.device.add_sensor("Depth")
        self.color_sensor = self.device.add_sensor("Color")
        self.depth_sensor.add_read_only_option(rs.option.depth_units, depth_scale)

        def stream(kind, fmt, bpp, uid):
            v = rs.video_stream()
            v.type, v.index, v.uid, v.width, v.height, v.fps, v.bpp, v.fmt = kind, 0, uid, width, height, fps, bpp, fmt
            v.intrinsics = intr
            return v

        self.depth_profile = self.depth_sensor.add_video_stream(
            stream(rs.stream.depth, rs.format.z16, 2, 0)).as_video_stream_profile()
        self.color_profile = self.color_sensor.add_video_stream(
            stream(rs.stream.color, rs.format.rgb8, 3, 1)).as_video_stream_profile()
        ext = rs.extrinsics()
        ext.rotation, ext.translation = [1, 0, 0, 0, 1, 0, 0, 0, 1], [0, 0, 0]
        self.depth_profile.register_extrinsics_to(self.color_profile, ext)
        self.device.create_matcher(rs.matchers.dlr_c)
        self.syncer = rs.syncer(100)
        self.depth_sensor.open(self.depth_profile)
        self.color_sensor.open(self.color_profile)
        self.depth_sensor.start(self.syncer)
        self.color_sensor.start(self.syncer)
        self._n = 0

    def push(self, depth_mm: np.ndarray, rgb: np.ndarray) -> None:
        rs = self.rs
        if depth_mm.shape != (self.height, self.width) or depth_mm.dtype != np.uint16:
            raise ObservationError(f"depth_mm: expected ({self.height}, {self.width}) uint16, got "
                                   f"{depth_mm.dtype} {depth_mm.shape}")
        if rgb.shape != (self.height, self.width, 3) or rgb.dtype != np.uint8:
            raise ObservationError(f"rgb: expected ({self.height}, {self.width}, 3) uint8, got {rgb.dtype} {rgb.shape}")
        self._n += 1
        for sensor, profile, pixels, bpp in ((self.depth_sensor, self.depth_profile, depth_mm, 2),
                                             (self.color_sensor, self.color_profile, rgb, 3)):
            f = rs.software_video_frame()
            f.pixels = np.ascontiguousarray(pixels)
            f.bpp, f.stride = bpp, self.width * bpp
            f.timestamp = self._n * 1000.0 / self.fps
            f.domain = rs.timestamp_domain.hardware_clock
            f.frame_number = self._n
            f.profile = profile
            if bpp == 2:
                f.depth_units = self.depth_scale
            sensor.on_video_frame(f)

    def wait_for_frames(self, timeout_ms: int = 1000):
        """The next frameset holding both streams (the syncer releases a pair once the next arrives)."""
        while True:
            fs = self.syncer.wait_for_frames(timeout_ms).as_frameset()
            if fs.size() == 2:
                return fs

    def source(self, frame_id: str = "camera_color_optical_frame") -> RealSenseSource:
        return RealSenseSource(self.wait_for_frames, close=self.close, frame_id=frame_id)

    def close(self) -> None:
        for s in (self.depth_sensor, self.color_sensor):
            try:
                s.stop()
                s.close()
            except RuntimeError:  # already stopped
                pass
