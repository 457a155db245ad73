from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.application import Application

from domain.catalogue import (
    CATALOGUE_ID,
    DEFAULT_CATALOGUE,
    FAMILIES,
    TaskType,
    TaskTypeCatalogue,
    resolve_default,
)
from domain.errors import UnknownTaskTypeError, ValidationError

REQUIRED = [
    "image_generation",
    "magic_edit",
    "image_inpaint",
    "annotated_image_edit",
    "image_upscale",
    "character_animate",
    "join_clips_orchestrator",
    "join_clips_segment",
    "join_final_stitch",
    "travel_orchestrator",
    "travel_segment",
    "travel_stitch",
    "individual_travel_segment",
]


def a_type(**kw: Any) -> TaskType:
    fields: dict[str, Any] = {
        "name": "video_enhance",
        "run_type": "api",
        "category": "processing",
        "billing_type": "per_unit",
        "unit_cost": "0.05",
    }
    return TaskType(**(fields | kw))


@pytest.mark.parametrize("name", REQUIRED)
def test_the_default_catalogue_has_every_required_type(name: str) -> None:
    assert resolve_default(name).name == name


@pytest.mark.parametrize(
    ("name", "run_type", "category", "billing", "rate"),
    [
        ("travel_orchestrator", "gpu", "orchestration", "per_second", "0.0278"),
        ("travel_segment", "gpu", "processing", "per_second", "0.0278"),
        ("individual_travel_segment", "gpu", "generation", "per_second", "0.0278"),
        ("join_clips_orchestrator", "gpu", "orchestration", "per_second", "0.0278"),
        ("join_clips_segment", "gpu", "processing", "per_second", "0.0278"),
        ("join_final_stitch", "gpu", "generation", "per_second", "0.005"),
        ("character_animate", "api", "generation", "per_unit", "0.20"),
        ("qwen_image", "api", "generation", "per_unit", "0.039"),
        ("z_image_turbo", "api", "generation", "per_unit", "0.0065"),
        ("image_inpaint", "api", "processing", "per_unit", "0.0020"),
        ("annotated_image_edit", "api", "processing", "per_unit", "0.0020"),
        ("image_upscale", "api", "processing", "per_unit", "0.0015"),
    ],
)
def test_default_rates_follow_the_reference(
    name: str, run_type: str, category: str, billing: str, rate: str
) -> None:
    task_type = DEFAULT_CATALOGUE[name]
    assert (task_type.run_type, task_type.category, task_type.billing_type) == (
        run_type,
        category,
        billing,
    )
    charged = task_type.unit_cost if billing == "per_unit" else task_type.base_cost_per_second
    assert charged == Decimal(rate)


@pytest.mark.parametrize(
    ("name", "variant"),
    [
        ("image_upscale", "upscaled"),
        ("magic_edit", "magic_edit"),
        ("image_inpaint", "inpaint"),
        ("annotated_image_edit", "annotated_edit"),
        ("image_generation", None),
    ],
)
def test_each_type_names_the_variant_type_its_results_get(name: str, variant: str | None) -> None:
    assert DEFAULT_CATALOGUE[name].variant_type == variant


def test_each_family_lists_types_of_the_catalogue() -> None:
    for members in FAMILIES.values():
        assert [DEFAULT_CATALOGUE[m].name for m in members] == list(members)
        assert DEFAULT_CATALOGUE[members[0]].is_orchestrator


def test_an_unknown_type_is_rejected() -> None:
    with pytest.raises(UnknownTaskTypeError, match="'teleport'"):
        TaskTypeCatalogue().resolve("teleport")


def test_the_seed_name_of_character_animation_resolves_to_the_catalogue_type() -> None:
    assert TaskTypeCatalogue().resolve("animate_character").name == "character_animate"


def test_the_catalogue_has_one_well_known_id() -> None:
    assert TaskTypeCatalogue().id == TaskTypeCatalogue().id == CATALOGUE_ID


def test_a_new_catalogue_resolves_the_defaults_with_one_event() -> None:
    catalogue = TaskTypeCatalogue()
    assert catalogue.resolve("image_upscale") == DEFAULT_CATALOGUE["image_upscale"]
    assert [type(e) for e in catalogue.collect_events()] == [TaskTypeCatalogue.Created]


def test_registering_a_type_makes_it_resolvable() -> None:
    catalogue = TaskTypeCatalogue()
    catalogue.register(a_type())
    assert catalogue.resolve("video_enhance").unit_cost == Decimal("0.05")
    assert [type(e) for e in catalogue.collect_events()] == [
        TaskTypeCatalogue.Created,
        TaskTypeCatalogue.Registered,
    ]


def test_registering_the_same_type_twice_records_one_event() -> None:
    catalogue = TaskTypeCatalogue()
    catalogue.register(a_type())
    catalogue.register(a_type())
    assert [type(e) for e in catalogue.collect_events()].count(TaskTypeCatalogue.Registered) == 1


