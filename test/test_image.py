import numpy as np
import pytest

from diffusion_policy_ros.errors import ObservationError
from diffusion_policy_ros.perception.image import prepare_rgb


def test_resize_keeps_aspect_and_centre_crops():
    img = np.zeros((480, 640, 3), np.uint8)
    img[:, 80:560] = 255  # the central 480x480 square is white, the side bands black
    out = prepare_rgb(img, 96, 96)
    assert out.shape == (96, 96, 3) and out.dtype == np.uint8
    assert out.min() >= 250  # the crop kept exactly the central square
    wide = prepare_rgb(img, 48, 128)  # wider than the source aspect: full width kept, rows cropped
    assert wide.shape == (48, 128, 3)
    assert wide[:, :10].max() < 5 and wide[:, 60:70].min() > 250


def test_same_size_is_untouched_and_bad_input_rejected():
    img = np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8)
    assert prepare_rgb(img, 96, 96) is img
    with pytest.raises(ObservationError, match=r"\(H, W, 3\) uint8"):
        prepare_rgb(img.astype(np.float32), 84, 84)
    with pytest.raises(ObservationError, match="shape"):
        prepare_rgb(np.zeros((0, 10, 3), np.uint8), 84, 84)
