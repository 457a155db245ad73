"""Structure video and motion (seed 001's travel params) for the image-pair video model.

The tiny first-last-frame model is not a VACE model: it has no control input. What it
can honour is where its sampling starts, so both groups act on the initial latents:

- a **structure video** (`structure_video_path`, read as input `structure_video`) is
  fitted to the clip's frames (`structure_video_treatment`: `adjust` stretches or
  squeezes it over them, `clip` takes its frames one for one and holds the last),
  turned into the control signal its `structure_video_type` names (`flow`: dense
  optical flow by Horn-Schunck, coloured by direction and speed as VACE's flow maps
  are; `canny`: an edge map), encoded by the pipeline's own VAE and mixed into the
  starting noise with weight `structure_video_motion_strength` / 2 (strength 1, the
  seed's default: half guide, half noise; 2: the guide alone; 0: no effect). The
  `depth` type needs a depth estimator the tiny set does not have: not applied.
  A segment of a run (`segment_index` of `num_segments`) takes its part of the video.
- **`amount_of_motion`** (0-1) sets how much the starting noise differs from one latent
  frame to the next (a mixed-noise prior): 1 is the model's own independent noise per
  frame, 0 the same noise in every frame, which holds the clip stiller.

A task without either (or with strength 0 and `amount_of_motion` 1) starts from the
pipeline's own noise, so its output is what it was before these params existed.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from inference import frames as fr
from inference.params import Inputs, float_param

if TYPE_CHECKING:
    import numpy as np

STRUCTURE_INPUT = "structure_video"
APPLIED_TYPES = ("flow", "canny")
FLOW_SIDE = 64  # flow is estimated at this size (the guide is small in latent space)


def starting_latents(
    pipe: Any,
    params: Mapping[str, Any],
    inputs: Inputs,
    *,
    frames: int,
    size: tuple[int, int],
    seed: int,
) -> dict[str, Any]:
    """`{"latents": ...}` for the pipeline call, or `{}` when nothing here applies."""
    guide = control_frames(params, inputs, frames, size)
    weight = _weight(params) if guide is not None else 0.0
    motion = float_param(params, "amount_of_motion", 1.0, 0.0, 1.0)
    if weight == 0.0 and motion == 1.0:
        return {}
    import torch

    shape = _latent_shape(pipe, frames, size)
    generator = torch.Generator("cpu").manual_seed(seed)
    shared = torch.randn((*shape[:2], 1, *shape[3:]), generator=generator)
    own = torch.randn(shape, generator=generator)
    # Same variance whatever the mix: a*shared + b*own with a^2 + b^2 = 1.
    noise = (1.0 - motion) ** 0.5 * shared + motion**0.5 * own
    if guide is not None and weight > 0.0:
        noise = (1.0 - weight) * noise + weight * _encode(pipe, guide)
    return {"latents": noise}


def _weight(params: Mapping[str, Any]) -> float:
    return float_param(params, "structure_video_motion_strength", 1.0, 0.0, 2.0) / 2.0


def control_frames(
    params: Mapping[str, Any], inputs: Inputs, frames: int, size: tuple[int, int]
) -> np.ndarray | None:
    """The control frames (frames, height, width, 3), or None when none applies."""
    video = inputs.get(STRUCTURE_INPUT)
    kind = str(params.get("structure_video_type") or "flow")
    if video is None or kind not in APPLIED_TYPES:
        return None
    treatment = str(params.get("structure_video_treatment") or "adjust")
    clip = part_of_run(fr.decode_video(video).frames, params, frames, treatment)
    fitted = fit(clip, frames, treatment)
    control = flow_maps(fitted) if kind == "flow" else edge_maps(fitted)
    return fr.resize_frames(control, *size)


def part_of_run(
    clip: np.ndarray, params: Mapping[str, Any], frames: int, treatment: str
) -> np.ndarray:
    """A run's segment is guided by its part of the video (`segment_index` of
    `num_segments`): with `adjust` the video's i-th equal share, with `clip` the frames
    from `i * frames` on (the last frame held past the end)."""
    index, count = params.get("segment_index"), params.get("num_segments")
    if not isinstance(index, int) or not isinstance(count, int) or not 0 <= index < count:
        return clip
    if treatment == "clip":
        start = min(index * frames, len(clip) - 1)
        return clip[start:]
    return clip[
        len(clip) * index // count : max(
            len(clip) * (index + 1) // count, len(clip) * index // count + 1
        )
    ]


def fit(clip: np.ndarray, count: int, treatment: str) -> np.ndarray:
    """`adjust`: `count` frames spread over the whole video (repeated when it is short);
    `clip`: its first `count` frames, the last one held when it is short."""
    import numpy as np

    if treatment == "clip":
        indices = np.minimum(np.arange(count), len(clip) - 1)
    else:
        indices = np.floor(np.linspace(0, len(clip) - 1, count) + 0.5).astype(int)
    return clip[indices]


def edge_maps(clip: np.ndarray) -> np.ndarray:
    import numpy as np
    from PIL import Image, ImageFilter

    return np.stack(
        [
            np.asarray(
                Image.fromarray(frame).convert("L").filter(ImageFilter.FIND_EDGES).convert("RGB")
            )
            for frame in clip
        ]
    )


def flow_maps(clip: np.ndarray) -> np.ndarray:
    """The optical flow from each frame to the next (the last repeats the one before),
    as colour: hue is the direction, brightness the speed."""
    import numpy as np
    from PIL import Image

    gray = [_small_gray(frame) for frame in clip]
    flows = [horn_schunck(a, b) for a, b in pairwise(gray)] or [
        (np.zeros_like(gray[0]), np.zeros_like(gray[0]))
    ]
    flows.append(flows[-1])
    height, width = clip.shape[1:3]
    speeds = [np.hypot(u, v) for u, v in flows]
    top = max(float(s.max()) for s in speeds) or 1.0
    maps = []
    for (u, v), speed in zip(flows, speeds, strict=True):
        hsv = np.stack(
            [(np.arctan2(v, u) / (2 * np.pi) % 1.0) * 255, np.full_like(u, 255), speed / top * 255],
            axis=-1,
        )
        image = Image.fromarray(hsv.astype(np.uint8), "HSV").convert("RGB")
        maps.append(np.asarray(image.resize((width, height))))
    return np.stack(maps)


def horn_schunck(
    a: np.ndarray, b: np.ndarray, alpha: float = 1.0, iterations: int = 40
) -> tuple[np.ndarray, np.ndarray]:
    """Dense flow (u, v) from gray image `a` to `b` (Horn and Schunck, 1981)."""
    import numpy as np

    ix = (np.gradient(a, axis=1) + np.gradient(b, axis=1)) / 2
    iy = (np.gradient(a, axis=0) + np.gradient(b, axis=0)) / 2
    it = b - a
    u, v = np.zeros_like(a), np.zeros_like(a)
    for _ in range(iterations):
        ub, vb = _neighbour_mean(u), _neighbour_mean(v)
        step = (ix * ub + iy * vb + it) / (alpha**2 + ix**2 + iy**2)
        u, v = ub - ix * step, vb - iy * step
    return u, v


def _neighbour_mean(x: np.ndarray) -> np.ndarray:
    import numpy as np

    p = np.pad(x, 1, mode="edge")
    return (p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:]) / 4  # type: ignore[no-any-return]


def _small_gray(frame: np.ndarray) -> np.ndarray:
    import numpy as np
    from PIL import Image

    image = Image.fromarray(frame).convert("L")
    scale = FLOW_SIDE / max(image.size)
    if scale < 1:
        image = image.resize(
            (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        )
    return np.asarray(image, dtype=np.float32) / 255.0


def _latent_shape(pipe: Any, frames: int, size: tuple[int, int]) -> tuple[int, ...]:
    temporal, spatial = pipe.vae_scale_factor_temporal, pipe.vae_scale_factor_spatial
    return (
        1,
        pipe.vae.config.z_dim,
        (frames - 1) // temporal + 1,
        size[1] // spatial,
        size[0] // spatial,
    )


def _encode(pipe: Any, guide: np.ndarray) -> Any:
    """The guide in the pipeline's normalised latent space (as it encodes its images)."""
    import torch

    video = torch.from_numpy(guide).float().permute(3, 0, 1, 2).unsqueeze(0) / 127.5 - 1.0
    vae = pipe.vae
    with torch.no_grad():
        latent = vae.encode(video.to(vae.device, vae.dtype)).latent_dist.mode().float().cpu()
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    return (latent - mean) / std
