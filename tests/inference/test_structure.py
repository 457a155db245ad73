"""Seed 001's structure-video and motion params on the tiny first-last-frame model: what
it can honour changes the clip, and what is off (or not applicable) leaves it as it was."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from inference import structure
from inference.frames import decode_video, encode_mp4, encode_png

pytestmark = pytest.mark.timeout(300)


def still(color: tuple[int, int, int]) -> bytes:
    from PIL import Image

    return encode_png(Image.new("RGB", (32, 32), color))


def moving_square(frames: int = 12, side: int = 32, step: float = 1.0) -> np.ndarray:
    video = np.zeros((frames, side, side, 3), dtype=np.uint8)
    for i in range(frames):
        left = 2 + round(i * step)
        video[i, 8:20, left : left + 12] = (255, 255, 255)
    return video


GUIDE = encode_mp4(moving_square(), fps=8.0)


def clip(backend: Any, guide: bytes | None = None, **params: Any) -> np.ndarray:
    inputs = {"start_image": still((200, 40, 40)), "end_image": still((0, 0, 255))}
    if guide is not None:
        inputs[structure.STRUCTURE_INPUT] = guide
    result = backend.run("travel_segment", {"num_frames": 9, "seed": 5, **params}, inputs)
    return decode_video(result.data).frames.astype(int)


@pytest.fixture(scope="module")
def plain(backend: Any) -> np.ndarray:
    return clip(backend)


def test_a_flow_or_canny_structure_video_changes_the_clip(backend: Any, plain: np.ndarray) -> None:
    # The same call twice differs by 0.04-0.28 levels on average on a busy CPU; a guide
    # moves the clip by 1.5-1.7.
    for kind in ("flow", "canny"):
        guided = clip(
            backend, GUIDE, structure_video_path="/media/g.mp4", structure_video_type=kind
        )
        assert np.abs(guided - plain).mean() > 0.6, kind


def test_no_motion_changes_the_clip(backend: Any, plain: np.ndarray) -> None:
    assert np.abs(clip(backend, amount_of_motion=0.0) - plain).mean() > 0.6


@pytest.fixture(scope="module")
def pipe(backend: Any) -> Any:
    from inference.models import IMAGE_TO_VIDEO

    return backend.pipeline(IMAGE_TO_VIDEO)


@pytest.mark.parametrize(
    ("params", "guided"),
    [
        ({"structure_video_motion_strength": 0}, True),
        ({"structure_video_type": "depth"}, True),
        ({"amount_of_motion": 1.0}, False),
        ({}, False),
    ],
)
def test_what_is_off_or_not_applicable_leaves_the_pipeline_its_own_noise(
    pipe: Any, params: dict[str, Any], guided: bool
) -> None:
    inputs = {structure.STRUCTURE_INPUT: GUIDE} if guided else {}
    assert structure.starting_latents(pipe, params, inputs, frames=9, size=(32, 32), seed=5) == {}


def test_a_guide_with_the_seeds_defaults_starts_the_pipeline_from_its_latents(pipe: Any) -> None:
    start = structure.starting_latents(
        pipe, {}, {structure.STRUCTURE_INPUT: GUIDE}, frames=9, size=(32, 32), seed=5
    )
    side = 32 // pipe.vae_scale_factor_spatial
    assert tuple(start["latents"].shape) == (1, pipe.vae.config.z_dim, 3, side, side)


def control(kind: str = "flow", treatment: str = "adjust", video: bytes = GUIDE) -> Any:
    params = {"structure_video_type": kind, "structure_video_treatment": treatment}
    return structure.control_frames(params, {structure.STRUCTURE_INPUT: video}, 9, (32, 32))


def test_the_type_decides_the_control_signal_and_the_treatment_its_frames() -> None:
    flow, canny = control("flow").astype(int), control("canny").astype(int)
    assert flow.shape == canny.shape == (9, 32, 32, 3)
    assert np.abs(flow - canny).mean() > 10
    # 40 frames crossing the picture: `clip` takes the first 9 (the square barely
    # moves), `adjust` spreads 9 over all of them (it crosses).
    long = encode_mp4(moving_square(frames=40, step=0.5), fps=8.0)
    adjusted = control("canny", "adjust", long).astype(int)
    clipped = control("canny", "clip", long).astype(int)
    assert np.abs(adjusted[-1] - clipped[-1]).mean() > 10
    assert control("depth") is None


def test_adjust_spreads_the_guide_and_clip_holds_its_last_frame() -> None:
    video = np.arange(4).reshape(4, 1, 1, 1)
    assert structure.fit(video, 7, "adjust")[:, 0, 0, 0].tolist() == [0, 1, 1, 2, 2, 3, 3]
    assert structure.fit(video, 6, "clip")[:, 0, 0, 0].tolist() == [0, 1, 2, 3, 3, 3]
    assert structure.fit(video, 2, "clip")[:, 0, 0, 0].tolist() == [0, 1]


def test_horn_schunck_sees_a_square_moving_right() -> None:
    video = moving_square(frames=2).astype(np.float32).mean(axis=-1) / 255
    u, v = structure.horn_schunck(video[0], video[1])
    assert u[8:20, 2:16].mean() > 0.05 > abs(float(v[8:20, 2:16].mean()))


def test_flow_maps_colour_by_direction_and_are_dark_where_nothing_moves() -> None:
    maps = structure.flow_maps(moving_square(frames=3))
    assert maps.shape == (3, 32, 32, 3)
    assert maps[0, 28:, 28:].max() < 40 < maps[0, 8:20, 10:16].max()


def test_a_runs_segment_is_guided_by_its_part_of_the_video() -> None:
    video = np.arange(12).reshape(12, 1, 1, 1)

    def part(index: int, treatment: str) -> list[int]:
        params = {"segment_index": index, "num_segments": 3}
        picked = structure.part_of_run(video, params, 4, treatment)
        return structure.fit(picked, 4, treatment)[:, 0, 0, 0].tolist()  # type: ignore[no-any-return]

    assert [part(i, "adjust") for i in range(3)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    assert part(2, "clip") == [8, 9, 10, 11]
    assert structure.part_of_run(video, {}, 4, "adjust").shape[0] == 12
