"""`travel_stitch`, `join_final_stitch`: concatenate every input video, in the natural
order of the input keys (`segment_2` before `segment_10`), into one MP4 whose frame
count is the sum (less `frame_overlap` per seam if given). No model runs."""

from __future__ import annotations

from inference import frames as fr
from inference.errors import InvalidInputError, TaskCancelledError
from inference.handlers.core import DiffusersBackend
from inference.handlers.registry import handler
from inference.handlers.results import Job, Result
from inference.handlers.video import clip_fps, video_size
from inference.params import MAX_FRAMES, int_param, ordered_inputs


@handler("travel_stitch", "join_final_stitch")
def stitch(backend: DiffusersBackend, job: Job) -> Result:
    params = job.params
    values = ordered_inputs(job.inputs)
    if not values:
        raise InvalidInputError("nothing to stitch: no input videos")
    clips = []
    for index, value in enumerate(values):
        if job.should_cancel():
            raise TaskCancelledError(f"cancelled after {index} of {len(values)} clips")
        clips.append(fr.decode_video(value))
        job.progress(index + 1, len(values))
    height, width = clips[0].frames.shape[1:3]
    size = video_size(params, (width, height))
    overlap = int_param(params, "frame_overlap", 0, 0, MAX_FRAMES)
    frames = fr.crossfade_concat([fr.resize_frames(c.frames, *size) for c in clips], overlap)
    return backend.video_result(frames, clip_fps(backend, params, clips[0].fps), None)
