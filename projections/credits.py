"""Old path of `projections.views.credits`, kept only for realtime/hub.py's snapshot code
until it calls `projections.views.topics.snapshot_of`; delete with that code."""

from projections.views.credits import balance_of, ledger_of

__all__ = ["balance_of", "ledger_of"]
