"""`darkroom projections …`: run, status, rebuild, retry, dead letters, prune.

`register(app)` adds the group to the studio's typer app. The commands need
an application (to read the log), the PostgreSQL conninfo and the schema:
`register(app, context)` takes a factory for them (the composition root,
`darkroom.cli`, builds it from settings; this package never imports it).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

console = Console()


@dataclass
class Context:
    app: Any
    conninfo: str
    schema: str


def register(app: typer.Typer, context: Callable[[], Context]) -> typer.Typer:
    """Add the `projections` command group to `app`; `context` builds what commands need."""
    build = context
    group = typer.Typer(no_args_is_help=True, help="Read models: run, inspect, rebuild.")
    app.add_typer(group, name="projections")

    @group.command()
    def run(
        views: str = typer.Option("", help="comma-separated view names (default: all)"),
    ) -> None:
        """Keep the views current (a second process waits as a standby)."""
        from projections import all_views, view_classes
        from projections.engine.runner import Runner
        from projections.errors import LockNotAcquiredError
        from projections.reachability import waited_out_outage

        ctx = build()
        names = [v for v in views.split(",") if v] or list(view_classes())
        stopping = threading.Event()
        current: list[Runner] = []

        def stop(*_: object) -> None:
            stopping.set()
            for runner in current:
                runner.stop()

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, stop)
        console.print(
            f"projections runner for {', '.join(names)} (standby until the views are free)"
        )
        delay = 1.0
        while not stopping.is_set():
            # A fresh runner after any failure: its state is rebuilt from the
            # committed views, so nothing of the failed batch survives.
            runner = Runner(
                ctx.app,
                ctx.conninfo,
                ctx.schema,
                [view_classes()[n]() for n in names] if views else all_views(),
            )
            current[:] = [runner]
            try:
                with runner:
                    runner.run_forever()
                delay = 1.0
            except LockNotAcquiredError:
                pass
            except Exception:
                if waited_out_outage(ctx.conninfo, stopping):  # back: restart at once
                    console.print("the database was unreachable; the runner restarts")
                    continue
                console.print_exception()
                stopping.wait(delay)
                delay = min(delay * 2, 30.0)

    @group.command()
    def status() -> None:
        """Each view's position, the head, lag in events and seconds, dead letters."""
        from projections import db
        from projections.engine import ops

        ctx = build()
        with db.connect(ctx.conninfo, ctx.schema) as conn:
            rows = ops.status(ctx.app, conn)
        table = Table(title="projections")
        for column in (
            "view",
            "version",
            "position",
            "head",
            "lag_events",
            "lag_seconds",
            "dead_letters",
            "handover",
        ):
            if column == "view":
                table.add_column(column, no_wrap=True, min_width=8)
            else:
                table.add_column(column, justify="right")
        for row in rows:
            table.add_row(
                row["view"],
                str(row["version"]),
                f"{row['position']:,}",
                f"{row['head']:,}",
                f"{row['lag_events']:,}",
                f"{row['lag_seconds']:.1f}",
                str(row["dead_letters"]),
                row["handover"] or "",
            )
        console.print(table)

    @group.command()
    def rebuild(
        name: str,
        timeout: float = typer.Option(60.0, help="hand-over timeout (s)"),
    ) -> None:
        """Rebuild NAME into a fresh version from position 0, then switch atomically."""
        from projections.engine import ops

        ctx = build()
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:,}/{task.total:,} events"),
            TimeRemainingColumn(),
            console=console,
        ) as bar:
            task = bar.add_task(f"rebuild {name}", total=1)

            def progress(position: int, head: int) -> None:
                bar.update(task, completed=position, total=head)

            version = ops.rebuild(
                ctx.app, ctx.conninfo, ctx.schema, name, progress=progress, timeout=timeout
            )
        console.print(f"{name} now serves version {version}")

    @group.command()
    def retry(name: str) -> None:
        """Replay NAME's dead letters (through the live runner when one hosts NAME)."""
        from projections.engine import ops

        ctx = build()
        result = ops.retry(ctx.app, ctx.conninfo, ctx.schema, name)
        console.print(f"{result['requested']} retried, {result['remaining']} still dead")

    @group.command("dead-letters")
    def dead_letters(name: str = typer.Argument(None)) -> None:
        """List dead letters (of one view, or all)."""
        from projections import db
        from projections.engine import ops

        ctx = build()
        with db.connect(ctx.conninfo, ctx.schema) as conn:
            rows = ops.dead_letters(conn, name)
        table = Table(title="dead letters")
        for column in ("view", "position", "topic", "attempts", "error"):
            table.add_column(column)
        for row in rows:
            table.add_row(
                row["view"],
                str(row["position"]),
                row["topic"],
                str(row["attempts"]),
                row["error"][:120],
            )
        console.print(table)

    @group.command()
    def prune(days: float = typer.Option(7.0, help="keep this many days of changes")) -> None:
        """Apply the change-log retention."""
        from projections import db
        from projections.engine import ops

        ctx = build()
        with db.connect(ctx.conninfo, ctx.schema) as conn:
            n = ops.prune_changelog(conn, timedelta(days=days))
        console.print(f"{n:,} change rows pruned")

    return group
