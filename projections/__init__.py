"""Read models of the studio: PostgreSQL tables fed by the event log.

`all_views()` builds one instance of every view; `Runner` (projections.runner)
keeps them current. Queries are plain functions in each view's module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from projections.base import View


def view_classes() -> dict[str, type[View]]:
    from projections.credits import CreditsView
    from projections.gallery import GalleryView
    from projections.projects import ProjectsView
    from projections.resources import ResourcesView
    from projections.shots import ShotsView
    from projections.tasks import TasksView
    from projections.variants import VariantsView

    classes: list[type[View]] = [
        ProjectsView,
        GalleryView,
        VariantsView,
        ShotsView,
        TasksView,
        CreditsView,
        ResourcesView,
    ]
    return {c.name: c for c in classes}


def all_views() -> list[View]:
    return [cls() for cls in view_classes().values()]
