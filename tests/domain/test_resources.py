"""Resources (a user's LoRAs) and the LoRAs a task names."""

from __future__ import annotations

import io
import json
import struct
import uuid
from typing import Any

import pytest

from domain.errors import (
    InvalidLoraError,
    InvalidParamsError,
    ResourceNotFoundError,
    ValidationError,
)
from domain.loras import inspect_lora
from domain.resource import check_url
from domain.studio import Studio
from tests.domain.test_task_services import funded, queue, task

PAIR = {
    "unet.mid.attn.to_q.lora.down.weight": ("F32", [4, 8]),
    "unet.mid.attn.to_q.lora.up.weight": ("F32", [8, 4]),
}


def safetensors(tensors: dict[str, tuple[str, list[int]]], *, lie: int = 0) -> bytes:
    """A safetensors file of zeros (F32 and F16 only); `lie` adds bytes the header
    does not account for."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        size = (4 if dtype == "F32" else 2) * (shape[0] * shape[1] if shape else 1)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + bytes(offset + lie)


def facts(data: bytes) -> dict[str, Any]:
    return inspect_lora(io.BytesIO(data), len(data))


def test_a_lora_state_dict_is_read_from_its_header() -> None:
    assert facts(safetensors(PAIR)) == {
        "format": "safetensors",
        "tensors": 2,
        "rank": 4,
        "targets": ["unet"],
        "dtypes": ["F32"],
    }
    kohya = {
        "lora_te_text_model_q.lora_down.weight": ("F16", [2, 8]),
        "lora_te_text_model_q.lora_up.weight": ("F16", [8, 2]),
        "lora_te_text_model_q.alpha": ("F16", []),
    }
    assert facts(safetensors(kohya))["targets"] == ["text_encoder"]


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"GIF89a\x01\x00", "header length"),
        (struct.pack("<Q", 4) + b"nope", "not JSON"),
        (safetensors({"model.weight": ("F32", [2, 2])}), "no down/up"),
        (safetensors({**PAIR, "vae.conv.weight": ("F32", [2, 2])}), "is not a LoRA weight"),
        (safetensors(PAIR, lie=3), "after its header"),
        (safetensors({"a.lora_A.weight": ("F32", [2, 2])}), "no down/up"),
    ],
)
def test_anything_else_is_refused_naming_what_is_wrong(data: bytes, says: str) -> None:
    with pytest.raises(InvalidLoraError, match=says):
        facts(data)


def test_a_users_resources_are_theirs_alone_and_leave_when_deleted(studio: Studio) -> None:
    owner, _ = funded(studio)
    made = studio.add_resource(
        owner,
        "lora",
        "Film grain",
        location="/media/uploads/" + uuid.uuid4().hex + ".safetensors",
        size=10,
    )
    resource = studio.resource(made["id"], owner)
    assert (resource.name, resource.kind, resource.url) == ("Film grain", "lora", None)
    with pytest.raises(ResourceNotFoundError):
        studio.resource(made["id"], "somebody-else")
    with pytest.raises(ResourceNotFoundError):
        studio.delete_resource(made["id"], "somebody-else")
    studio.delete_resource(made["id"], owner)
    with pytest.raises(ResourceNotFoundError):
        studio.resource(made["id"], owner)
    with pytest.raises(ResourceNotFoundError):
        studio.delete_resource(made["id"], owner)


def test_a_task_names_its_owners_lora_by_id_and_gets_its_location(studio: Studio) -> None:
    owner, project = funded(studio)
    url = studio.add_resource(owner, "lora", "Remote", url="https://example.com/l.safetensors")
    task_id = queue(
        studio,
        project,
        owner,
        params={
            "prompt": "a fox",
            "loras": [
                {"resource_id": url["id"], "strength": 0.5},
                {"path": "/media/x.safetensors"},
            ],
        },
    )
    loras = task(studio, task_id).params["loras"]
    assert loras == [
        {
            "resource_id": url["id"],
            "path": "https://example.com/l.safetensors",
            "name": "Remote",
            "strength": 0.5,
        },
        {"path": "/media/x.safetensors", "strength": 1.0},
    ]


def test_another_users_or_a_deleted_lora_is_not_found_and_nothing_is_written(
    studio: Studio,
) -> None:
    owner, project = funded(studio)
    stranger, _ = funded(studio)
    theirs = studio.add_resource(stranger, "lora", "Theirs", url="https://example.com/t")
    mine = studio.add_resource(owner, "lora", "Mine", url="https://example.com/m")
    studio.delete_resource(mine["id"], owner)
    for ident in (theirs["id"], mine["id"], str(uuid.uuid4())):
        before = studio.head_position()
        with pytest.raises(ResourceNotFoundError):
            queue(studio, project, owner, params={"loras": [{"resource_id": ident}]})
        assert studio.head_position() == before


@pytest.mark.parametrize(
    "loras",
    [
        "x",
        [{"strength": 1}],
        [{"path": "/media/x", "strength": 11}],
        [{"path": "/media/x", "strength": "strong"}],
        [{"path": ""}],
        [{"path": "/m"}] * 21,
    ],
)
def test_malformed_loras_are_refused(studio: Studio, loras: Any) -> None:
    owner, project = funded(studio)
    with pytest.raises(InvalidParamsError, match=r"params\.loras"):
        queue(studio, project, owner, params={"loras": loras})


def test_a_run_naming_another_users_lora_is_refused_whole(studio: Studio) -> None:
    from tests.domain.test_task_completion import travel_of

    stranger, _ = funded(studio)
    theirs = studio.add_resource(stranger, "lora", "Motion", url="https://example.com/motion")
    with pytest.raises(ResourceNotFoundError):  # travel_of's run belongs to a new user
        travel_of(studio, 2, loras=[{"resource_id": theirs["id"], "strength": 0.6}])


def test_a_run_of_the_owner_resolves_its_lora_in_every_segment(studio: Studio) -> None:
    from tests.domain.test_task_completion import image

    owner, project_id = funded(studio)
    lora = studio.add_resource(owner, "lora", "Motion", url="https://example.com/motion")
    shot_id = studio.create_shot(project_id, owner, "Travel")["shot_id"]
    for _ in range(3):
        studio.add_to_shot(shot_id, owner, image(studio, project_id, owner))
    made = studio.create_travel(
        project_id,
        owner,
        shot_id=shot_id,
        params={
            "base_prompts": ["dawn", "dusk"],
            "loras": [{"resource_id": lora["id"], "strength": 0.6}],
        },
    )
    for segment in made["segment_task_ids"]:
        assert task(studio, segment).params["loras"] == [
            {
                "resource_id": lora["id"],
                "path": "https://example.com/motion",
                "name": "Motion",
                "strength": 0.6,
            }
        ]


@pytest.mark.parametrize("url", ["http://[", "http://§]x", "https://host:port/x", "http://"])
def test_a_url_that_does_not_parse_is_refused_naming_it(url: str) -> None:
    with pytest.raises(ValidationError, match="resource URL"):
        check_url(url)  # "http://[" made urlsplit raise ValueError: a 500 under fuzzing
