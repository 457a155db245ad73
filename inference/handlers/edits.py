"""Image to image on input `image` with `prompt` and `strength`: `magic_edit`
(`qwen_image_edit`), `annotated_image_edit`, `image_edit`, and seed 000's
`edit_travel_kontext` / `edit_travel_flux`. The annotated edit receives the image
with the user's marks already drawn in, so it is the same operation."""

from __future__ import annotations

import math

from inference import frames as fr
from inference.handlers.core import DiffusersBackend, StepHook, fit
from inference.handlers.registry import handler
from inference.handlers.results import Job, Result
from inference.models import IMAGE_TO_IMAGE
from inference.params import float_param, one_input, parse_size, round_to, seed_from


@handler(
    "magic_edit",
    "annotated_image_edit",
    "image_edit",
    "qwen_image_edit",
    "edit_travel_kontext",
    "edit_travel_flux",
)
def image_to_image(backend: DiffusersBackend, job: Job) -> Result:
    params, inputs = job.params, job.inputs
    pipe = backend.pipeline(IMAGE_TO_IMAGE)
    source = fr.decode_image(one_input(inputs, "image"))
    width, height = parse_size(params, source.size)
    strength = float_param(params, "strength", 0.75, 0.01, 1.0)
    # Fewer than one effective step (steps x strength < 1) is an error in diffusers.
    steps = max(backend.steps(params), math.ceil(1 / strength))
    seed = seed_from(params)
    images = backend.call(
        pipe,
        StepHook(job.progress, job.should_cancel, steps),
        **backend.common(params, seed),
        image=source.resize((round_to(width, 8), round_to(height, 8))),
        strength=strength,
        num_inference_steps=steps,
    ).images
    return backend.image_result([fit(images[0], width, height)], seed)
