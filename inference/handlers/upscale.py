"""`image_upscale`: x4 (`scale_factor` or `scale` below 4 resizes the x4 result down)."""

from __future__ import annotations

from inference import frames as fr
from inference.handlers.core import DiffusersBackend, StepHook, fit
from inference.handlers.registry import handler
from inference.handlers.results import Job, Result
from inference.models import UPSCALE
from inference.params import even, float_param, int_param, one_input, seed_from


@handler("image_upscale")
def upscale(backend: DiffusersBackend, job: Job) -> Result:
    params, inputs = job.params, job.inputs
    pipe = backend.pipeline(UPSCALE)
    source = fr.decode_image(one_input(inputs, "image"))
    # `scale_factor` is the API's name (2 or 4), `scale` the older one.
    name = "scale_factor" if params.get("scale_factor") is not None else "scale"
    scale = float_param(params, name, 4.0, 1.0, 4.0)
    steps, seed = backend.steps(params), seed_from(params)
    kwargs = backend.common(params, seed)
    kwargs.pop("guidance_scale", None)  # the x4 model's own default (9) suits it
    # The UNet halves the latent once, so the low-res side must be even.
    low_res = source.resize((even(source.width), even(source.height)))
    image = backend.call(
        pipe,
        StepHook(job.progress, job.should_cancel, steps),
        **kwargs,
        image=low_res,
        num_inference_steps=steps,
        noise_level=int_param(params, "noise_level", 20, 0, 350),
    ).images[0]
    target = (round(source.width * scale), round(source.height * scale))
    return backend.image_result([fit(image, *target)], seed)
