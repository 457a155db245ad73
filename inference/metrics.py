"""The dispatcher's Prometheus metrics, in the process's default registry (served by
`GET /metrics` of the process that runs the dispatcher, realtime/metrics.py).

- `darkroom_dispatcher_running_tasks`: tasks on actors now, over every dispatcher of the
  process, read when scraped;
- `darkroom_inference_seconds{task_type,outcome}`: each finished run, the actor's own
  time (its start to its end, as it reported them), else the dispatcher's (sent to
  received) when the actor reported nothing (lost, cancelled, failed).

Measured in the dispatcher's process, never in Ray's actor processes: no multiprocess
registry is needed.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from collections.abc import Iterator

    from inference.outcomes import Timing

INFERENCE_SECONDS = Histogram(
    "darkroom_inference_seconds",
    "Time a task ran on its actor",
    ["task_type", "outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
)
_dispatchers: weakref.WeakSet[Any] = weakref.WeakSet()


class _RunningTasks(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        running = sum(len(d.running) for d in list(_dispatchers))
        yield GaugeMetricFamily(
            "darkroom_dispatcher_running_tasks",
            "Tasks running on this process's actors",
            value=running,
        )


REGISTRY.register(_RunningTasks())


def track(dispatcher: Any) -> None:
    """Count `dispatcher.running` in `darkroom_dispatcher_running_tasks` while it lives."""
    _dispatchers.add(dispatcher)


def observe(timing: Timing) -> None:
    if timing.actor_finished and timing.actor_started:
        seconds = timing.actor_finished - timing.actor_started
    elif timing.sent and timing.received:
        seconds = timing.received - timing.sent
    else:
        return  # never reached an actor
    INFERENCE_SECONDS.labels(timing.task_type, timing.outcome or "unknown").observe(
        max(seconds, 0.0)
    )
