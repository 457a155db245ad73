"""Each param has one spelling in the backends; a stored payload's other spellings are
translated once, where a backend receives it (`inference.params.canonical`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference.frames import decode_video
from inference.params import SPELLINGS, canonical

HANDLERS = Path(__file__).resolve().parents[2] / "inference" / "handlers"


def png(width: int, height: int, color: tuple[int, int, int]) -> bytes:
    from PIL import Image

    from inference.frames import encode_png

    return encode_png(Image.new("RGB", (width, height), color))


def test_each_other_spelling_is_read_as_the_one_name_and_is_gone_after() -> None:
    old = {"num_inference_steps": 3, "n": 2, "base_prompt": "dusk", "segment_frames": 9}
    old |= {"gap_frames": 5, "overlap": 2, "seed": 7}
    assert canonical(old) == {
        "steps": 3,
        "num_images": 2,
        "prompt": "dusk",
        "num_frames": 9,
        "frames_per_transition": 5,
        "frame_overlap": 2,
        "seed": 7,
    }


def test_the_one_name_wins_over_another_spelling_and_a_none_stands_for_absent() -> None:
    params = {"prompt": "dawn", "base_prompt": "dusk", "num_frames": None, "frames": 11}
    assert canonical(params) == {"prompt": "dawn", "num_frames": 11}
    assert canonical({"num_images_per_prompt": 4, "n": 2}) == {"num_images": 4}


def test_no_handler_reads_a_param_under_another_spelling() -> None:
    others = {other for spellings in SPELLINGS.values() for other in spellings}
    found = [
        (path.name, other)
        for path in sorted(HANDLERS.glob("*.py"))
        for other in sorted(others)
        if f'"{other}"' in path.read_text()
    ]
    assert found == []


def test_an_image_task_stored_with_the_old_spellings_runs_as_the_new_one(backend) -> None:
    new = {"prompt": "a fox", "resolution": "32x32", "seed": 4, "steps": 2, "num_images": 2}
    old = {"base_prompt": "a fox", "resolution": "32x32", "seed": 4}
    old |= {"num_inference_steps": 2, "n": 2}
    seen: list[tuple[int, int]] = []
    as_new = backend.run("image_generation", new, {})
    as_old = backend.run("image_generation", old, {}, progress=lambda i, n: seen.append((i, n)))
    assert [m.data for m in as_old.outputs] == [m.data for m in as_new.outputs]
    assert len(as_old.outputs) == 2 and seen[-1][1] == 2


@pytest.mark.parametrize("spelling", ["frames", "segment_frames"])
def test_a_video_segment_stored_with_an_old_frame_count_spelling_has_that_many_frames(
    backend, spelling: str
) -> None:
    inputs = {"start_image": png(32, 32, (200, 40, 40)), "end_image": png(32, 32, (0, 0, 255))}
    result = backend.run("travel_segment", {spelling: 6, "seed": 3, "steps": 1}, inputs)
    assert result.frames == 6 == len(decode_video(result.data).frames)
