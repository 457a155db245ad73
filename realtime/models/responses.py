"""Response shapes (documentation: the OpenAPI document names these)."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)

from realtime.models.common import (
    Body,
    Cursor,
    Json,
    Name,
    Query,
)


# -- responses (documentation: the OpenAPI document names these) -----------------
class Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class Error(Out):
    error: str
    code: str
    message: str


class Written(Out):
    """Ids of what a command wrote; `position` is also in `X-Darkroom-Position`."""

    position: int


class Health(Out):
    status: str
    head_position: int


class Project(Out):
    id: UUID
    name: str
    aspect_ratio: str
    settings: Json = {}


class ProjectListOut(Out):
    items: list[Project]


class ShotImage(Out):
    shot_generation_id: UUID
    generation_id: UUID
    timeline_frame: int | None
    position: int | None
    location: str | None
    thumbnail_url: str | None
    type: str | None


class Shot(Out):
    id: UUID
    project_id: UUID
    name: str
    position: int
    images: list[ShotImage] = []
    unpositioned_count: int = 0


class Generation(Out):
    id: UUID
    project_id: UUID
    location: str | None
    thumbnail_url: str | None
    type: str
    starred: bool


class GenerationPage(Out):
    items: list[Generation]
    next_cursor: str | None


class Lineage(Out):
    generation_id: UUID
    ancestors: list[Generation] = Field(
        description="what this was made from, nearest first, up the based_on chain"
    )
    ancestors_truncated: bool = Field(description="the chain goes on past `depth`")
    derivatives: list[Generation] = Field(
        description="what was made from it (one level), newest first"
    )
    next_cursor: str | None = Field(description="the derivatives' next page")


class Variant(Out):
    id: UUID
    location: str
    variant_type: str
    is_primary: bool


class VariantEdited(Written):
    generation_id: UUID
    variant_id: UUID
    viewed: bool
    starred: bool
    name: str | None


class VariantList(Out):
    items: list[Variant]


class Task(Out):
    id: UUID
    project_id: UUID
    task_type: str
    status: str


class TaskOutputs(Out):
    output_location: str | None = None
    thumbnail_url: str | None = None
    result_data: Json | None = None


class TaskTimings(Out):
    created_at: str | None = None
    started_at: str | None = None
    processed_at: str | None = None
    updated_at: str | None = None
    duration_s: float | None = None


class TaskDetails(Task):
    """Everything the seed's task details modal shows (`params_summary` kept for older
    clients)."""

    params: Json
    outputs: TaskOutputs
    error_message: str | None = None
    attempts: int
    worker_id: str | None = None
    timings: TaskTimings
    cost: str | None = None


class ShotMemberMoved(Written):
    shot_id: UUID
    shot_generation_id: UUID
    generation_id: UUID
    timeline_frame: int | None = None


class ShotsOrdered(Written):
    project_id: UUID
    shot_ids: list[UUID]


class TaskListOut(Out):
    items: list[Task]


class TaskCreated(Written):
    task_id: UUID | None = None
    task_ids: list[UUID] | None = None
    status: str | None = None


class Claimed(Out):
    task_id: UUID
    task_type: str
    params: Json
    project_id: UUID


class Cancelled(Written):
    cancelled: int


class Upload(Out):
    location: str = Field(
        description="the file's signed URL (`?exp=&sig=`); send it back "
        "as a location, the studio keeps the bare path"
    )
    thumbnail_url: str = Field(description="a WebP thumbnail's signed URL (<= 256 px)")
    content_type: str = Field(description="what the bytes are (decoded, not as declared)")
    type: Literal["image", "video"]
    width: int
    height: int


class LedgerEntry(Out):
    kind: str
    amount: float
    reason: str


class Credits(Out):
    balance: float
    ledger: list[LedgerEntry]


class TaskTypeOut(Out):
    name: str
    display_name: str
    run_type: str
    category: str
    billing_type: str
    base_cost_per_second: float
    unit_cost: float
    cost_factors: dict[str, Any]
    variant_type: str | None
    is_active: bool
    supports_progress: bool
    model_name: str | None
    description: str


class TopUp(Written):
    user_id: str
    reference: str
    added: bool = Field(description="false: this reference was seen before; nothing added")
    balance: float


class Token(Out):
    id: UUID
    label: str
    created_at: str


class TokenList(Out):
    items: list[Token]


class TokenCreated(Written):
    token_id: UUID
    label: str
    token: str


class WorkerList(Query):
    timeout_s: float | None = Field(
        None,
        gt=0,
        le=86_400,
        description="silence after which a worker is `silent` (default: the sweeper's)",
    )


class HeldTask(Out):
    task_id: UUID
    since: str


class WorkerOut(Out):
    worker_id: str
    owner: str | None = Field(description="service, user:<id>, system; null: unclaimed")
    liveness: Literal["alive", "silent", "lost"]
    last_seen: str
    silent_s: float
    held_tasks: list[HeldTask]
    status: str | None
    current_model: str | None
    vram_used_mb: int | None
    vram_total_mb: int | None


class HeartbeatOut(Written):
    worker_id: str
    stop: list[UUID] = Field(description="reported tasks this worker no longer holds: drop them")


# ---- resources (LoRAs) ------------------------------------------------------------
class ResourceUrlCreate(Body):
    name: Name
    url: Annotated[str, StringConstraints(max_length=4096, pattern=r"^https?://[^\s\x00]+$")] = (
        Field(
            description="where a worker fetches the LoRA when a task names it (nothing is "
            "fetched at registration)"
        )
    )
    type: Literal["lora"] = "lora"


class ResourceList(Query):
    cursor: Cursor | None = None
    limit: int = Field(50, ge=1, le=200)


class ResourceOut(Out):
    id: UUID
    type: str
    name: str
    location: str | None = Field(description="the stored file (uploads); null for a URL")
    url: str | None = Field(description="the LoRA's URL (URL resources); null for uploads")
    size: int | None
    sha256: str | None
    metadata: dict[str, Any] = Field(
        description="what the file's header says: format, tensors, rank, targets, dtypes"
    )
    created_at: str


class ResourcePage(Out):
    items: list[ResourceOut]
    next_cursor: str | None
