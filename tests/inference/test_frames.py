"""Frame helpers: exact counts in, exact counts out."""

from __future__ import annotations

import numpy as np
import pytest

from inference.errors import InvalidInputError
from inference.frames import crossfade_concat, decode_video, encode_mp4, pick_evenly
from inference.params import natural_key, parse_size


def numbered(count: int, value_offset: int = 0) -> np.ndarray:
    """Frames whose pixel value is their index, so picks can be read back."""
    return np.stack([np.full((8, 8, 3), i + value_offset, dtype=np.uint8) for i in range(count)])


def test_picking_fewer_frames_keeps_the_first_and_the_last() -> None:
    picked = pick_evenly(numbered(13), 10)
    assert len(picked) == 10
    assert picked[0, 0, 0, 0] == 0 and picked[-1, 0, 0, 0] == 12


def test_a_crossfade_overlaps_each_seam_by_the_given_frames() -> None:
    joined = crossfade_concat([numbered(9), numbered(9, 100), numbered(9, 200)], overlap=2)
    assert len(joined) == 9 * 3 - 2 * 2
    assert len(crossfade_concat([numbered(9), numbered(5)], overlap=0)) == 14


def test_an_mp4_round_trips_its_frame_count_and_rate() -> None:
    clip = decode_video(encode_mp4(numbered(7), fps=12))
    assert clip.frames.shape == (7, 8, 8, 3)
    assert clip.fps == pytest.approx(12)


def test_odd_video_sizes_are_refused_rather_than_cropped() -> None:
    with pytest.raises(InvalidInputError, match="even"):
        encode_mp4(np.zeros((2, 9, 8, 3), dtype=np.uint8), fps=8)


def test_input_keys_sort_naturally() -> None:
    keys = ["segment_10", "segment_2", "segment_1"]
    assert sorted(keys, key=natural_key) == ["segment_1", "segment_2", "segment_10"]


@pytest.mark.parametrize(
    ("params", "size"),
    [
        ({"resolution": "902x508"}, (902, 508)),
        ({"resolution": "640*480"}, (640, 480)),
        ({"width": 100, "height": 60}, (100, 60)),
        ({}, (512, 512)),
    ],
)
def test_sizes_come_from_resolution_or_width_and_height(params: dict, size: tuple) -> None:
    assert parse_size(params, (512, 512)) == size
