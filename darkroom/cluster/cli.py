"""`darkroom cluster up|status|down|kill|start`: the local cluster from a shell.

The cluster lives in a folder (`--root`, default `DATA_DIR/cluster`): `up` starts it
and returns (its processes keep running), `status` and `down` find it again through
the folder's `cluster.json`. The darkroom processes inherit the caller's environment
(e.g. `DARKROOM_JWT_SECRET`), except what the cluster wires itself (database, Redis,
Ray, ports, roles, DATA_DIR).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from darkroom.settings import Settings

cluster_app = typer.Typer(
    no_args_is_help=True,
    help="A local cluster on one machine: PostgreSQL, Redis, two Ray nodes and every role.",
)
console = Console()

ROOT_HELP = "the cluster's folder (default: DATA_DIR/cluster)"


def _root(root: str | None) -> Path:
    return Path(root) if root else Settings().data_dir / "cluster"


def _opened(root: str | None) -> Any:
    from darkroom.cluster import LocalCluster, NoClusterError

    try:
        return LocalCluster.open(_root(root))
    except NoClusterError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from error


@cluster_app.command("up")
def up(
    root: str | None = typer.Option(None, "--root", help=ROOT_HELP),
    nodes: int = typer.Option(2, "--nodes", help="api,hub processes"),
    projections: int = typer.Option(2, "--projections", help="projections processes"),
    ray_workers: int = typer.Option(1, "--ray-workers", help="Ray nodes beside the head"),
    timeout: float = typer.Option(180, "--timeout", help="seconds to wait for readiness"),
) -> None:
    """Start every member that is not running; returns once each answers /health/ready."""
    from darkroom.cluster import ClusterError, LocalCluster

    cluster = LocalCluster(
        _root(root), nodes=nodes, projections=projections, ray_workers=ray_workers
    )
    try:
        cluster.up(timeout=timeout)
    except ClusterError as error:
        typer.echo(f"{error}\n(`darkroom cluster down` stops what did start)", err=True)
        raise typer.Exit(1) from error
    _print(cluster.status())
    typer.echo(f"nodes: {' '.join(cluster.node_urls)}")
    typer.echo(f"DATABASE_URL={cluster.database_url}")
    typer.echo(f"REDIS_URL={cluster.redis_url}")
    typer.echo(f"RAY_ADDRESS={cluster.ray_address}")


@cluster_app.command("status")
def status(
    root: str | None = typer.Option(None, "--root", help=ROOT_HELP),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Each member: pid, alive, port, role. Exit 1 when any member is down."""
    report = _opened(root).status()
    if as_json:
        typer.echo(json.dumps(report))
    else:
        _print(report)
    if not all(member["alive"] for member in report.values()):
        raise typer.Exit(1)


@cluster_app.command("down")
def down(root: str | None = typer.Option(None, "--root", help=ROOT_HELP)) -> None:
    """Stop every process of the cluster (PostgreSQL cleanly); its data stays."""
    cluster = _opened(root)
    cluster.down()
    typer.echo(f"stopped the cluster in {cluster.root}")


@cluster_app.command("kill")
def kill(name: str, root: str | None = typer.Option(None, "--root", help=ROOT_HELP)) -> None:
    """SIGKILL one member (a Ray node: its raylet)."""
    _member_action(root, name, "kill")


@cluster_app.command("start")
def start(name: str, root: str | None = typer.Option(None, "--root", help=ROOT_HELP)) -> None:
    """Start one member again on its port and wait until it is healthy."""
    _member_action(root, name, "start")


def _member_action(root: str | None, name: str, action: str) -> None:
    from darkroom.cluster import ClusterError

    cluster = _opened(root)
    try:
        getattr(cluster, action)(name)
    except ClusterError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from error
    typer.echo(f"{action}: {name}")


def _print(report: dict[str, dict[str, Any]]) -> None:
    table = Table(title="local cluster")
    for column in ("member", "role", "port", "pid", "alive"):
        table.add_column(column)
    for name, member in report.items():
        table.add_row(
            name,
            str(member["role"]),
            str(member["port"]),
            str(member["pid"]),
            "yes" if member["alive"] else "NO",
        )
    console.print(table)
