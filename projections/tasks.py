"""Old path of `projections.views.tasks`, kept only for realtime/hub.py's snapshot code
until it calls `projections.views.topics.snapshot_of`; delete with that code."""

from projections.views.tasks import task_board

__all__ = ["task_board"]
