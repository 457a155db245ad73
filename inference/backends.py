"""Model backends: a task's params and input media in, PNG or MP4 bytes out.

Callers (the Ray actor, the HTTP reference worker) depend on the `Backend`
protocol only. `DiffusersBackend` runs real diffusers pipelines: the tiny ones
from `inference.tiny` by default, or any model id / folder with the same
pipeline families. torch and diffusers are imported when a backend is built,
never at module import, so the API process can import `inference` cheaply.

Task types and what they do:

- `image_generation` (and the model-named `qwen_image`, `z_image_turbo`): text →
  image(s) (`prompt`, `seed`, `resolution` "WxH" or `width`/`height`, `steps`,
  `num_images`).
- `magic_edit` (`qwen_image_edit`), `annotated_image_edit`, `image_edit`, and seed
  000's `edit_travel_kontext` / `edit_travel_flux`: image-to-image on input
  `image` with `prompt` and `strength`. The annotated edit receives the image
  with the user's marks already drawn in, so it is the same operation.
- `image_inpaint`: inputs `image` and `mask` (white = repaint).
- `image_upscale`: x4 (`scale` below 4 resizes the x4 result down).
- `travel_segment`, `individual_travel_segment` (`video_travel_segment`): inputs
  `start_image` and `end_image` → MP4 of exactly `num_frames` frames starting and
  ending on them; seed 001's structure video (input `structure_video`) and motion
  params shape the start of sampling (`inference.structure`).
- `join_clips_segment`: the transition between two clips (last frame of the
  first → first frame of the second), as its own MP4.
- `travel_stitch`, `join_final_stitch`: concatenate every input video, in the
  natural order of the input keys (`segment_2` before `segment_10`), into one
  MP4 whose frame count is the sum (less `frame_overlap` per seam if given).
- `character_animate`: input `image` → a short MP4 that starts and ends on the
  character (first = last frame of the image-pair-to-video model), with motion
  from `prompt`. A reference motion video, if sent, is not used yet: that needs
  a pose-driven model (e.g. Wan-Animate), which the tiny set does not include.

LoRAs: any task whose params carry `loras` (`[{path, strength}]`, read as inputs
`lora_0`, `lora_1`, … by `inference.inputs`) runs with those adapters loaded into the
pipeline it calls (diffusers' `load_lora_weights`, then `set_adapters` with the
strengths) and unloaded right after (`unload_lora_weights`): no task's LoRA is left in
the next one. A pipeline without LoRA support refuses such a task (invalid input).
"""

from __future__ import annotations

import contextvars
import hashlib
import inspect
import io
import math
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from domain.errors import InvalidLoraError
from domain.loras import inspect_lora
from inference import frames as fr
from inference import structure
from inference.errors import (
    InvalidInputError,
    ModelNotConfiguredError,
    TaskCancelledError,
    UnsupportedTaskError,
)
from inference.inputs import LORA_INPUT
from inference.loading import dtype_for, load_pipeline, pick_device
from inference.models import (
    IMAGE_TO_IMAGE,
    IMAGE_TO_VIDEO,
    INPAINT,
    TEXT_TO_IMAGE,
    UPSCALE,
    model_for,
)
from inference.params import (
    MAX_FRAMES,
    Inputs,
    even,
    first,
    float_param,
    int_param,
    one_input,
    ordered_inputs,
    parse_size,
    round_to,
    seed_from,
)

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image

Progress = Callable[[int, int], None]
ShouldCancel = Callable[[], bool]


@dataclass(frozen=True)
class Lora:
    """One LoRA a task asked for: its safetensors bytes and strength."""

    data: bytes
    strength: float
    index: int

    @property
    def adapter_name(self) -> str:
        return f"task_lora_{self.index}_{hashlib.sha256(self.data).hexdigest()[:12]}"


# The LoRAs of the task running in this thread (set by `run`, applied by `_call`).
_LORAS: contextvars.ContextVar[tuple[Lora, ...]] = contextvars.ContextVar("loras", default=())