def test_registering_a_default_name_replaces_its_row() -> None:
    catalogue = TaskTypeCatalogue()
    catalogue.register(a_type(name="image_upscale", unit_cost="0.002"))
    assert catalogue.resolve("image_upscale").unit_cost == Decimal("0.002")


def test_an_alias_cannot_be_registered_as_a_type() -> None:
    with pytest.raises(ValidationError, match="alias"):
        TaskTypeCatalogue().register(a_type(name="animate_character"))


def test_a_deactivated_type_is_rejected_until_activated_again() -> None:
    catalogue = TaskTypeCatalogue()
    catalogue.deactivate("image_upscale")
    with pytest.raises(UnknownTaskTypeError, match="'image_upscale' is not active"):
        catalogue.resolve("image_upscale")
    assert catalogue.get("image_upscale") is not None
    catalogue.activate("image_upscale")
    assert catalogue.resolve("image_upscale").is_active
    assert [type(e) for e in catalogue.collect_events()] == [
        TaskTypeCatalogue.Created,
        TaskTypeCatalogue.Deactivated,
        TaskTypeCatalogue.Activated,
    ]


def test_deactivating_twice_records_one_event() -> None:
    catalogue = TaskTypeCatalogue()
    catalogue.deactivate("image_upscale")
    catalogue.deactivate("image_upscale")
    assert len(catalogue.collect_events()) == 2


def test_deactivating_an_unknown_type_is_refused() -> None:
    with pytest.raises(UnknownTaskTypeError, match="'teleport'"):
        TaskTypeCatalogue().deactivate("teleport")


def test_a_registered_inactive_type_is_rejected() -> None:
    catalogue = TaskTypeCatalogue()
    catalogue.register(a_type(is_active=False))
    with pytest.raises(UnknownTaskTypeError):
        catalogue.resolve("video_enhance")
    assert "video_enhance" not in [t.name for t in catalogue.active()]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("run_type", "cpu", "run_type of video_enhance must be one of gpu, api"),
        ("category", "fun", "category"),
        ("billing_type", "per_hour", "billing_type"),
        ("unit_cost", "-1", "unit_cost of video_enhance must be ≥ 0"),
        ("unit_cost", "cheap", "unit_cost of video_enhance must be a number"),
        ("name", " ", "needs a name"),
    ],
)
def test_a_task_type_with_a_bad_value_is_refused(field: str, value: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        a_type(**{field: value})


def test_costs_given_as_floats_become_exact_decimals() -> None:
    assert a_type(unit_cost=0.0278).unit_cost == Decimal("0.0278")


def test_the_catalogue_survives_a_round_trip_through_an_application() -> None:
    catalogue = TaskTypeCatalogue()
    catalogue.register(a_type(cost_factors={"resolution": {"1280x720": 1.5}}))
    catalogue.deactivate("magic_edit")
    app: Application[UUID] = Application()
    app.save(catalogue)
    loaded: Any = app.repository.get(CATALOGUE_ID)
    assert loaded.types == catalogue.types
    assert loaded.resolve("video_enhance").cost_factors == {"resolution": {"1280x720": 1.5}}


SEED_NAMES = {  # seed 000 and REFERENCE.md name → the catalogue row that runs it
    "image_generation": "image_generation",
    "video_travel_segment": "individual_travel_segment",
    "edit_travel_kontext": "edit_travel_kontext",
    "edit_travel_flux": "edit_travel_flux",
    "travel_orchestrator": "travel_orchestrator",
    "travel_segment": "travel_segment",
    "travel_stitch": "travel_stitch",
    "individual_travel_segment": "individual_travel_segment",
    "join_clips_orchestrator": "join_clips_orchestrator",
    "join_clips_segment": "join_clips_segment",
    "join_final_stitch": "join_final_stitch",
    "animate_character": "character_animate",
    "character_animate": "character_animate",
    "qwen_image": "qwen_image",
    "z_image_turbo": "z_image_turbo",
    "image_inpaint": "image_inpaint",
    "annotated_image_edit": "annotated_image_edit",
    "image_upscale": "image_upscale",
    "qwen_image_edit": "magic_edit",
    "magic_edit": "magic_edit",
}


@pytest.mark.parametrize(("seed_name", "row"), sorted(SEED_NAMES.items()))
def test_every_task_type_the_seeds_name_resolves_to_a_catalogue_row(
    seed_name: str, row: str
) -> None:
    assert TaskTypeCatalogue().resolve(seed_name).name == row


def test_the_edit_travel_types_are_billed_per_image_and_make_new_generations() -> None:
    for name, model in (("edit_travel_kontext", "flux_kontext"), ("edit_travel_flux", "flux")):
        row = DEFAULT_CATALOGUE[name]
        assert (
            row.run_type,
            row.category,
            row.billing_type,
            row.unit_cost,
            row.variant_type,
            row.model_name,
        ) == ("api", "generation", "per_unit", Decimal("0.039"), None, model)
