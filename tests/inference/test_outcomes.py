"""Recording finished runs without Ray: the files of a completion the studio refuses
are deleted; a failure that is not a refusal leaves them, since the completion may
have been recorded all the same."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import OperationalError
from inference_harness import funded_project, task

from darkroom.database import Database
from darkroom.wiring import build_studio
from domain.errors import ValidationError
from domain.studio import Studio
from domain.task import CANCELLED, COMPLETE, FAILED, IN_PROGRESS, QUEUED
from inference.backends import Media, Result
from inference.media import LocalMediaStore, MediaStore
from inference.outcomes import DONE, Finished, Recorder, Settler, Timing


@pytest.fixture(scope="module")
def studio(database: Database, schema: str) -> Iterator[Studio]:
    app = build_studio(database, schema, pool_size=2)
    yield app
    app.close()


def claimed_task(studio: Studio, worker_id: str) -> str:
    """A text-to-image task of a funded owner, claimed by `worker_id`."""
    owner, project_id = funded_project(studio)
    task_id = str(
        studio.create_task(project_id, owner, "image_generation", {"prompt": "a lighthouse"})[
            "task_id"
        ]
    )
    claimed = studio.claim_next(worker_id, "api", None, [task_id])
    assert claimed is not None and str(claimed["task_id"]) == task_id
    return task_id


def finished_run(task_id: str, outputs: int = 1) -> Finished:
    media = Media(b"\x89PNG picture", "image/png", 64, 64, 1, b"\x89PNG thumbnail")
    now = time.time()
    return Finished(
        task_id,
        DONE,
        "actor#0",
        output={"result": Result((media,) * outputs, seed=7), "started": now - 1, "finished": now},
    )


def record(settler: Settler, finished: Finished) -> str:
    """Hands one outcome to a recorder as the dispatcher does; the command it sent."""
    timings: list[Timing] = []
    recorder = Recorder(settler, 1, lambda _finished, timing: timings.append(timing))
    recorder.hand_over(finished, Timing(finished.task_id, "image_generation", finished.slot))
    deadline = time.monotonic() + 10
    while not timings and time.monotonic() < deadline:
        recorder.record_ready()
        time.sleep(0.01)
    recorder.shutdown()
    assert timings, "the outcome was never recorded"
    return timings[0].command


def files_in(store: Any) -> list[str]:
    if isinstance(store, LocalMediaStore):
        return sorted(str(p) for p in store.root.rglob("*") if p.is_file())
    listed = store.client.list_objects_v2(Bucket=store.bucket)
    return sorted(item["Key"] for item in listed.get("Contents", []))


class StudioWhereCompleting:
    """The studio, except that `complete_task` raises `error`."""

    def __init__(self, studio: Studio, error: Exception) -> None:
        self.studio, self.error = studio, error

    def __getattr__(self, name: str) -> Any:
        return getattr(self.studio, name)

    def complete_task(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error


class UndeletableStore(LocalMediaStore):
    def delete(self, location: str) -> None:
        raise PermissionError(f"read-only: {location}")


def test_files_of_a_completion_the_studio_refuses_are_deleted(
    studio: Studio,
    store: MediaStore,
) -> None:
    task_id = claimed_task(studio, "worker-a")
    studio.cancel_task(task_id, None, "changed my mind")
    assert record(Settler(studio, store, "worker-a"), finished_run(task_id, outputs=2)) == "dropped"
    assert files_in(store) == []
    assert task(studio, task_id).status == CANCELLED


def test_files_of_a_completion_from_a_worker_that_no_longer_holds_the_task_are_deleted(
    studio: Studio,
    tmp_path: Path,
) -> None:
    task_id = claimed_task(studio, "worker-a")
    studio.requeue_task(task_id, "swept", worker_id="worker-a")
    claimed = studio.claim_next("worker-b", "api", None, [task_id])
    assert claimed is not None
    media = LocalMediaStore(tmp_path)
    assert (
        Settler(media=media, tasks=studio, worker_id="worker-a").settle(finished_run(task_id))
        == "dropped"
    )
    assert files_in(media) == []
    assert task(studio, task_id).status == IN_PROGRESS


def test_a_result_the_studio_cannot_route_fails_the_task_and_its_files_are_deleted(
    studio: Studio,
    tmp_path: Path,
) -> None:
    task_id = claimed_task(studio, "worker-a")
    media = LocalMediaStore(tmp_path)
    tasks = StudioWhereCompleting(studio, ValidationError("no place for this result"))
    assert Settler(tasks, media, "worker-a").settle(finished_run(task_id)) == "fail"  # type: ignore[arg-type]
    assert files_in(media) == []
    assert task(studio, task_id).status == FAILED


def test_files_stay_when_the_completion_fails_for_another_reason_than_a_refusal(
    studio: Studio,
    tmp_path: Path,
) -> None:
    # The database may have committed before the connection dropped: the task could
    # name these files, so they must not be deleted.
    task_id = claimed_task(studio, "worker-a")
    media = LocalMediaStore(tmp_path)
    tasks = StudioWhereCompleting(studio, OperationalError("server closed the connection"))
    assert record(Settler(tasks, media, "worker-a"), finished_run(task_id)) == "error"  # type: ignore[arg-type]
    assert len(files_in(media)) == 2
    assert task(studio, task_id).status == IN_PROGRESS


def test_a_file_that_cannot_be_deleted_is_logged_and_recording_goes_on(
    studio: Studio,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    task_id = claimed_task(studio, "worker-a")
    studio.cancel_task(task_id, None)
    media = UndeletableStore(tmp_path)
    with caplog.at_level(logging.INFO, logger="darkroom.inference"):
        assert record(Settler(studio, media, "worker-a"), finished_run(task_id)) == "dropped"
    assert len(files_in(media)) == 2
    assert f"task {task_id}: deleting /media/" in caplog.text
    assert f"task {task_id}: completion refused" in caplog.text
    assert "0 of its 2 files deleted" in caplog.text


class WatchedStore(LocalMediaStore):
    """A local store that remembers which thread wrote each file; `broken` makes it fail."""

    broken = False

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.writers: list[str] = []

    def put(self, data: bytes, suffix: str, content_type: str) -> str:
        self.writers.append(threading.current_thread().name)
        if self.broken:
            raise OSError("No space left on device")
        return super().put(data, suffix, content_type)


class StudioCheckingFiles:
    """The studio, whose `complete_task` first asserts that the files it names exist."""

    def __init__(self, studio: Studio, media: LocalMediaStore) -> None:
        self.studio, self.media = studio, media

    def __getattr__(self, name: str) -> Any:
        return getattr(self.studio, name)

    def complete_task(self, task_id: object, location: str, **kwargs: Any) -> Any:
        assert self.media.path_for(location).is_file(), "completed before its file was stored"
        assert self.media.path_for(kwargs["thumbnail_url"]).is_file()
        return self.studio.complete_task(task_id, location, **kwargs)


@pytest.fixture
def watched(tmp_path: Path) -> WatchedStore:
    return WatchedStore(tmp_path)


def recorded_inline(settler: Settler, task_id: str) -> tuple[Recorder, list[Timing]]:
    """An inline recorder handed the finished run of `task_id`, nothing recorded yet."""
    timings: list[Timing] = []
    recorder = Recorder(settler, 1, lambda _f, timing: timings.append(timing), inline=True)
    recorder.hand_over(finished_run(task_id), Timing(task_id, "image_generation", "actor#0"))
    return recorder, timings


def test_inline_the_files_are_written_by_the_thread_handing_the_outcome_over(
    studio: Studio, watched: WatchedStore
) -> None:
    task_id = claimed_task(studio, "worker-a")
    checking = StudioCheckingFiles(studio, watched)
    recorder, timings = recorded_inline(Settler(checking, watched, "worker-a"), task_id)  # type: ignore[arg-type]
    # Stored before hand_over returned: ready for the command, nothing left storing.
    assert watched.writers == [threading.current_thread().name] * 2
    assert recorder.ready() and not recorder.storing()
    recorder.record_ready()
    recorder.shutdown()
    assert [t.command for t in timings] == ["complete"]
    assert task(studio, task_id).status == COMPLETE


def test_not_inline_the_files_are_written_on_the_settle_threads_before_the_completion(
    studio: Studio, watched: WatchedStore
) -> None:
    task_id = claimed_task(studio, "worker-a")
    settler = Settler(StudioCheckingFiles(studio, watched), watched, "worker-a")  # type: ignore[arg-type]
    assert record(settler, finished_run(task_id)) == "complete"
    assert len(watched.writers) == 2
    assert all(name.startswith("dispatcher-store") for name in watched.writers)


def test_inline_a_store_that_fails_requeues_the_task_and_completes_nothing(
    studio: Studio, watched: WatchedStore
) -> None:
    task_id = claimed_task(studio, "worker-a")
    watched.broken = True
    recorder, timings = recorded_inline(Settler(studio, watched, "worker-a"), task_id)
    recorder.record_ready()
    recorder.shutdown()
    assert [(t.outcome, t.command) for t in timings] == [("error", "requeue")]
    assert files_in(watched) == []
    assert task(studio, task_id).status == QUEUED


def test_the_dispatcher_writes_inline_only_to_a_local_store_and_only_when_configured(
    tmp_path: Path,
) -> None:
    from inference.defaults import DispatcherConfig
    from inference.dispatcher import Dispatcher

    class Remote:  # a store with no `local` mark: an upload may be slow
        pass

    def inline(media: Any, config: DispatcherConfig | None = None) -> bool:
        dispatcher = Dispatcher(None, None, None, media, None, config=config)  # type: ignore[arg-type]
        dispatcher.recorder.shutdown()
        return dispatcher.recorder.inline

    assert inline(LocalMediaStore(tmp_path))
    assert not inline(Remote())
    assert not inline(LocalMediaStore(tmp_path), DispatcherConfig(store_inline=False))
