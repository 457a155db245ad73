"""A worker id belongs to the credential that first used it: another credential is told
it does not exist, on every verb that names a worker, and hears only of its own tasks."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from eventsourcing.persistence import StoredEvent

from domain.errors import WorkerNotFoundError
from domain.metadata import CommandMeta
from domain.snapshots import StateSnapshot, usable_state
from domain.studio import Studio
from domain.worker import SYSTEM_OWNER, Worker


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def as_(credential: str | None, worker_id: str) -> CommandMeta:
    return CommandMeta.for_worker(worker_id, credential=credential)


def funded(studio: Studio) -> tuple[str, str]:
    owner = name("user")
    studio.ensure_user(owner)
    return owner, str(studio.create_project(owner, "Film")["project_id"])


def queue(studio: Studio, project_id: str, owner: str) -> str:
    return str(
        studio.create_task(project_id, owner, "image_generation", {"prompt": "a lighthouse"})[
            "task_id"
        ]
    )


def worker(studio: Studio, worker_id: str) -> Worker:
    found = studio.repository.get(Worker.id_for(worker_id))
    assert isinstance(found, Worker)
    return found


def test_a_worker_is_registered_to_the_credential_that_first_used_it(studio: Studio) -> None:
    alice, project = funded(studio)
    mine, in_process = name("w"), name("w")
    studio.heartbeat(mine, meta=as_(f"user:{alice}", mine))
    assert worker(studio, mine).owner == f"user:{alice}"
    studio.heartbeat(in_process)
    assert worker(studio, in_process).owner == SYSTEM_OWNER
    by_claim = name("w")
    task_id = queue(studio, project, alice)
    studio.claim_next(by_claim, "api", None, [task_id], meta=as_("service", by_claim))
    assert worker(studio, by_claim).owner == "service"


def test_another_credential_is_told_the_worker_does_not_exist_on_every_verb(studio: Studio) -> None:
    alice, project = funded(studio)
    wid = name("w")
    task_id = queue(studio, project, alice)
    claimed = studio.claim_next(wid, "api", None, [task_id], meta=as_(f"user:{alice}", wid))
    assert claimed is not None and claimed["task_id"] == task_id
    version = worker(studio, wid).version
    bob = as_(f"user:{name('user')}", wid)
    service = as_("service", wid)
    refused: list[Any] = [
        lambda m: studio.heartbeat(wid, [task_id], meta=m),
        lambda m: studio.claim_next(wid, "api", None, [queue(studio, project, alice)], meta=m),
        lambda m: studio.claim_task(queue(studio, project, alice), wid, meta=m),
        lambda m: studio.report_progress(task_id, 1, 2, worker_id=wid, meta=m),
        lambda m: studio.reset_task_start(task_id, worker_id=wid, meta=m),
        lambda m: studio.complete_task(task_id, "/media/x.png", worker_id=wid, meta=m),
        lambda m: studio.fail_task(task_id, "no", worker_id=wid, meta=m),
        lambda m: studio.requeue_task(task_id, "no", worker_id=wid, meta=m),
        lambda m: studio.release_task(task_id, "no", worker_id=wid, meta=m),
        lambda m: studio.update_status(task_id, "Queued", worker_id=wid, meta=m),
        lambda m: studio.require_worker(wid, m),
    ]
    for call in refused:
        for meta in (bob, service):
            with pytest.raises(WorkerNotFoundError, match=f"worker {wid} not found"):
                call(meta)
    assert worker(studio, wid).version == version
    # A refused heartbeat keeps nobody alive: the pulse did not move.
    seen = studio.pulse.last_seen(wid)
    with pytest.raises(WorkerNotFoundError):
        studio.heartbeat(wid, meta=bob)
    assert studio.pulse.last_seen(wid) == seen
    assert worker(studio, wid).running.keys() == {uuid.UUID(task_id)}
    # The owner, and in-process callers, go on.
    assert studio.heartbeat(wid, [task_id], meta=as_(f"user:{alice}", wid))["stop"] == []
    studio.report_progress(task_id, 1, 2, worker_id=wid)
    studio.complete_task(task_id, "/media/x.png", worker_id=wid, meta=as_(f"user:{alice}", wid))


def test_two_credentials_racing_for_a_new_worker_id_leave_it_to_one(studio: Studio) -> None:
    import threading

    wid, outcomes = name("w"), []
    barrier = threading.Barrier(4)

    def beat(credential: str) -> None:
        barrier.wait()
        try:
            studio.heartbeat(wid, meta=as_(credential, wid))
            outcomes.append(credential)
        except WorkerNotFoundError:
            outcomes.append(None)

    threads = [threading.Thread(target=beat, args=(f"user:u{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if o is not None]
    assert len(winners) == 1 and worker(studio, wid).owner == winners[0]


def test_the_stop_list_names_only_the_callers_own_tasks(studio: Studio) -> None:
    alice, project = funded(studio)
    bob, bobs_project = funded(studio)
    wid = name("w")
    mine = queue(studio, project, alice)
    studio.claim_next(wid, "api", None, [mine], meta=as_(f"user:{alice}", wid))
    studio.cancel_task(mine, alice)
    theirs = queue(studio, bobs_project, bob)
    unknown = str(uuid.uuid4())
    stop = studio.heartbeat(wid, [mine, theirs, unknown], meta=as_(f"user:{alice}", wid))
    assert stop["stop"] == [mine]
    # The service key and in-process callers are trusted with any task id.
    service_worker = name("w")
    assert studio.heartbeat(service_worker, [mine, theirs], meta=as_("service", service_worker))[
        "stop"
    ] == [mine, theirs]
    assert studio.heartbeat(wid, [theirs, unknown])["stop"] == [theirs, unknown]


def test_a_worker_registered_before_owners_were_recorded_is_claimed_by_its_first_user(
    studio: Studio,
) -> None:
    """A version-1 `Created` event (no owner) is upcast to `owner=None`: unclaimed."""
    wid = name("w")
    new = Worker.register(wid, datetime.now(UTC), owner="ignored")
    stored = studio.mapper.to_stored_event(new.collect_events()[0])
    state = json.loads(stored.state)
    assert state.pop("class_version") == 2 and state.pop("owner") == "ignored"
    old = StoredEvent(
        originator_id=stored.originator_id,
        originator_version=1,
        topic=stored.topic,
        state=json.dumps(state).encode(),
    )
    studio.recorder.insert_events([old])
    assert worker(studio, wid).owner is None
    alice = f"user:{name('user')}"
    studio.heartbeat(wid, meta=as_(alice, wid))
    assert worker(studio, wid).owner == alice
    assert [type(e).__name__ for e in studio.events.get(Worker.id_for(wid))][-1] == "Claimed"
    with pytest.raises(WorkerNotFoundError):
        studio.heartbeat(wid, meta=as_("service", wid))


def test_a_snapshot_taken_before_owners_were_recorded_loads_unclaimed() -> None:
    worker_ = Worker.register(name("w"), datetime.now(UTC), owner="service")
    worker_.collect_events()
    snapshot = StateSnapshot.take(worker_)
    state = dict(snapshot.state)
    state["class_version"] = 1
    del state["owner"]
    object.__setattr__(snapshot, "state", state)
    loaded = usable_state(snapshot)
    assert loaded.owner is None and loaded.worker_id == worker_.worker_id