def take_loras(params: Mapping[str, Any], inputs: Inputs) -> tuple[tuple[Lora, ...], Inputs]:
    """The task's LoRAs (inputs `lora_<i>` with `params.loras[i].strength`), checked to be
    safetensors LoRA state dicts, and the other inputs."""
    entries = params.get("loras") or []
    loras, rest = [], {}
    for name, value in inputs.items():
        if not name.startswith(LORA_INPUT):
            rest[name] = value
            continue
        index = int(name.removeprefix(LORA_INPUT))
        data = value if isinstance(value, bytes) else value.read_bytes()
        try:
            inspect_lora(io.BytesIO(data), len(data))
        except InvalidLoraError as error:
            raise InvalidInputError(f"params.loras[{index}] is not a LoRA: {error}") from None
        entry = entries[index] if index < len(entries) else {}
        strength = float_param(entry, "strength", 1.0, -10.0, 10.0)
        loras.append(Lora(data, strength, index))
    return tuple(sorted(loras, key=lambda lora: lora.index)), rest


def no_progress(step: int, total: int) -> None:
    """Default progress sink."""


def never_cancel() -> bool:
    """Default cancellation probe."""
    return False


@dataclass(frozen=True)
class Media:
    """One produced file: its bytes and what a gallery needs to show it."""

    data: bytes
    content_type: str
    width: int
    height: int
    frames: int
    thumbnail: bytes
    fps: float | None = None

    @property
    def suffix(self) -> str:
        return ".mp4" if self.content_type == fr.MP4 else ".png"

    @property
    def is_video(self) -> bool:
        return self.content_type == fr.MP4


@dataclass(frozen=True)
class Result:
    """What a task produced: one media file, or several for an image batch.

    The first output's fields are repeated as properties because almost every
    task has exactly one output.
    """

    outputs: tuple[Media, ...]
    seed: int | None = None

    def __post_init__(self) -> None:
        if not self.outputs:
            raise ValueError("a result needs at least one output")

    @property
    def media(self) -> Media:
        return self.outputs[0]

    @property
    def data(self) -> bytes:
        return self.media.data

    @property
    def content_type(self) -> str:
        return self.media.content_type

    @property
    def width(self) -> int:
        return self.media.width

    @property
    def height(self) -> int:
        return self.media.height

    @property
    def frames(self) -> int:
        return self.media.frames

    @property
    def thumbnail(self) -> bytes:
        return self.media.thumbnail


class Backend(Protocol):
    """Runs one task. Must call `progress(i, n)` as work advances and stop with
    `TaskCancelledError` soon after `should_cancel()` turns true."""

    def run(
        self,
        task_type: str,
        params: Mapping[str, Any],
        inputs: Inputs,
        progress: Progress,
        should_cancel: ShouldCancel,
    ) -> Result: ...


_LOADERS = {
    TEXT_TO_IMAGE: "AutoPipelineForText2Image",
    IMAGE_TO_IMAGE: "AutoPipelineForImage2Image",
    INPAINT: "AutoPipelineForInpainting",
    UPSCALE: "DiffusionPipeline",
    IMAGE_TO_VIDEO: "DiffusionPipeline",
}


# --- progress and cancellation ---------------------------------------------------------------


class _StepHook:
    """Bridges diffusers' per-step callbacks to `progress` and `should_cancel`.

    Raising from the callback ends the denoising loop at once and skips the VAE
    decode, so a cancel costs at most one step. `_interrupt` is set as well so
    a pipeline that swallowed the error would still skip its remaining steps.
    """

    def __init__(self, progress: Progress, should_cancel: ShouldCancel, steps: int) -> None:
        self.progress = progress
        self.should_cancel = should_cancel
        self.steps = steps

    def on_step_end(self, pipe: Any, step: int, timestep: Any, kwargs: dict) -> dict:
        # img2img and inpaint run fewer steps than asked (strength); the pipeline knows how many.
        total = getattr(pipe, "_num_timesteps", None) or self.steps
        self._step(step, total, pipe)
        return kwargs

    def legacy(self, pipe: Any) -> Callable[[int, Any, Any], None]:
        def callback(step: int, timestep: Any, latents: Any) -> None:
            self._step(step, self.steps, pipe)

        return callback

    def _step(self, step: int, total: int, pipe: Any) -> None:
        if self.should_cancel():
            pipe._interrupt = True
            raise TaskCancelledError(f"cancelled after step {step + 1} of {total}")
        self.progress(step + 1, total)

    def kwargs_for(self, pipe: Any) -> dict[str, Any]:
        """The callback arguments this pipeline understands (the x4 upscaler is old-style)."""
        accepted = inspect.signature(pipe.__call__).parameters
        if "callback_on_step_end" in accepted:
            return {"callback_on_step_end": self.on_step_end}
        return {"callback": self.legacy(pipe), "callback_steps": 1}


