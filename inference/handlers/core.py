"""The diffusers backend's core: pipelines loaded once and kept, the task's LoRAs
loaded around each pipeline call, the step hook for progress and cancellation,
and the results.

What a task type does is its handler's business (`inference.handlers.registry`,
one module per family beside this one): `run` looks the handler up by task type
and hands it this backend, whose `pipeline`, `call` and `*_result` it uses.

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
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from domain.errors import InvalidLoraError
from domain.loras import inspect_lora
from inference import frames as fr
from inference.errors import (
    InvalidInputError,
    ModelNotConfiguredError,
    TaskCancelledError,
    UnsupportedTaskError,
)
from inference.handlers.registry import HANDLERS
from inference.handlers.results import (
    Job,
    Media,
    Progress,
    Result,
    ShouldCancel,
    never_cancel,
    no_progress,
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
from inference.params import Inputs, canonical, float_param, int_param

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image


@dataclass(frozen=True)
class Lora:
    """One LoRA a task asked for: its safetensors bytes and strength."""

    data: bytes
    strength: float
    index: int

    @property
    def adapter_name(self) -> str:
        return f"task_lora_{self.index}_{hashlib.sha256(self.data).hexdigest()[:12]}"


# The LoRAs of the task running in this thread (set by `run`, applied by `call`).
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


_LOADERS = {
    TEXT_TO_IMAGE: "AutoPipelineForText2Image",
    IMAGE_TO_IMAGE: "AutoPipelineForImage2Image",
    INPAINT: "AutoPipelineForInpainting",
    UPSCALE: "DiffusionPipeline",
    IMAGE_TO_VIDEO: "DiffusionPipeline",
}


# --- progress and cancellation ---------------------------------------------------------------


class StepHook:
    """Bridges diffusers' per-step callbacks to `progress` and `should_cancel`.

    Raising from the callback ends the denoising loop at once and skips the VAE
    decode, so a cancel costs at most one step. `_interrupt` is set as well so
    a pipeline that swallowed the error would still skip its remaining steps.
    """

    def __init__(self, progress: Progress, should_cancel: ShouldCancel, steps: int) -> None:
        self.progress = progress
        self.should_cancel = should_cancel
        self.steps = steps

    def on_step_end(
        self, pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]
    ) -> dict[str, Any]:
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
    """Runs every registered task family on diffusers pipelines, each loaded once and kept.

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

    @property
    def task_types(self) -> frozenset[str]:
        return frozenset(HANDLERS)

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
        """Run one task; see `inference.handlers` for each type's params and inputs."""
        handler = HANDLERS.get(task_type)
        if handler is None:
            model_for(task_type)  # raises UnsupportedTaskError with the catalogue's wording
            raise UnsupportedTaskError(f"no handler for task type {task_type!r}")
        if should_cancel():
            raise TaskCancelledError("cancelled before start")
        params = canonical(params)  # the one place a stored payload's spellings are read
        loras, inputs = take_loras(params, inputs)
        token = _LORAS.set(loras)
        try:
            return handler(self, Job(task_type, params, inputs, progress, should_cancel))
        finally:
            _LORAS.reset(token)

    # --- shared pieces ---

    def steps(self, params: Mapping[str, Any]) -> int:
        return int_param(params, "steps", self.default_steps, 1, 500)

    def common(self, params: Mapping[str, Any], seed: int) -> dict[str, Any]:
        import torch

        kwargs: dict[str, Any] = {
            "prompt": "" if params.get("prompt") is None else str(params["prompt"]),
            # A CPU generator gives the same picture for a seed on any device.
            "generator": torch.Generator("cpu").manual_seed(seed),
        }
        negative = params.get("negative_prompt")
        if negative:
            kwargs["negative_prompt"] = str(negative)
        if params.get("guidance_scale") is not None:
            kwargs["guidance_scale"] = float_param(params, "guidance_scale", 7.5, 0.0, 50.0)
        return kwargs

    def call(self, pipe: Any, hook: StepHook, **kwargs: Any) -> Any:
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

    def image_result(self, images: list[Image], seed: int) -> Result:
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

    def video_result(self, frames: np.ndarray, fps: float, seed: int | None) -> Result:
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


def fit(image: Image, width: int, height: int) -> Image:
    """The pipeline's output at exactly the requested size."""
    from PIL import Image as PILImage

    if image.size == (width, height):
        return image
    return image.resize((width, height), PILImage.Resampling.LANCZOS)
