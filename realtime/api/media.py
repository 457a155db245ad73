"""Files of the media store, served read-only under `/media/...`.

Names are random (uploads) or task-made ids, so the path is the capability;
no listing is served.
"""

from __future__ import annotations

from pathlib import Path

from starlette.routing import Mount
from starlette.staticfiles import StaticFiles


def mount(media_dir: Path) -> Mount:
    media_dir.mkdir(parents=True, exist_ok=True)
    return Mount("/media", app=StaticFiles(directory=media_dir, check_dir=False), name="media")
