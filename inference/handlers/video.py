"""What the video families share: a clip from one picture to another on the
image-pair-to-video model, and the size, frame count and fps params of a clip."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from inference import frames as fr
from inference import structure
from inference.handlers.core import DiffusersBackend, StepHook
from inference.handlers.results import Job, Result
from inference.models import IMAGE_TO_VIDEO
from inference.params import (
    MAX_FRAMES,
    Inputs,
    even,
    float_param,
    int_param,
    parse_size,
    round_to,
    seed_from,
)

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image


def image_pair_video(
    backend: DiffusersBackend,
    job: Job,
    first: Image,
    last: Image,
    *,
    size: tuple[int, int],
    count: int,
    seed: int,
    inputs: Inputs | None = None,
) -> np.ndarray:
    """Exactly `count` frames of (width, height) running from `first` to `last`;
    structure video and motion params shape the start (`inference.structure`)."""
    params = job.params
    pipe = backend.pipeline(IMAGE_TO_VIDEO)
    stride = pipe.vae_scale_factor_spatial * pipe.transformer.config.patch_size[1]
    temporal = pipe.vae_scale_factor_temporal
    # The video VAE packs `temporal` frames per latent after the first: ask for 4k+1
    # frames, at least `count`, then keep `count` spread evenly (first and last kept).
    # Never fewer than one packed group: a one-latent video has no room for a last
    # image and the pipeline fails on a negative dimension (seen with num_frames=1).
    generated = max(math.ceil(max(count - 1, 0) / temporal), 1) * temporal + 1
    gen_w, gen_h = round_to(size[0], stride), round_to(size[1], stride)
    steps = backend.steps(params)
    start = structure.starting_latents(
        pipe, params, inputs or {}, frames=generated, size=(gen_w, gen_h), seed=seed
    )
    video = backend.call(
        pipe,
        StepHook(job.progress, job.should_cancel, steps),
        **backend.common(params, seed),
        image=first.resize((gen_w, gen_h)),
        last_image=last.resize((gen_w, gen_h)),
        width=gen_w,
        height=gen_h,
        num_frames=generated,
        num_inference_steps=steps,
        output_type="np",
        **start,
    ).frames[0]
    frames = fr.pick_evenly(fr.to_uint8_frames(video), count)
    return fr.resize_frames(frames, *size)


def video_size(params: Mapping[str, Any], default: tuple[int, int]) -> tuple[int, int]:
    width, height = parse_size(params, default)
    return even(width), even(height)  # H.264 in yuv420p needs even sides


def frame_count(
    backend: DiffusersBackend, params: Mapping[str, Any], own: str = "num_frames"
) -> int:
    """`params[own]` (a join's transition has its own count), else `num_frames`."""
    name = own if params.get(own) is not None else "num_frames"
    return int_param(params, name, backend.default_frames, 1, MAX_FRAMES)


def clip_fps(
    backend: DiffusersBackend, params: Mapping[str, Any], default: float | None = None
) -> float:
    return float_param(params, "fps", default or backend.default_fps, 1.0, 120.0)


def pair_clip(
    backend: DiffusersBackend,
    job: Job,
    first: Image,
    last: Image,
    *,
    count: int | None = None,
    fps: float | None = None,
    inputs: Inputs | None = None,
) -> Result:
    """A clip from `first` to `last` at the asked size (default: the first image's)."""
    params = job.params
    seed = seed_from(params)
    frames = image_pair_video(
        backend,
        job,
        first,
        last,
        size=video_size(params, first.size),
        count=frame_count(backend, params) if count is None else count,
        seed=seed,
        inputs=inputs,
    )
    return backend.video_result(frames, clip_fps(backend, params, fps), seed)
