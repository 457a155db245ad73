"""The operator's console at `/console`: plain ES modules and CSS (`static/`), built on
the TypeScript client's committed build (`static/darkroom-client.js`, a copy of
`clients/typescript/dist/index.js`). Nothing is fetched from elsewhere."""

from __future__ import annotations

from pathlib import Path

from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"


def mount() -> Mount:
    """`/console/` answers `index.html`; the other files beside it by name."""
    return Mount("/console", app=StaticFiles(directory=STATIC, html=True), name="console")
