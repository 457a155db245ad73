"""`darkroom`: run the studio, audit its history, travel in time."""

from __future__ import annotations

import json
import signal
import sys
import time
from datetime import datetime
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from darkroom.cluster.cli import cluster_app
from darkroom.settings import Settings, server_limits

app = typer.Typer(no_args_is_help=True, help="Darkroom: the event-sourced studio backend.")
console = Console()


def _studio(settings: Settings) -> Any:
    from darkroom.database import resolve
    from darkroom.wiring import build_studio

    db = resolve(settings.database_url, settings.pg_dir)
    return build_studio(db, settings.db_schema, pool_size=2)


@app.command()
def serve(
    port: int = typer.Option(None, help="Port (default: $PORT or 8085)"),
    host: str = typer.Option(None, help="Interface (default 127.0.0.1)"),
    role: str = typer.Option(
        None,
        "--role",
        help="api,hub,projections,dispatcher: any of them (default: $DARKROOM_ROLES, else all)",
    ),
) -> None:
    """Run the studio: HTTP API, websocket hub, projections, local inference."""
    import uvicorn

    from darkroom import redact
    from darkroom.dispatch import build_serving_app
    from darkroom.errors import UnknownRoleError
    from darkroom.limits import guarded_h11
    from darkroom.logs import uvicorn_options
    from darkroom.roles import parse_roles

    redact.install()  # no credential in any log line (uvicorn logs `/ws?token=…`)
    settings = Settings()
    if role is not None:
        settings = settings.model_copy(update={"roles": role})
    try:
        parse_roles(settings.roles)
    except UnknownRoleError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from error
    # uvicorn shuts down gracefully, then re-raises SIGTERM to the handler it found:
    # make that an ordinary exit, so atexit stops the embedded PostgreSQL.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    limits = server_limits(settings)
    uvicorn.run(
        build_serving_app(settings),
        host=host or settings.host,
        port=port or settings.port,
        log_level="info",
        http=guarded_h11(limits),
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        ws_max_size=limits.ws_max_frame_bytes,
        **uvicorn_options(settings.log_format),
    )


@app.command()
def worker(
    ray_address: str = typer.Option(
        None,
        "--ray-address",
        help="Ray cluster to join (default: $RAY_ADDRESS; none: start a local Ray)",
    ),
) -> None:
    """Run the inference dispatcher: claim tasks and run them on Ray actors."""
    from darkroom import logs, redact
    from darkroom.dispatch import run_worker

    redact.install()
    settings = Settings()
    logs.configure(settings.log_format)
    run_worker(settings, ray_address)


@app.command()
def history(
    aggregate_id: str,
    as_json: bool = typer.Option(False, "--json"),
    snapshots: bool = typer.Option(
        False, "--snapshots", help="with --json: also the snapshot rows"
    ),
) -> None:
    """Every event of one aggregate: position, time, actor, correlation; then its
    snapshots, listed apart: they cache state and are not part of the history."""
    studio = _studio(Settings())
    rows = studio.history(aggregate_id)
    cached = studio.stored_snapshots(aggregate_id)
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row))
        for row in cached if snapshots else []:
            typer.echo(json.dumps(row))
        return
    table = Table(title=f"history of {aggregate_id}")
    for column in ("position", "version", "topic", "timestamp", "actor", "correlation_id"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            *(
                str(row.get(c))
                for c in ("position", "version", "topic", "timestamp", "actor", "correlation_id")
            )
        )
    console.print(table)
    if cached:
        kept = Table(title="snapshots (cached state, not events)")
        for column in ("version", "timestamp", "bytes", "usable"):
            kept.add_column(column)
        for row in cached:
            kept.add_row(*(str(row.get(c)) for c in ("version", "timestamp", "bytes", "usable")))
        console.print(kept)


