"""Which parts a `darkroom serve` process runs: `--role` or `DARKROOM_ROLES`.

- `api`: the HTTP routes (`/api/...`, `/openapi.json`, `/media/...`) and the lost-worker
  sweeper; without it `/api/...` answers 404.
- `hub`: the websocket hub (`/ws`) and its change-log relay.
- `projections`: the projection runner, leader or standby by the views' advisory locks;
  a process without it folds no event and takes none of those locks (it only makes sure
  the views' tables exist, as a standby does before it waits).
- `dispatcher`: claims tasks for Ray actors (a local Ray, or `RAY_ADDRESS` with
  `DARKROOM_INFERENCE=ray`; `DARKROOM_INFERENCE=off` turns it off whatever the role).

Every role answers `/health`. The default is all four, one process as before.
"""

from __future__ import annotations

from darkroom.errors import UnknownRoleError

API, HUB, PROJECTIONS, DISPATCHER = "api", "hub", "projections", "dispatcher"
ALL_ROLES = (API, HUB, PROJECTIONS, DISPATCHER)


def parse_roles(text: str) -> frozenset[str]:
    """`"api,hub"` → {"api", "hub"}; an unknown or empty list raises `UnknownRoleError`."""
    chosen = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not chosen:
        raise UnknownRoleError(f"no role in {text!r}: name some of {', '.join(ALL_ROLES)}")
    for role in chosen:
        if role not in ALL_ROLES:
            raise UnknownRoleError(f"unknown role {role!r}: the roles are {', '.join(ALL_ROLES)}")
    return frozenset(chosen)
