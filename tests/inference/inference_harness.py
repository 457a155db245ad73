"""The studio around a dispatcher, for end-to-end tests: the user-side studio, the task
board projection (the claim queue) running in a thread, a media folder, and a
dispatcher over the session's actor pool, with its own studio as in production."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from darkroom.database import Database
from darkroom.dispatch import ClaimQueueCandidates, dispatcher_studio, private_claim_queue
from darkroom.wiring import build_studio
from domain.generation import Generation
from domain.studio import Studio
from domain.task import Task
from inference.actors import ActorPool
from inference.dispatcher import Dispatcher, DispatcherConfig
from inference.frames import encode_png
from inference.media import LocalMediaStore
from inference.ports import studio_outputs

# Two actors, to keep start-up cheap on two shared cores: the image models together (one
# process, loaded once) and the video model alone. Production defaults to one per model.
POOL_MODELS = (("text_to_image", "image_to_image", "upscale"), ("image_to_video",))
IMAGE_ACTOR = "text_to_image+image_to_image+upscale#0"
VIDEO_ACTOR = "image_to_video#0"

# Short intervals where tests wait on them. The idle heartbeat keeps its production 10 s:
# a task claimed after an idle beat must still be watched for cancellation at once.
FAST = DispatcherConfig(
    poll_interval=0.05, cancel_check_interval=0.1, progress_interval=0.2, sweep_interval=None
)


@dataclass
class Rig:
    studio: Studio
    worker_studio: Studio
    media: LocalMediaStore
    dispatcher: Dispatcher
    candidates: ClaimQueueCandidates
    runner: Any
    thread: threading.Thread
    owners: list[str] = field(default_factory=list)

    def restart_dispatcher(self) -> Dispatcher:
        """A fresh dispatcher (a new worker id) over the same actors, as after a deploy;
        the current one must have been stopped."""
        self.dispatcher = start_dispatcher(
            self.worker_studio,
            self.candidates,
            self.dispatcher.pool,
            self.media,
            self.dispatcher.config,
        )
        return self.dispatcher

    def close(self) -> None:
        self.dispatcher.stop(drain=10)
        self.runner.stop()
        self.thread.join(timeout=10)
        self.runner.close()
        self.candidates.close()
        self.worker_studio.close()
        self.studio.close()


def start_rig(
    database: Database,
    schema: str,
    pool: ActorPool,
    media_root: Path,
    config: DispatcherConfig = FAST,
) -> Rig:
    studio = build_studio(database, schema, pool_size=4)
    runner = private_claim_queue(studio, database, schema)
    thread = threading.Thread(target=runner.run_forever, name="projections", daemon=True)
    thread.start()
    worker_studio = dispatcher_studio(database, schema)
    media = LocalMediaStore(media_root)
    candidates = ClaimQueueCandidates(database.conninfo, schema)
    dispatcher = start_dispatcher(worker_studio, candidates, pool, media, config)
    return Rig(studio, worker_studio, media, dispatcher, candidates, runner, thread)


def start_dispatcher(
    worker_studio: Studio,
    candidates: ClaimQueueCandidates,
    pool: ActorPool,
    media: LocalMediaStore,
    config: DispatcherConfig,
) -> Dispatcher:
    dispatcher = Dispatcher(
        worker_studio,
        candidates,
        pool,
        media,
        studio_outputs(worker_studio),
        worker_id=f"ray-test-{uuid.uuid4().hex[:6]}",
        config=config,
    )
    dispatcher.start()
    return dispatcher


# -- the studio side -------------------------------------------------------------------
def funded_project(studio: Studio) -> tuple[str, str]:
    """A user with the welcome credits, and a project of theirs."""
    owner = f"user-{uuid.uuid4().hex[:8]}"
    studio.ensure_user(owner)
    return owner, str(studio.create_project(owner, "Film")["project_id"])


def task(studio: Studio, task_id: object) -> Task:
    found = studio.repository.get(UUID(str(task_id)))
    assert isinstance(found, Task)
    return found


def wait_for(check: Callable[[], Any], timeout: float, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met after {timeout} s")
        time.sleep(0.02)


def wait_until_settled(
    studio: Studio,
    task_ids: Iterable[object],
    timeout: float = 60,
    statuses: tuple[str, ...] = ("Complete", "Failed", "Cancelled"),
) -> list[Task]:
    ids = list(task_ids)
    wait_for(
        lambda: all(task(studio, t).status in statuses for t in ids),
        timeout,
        f"tasks {ids} in {statuses}",
    )
    return [task(studio, t) for t in ids]


def png(width: int, height: int, color: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    from PIL import Image

    return encode_png(Image.new("RGB", (width, height), color))


def uploaded_image(
    studio: Studio,
    media: LocalMediaStore,
    owner: str,
    project_id: str,
    width: int,
    height: int,
    color: tuple[int, int, int] = (200, 40, 40),
) -> str:
    """A picture in the media store and the gallery (as an upload would be); its id."""
    location = media.put(png(width, height, color), ".png", "image/png")
    made = studio.create_generation(project_id, owner, location, "image")
    return str(made["generation_id"])


def generations_made_by(studio: Studio, project_id: str, task_id: object) -> list[Generation]:
    state = studio.project_as_of(project_id, studio.head_position())
    ident = UUID(str(task_id))
    return [g for g in state.values() if isinstance(g, Generation) and ident in g.task_ids]


def image_size(media: LocalMediaStore, location: str) -> tuple[int, int]:
    from inference.frames import decode_image

    return decode_image(media.get(location)).size


def video_frames(media: LocalMediaStore, location: str) -> int:
    from inference.frames import decode_video

    return len(decode_video(media.get(location)).frames)
