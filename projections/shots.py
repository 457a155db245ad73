"""Old path of `projections.views.shots`, kept only for realtime/hub.py's snapshot code
until it calls `projections.views.topics.snapshot_of`; delete with that code."""

from projections.views.shots import shot_row, shots_of_project

__all__ = ["shot_row", "shots_of_project"]
