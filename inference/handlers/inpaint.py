"""`image_inpaint`: inputs `image` and `mask` (white = repaint)."""

from __future__ import annotations

import math

from inference import frames as fr
from inference.handlers.core import DiffusersBackend, StepHook, fit
from inference.handlers.registry import handler
from inference.handlers.results import Job, Result
from inference.models import INPAINT
from inference.params import float_param, one_input, parse_size, round_to, seed_from


@handler("image_inpaint")
def inpaint(backend: DiffusersBackend, job: Job) -> Result:
    params, inputs = job.params, job.inputs
    pipe = backend.pipeline(INPAINT)
    source = fr.decode_image(one_input(inputs, "image"))
    mask = fr.decode_image(one_input(inputs, "mask"), mode="L")
    width, height = parse_size(params, source.size)
    gen_size = (round_to(width, 8), round_to(height, 8))
    strength = float_param(params, "strength", 1.0, 0.01, 1.0)
    steps = max(backend.steps(params), math.ceil(1 / strength))
    seed = seed_from(params)
    images = backend.call(
        pipe,
        StepHook(job.progress, job.should_cancel, steps),
        **backend.common(params, seed),
        image=source.resize(gen_size),
        mask_image=mask.resize(gen_size),
        width=gen_size[0],
        height=gen_size[1],
        strength=strength,
        num_inference_steps=steps,
    ).images
    return backend.image_result([fit(images[0], width, height)], seed)