@app.command()
def show(
    aggregate_id: str,
    version: int = typer.Option(None, "--version"),
    at: str = typer.Option(None, "--at", help="ISO timestamp, e.g. 2026-11-22T10:00:00Z"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """An aggregate as it was at a version or a moment."""
    moment = datetime.fromisoformat(at.replace("Z", "+00:00")) if at else None
    aggregate = _studio(Settings()).aggregate_at(aggregate_id, version=version, at=moment)
    state = {k: v for k, v in vars(aggregate).items() if not k.startswith("_")}
    state.update(id=aggregate.id, version=aggregate.version, type=type(aggregate).__name__)
    if as_json:
        typer.echo(json.dumps(state, default=str))
        return
    table = Table(title=f"{state['type']} {aggregate_id} @ version {aggregate.version}")
    table.add_column("field")
    table.add_column("value")
    for key, value in sorted(state.items()):
        table.add_row(key, str(value))
    console.print(table)


@app.command()
def events(
    since: int = typer.Option(0, "--since"),
    follow: bool = typer.Option(False),
    limit: int = typer.Option(0, help="stop after this many (0 = all)"),
) -> None:
    """Tail the global log as JSON lines from position SINCE."""
    studio = _studio(Settings())
    seen, position = 0, since
    while True:
        page = studio.recorder.select_notifications(position, 500, inclusive_of_start=False)
        for n in page:
            event = studio.mapper.to_domain_event(n)
            typer.echo(
                json.dumps(
                    {
                        "position": n.id,
                        "aggregate_id": str(n.originator_id),
                        "version": n.originator_version,
                        "topic": n.topic,
                        "timestamp": event.timestamp.isoformat(),
                        **(getattr(event, "meta", None) or {}),
                    }
                )
            )
            seen += 1
            if limit and seen >= limit:
                return
        if page:
            position = page[-1].id
        elif not follow:
            return
        else:
            time.sleep(0.2)


db_app = typer.Typer(
    no_args_is_help=True, help="The embedded PostgreSQL (DATA_DIR/pg): inspect it, stop it."
)
app.add_typer(db_app, name="db")
app.add_typer(cluster_app, name="cluster")


def _embedded_dir(settings: Settings) -> Any:
    if settings.database_url:
        typer.echo(
            "DATABASE_URL is set: the database is an external server, not embedded "
            "(nothing to inspect or stop here).",
            err=True,
        )
        raise typer.Exit(2)
    return settings.pg_dir


@db_app.command("status")
def db_status(as_json: bool = typer.Option(False, "--json")) -> None:
    """Data dir, postmaster pid, running or not, the live processes attached to it
    (and dead ones pgserver still lists). Reads files only: starts nothing."""
    from darkroom.database import embedded_status

    status = embedded_status(_embedded_dir(Settings()))
    if as_json:
        typer.echo(json.dumps(status.as_dict()))
        return
    table = Table(title="embedded PostgreSQL")
    table.add_column("field")
    table.add_column("value")
    for key, value in status.as_dict().items():
        shown = ", ".join(map(str, value)) or "none" if isinstance(value, list) else str(value)
        table.add_row(key, shown)
    console.print(table)


@db_app.command("stop")
def db_stop(
    force: bool = typer.Option(False, "--force", help="stop it even while live processes use it"),
) -> None:
    """Stop the embedded PostgreSQL cleanly (pg_ctl stop, fast mode)."""
    from darkroom.database import embedded_status, prune_handles, stop_embedded

    pg_dir = _embedded_dir(Settings())
    status = embedded_status(pg_dir)
    if not status.running:
        if status.initialised:
            prune_handles(pg_dir)
        typer.echo(f"not running ({status.pg_dir})")
        return
    if status.attached and not force:
        typer.echo(
            f"still used by processes {status.attached}: stop them first, or pass --force", err=True
        )
        raise typer.Exit(1)
    stop_embedded(pg_dir)
    typer.echo(f"stopped PostgreSQL {status.pid} ({status.pg_dir})")


def _projections_context() -> Any:
    from darkroom.database import resolve
    from projections.cli import Context

    settings = Settings()
    database = resolve(settings.database_url, settings.pg_dir)
    return Context(_studio(settings), database.conninfo, settings.db_schema)


def main() -> None:
    from projections.cli import register

    register(app, _projections_context)
    app()
