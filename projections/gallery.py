"""Old path of `projections.views.gallery`, kept only for realtime/hub.py's snapshot code
until it calls `projections.views.topics.snapshot_of`; delete with that code."""

from projections.views.gallery import gallery_page, generation_row

__all__ = ["gallery_page", "generation_row"]
