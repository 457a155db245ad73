"""Prometheus metrics of a Darkroom process: `GET /metrics` (text format 0.0.4).

Counted as they happen, in the process that serves `/metrics` (prometheus_client's
default registry): HTTP requests and their durations by route *template*
(`realtime.observe`), websocket connections, change frames sent and closes by code
(`realtime.ws`), and what the composition root registers beside them (the dispatcher's
running tasks and inference durations, `inference.metrics`).

Read when scraped, from PostgreSQL, so they are the same whichever process runs the
projections: the log's head, each view's position and lag behind the head, the task
board's tasks by status (`realtime.health.read_state`, one short-lived connection with
a 2 s connect and a 1.5 s statement timeout). When that read fails,
`darkroom_database_up` is 0 and those gauges are left out of the answer.

Why no multiprocess mode: nothing counted here is counted in a child process.
`uvicorn` runs one worker per `darkroom serve`; the projections writer's child process
and Ray's actor processes own no metric (view positions are read from the database,
inference time is measured by the dispatcher around the actor call).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import psycopg
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from realtime.health import read_state, state_source

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from prometheus_client.metrics_core import Metric
    from starlette.requests import Request

    from realtime.health import DatabaseState

disable_created_metrics()  # no `_created` twin of every counter and histogram

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"  # the route label of every path no route matched

HTTP_REQUESTS = Counter("darkroom_http_requests", "HTTP requests answered",
                        ["method", "route", "status"])
HTTP_SECONDS = Histogram("darkroom_http_request_duration_seconds",
                         "Time from a request's arrival to its answer's first byte",
                         ["method", "route"])
WS_CONNECTIONS = Gauge("darkroom_ws_connections", "Open websocket connections")
WS_CHANGES_SENT = Counter("darkroom_ws_changes_sent", "Change frames written to websockets")
WS_CLOSED = Counter("darkroom_ws_closed", "Websocket connections ended, by close code "
                    "(`client`: the client closed or went away)", ["code"])

# Every family a serving process exports (deploy/grafana/darkroom.json draws only these).
METRIC_NAMES = (
    "darkroom_http_requests_total", "darkroom_http_request_duration_seconds",
    "darkroom_events_head_position", "darkroom_projection_position",
    "darkroom_projection_lag_events", "darkroom_ws_connections", "darkroom_ws_subscriptions",
    "darkroom_ws_changes_sent_total", "darkroom_ws_closed_total", "darkroom_tasks",
    "darkroom_dispatcher_running_tasks", "darkroom_inference_seconds", "darkroom_database_up",
)


class HttpMetrics:
    """The two HTTP families' children, cached by label values (a `labels()` call takes
    a lock and builds a key each time; a dict hit is a fraction of that)."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, int], Any] = {}
        self._times: dict[tuple[str, str], Any] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        if method not in HTTP_METHODS:
            method = "other"
        counter = self._counts.get((method, route, status))
        if counter is None:
            counter = self._counts[(method, route, status)] = HTTP_REQUESTS.labels(
                method, route, str(status))
        counter.inc()
        timer = self._times.get((method, route))
        if timer is None:
            timer = self._times[(method, route)] = HTTP_SECONDS.labels(method, route)
        timer.observe(seconds)


HTTP = HttpMetrics()


class _Families:
    """A registry-shaped wrapper of metric families made for one scrape."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def state_families(state: DatabaseState | None, subscriptions: int | None) -> list[Metric]:
    """The gauges read at scrape time: the database's, and the hub's subscriptions."""
    families: list[Metric] = [GaugeMetricFamily(
        "darkroom_database_up", "1 when this scrape could read the database",
        value=0 if state is None else 1)]
    if subscriptions is not None:
        families.append(GaugeMetricFamily("darkroom_ws_subscriptions",
                                          "Topic subscriptions of this hub's connections",
                                          value=subscriptions))
    if state is None:
        return families
    families.append(GaugeMetricFamily("darkroom_events_head_position",
                                      "The event log's highest position", value=state.head))
    position = GaugeMetricFamily("darkroom_projection_position",
                                 "Position the serving version of each view reached",
                                 labels=["view"])
    lag = GaugeMetricFamily("darkroom_projection_lag_events",
                            "Events each view is behind the log's head", labels=["view"])
    for view, reached in sorted(state.positions.items()):
        position.add_metric([view], reached)
        lag.add_metric([view], max(state.head - reached, 0))
    tasks = GaugeMetricFamily("darkroom_tasks", "Tasks on the task board, by status",
                              labels=["status"])
    for status, count in sorted(state.tasks.items()):
        tasks.add_metric([status], count)
    return [*families, position, lag, tasks]


async def metrics(request: Request) -> Response:
    """`GET /metrics`: this process's counters, then the gauges read just now."""
    app = request.app
    try:
        state: DatabaseState | None = await run_in_threadpool(
            read_state, state_source(app), tasks=True)
    except psycopg.Error:
        state = None
    hub = getattr(app.state, "hub", None)
    subscriptions = hub.stats()["subscriptions"] if hub is not None else None
    body = generate_latest(REGISTRY) + generate_latest(
        _Families(state_families(state, subscriptions)))  # type: ignore[arg-type]
    return Response(body, media_type=CONTENT_TYPE_LATEST)
