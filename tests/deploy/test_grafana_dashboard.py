"""deploy/grafana/darkroom.json: a valid Grafana dashboard whose every query parses as
PromQL (`promql-parser`, the Rust parser of GreptimeDB) and reads only the families a
Darkroom process exports (`realtime.metrics.METRIC_NAMES`); every family is drawn."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import promql_parser

from realtime.metrics import METRIC_NAMES

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "darkroom.json"
HISTOGRAM_SERIES = ("_bucket", "_count", "_sum")
CHILDREN = ("args", "expr", "lhs", "rhs", "param", "vector_selector")


def selectors(node: Any) -> set[str]:
    """The metric names an expression's vector selectors read."""
    if isinstance(node, promql_parser.VectorSelector):
        return {node.name}
    names: set[str] = set()
    for child in CHILDREN:
        value = getattr(node, child, None)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, promql_parser.Expr):
                names |= selectors(item)
    return names


def family(series: str) -> str:
    for suffix in HISTOGRAM_SERIES:
        if series.endswith(suffix) and series[: -len(suffix)] in METRIC_NAMES:
            return series[: -len(suffix)]
    return series


def panels() -> list[dict[str, Any]]:
    return [p for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] != "row"]


def test_the_dashboard_is_a_grafana_dashboard_with_placed_prometheus_panels() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert {"uid", "title", "schemaVersion", "panels", "time"} <= set(dashboard)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels():
        place = panel["gridPos"]
        assert place["x"] + place["w"] <= 24 and place["h"] > 0, panel["title"]
        assert panel["datasource"]["type"] == "prometheus"
        assert panel["targets"] and all(t["expr"] for t in panel["targets"])


def test_every_query_parses_and_reads_only_exported_metrics_and_all_of_them() -> None:
    drawn: set[str] = set()
    for panel in panels():
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", "5m")
            names = {family(name) for name in selectors(promql_parser.parse(expr))}
            assert names, (panel["title"], expr)
            assert names <= set(METRIC_NAMES), (panel["title"], names - set(METRIC_NAMES))
            drawn |= names
    assert drawn == set(METRIC_NAMES)