# --- the backend ------------------------------------------------------------------------------


class DiffusersBackend:
    """Runs every task family on diffusers pipelines, each loaded once and kept.

    `models` maps model names (`inference.models`) to a model id or a local
    folder given to `from_pretrained`. Pipelines load lazily on first use, or
    up front with `load()` (an actor calls it before reporting ready).
    """

    def __init__(
        self,
        models: Mapping[str, str | Path],
        device: str | None = None,
        *,
        default_size: tuple[int, int] = (512, 512),
        default_steps: int = 2,
        default_frames: int = 17,
        default_fps: float = 16.0,
    ) -> None:
        self.models = dict(models)
        self.device = device or pick_device()
        self.dtype = dtype_for(self.device)
        self.default_size = default_size
        self.default_steps = default_steps
        self.default_frames = default_frames
        self.default_fps = default_fps
        self._pipes: dict[str, Any] = {}
        # One pipeline call at a time: adapters are loaded into shared modules.
        self._calling = threading.Lock()
        self._handlers: dict[str, Callable[..., Result]] = {
            "image_generation": self._text_to_image,
            "qwen_image": self._text_to_image,
            "z_image_turbo": self._text_to_image,
            "magic_edit": self._image_to_image,
            "annotated_image_edit": self._image_to_image,
            "image_edit": self._image_to_image,
            "qwen_image_edit": self._image_to_image,
            "edit_travel_kontext": self._image_to_image,
            "edit_travel_flux": self._image_to_image,
            "image_inpaint": self._inpaint,
            "image_upscale": self._upscale,
            "travel_segment": self._travel_segment,
            "individual_travel_segment": self._travel_segment,
            "video_travel_segment": self._travel_segment,
            "join_clips_segment": self._join_clips_segment,
            "character_animate": self._character_animate,
            "animate_character": self._character_animate,
            "travel_stitch": self._stitch,
            "join_final_stitch": self._stitch,
        }

    @property
    def task_types(self) -> frozenset[str]:
        return frozenset(self._handlers)

    def load(self, *names: str) -> None:
        """Load the named pipelines now (all configured ones when none are named)."""
        for name in names or tuple(self.models):
            self.pipeline(name)

    def pipeline(self, name: str) -> Any:
        """The loaded pipeline for a model name, loading it on first use."""
        if name not in self._pipes:
            self._pipes[name] = self._load(name)
        return self._pipes[name]

    def _load(self, name: str) -> Any:
        import diffusers

        source = self.models.get(name)
        if source is None:
            raise ModelNotConfiguredError(f"no model configured for {name!r}")
        loader = getattr(diffusers, _LOADERS[name])
        shared = self.models.get(TEXT_TO_IMAGE)
        if name == IMAGE_TO_IMAGE and shared is not None and str(shared) == str(source):
            # Same weights as text-to-image: share the loaded modules, don't load twice.
            pipe = loader.from_pipe(self.pipeline(TEXT_TO_IMAGE))
        else:
            pipe = load_pipeline(loader, source, self.dtype).to(self.device)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def run(
        self,
        task_type: str,
        params: Mapping[str, Any],
        inputs: Inputs,
        progress: Progress = no_progress,
        should_cancel: ShouldCancel = never_cancel,
    ) -> Result:
        """Run one task; see the module docstring for each type's params and inputs."""
        handler = self._handlers.get(task_type)
        if handler is None:
            model_for(task_type)  # raises UnsupportedTaskError with the catalogue's wording
            raise UnsupportedTaskError(f"no handler for task type {task_type!r}")
        if should_cancel():
            raise TaskCancelledError("cancelled before start")
        loras, inputs = take_loras(params, inputs)
        token = _LORAS.set(loras)
        try:
            return handler(params, inputs, progress, should_cancel)
        finally:
            _LORAS.reset(token)

    # --- shared pieces ---

    def _steps(self, params: Mapping[str, Any]) -> int:
        return int_param(params, ("steps", "num_inference_steps"), self.default_steps, 1, 500)

    def _common(self, params: Mapping[str, Any], seed: int) -> dict[str, Any]:
        import torch

        kwargs: dict[str, Any] = {
            "prompt": str(first(params, ("prompt", "base_prompt"), "")),
            # A CPU generator gives the same picture for a seed on any device.
            "generator": torch.Generator("cpu").manual_seed(seed),
        }
        negative = first(params, ("negative_prompt",))
        if negative:
            kwargs["negative_prompt"] = str(negative)
        if params.get("guidance_scale") is not None:
            kwargs["guidance_scale"] = float_param(params, "guidance_scale", 7.5, 0.0, 50.0)
        return kwargs

    def _call(self, pipe: Any, hook: _StepHook, **kwargs: Any) -> Any:
        import torch

        with self._calling, self._adapters(pipe, _LORAS.get()), torch.inference_mode():
            return pipe(**kwargs, **hook.kwargs_for(pipe))

    @contextmanager
    def _adapters(self, pipe: Any, loras: Sequence[Lora]) -> Iterator[None]:
        """The LoRAs loaded with their strengths for one call, unloaded after it."""
        if not loras:
            yield
            return
        if not hasattr(pipe, "load_lora_weights"):
            raise InvalidInputError(f"{type(pipe).__name__} takes no LoRAs; drop params.loras")
        from safetensors.torch import load

        loaded = False
        try:
            for lora in loras:
                state = {k: v.to(self.dtype) for k, v in load(lora.data).items()}
                loaded = True
                try:
                    pipe.load_lora_weights(state, adapter_name=lora.adapter_name)
                except (ValueError, KeyError, RuntimeError) as error:
                    raise InvalidInputError(
                        f"params.loras[{lora.index}] does not fit {type(pipe).__name__}: {error}"
                    ) from None
            present = {name for names in pipe.get_list_adapters().values() for name in names}
            missing = [lora.index for lora in loras if lora.adapter_name not in present]
            if missing:
                raise InvalidInputError(
                    f"params.loras{missing} adapt no layer of {type(pipe).__name__}"
                )
            pipe.set_adapters(
                [lora.adapter_name for lora in loras],
                adapter_weights=[lora.strength for lora in loras],
            )
            yield
        finally:
            if loaded:
                pipe.unload_lora_weights()

    def _image_result(self, images: list[Image], seed: int) -> Result:
        outputs = tuple(
            Media(
                data=fr.encode_png(image),
                content_type=fr.PNG,
                width=image.width,
                height=image.height,
                frames=1,
                thumbnail=fr.thumbnail_png(image),
            )
            for image in images
        )
        return Result(outputs, seed=seed)

    def _video_result(self, frames: np.ndarray, fps: float, seed: int | None) -> Result:
        from PIL import Image

        media = Media(
            data=fr.encode_mp4(frames, fps),
            content_type=fr.MP4,
            width=int(frames.shape[2]),
            height=int(frames.shape[1]),
            frames=len(frames),
            thumbnail=fr.thumbnail_png(Image.fromarray(frames[0])),
            fps=fps,
        )
        return Result((media,), seed=seed)

    # --- images ---

    def _text_to_image(
        self,
        params: Mapping[str, Any],
        inputs: Inputs,
        progress: Progress,
        should_cancel: ShouldCancel,
    ) -> Result:
        pipe = self.pipeline(TEXT_TO_IMAGE)
        width, height = parse_size(params, self.default_size)
        count = int_param(params, ("num_images", "num_images_per_prompt", "n"), 1, 1, 16)
        steps, seed = self._steps(params), seed_from(params)
        images = self._call(
            pipe,
            _StepHook(progress, should_cancel, steps),
            **self._common(params, seed),
            width=round_to(width, 8),
            height=round_to(height, 8),
            num_inference_steps=steps,
            num_images_per_prompt=count,
        ).images
        return self._image_result([_fit(image, width, height) for image in images], seed)

    def _image_to_image(
        self,
        params: Mapping[str, Any],
        inputs: Inputs,
        progress: Progress,
        should_cancel: ShouldCancel,
    ) -> Result:
        pipe = self.pipeline(IMAGE_TO_IMAGE)
        source = fr.decode_image(one_input(inputs, "image", "input_image", "source_image"))
        width, height = parse_size(params, source.size)
        strength = float_param(params, "strength", 0.75, 0.01, 1.0)
        # Fewer than one effective step (steps x strength < 1) is an error in diffusers.
        steps = max(self._steps(params), math.ceil(1 / strength))
        seed = seed_from(params)
        images = self._call(
            pipe,
            _StepHook(progress, should_cancel, steps),
            **self._common(params, seed),
            image=source.resize((round_to(width, 8), round_to(height, 8))),
            strength=strength,
            num_inference_steps=steps,
        ).images
        return self._image_result([_fit(images[0], width, height)], seed)

    def _inpaint(
        self,
        params: Mapping[str, Any],
        inputs: Inputs,
        progress: Progress,
        should_cancel: ShouldCancel,
    ) -> Result:
        pipe = self.pipeline(INPAINT)
        source = fr.decode_image(one_input(inputs, "image", "input_image", "source_image"))
        mask = fr.decode_image(one_input(inputs, "mask", "mask_image"), mode="L")
        width, height = parse_size(params, source.size)
        gen_size = (round_to(width, 8), round_to(height, 8))
        strength = float_param(params, "strength", 1.0, 0.01, 1.0)
        steps = max(self._steps(params), math.ceil(1 / strength))
        seed = seed_from(params)
        images = self._call(
            pipe,
            _StepHook(progress, should_cancel, steps),
            **self._common(params, seed),
            image=source.resize(gen_size),
            mask_image=mask.resize(gen_size),
            width=gen_size[0],
            height=gen_size[1],
            strength=strength,
            num_inference_steps=steps,
        ).images
        return self._image_result([_fit(images[0], width, height)], seed)

    def _upscale(
        self,
        params: Mapping[str, Any],
        inputs: Inputs,
        progress: Progress,
        should_cancel: ShouldCancel,
    ) -> Result:
        pipe = self.pipeline(UPSCALE)
        source = fr.decode_image(one_input(inputs, "image", "input_image", "source_image"))
        # `scale_factor` is the API's name (2 or 4), `scale` the older one.
        name = "scale_factor" if params.get("scale_factor") is not None else "scale"
        scale = float_param(params, name, 4.0, 1.0, 4.0)
        steps, seed = self._steps(params), seed_from(params)
        kwargs = self._common(params, seed)
        kwargs.pop("guidance_scale", None)  # the x4 model's own default (9) suits it
        # The UNet halves the latent once, so the low-res side must be even.
        low_res = source.resize((even(source.width), even(source.height)))
        image = self._call(
            pipe,
            _StepHook(progress, should_cancel, steps),
            **kwargs,
            image=low_res,
            num_inference_steps=steps,
            noise_level=int_param(params, ("noise_level",), 20, 0, 350),
        ).images[0]
        target = (round(source.width * scale), round(source.height * scale))
        return self._image_result([_fit(image, *target)], seed)

    # --- video ---

    def _image_pair_video(
        self,
        first: Image,
        last: Image,
        params: Mapping[str, Any],
        *,
        size: tuple[int, int],
        count: int,
        seed: int,
        progress: Progress,
        should_cancel: ShouldCancel,
        inputs: Inputs | None = None,
    ) -> np.ndarray:
        """Exactly `count` frames of (width, height) running from `first` to `last`;
        structure video and motion params shape the start (`inference.structure`)."""
        pipe = self.pipeline(IMAGE_TO_VIDEO)
        stride = pipe.vae_scale_factor_spatial * pipe.transformer.config.patch_size[1]
        temporal = pipe.vae_scale_factor_temporal
        # The video VAE packs `temporal` frames per latent after the first: ask for 4k+1
        # frames, at least `count`, then keep `count` spread evenly (first and last kept).
        # Never fewer than one packed group: a one-latent video has no room for a last
        # image and the pipeline fails on a negative dimension (seen with num_frames=1).
        generated = max(math.ceil(max(count - 1, 0) / temporal), 1) * temporal + 1
        gen_w, gen_h = round_to(size[0], stride), round_to(size[1], stride)
        steps = self._steps(params)
        start = structure.starting_latents(
            pipe, params, inputs or {}, frames=generated, size=(gen_w, gen_h), seed=seed
        )
        video = self._call(
            pipe,
            _StepHook(progress, should_cancel, steps),
            **self._common(params, seed),
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

    def _video_size(self, params: Mapping[str, Any], default: tuple[int, int]) -> tuple[int, int]:
        width, height = parse_size(params, default)
        return even(width), even(height)  # H.264 in yuv420p needs even sides

    def _frames(self, params: Mapping[str, Any], names: tuple[str, ...] = ()) -> int:
        names = (*names, "num_frames", "frames", "segment_frames")
        return int_param(params, names, self.default_frames, 1, MAX_FRAMES)

    def _fps(self, params: Mapping[str, Any], default: float | None = None) -> float:
        return float_param(params, "fps", default or self.default_fps, 1.0, 120.0)

    def _travel_segment(
        self,
        params: Mapping[str, Any],
        inputs: Inputs,
        progress: Progress,
        should_cancel: ShouldCancel,
    ) -> Result:
        first = fr.decode_image(one_input(inputs, "start_image", "first_image", "image"))
        last = fr.decode_image(one_input(inputs, "end_image", "last_image"))
        return self._pair_clip(first, last, params, progress, should_cancel, inputs=inputs)

    def _character_animate(
        self,
        params: Mapping[str, Any],
        inputs: Inputs,
        progress: Progress,
        should_cancel: ShouldCancel,
    ) -> Result:
        character = fr.decode_image(one_input(inputs, "image", "character_image", "start_image"))
        # First = last frame: the character moves and comes back to its pose, so clips loop.
        return self._pair_clip(character, character, params, progress, should_cancel)

    def _pair_clip(
        self,
        first: Image,
        last: Image,
        params: Mapping[str, Any],
        progress: Progress,
        should_cancel: ShouldCancel,
        *,
        count: int | None = None,
        fps: float | None = None,
        inputs: Inputs | None = None,
    ) -> Result:
        """A clip from `first` to `last` at the asked size (default: the first image's)."""
        seed = seed_from(params)
        frames = self._image_pair_video(
            first,
            last,
            params,
            size=self._video_size(params, first.size),
            count=self._frames(params) if count is None else count,
            seed=seed,
            progress=progress,
            should_cancel=should_cancel,
            inputs=inputs,
        )
        return self._video_result(frames, self._fps(params, fps), seed)

    def _join_clips_segment(
        self,
        params: Mapping[str, Any],
        inputs: Inputs,
        progress: Progress,
        should_cancel: ShouldCancel,
    ) -> Result:
        clips = [fr.decode_video(value) for value in ordered_inputs(inputs)]
        if len(clips) != 2:
            raise InvalidInputError(f"join_clips_segment needs two clips, got {len(clips)}")
        before, after = clips
        count = self._frames(params, ("frames_per_transition", "gap_frame_count", "gap_frames"))
        return self._pair_clip(
            _pil(before.frames[-1]),
            _pil(after.frames[0]),
            params,
            progress,
            should_cancel,
            count=count,
            fps=before.fps,
        )

    def _stitch(
        self,
        params: Mapping[str, Any],
        inputs: Inputs,
        progress: Progress,
        should_cancel: ShouldCancel,
    ) -> Result:
        values = ordered_inputs(inputs)
        if not values:
            raise InvalidInputError("nothing to stitch: no input videos")
        clips = []
        for index, value in enumerate(values):
            if should_cancel():
                raise TaskCancelledError(f"cancelled after {index} of {len(values)} clips")
            clips.append(fr.decode_video(value))
            progress(index + 1, len(values))
        height, width = clips[0].frames.shape[1:3]
        size = self._video_size(params, (width, height))
        overlap = int_param(params, ("frame_overlap", "overlap"), 0, 0, MAX_FRAMES)
        frames = fr.crossfade_concat([fr.resize_frames(c.frames, *size) for c in clips], overlap)
        return self._video_result(frames, self._fps(params, clips[0].fps), None)


def _fit(image: Image, width: int, height: int) -> Image:
    """The pipeline's output at exactly the requested size."""
    from PIL import Image as PILImage

    if image.size == (width, height):
        return image
    return image.resize((width, height), PILImage.Resampling.LANCZOS)


def _pil(frame: np.ndarray) -> Image:
    from PIL import Image

    return Image.fromarray(frame)
