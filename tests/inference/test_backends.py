"""DiffusersBackend on the tiny pipelines: every task family, progress, cancellation."""

from __future__ import annotations

import io
import time

import pytest

from inference.errors import InvalidInputError, TaskCancelledError, UnsupportedTaskError
from inference.frames import MP4, PNG, decode_image, decode_video, encode_png

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png(width: int, height: int, color: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    from PIL import Image

    return encode_png(Image.new("RGB", (width, height), color))


def mask_png(width: int, height: int) -> bytes:
    from PIL import Image

    mask = Image.new("L", (width, height), 0)
    mask.paste(255, (width // 4, height // 4, width // 2, height // 2))
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    return buffer.getvalue()


def segment(backend, frames: int, first: bytes | None = None, last: bytes | None = None):
    inputs = {"start_image": first or png(32, 32), "end_image": last or png(32, 32, (0, 0, 255))}
    return backend.run("travel_segment", {"num_frames": frames, "seed": 3}, inputs)


def test_text_to_image_gives_a_png_of_the_requested_size(backend) -> None:
    result = backend.run("image_generation", {"prompt": "a fox", "resolution": "64x48"}, {})
    assert result.content_type == PNG
    assert result.data.startswith(PNG_MAGIC)
    assert decode_image(result.data).size == (64, 48) == (result.width, result.height)
    assert result.frames == 1
    assert result.thumbnail.startswith(PNG_MAGIC)
    assert result.seed is not None


def test_a_size_off_the_latent_grid_still_comes_back_exactly_as_asked(backend) -> None:
    result = backend.run("image_generation", {"width": 70, "height": 45, "seed": 1}, {})
    assert decode_image(result.data).size == (70, 45)


def test_the_same_seed_gives_the_same_picture(backend) -> None:
    params = {"prompt": "a fox", "resolution": "32x32", "seed": 42}
    first = backend.run("image_generation", params, {})
    second = backend.run("image_generation", params, {})
    assert first.seed == second.seed == 42
    assert first.data == second.data


def test_an_image_batch_returns_one_png_per_image(backend) -> None:
    result = backend.run("image_generation", {"resolution": "32x32", "num_images": 3}, {})
    assert len(result.outputs) == 3
    assert all(m.content_type == PNG and (m.width, m.height) == (32, 32) for m in result.outputs)


@pytest.mark.parametrize(
    "task_type", ["magic_edit", "annotated_image_edit", "edit_travel_kontext", "edit_travel_flux"]
)
def test_an_edit_returns_a_picture_the_size_of_its_input(backend, task_type: str) -> None:
    result = backend.run(task_type, {"prompt": "make it blue"}, {"image": png(56, 40)})
    assert decode_image(result.data).size == (56, 40)


def test_inpainting_fills_the_masked_region_at_the_input_size(backend) -> None:
    inputs = {"image": png(64, 48), "mask": mask_png(64, 48)}
    result = backend.run("image_inpaint", {"prompt": "a hat"}, inputs)
    assert decode_image(result.data).size == (64, 48)


def test_upscale_gives_four_times_the_input_size(backend) -> None:
    result = backend.run("image_upscale", {"seed": 0}, {"image": png(16, 12)})
    assert decode_image(result.data).size == (64, 48) == (result.width, result.height)


@pytest.mark.parametrize("factor", [2, 4])
def test_upscale_honours_the_apis_scale_factor(backend, factor: int) -> None:
    params = {"seed": 0, "scale_factor": factor}
    result = backend.run("image_upscale", params, {"image": png(16, 12)})
    assert (result.width, result.height) == (16 * factor, 12 * factor)


def test_the_video_segment_has_the_requested_frame_count(backend) -> None:
    # 10 is not of the model's 4k+1 form: the backend must still give exactly 10.
    result = segment(backend, frames=10)
    assert result.content_type == MP4
    assert result.frames == 10 == len(decode_video(result.data).frames)
    assert (result.width, result.height) == (32, 32)
    assert result.thumbnail.startswith(PNG_MAGIC)
    assert decode_image(result.thumbnail).size == (32, 32)


@pytest.mark.parametrize("frames", [1, 2])
def test_a_video_segment_of_one_or_two_frames_is_made_and_not_a_crash(backend, frames) -> None:
    result = segment(backend, frames=frames)
    assert result.frames == frames == len(decode_video(result.data).frames)


def test_stitching_two_segments_gives_one_mp4_whose_frame_count_is_the_sum(backend) -> None:
    first, second = segment(backend, frames=9), segment(backend, frames=5)
    result = backend.run("travel_stitch", {}, {"segment_1": second.data, "segment_0": first.data})
    assert result.content_type == MP4
    assert result.frames == 14 == len(decode_video(result.data).frames)


def test_joining_clips_makes_a_transition_and_the_final_stitch_concatenates(backend) -> None:
    clip_a, clip_b = segment(backend, frames=5), segment(backend, frames=5)
    transition = backend.run(
        "join_clips_segment", {"num_frames": 7}, {"clip_0": clip_a.data, "clip_1": clip_b.data}
    )
    assert transition.frames == 7
    final = backend.run(
        "join_final_stitch",
        {},
        {"part_0": clip_a.data, "part_1": transition.data, "part_2": clip_b.data},
    )
    assert len(decode_video(final.data).frames) == 5 + 7 + 5


def test_character_animate_turns_one_picture_into_a_short_clip(backend) -> None:
    result = backend.run("character_animate", {"num_frames": 9}, {"image": png(32, 32)})
    assert result.content_type == MP4 and result.frames == 9


def test_progress_is_reported_once_per_denoising_step(backend) -> None:
    seen: list[tuple[int, int]] = []
    backend.run(
        "image_generation",
        {"resolution": "32x32", "steps": 3},
        {},
        progress=lambda i, n: seen.append((i, n)),
    )
    assert seen == [(1, 3), (2, 3), (3, 3)]


@pytest.mark.parametrize(
    ("task_type", "params", "inputs"),
    [
        ("image_generation", {"resolution": "32x32"}, {}),
        ("image_upscale", {}, {"image": png(16, 16)}),
        ("travel_segment", {"num_frames": 9}, {"start_image": png(32, 32), "end_image": png(8, 8)}),
    ],
    ids=["text-to-image", "upscale", "video"],
)
def test_cancelling_stops_inside_the_denoising_loop_with_a_named_error(
    backend, task_type: str, params: dict, inputs: dict
) -> None:
    seen: list[tuple[int, int]] = []
    checks = iter([False, False, True])  # before start, after step 1, after step 2
    with pytest.raises(TaskCancelledError):
        backend.run(
            task_type,
            {**params, "steps": 50},
            inputs,
            progress=lambda i, n: seen.append((i, n)),
            should_cancel=lambda: next(checks),
        )
    assert seen == [(1, 50)]


def test_a_cancelled_pipeline_runs_normally_afterwards(backend) -> None:
    checks = iter([False, True])  # cancelled right after the first step
    with pytest.raises(TaskCancelledError):
        params = {"resolution": "32x32", "steps": 5}
        backend.run("image_generation", params, {}, should_cancel=lambda: next(checks))
    started = time.perf_counter()
    result = backend.run("image_generation", {"resolution": "32x32", "steps": 2}, {})
    assert result.width == 32
    assert time.perf_counter() - started < 10


def test_an_unknown_task_type_is_refused_by_name(backend) -> None:
    with pytest.raises(UnsupportedTaskError, match="teleport"):
        backend.run("teleport", {}, {})


@pytest.mark.parametrize(
    ("task_type", "params", "inputs", "message"),
    [
        ("image_upscale", {}, {}, "missing input"),
        ("image_generation", {"resolution": "big"}, {}, "resolution"),
        ("image_generation", {"steps": "many"}, {}, "steps"),
        ("magic_edit", {}, {"image": b"not a picture"}, "not a picture"),
        ("travel_stitch", {}, {}, "nothing to stitch"),
    ],
)
def test_bad_params_and_inputs_are_refused_before_any_model_runs(
    backend, task_type: str, params: dict, inputs: dict, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        backend.run(task_type, params, inputs)


def test_every_task_type_in_the_domain_catalogue_that_does_work_has_a_handler(backend) -> None:
    from domain.catalogue import ALIASES, DEFAULT_CATALOGUE
    from inference.models import TASK_MODELS

    workers = {name for name, spec in DEFAULT_CATALOGUE.items() if not spec.is_orchestrator}
    assert workers | set(ALIASES) <= backend.task_types
    assert backend.task_types == set(TASK_MODELS)
