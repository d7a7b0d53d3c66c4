"""Colour images → the policy's input shape with OpenCV. Scaling to [-1, 1] happens in the image
encoder (one place), so datasets and the live node store the same uint8 pixels."""
from __future__ import annotations

import cv2
import numpy as np

from ..errors import ObservationError


def prepare_rgb(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W, 3) uint8 → (height, width, 3) uint8: resize so the image covers the target (aspect kept,
    INTER_AREA when shrinking), then centre crop."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or min(rgb.shape[:2]) == 0:
        raise ObservationError(f"rgb: expected an (H, W, 3) uint8 image, got {rgb.dtype} of shape {rgb.shape}")
    h, w = rgb.shape[:2]
    if (h, w) == (height, width):
        return rgb
    scale = max(height / h, width / w)
    nh, nw = max(height, round(h * scale)), max(width, round(w * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(rgb, (nw, nh), interpolation=interp)
    y0, x0 = (nh - height) // 2, (nw - width) // 2
    return np.ascontiguousarray(resized[y0:y0 + height, x0:x0 + width])
