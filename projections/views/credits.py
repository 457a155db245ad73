"""Credits: each user's balance and ledger (grants, top-ups, spends, refunds)."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from domain.credits import CreditLedger, round_credits
from projections.engine.writes import Insert, Op, Upsert, split
from projections.views.base import LRU, Context, Row, View, handles, jsonable_row, sid

if TYPE_CHECKING:
    import psycopg

BALANCE_COLUMNS = ("user_id", "balance", "entries", "updated_at", "log_position")
LEDGER_COLUMNS = (
    "user_id",
    "seq",
    "kind",
    "amount",
    "reason",
    "task_id",
    "reference",
    "at",
    "log_position",
)


class CreditsView(View):
    name = "credits"
    tables = ("credit_balances", "credit_ledger")

    def __init__(self, capacity: int = 200_000) -> None:
        super().__init__()
        self.balances: LRU[str, tuple[Decimal, int]] = LRU(capacity)
        self.pending: dict[str, Row] = {}
        self.entries: list[Row] = []
        self.refreshed = False

    def ddl(self, names: dict[str, str]) -> list[str]:
        b, ledger = names["credit_balances"], names["credit_ledger"]
        return [
            f"""CREATE TABLE IF NOT EXISTS "{b}" (
                user_id text PRIMARY KEY, balance numeric(14, 3) NOT NULL, entries int NOT NULL,
                updated_at timestamptz, log_position bigint NOT NULL)""",
            f"""CREATE TABLE IF NOT EXISTS "{ledger}" (
                user_id text NOT NULL, seq int NOT NULL, kind text NOT NULL,
                amount numeric(14, 3) NOT NULL, reason text NOT NULL, task_id uuid,
                reference text, at timestamptz NOT NULL, log_position bigint NOT NULL,
                PRIMARY KEY (user_id, seq))""",
        ]

    def _balance(self, user_id: str) -> tuple[Decimal, int]:
        found = self.balances.get(user_id)
        if found is None:
            rows = self.query(
                'SELECT balance, entries FROM "{credit_balances}" WHERE user_id = %s', (user_id,)
            )
            found = (rows[0]["balance"], rows[0]["entries"]) if rows else (Decimal(0), 0)
            self.balances[user_id] = found
        return found

    def _emit(
        self, ledger: CreditLedger, balance: Decimal, count: int, entry: Row | None, ctx: Context
    ) -> None:
        self.balances[ledger.user_id] = (balance, count)
        row = {
            "user_id": ledger.user_id,
            "balance": str(round_credits(balance)),
            "entries": count,
            "updated_at": ledger.modified_on.isoformat(),
            "log_position": ctx.position,
        }
        self.pending[ledger.user_id] = row
        ctx.emit(f"credits:{ledger.user_id}", "credits.changed", {**row, "entry": entry})

    @handles(CreditLedger.Created)
    def on_opened(self, event: Any, ledger: CreditLedger, _: Any, ctx: Context) -> None:
        self.new.add(ledger.user_id)
        self._emit(ledger, Decimal(0), 0, None, ctx)

    @handles(CreditLedger.EntryRecorded)
    def on_entry(
        self, event: CreditLedger.EntryRecorded, ledger: CreditLedger, _: Any, ctx: Context
    ) -> None:
        balance, _count = self._balance(ledger.user_id)
        entry = {
            "user_id": ledger.user_id,
            "seq": ledger.entry_count,
            "kind": event.kind,
            "amount": str(round_credits(event.amount)),
            "reason": event.reason,
            "task_id": sid(event.task_id),
            "reference": event.reference,
            "at": event.at.isoformat(),
            "log_position": ctx.position,
        }
        self.entries.append(entry)
        self._emit(ledger, balance + event.amount, ledger.entry_count, entry, ctx)

    def refresh(self, event: Any, ctx: Context) -> None:
        ledger = ctx.aggregates.current(event.originator_id)
        if not isinstance(ledger, CreditLedger):
            return
        self.refreshed = True
        # The aggregate keeps no entries (bounded state): re-read them from its stream.
        stream = ctx.aggregates.app.events.get(ledger.id, lte=ledger.version)
        recorded = (e for e in stream if isinstance(e, CreditLedger.EntryRecorded))
        for seq, e in enumerate(recorded, start=1):
            self.entries.append(
                {
                    "user_id": ledger.user_id,
                    "seq": seq,
                    "kind": e.kind,
                    "amount": str(round_credits(e.amount)),
                    "reason": e.reason,
                    "task_id": sid(e.task_id),
                    "reference": e.reference,
                    "at": e.at.isoformat(),
                    "log_position": ctx.position,
                }
            )
        self._emit(ledger, ledger.balance, ledger.entry_count, None, ctx)

    def take(self) -> list[Op]:
        pending, new, entries, refreshed = self.pending, self.new, self.entries, self.refreshed
        self.pending, self.new, self.entries, self.refreshed = {}, set(), [], False
        ops = split("credit_balances", BALANCE_COLUMNS, ("user_id",), pending, new)
        if entries and refreshed:
            # A dead-letter refresh re-offers entries that may be there already.
            unique = list({(e["user_id"], e["seq"]): e for e in entries}.values())
            ops.append(Upsert("credit_ledger", LEDGER_COLUMNS, ("user_id", "seq"), unique))
        elif entries:
            ops.append(Insert("credit_ledger", LEDGER_COLUMNS, entries))
        return ops

    def flushed(self) -> None:
        self.balances.trim()

    def has_pending(self) -> bool:
        return bool(self.pending or self.entries)


def balance_of(conn: psycopg.Connection[Any], user_id: str) -> Row:
    """A user's balance (`"0.000"` for a user with no ledger yet)."""
    row = conn.execute(
        f"SELECT {', '.join(BALANCE_COLUMNS)} FROM credit_balances WHERE user_id = %s", (user_id,)
    ).fetchone()
    if row is None:
        return {
            "user_id": user_id,
            "balance": "0.000",
            "entries": 0,
            "updated_at": None,
            "log_position": 0,
        }
    return jsonable_row(row)


def ledger_of(
    conn: psycopg.Connection[Any], user_id: str, *, limit: int = 100, before_seq: int | None = None
) -> list[Row]:
    """A user's ledger entries, newest first; `before_seq` pages back."""
    rows = conn.execute(
        f"SELECT {', '.join(LEDGER_COLUMNS)} FROM credit_ledger WHERE user_id = %s "
        "AND (%s::int IS NULL OR seq < %s) ORDER BY seq DESC LIMIT %s",
        (user_id, before_seq, before_seq, max(1, min(int(limit), 1000))),
    ).fetchall()
    return [jsonable_row(r) for r in rows]


def credits_snapshot(conn: psycopg.Connection[Any], user_id: str) -> dict[str, Any]:
    """The `credits:<user id>` topic's snapshot: the balance and the last 100 entries."""
    return {"balance": balance_of(conn, user_id), "ledger": ledger_of(conn, user_id, limit=100)}
