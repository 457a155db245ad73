"""History and time travel over HTTP (`darkroom history` in the browser): one aggregate's
events, and its state as of a version. Owner only; the service key reads every item."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from domain.errors import NotFoundError
from realtime.api.base import Call, Endpoint, Reply

HIDDEN = {"pending_events"}
PAGE = 1000  # events per answer: a long-lived item's history comes in pages


class HistoryQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    version: int | None = Field(
        None,
        ge=1,
        le=2**31,
        description="the item as it was after this version (default: the latest)",
    )
    after_version: int = Field(
        0, ge=0, le=2**31, description="list the events after this version (a page's start)"
    )
    limit: int = Field(PAGE, ge=1, le=PAGE, description="at most this many events")


class HistoryEvent(BaseModel):
    model_config = ConfigDict(extra="allow")

    position: int
    version: int
    topic: str
    timestamp: str


class History(BaseModel):
    id: str
    kind: str
    version: int = Field(description="the version `state` is as of")
    latest_version: int
    state: dict[str, Any] = Field(description="the item's fields as of `version`")
    events: list[HistoryEvent]
    next_after_version: int | None = Field(
        None, description="more events follow: pass this as `after_version` for the next page"
    )


def _owner(studio: Any, item: Any) -> str | None:
    """Who may read an item's history: its project's owner, or its own owner."""
    project_id = getattr(item, "project_id", None)
    if project_id is not None:
        return studio.owner_of(project_id)  # type: ignore[no-any-return]
    return getattr(item, "owner_id", None)


def _history(studio: Any, item_id: str, user: str | None, query: HistoryQuery) -> dict[str, Any]:
    version = query.version
    latest = studio.aggregate_at(item_id)
    if user is not None and _owner(studio, latest) != user:
        raise NotFoundError("aggregate", item_id)
    if version is not None and version > latest.version:
        raise NotFoundError("version", f"{version} of {item_id} (latest is {latest.version})")
    item = latest if version is None else studio.aggregate_at(item_id, version=version)
    state = {
        key.lstrip("_"): value for key, value in vars(item).items() if key.lstrip("_") not in HIDDEN
    }
    return {
        "id": str(latest.id),
        "kind": type(latest).__name__,
        "version": item.version,
        "latest_version": latest.version,
        "state": _plain(state),
        **_page(studio, item_id, query.after_version, query.limit),
    }


def _page(studio: Any, item_id: str, after: int, limit: int) -> dict[str, Any]:
    events = studio.history(item_id, after_version=after, limit=limit + 1)
    more = len(events) > limit
    events = events[:limit]
    return {"events": events, "next_after_version": events[-1]["version"] if more else None}


def _plain(value: Any) -> Any:
    """JSON's own types: dict keys as strings, dataclasses and objects as their fields,
    anything else (UUIDs, datetimes) as its text."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if hasattr(value, "__dict__") and not isinstance(value, type):
        return _plain({k: v for k, v in vars(value).items() if not k.startswith("_")})
    return str(value)


async def history(call: Call) -> Reply:
    return Reply(await call.run(_history, call.studio, call.path["id"], call.user, call.query))


ENDPOINTS = [
    Endpoint(
        "GET",
        "/api/history/{id}",
        history,
        "An item's (generation, shot, task, "
        "project) event history, and its state as of `version` (time travel); "
        "its owner or the service key",
        "history",
        query=HistoryQuery,
        response=History,
        errors=(404,),
    ),
]
