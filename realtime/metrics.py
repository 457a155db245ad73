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

from bisect import bisect_left
from itertools import accumulate
from typing import TYPE_CHECKING, Any

import psycopg
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector
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

WS_CONNECTIONS = Gauge("darkroom_ws_connections", "Open websocket connections")
WS_CHANGES_SENT = Counter("darkroom_ws_changes_sent", "Change frames written to websockets")
WS_CLOSED = Counter(
    "darkroom_ws_closed",
    "Websocket connections ended, by close code (`client`: the client closed or went away)",
    ["code"],
)

# Every family a serving process exports (deploy/grafana/darkroom.json draws only these).
METRIC_NAMES = (
    "darkroom_http_requests_total",
    "darkroom_http_request_duration_seconds",
    "darkroom_events_head_position",
    "darkroom_projection_position",
    "darkroom_projection_lag_events",
    "darkroom_ws_connections",
    "darkroom_ws_subscriptions",
    "darkroom_ws_changes_sent_total",
    "darkroom_ws_closed_total",
    "darkroom_tasks",
    "darkroom_dispatcher_running_tasks",
    "darkroom_inference_seconds",
    "darkroom_database_up",
)


class HttpMetrics(Collector):
    """`darkroom_http_requests_total` and `darkroom_http_request_duration_seconds`, kept
    in plain dicts and lists and turned into families when scraped.

    Only the event loop's thread observes (`realtime.observe`) and scrapes (`metrics`
    runs on the loop), so no lock is taken: a request costs a few dict and list updates
    instead of prometheus_client's locked counter and histogram children (measured in
    docs/BENCHMARKS.md, "Observability")."""

    BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, int], int] = {}
        # (method, route) -> [count per bucket (the last: +Inf), sum of seconds]
        self.times: dict[tuple[str, str], list[Any]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        if method not in HTTP_METHODS:
            method = "other"
        key = (method, route, status)
        self.counts[key] = self.counts.get(key, 0) + 1
        timed = self.times.get((method, route))
        if timed is None:
            timed = self.times[(method, route)] = [[0] * (len(self.BUCKETS) + 1), 0.0]
        timed[0][bisect_left(self.BUCKETS, seconds)] += 1
        timed[1] += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "darkroom_http_requests", "HTTP requests answered", labels=["method", "route", "status"]
        )
        for (method, route, status), count in sorted(self.counts.items()):
            requests.add_metric([method, route, str(status)], count)
        seconds = HistogramMetricFamily(
            "darkroom_http_request_duration_seconds",
            "Time from a request's arrival to the end of its answer",
            labels=["method", "route"],
        )
        for (method, route), (counts, total) in sorted(self.times.items()):
            cumulative = list(accumulate(counts))
            bounds = [*map(str, self.BUCKETS), "+Inf"]
            seconds.add_metric([method, route], list(zip(bounds, cumulative, strict=True)), total)
        return iter((requests, seconds))


HTTP = HttpMetrics()
REGISTRY.register(HTTP)


class _Families:
    """A registry-shaped wrapper of metric families made for one scrape."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def state_families(state: DatabaseState | None, subscriptions: int | None) -> list[Metric]:
    """The gauges read at scrape time: the database's, and the hub's subscriptions."""
    families: list[Metric] = [
        GaugeMetricFamily(
            "darkroom_database_up",
            "1 when this scrape could read the database",
            value=0 if state is None else 1,
        )
    ]
    if subscriptions is not None:
        families.append(
            GaugeMetricFamily(
                "darkroom_ws_subscriptions",
                "Topic subscriptions of this hub's connections",
                value=subscriptions,
            )
        )
    if state is None:
        return families
    families.append(
        GaugeMetricFamily(
            "darkroom_events_head_position", "The event log's highest position", value=state.head
        )
    )
    position = GaugeMetricFamily(
        "darkroom_projection_position",
        "Position the serving version of each view reached",
        labels=["view"],
    )
    lag = GaugeMetricFamily(
        "darkroom_projection_lag_events",
        "Events each view is behind the log's head",
        labels=["view"],
    )
    for view, reached in sorted(state.positions.items()):
        position.add_metric([view], reached)
        lag.add_metric([view], max(state.head - reached, 0))
    tasks = GaugeMetricFamily(
        "darkroom_tasks", "Tasks on the task board, by status", labels=["status"]
    )
    for status, count in sorted(state.tasks.items()):
        tasks.add_metric([status], count)
    return [*families, position, lag, tasks]


async def metrics(request: Request) -> Response:
    """`GET /metrics`: this process's counters, then the gauges read just now."""
    app = request.app
    try:
        state: DatabaseState | None = await run_in_threadpool(
            read_state, state_source(app), tasks=True
        )
    except psycopg.Error:
        state = None
    hub = getattr(app.state, "hub", None)
    subscriptions = hub.stats()["subscriptions"] if hub is not None else None
    body = generate_latest(REGISTRY) + generate_latest(
        _Families(state_families(state, subscriptions))
    )  # type: ignore[arg-type]
    return Response(body, media_type=CONTENT_TYPE_LATEST)
