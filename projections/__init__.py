"""Read models of the studio: PostgreSQL tables fed by the event log.

`all_views()` builds one instance of every view; `Runner` (projections.engine.runner)
keeps them current. Queries are plain functions in each view's module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from projections.views.base import View


def view_classes() -> dict[str, type[View]]:
    from projections.views.credits import CreditsView
    from projections.views.gallery import GalleryView
    from projections.views.projects import ProjectsView
    from projections.views.resources import ResourcesView
    from projections.views.shots import ShotsView
    from projections.views.tasks import TasksView
    from projections.views.variants import VariantsView

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
