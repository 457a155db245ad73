"""`character_animate` (`animate_character`): input `image` → a short MP4 that starts
and ends on the character (first = last frame of the image-pair-to-video model), with
motion from `prompt`. A reference motion video, if sent, is not used yet: that needs
a pose-driven model (e.g. Wan-Animate), which the tiny set does not include."""

from __future__ import annotations

from inference import frames as fr
from inference.handlers.core import DiffusersBackend
from inference.handlers.registry import handler
from inference.handlers.results import Job, Result
from inference.handlers.video import pair_clip
from inference.params import one_input


@handler("character_animate", "animate_character")
def character_animate(backend: DiffusersBackend, job: Job) -> Result:
    character = fr.decode_image(one_input(job.inputs, "image", "start_image"))
    # First = last frame: the character moves and comes back to its pose, so clips loop.
    return pair_clip(backend, job, character, character)
