"""Text to image(s): `prompt`, `seed`, `resolution` "WxH" or `width`/`height`, `steps`,
`num_images`."""

from __future__ import annotations

from inference.handlers.core import DiffusersBackend, StepHook, fit
from inference.handlers.registry import handler
from inference.handlers.results import Job, Result
from inference.models import TEXT_TO_IMAGE
from inference.params import int_param, parse_size, round_to, seed_from


@handler("image_generation", "qwen_image", "z_image_turbo")
def text_to_image(backend: DiffusersBackend, job: Job) -> Result:
    params = job.params
    pipe = backend.pipeline(TEXT_TO_IMAGE)
    width, height = parse_size(params, backend.default_size)
    count = int_param(params, "num_images", 1, 1, 16)
    steps, seed = backend.steps(params), seed_from(params)
    images = backend.call(
        pipe,
        StepHook(job.progress, job.should_cancel, steps),
        **backend.common(params, seed),
        width=round_to(width, 8),
        height=round_to(height, 8),
        num_inference_steps=steps,
        num_images_per_prompt=count,
    ).images
    return backend.image_result([fit(image, width, height) for image in images], seed)
