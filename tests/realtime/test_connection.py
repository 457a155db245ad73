"""The sans-I/O connection: frames, ticks and live frames in; replies, requests and closes out.

No socket, no event loop, no clock: each test feeds a `Connection` what happened and
reads what it decided (the asyncio adapter is `realtime.ws` / `realtime.session`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from realtime.connection import (
    MAX_AUTH_FRAME,
    Authenticate,
    CloseTopic,
    Connection,
    FrameQueue,
    OpenTopic,
    Reauthenticate,
)
from realtime.hub import HubSettings
from realtime.protocol import PING, Subscribe

SETTINGS = HubSettings(
    max_bad_frames=2,
    max_subscriptions=2,
    auth_timeout_s=5,
    ping_interval_s=10,
    idle_timeout_s=30,
    queue_bytes=1000,
)
EXP = 1_800_000_000.0  # a JWT's exp (unix seconds)


def connecting(now: float = 0.0) -> Connection:
    return Connection(SETTINGS, FrameQueue(SETTINGS.queue_bytes), now)


def opened(user: str | None = "ann", expires_at: float | None = EXP) -> Connection:
    connection = connecting()
    connection.authenticated(user, expires_at, position=7, now=0.0)
    connection.frames_to_send()  # the `ready` frame
    return connection


def replies(connection: Connection) -> list[dict[str, Any]]:
    return [json.loads(frame) for frame in connection.frames_to_send()]


def code_of(connection: Connection) -> int | None:
    close = connection.close_to_make()
    return None if close is None else close.code


def subscribe(topic: str, ref: str | None = None) -> str:
    return json.dumps({"type": "subscribe", "topic": topic, "ref": ref})


# -- before ready ---------------------------------------------------------------------------
def test_an_auth_frame_asks_for_its_token_to_be_checked_and_ready_answers_it() -> None:
    connection = connecting()
    assert connection.receive('{"type":"auth","token":"t"}', now=1) == [Authenticate("t")]
    connection.authenticated("ann", EXP, position=42, now=1)
    assert replies(connection) == [
        {"type": "ready", "user_id": "ann", "position": 42, "expires_at": int(EXP)}
    ]
    assert code_of(connection) is None


def test_a_frame_other_than_auth_first_is_answered_and_closed_with_4401() -> None:
    connection = connecting()
    assert connection.receive(subscribe("credits:ann"), now=1) == []
    assert [r["code"] for r in replies(connection)] == ["unauthenticated"]
    assert code_of(connection) == 4401


def test_a_malformed_first_frame_is_answered_and_the_connection_waits_for_auth() -> None:
    connection = connecting()
    for _ in range(SETTINGS.max_bad_frames + 3):
        connection.receive("{not json", now=1)
    assert {r["code"] for r in replies(connection)} == {"bad_request"}
    assert code_of(connection) is None


def test_a_first_frame_over_16_kib_closes_with_1009_before_it_is_parsed() -> None:
    connection = connecting()
    connection.receive("{" * (MAX_AUTH_FRAME + 1), now=1)
    assert replies(connection) == [] and code_of(connection) == 1009


def test_no_auth_frame_within_the_auth_timeout_closes_with_4408() -> None:
    connection = connecting(now=100)
    assert connection.next_tick() == 105
    connection.tick(104.9, wall=EXP - 100)
    assert code_of(connection) is None
    connection.tick(105, wall=EXP - 100)
    assert code_of(connection) == 4408


def test_a_token_refused_at_the_handshake_is_answered_and_closed_with_4401() -> None:
    connection = connecting()
    connection.receive('{"type":"auth","token":"t"}', now=1)
    connection.refuse("invalid_token", "bad signature")
    connection.end("bad_token")
    assert [r["code"] for r in replies(connection)] == ["invalid_token"]
    assert code_of(connection) == 4401


# -- malformed frames ---------------------------------------------------------------------
def test_a_bad_frame_is_answered_bad_request_echoing_topic_and_ref() -> None:
    connection = opened()
    connection.receive(json.dumps({"type": "subscribe", "topic": "nope:1", "ref": 7}), now=1)
    error = replies(connection)[0]
    assert (error["code"], error["topic"], error["ref"]) == ("bad_request", "nope:1", 7)
    assert code_of(connection) is None


def test_a_third_bad_frame_in_a_row_closes_with_4500() -> None:
    connection = opened()  # max_bad_frames = 2
    connection.receive("{bad", now=1)
    connection.receive("[]", now=1)
    assert code_of(connection) is None and len(replies(connection)) == 2
    connection.receive('{"type":"dance"}', now=1)
    assert code_of(connection) == 4500
    assert connection.queue.closed and connection.queue.reason == "protocol_error"


def test_a_good_frame_between_bad_ones_resets_the_count() -> None:
    connection = opened()
    for text in ("{bad", "{bad", '{"type":"ping"}', "{bad", "{bad"):
        connection.receive(text, now=1)
    assert code_of(connection) is None
    assert [r["type"] for r in replies(connection)] == ["error", "error", "pong", "error", "error"]


# -- topics -------------------------------------------------------------------------------
def test_a_subscribe_asks_for_the_topic_to_be_opened() -> None:
    connection = opened()
    requests = connection.receive(subscribe("credits:ann", ref="r"), now=1)
    assert requests == [OpenTopic(Subscribe(type="subscribe", topic="credits:ann", ref="r"))]
    assert connection.admit(requests[0].frame) == (None, True)  # type: ignore[union-attr]


def test_a_subscription_past_the_cap_is_refused_and_the_socket_stays_open() -> None:
    connection = opened()  # max_subscriptions = 2
    for n in range(2):
        connection.opened(f"credits:{n}", f"sub-{n}")
    frame = Subscribe(type="subscribe", topic="credits:ann", ref="r9")
    assert connection.admit(frame) == (None, False)
    error = replies(connection)[0]
    assert (error["code"], error["topic"], error["ref"]) == (
        "too_many_subscriptions",
        "credits:ann",
        "r9",
    )
    assert code_of(connection) is None


def test_subscribing_again_to_a_topic_replaces_it_even_at_the_cap() -> None:
    connection = opened()
    connection.opened("credits:0", "old")
    connection.opened("credits:1", "other")
    again = Subscribe(type="subscribe", topic="credits:0")
    assert connection.admit(again) == ("old", True)  # the adapter closes "old"
    connection.opened("credits:0", "new")
    assert connection.subscriptions == {"credits:0": "new", "credits:1": "other"}


def test_an_unsubscribe_closes_the_topic_and_answers_unsubscribed() -> None:
    connection = opened()
    connection.opened("credits:ann", "sub")
    requests = connection.receive('{"type":"unsubscribe","topic":"credits:ann","ref":1}', now=1)
    assert requests == [CloseTopic("sub")] and connection.subscriptions == {}
    assert replies(connection) == [{"type": "unsubscribed", "topic": "credits:ann", "ref": 1}]


def test_when_the_connection_ends_every_topic_is_handed_back_to_close() -> None:
    connection = opened()
    connection.opened("credits:a", 1)
    connection.opened("credits:b", 2)
    assert sorted(connection.drop_all()) == [1, 2] and connection.subscriptions == {}


# -- the outgoing queue -------------------------------------------------------------------
def test_live_frames_past_the_queue_bound_close_a_slow_consumer_with_4001() -> None:
    connection = opened()  # queue_bytes = 1000
    assert connection.queue.push("a" * 600, 600)
    assert not connection.queue.push("b" * 600, 600)
    assert code_of(connection) == 4001 and not connection.queue.frames


def test_a_frame_that_has_left_frees_its_room() -> None:
    queue = FrameQueue(1000)
    queue.push("a" * 600, 600)
    queue.sent()
    assert queue.push("b" * 600, 600) and (queue.size, queue.pushed) == (600, 600)


# -- the clock ------------------------------------------------------------------------------
def test_the_connection_pings_every_interval_while_the_client_talks() -> None:
    connection = opened()  # ping every 10 s, idle after 30 s
    assert connection.next_tick() == 10
    connection.tick(10, wall=EXP - 100)
    assert [f for f, _, _ in connection.queue.frames] == [PING]
    connection.receive('{"type":"pong"}', now=25)
    connection.tick(connection.next_tick(), wall=EXP - 90)
    connection.tick(40, wall=EXP - 80)
    assert code_of(connection) is None and len(connection.queue.frames) == 3


def test_a_silent_client_is_closed_with_4002_after_the_idle_timeout() -> None:
    connection = opened()
    connection.receive('{"type":"ping"}', now=5)
    connection.tick(35, wall=EXP - 100)
    assert code_of(connection) is None
    connection.tick(35.5, wall=EXP - 100)
    assert code_of(connection) == 4002


def test_a_client_that_does_not_read_is_a_slow_consumer_4001_not_an_idle_one() -> None:
    connection = opened()
    connection.queue.append("snapshot" * 200, 1600)  # a pulled frame filled the queue
    assert connection.queue.full
    connection.tick(31, wall=EXP - 100)
    assert code_of(connection) == 4001


def test_the_session_ends_with_4401_when_its_token_expires() -> None:
    connection = opened(expires_at=EXP)
    assert connection.expires_in(EXP - 3) == 3
    connection.tick(1, wall=EXP - 0.001)
    assert code_of(connection) is None
    connection.tick(1, wall=EXP)  # PyJWT's rule: expired once exp <= now
    close = connection.close_to_make()
    assert close is not None and close.code == 4401 and "expired" in close.reason
    assert connection.expires_in(EXP) is None


# -- a later auth frame -----------------------------------------------------------------------
def test_a_fresh_token_of_the_same_user_extends_the_session() -> None:
    connection = opened(expires_at=EXP)
    assert connection.receive('{"type":"auth","token":"t2"}', now=1) == [Reauthenticate("t2")]
    assert connection.renewed("ann", EXP + 600)
    assert replies(connection) == [
        {"type": "authenticated", "user_id": "ann", "expires_at": int(EXP + 600)}
    ]
    connection.tick(1, wall=EXP + 1)
    assert code_of(connection) is None and connection.expires_in(EXP) == 600


def test_another_users_token_is_refused_with_user_mismatch_and_changes_nothing() -> None:
    connection = opened(expires_at=EXP)
    assert not connection.renewed("bob", None)
    error = replies(connection)[0]
    assert error["code"] == "user_mismatch" and "user ann" in error["message"]
    assert connection.expires_at == EXP and code_of(connection) is None


def test_a_close_decided_outside_is_reported_with_its_code() -> None:
    connection = opened()
    connection.queue.kill("token_revoked")  # the revocation watcher
    assert code_of(connection) == 4401
    assert connection.receive('{"type":"ping"}', now=1) == [] and replies(connection) == []


def writes_into(written: list[str]) -> Callable[[str, bytes | None], bool]:
    """A socket that takes every frame at once."""

    def write_now(frame: str, data: bytes | None) -> bool:
        written.append(frame)
        return True

    return write_now


def test_a_live_frame_goes_straight_to_a_socket_that_takes_it_and_is_never_queued() -> None:
    queue, written = FrameQueue(1000), list[str]()
    queue.write_now = writes_into(written)
    assert queue.push("a", 1) and written == ["a"] and not queue.frames


def test_a_live_frame_waits_in_the_queue_behind_others_or_when_the_socket_is_busy() -> None:
    queue, written = FrameQueue(1000), list[str]()
    queue.write_now = lambda frame, data: False  # the socket cannot take it now
    queue.push("busy", 4)
    queue.write_now = writes_into(written)
    queue.push("next", 4)  # behind "busy": order is kept
    assert written == [] and [f for f, _, _ in queue.frames] == ["busy", "next"]
    assert (queue.size, queue.pushed) == (8, 8)


def test_frames_that_come_together_leave_in_one_write_when_nothing_waits_before_them() -> None:
    queue, writes = FrameQueue(1000), list[list[str]]()

    def write_all(frames: list[tuple[str, int, bytes | None]]) -> bool:
        writes.append([frame for frame, _, _ in frames])
        return True

    queue.write_all = write_all
    queue.push_all([("a", 1, b"a"), ("b", 1, b"b")])
    assert writes == [["a", "b"]] and not queue.frames
    queue.append("reply", 5)  # something is queued: the next ones wait behind it
    queue.push_all([("c", 1, b"c")])
    assert writes == [["a", "b"]] and [f for f, _, _ in queue.frames] == ["reply", "c"]
