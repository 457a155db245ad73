"""Composition root: build the studio and its infrastructure from settings."""

from __future__ import annotations

from decimal import Decimal

from darkroom.database import Database
from darkroom.eventstore import RECORDER_TOPIC
from domain.studio import Studio


def studio_env(db: Database, schema: str = "public", pool_size: int = 8) -> dict[str, str]:
    return {**db.eventsourcing_env(schema, pool_size),
            "APPLICATION_RECORDER_TOPIC": RECORDER_TOPIC,
            "CREATE_TABLE": "y"}


def build_studio(db: Database, schema: str = "public", pool_size: int = 8,
                 welcome_credits: float = 10.0) -> Studio:
    studio = Studio(env=studio_env(db, schema, pool_size))
    studio.welcome_credits = Decimal(str(welcome_credits))
    return studio
