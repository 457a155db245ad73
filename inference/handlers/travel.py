"""Travel between images, and the transition that joins two clips.

- `travel_segment`, `individual_travel_segment` (`video_travel_segment`): inputs
  `start_image` and `end_image` → MP4 of exactly `num_frames` frames starting and
  ending on them; seed 001's structure video (input `structure_video`) and motion
  params shape the start of sampling (`inference.structure`).
- `join_clips_segment`: the transition between two clips (last frame of the
  first → first frame of the second), as its own MP4.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from inference import frames as fr
from inference.errors import InvalidInputError
from inference.handlers.core import DiffusersBackend
from inference.handlers.registry import handler
from inference.handlers.results import Job, Result
from inference.handlers.video import frame_count, pair_clip
from inference.params import one_input, ordered_inputs

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image


@handler("travel_segment", "individual_travel_segment", "video_travel_segment")
def travel_segment(backend: DiffusersBackend, job: Job) -> Result:
    inputs = job.inputs
    first = fr.decode_image(one_input(inputs, "start_image", "image"))
    last = fr.decode_image(one_input(inputs, "end_image"))
    return pair_clip(backend, job, first, last, inputs=inputs)


@handler("join_clips_segment")
def join_clips_segment(backend: DiffusersBackend, job: Job) -> Result:
    clips = [fr.decode_video(value) for value in ordered_inputs(job.inputs)]
    if len(clips) != 2:
        raise InvalidInputError(f"join_clips_segment needs two clips, got {len(clips)}")
    before, after = clips
    count = frame_count(backend, job.params, "frames_per_transition")
    return pair_clip(
        backend,
        job,
        _pil(before.frames[-1]),
        _pil(after.frames[0]),
        count=count,
        fps=before.fps,
    )


def _pil(frame: np.ndarray) -> Image:
    from PIL import Image

    return Image.fromarray(frame)
