"""Which model each task type needs: the key of model affinity.

A backend is configured with `{model name: model id or local folder}`; the
dispatcher keeps one actor per model and sends each task to an actor holding
the model its type needs. Stitching tasks need no model (`None`): any worker
with PyAV can run them.
"""

from __future__ import annotations

from inference.errors import UnsupportedTaskError

TEXT_TO_IMAGE = "text_to_image"
IMAGE_TO_IMAGE = "image_to_image"
INPAINT = "inpaint"
UPSCALE = "upscale"
IMAGE_TO_VIDEO = "image_to_video"

MODEL_NAMES = (TEXT_TO_IMAGE, IMAGE_TO_IMAGE, INPAINT, UPSCALE, IMAGE_TO_VIDEO)

TASK_MODELS: dict[str, str | None] = {
    "image_generation": TEXT_TO_IMAGE,
    "qwen_image": TEXT_TO_IMAGE,
    "z_image_turbo": TEXT_TO_IMAGE,
    "magic_edit": IMAGE_TO_IMAGE,
    "annotated_image_edit": IMAGE_TO_IMAGE,
    "image_edit": IMAGE_TO_IMAGE,
    "qwen_image_edit": IMAGE_TO_IMAGE,  # magic_edit by its model's name
    "edit_travel_kontext": IMAGE_TO_IMAGE,
    "edit_travel_flux": IMAGE_TO_IMAGE,
    "image_inpaint": INPAINT,
    "image_upscale": UPSCALE,
    "travel_segment": IMAGE_TO_VIDEO,
    "individual_travel_segment": IMAGE_TO_VIDEO,
    "video_travel_segment": IMAGE_TO_VIDEO,  # seed 000's name for it
    "join_clips_segment": IMAGE_TO_VIDEO,
    "character_animate": IMAGE_TO_VIDEO,
    "animate_character": IMAGE_TO_VIDEO,  # the seed's other spelling
    "travel_stitch": None,
    "join_final_stitch": None,
}


def model_for(task_type: str) -> str | None:
    """The model name a task type runs on, or None for media-only tasks."""
    try:
        return TASK_MODELS[task_type]
    except KeyError:
        raise UnsupportedTaskError(f"no backend runs task type {task_type!r}") from None
