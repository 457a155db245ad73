"""A LoRA end to end: a user's resource named by a task, the file read from the media
store by the dispatcher, applied by a Ray actor's diffusers pipeline, and gone for the
next task on the same actor."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from inference_harness import Rig, funded_project, wait_until_settled

from domain.task import COMPLETE
from inference.frames import decode_image

pytestmark = pytest.mark.timeout(180)

PARAMS = {"prompt": "a lighthouse", "resolution": "32x32", "seed": 5}


def picture(rig: Rig, owner: str, project_id: str, **params: object) -> np.ndarray:
    made = rig.studio.create_task(project_id, owner, "image_generation", {**PARAMS, **params})
    (done,) = wait_until_settled(rig.studio, [made["task_id"]], timeout=90)
    assert done.status == COMPLETE, done.error_message
    return np.asarray(decode_image(rig.media.get(done.output_location)), dtype=np.float64)


def test_a_tasks_lora_changes_its_picture_and_the_next_task_is_the_base_again(rig: Rig) -> None:
    from inference.tiny_lora import build_tiny_lora

    owner, project_id = funded_project(rig.studio)
    data = build_tiny_lora(scale=2.0)
    location = f"/media/uploads/{uuid.uuid4().hex}"  # where POST /api/resources keeps one
    path = rig.media.path_for(location)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    lora = rig.studio.add_resource(owner, "lora", "Grain", location=location, size=len(data))

    base = picture(rig, owner, project_id)
    styled = picture(rig, owner, project_id, loras=[{"resource_id": lora["id"], "strength": 1.0}])
    after = picture(rig, owner, project_id)
    assert float(np.abs(styled - base).mean()) > 5.0
    assert np.array_equal(after, base)
