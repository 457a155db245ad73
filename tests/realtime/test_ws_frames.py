"""The sans-I/O protocol module: parsing client frames, encoding server frames."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from realtime.protocol import (
    CLOSE_CODES,
    SERVER_FRAMES,
    Auth,
    BadFrameError,
    Subscribe,
    Subscribed,
    encode_change,
    parse_client_frame,
    split_topic,
)


def test_client_frames_parse_into_their_models_by_type() -> None:
    assert parse_client_frame('{"type":"auth","token":"t"}') == Auth(type="auth", token="t")
    frame = parse_client_frame('{"type":"subscribe","topic":"tasks:abc","since":4,"ref":"x"}')
    assert frame == Subscribe(type="subscribe", topic="tasks:abc", since=4, ref="x")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[]",
        '{"type":"dance"}',
        '{"type":"subscribe"}',
        '{"type":"subscribe","topic":"x"}',
        '{"type":"subscribe","topic":"project:a","since":"soon"}',
        '{"type":"auth","token":""}',
        '{"type":"subscribe","topic":"project:a b"}',
    ],
)
def test_frames_that_are_not_in_the_protocol_are_refused_with_a_reason(text: str) -> None:
    with pytest.raises(BadFrameError) as refused:
        parse_client_frame(text)
    assert str(refused.value)


def test_a_change_frame_is_encoded_once_as_valid_json_of_the_documented_shape() -> None:
    text = encode_change('project:"q"', 42, "generation.upserted", '{"id": "g", "n": [1, null]}')
    frame = SERVER_FRAMES.validate_python(json.loads(text))
    assert (frame.type, frame.topic, frame.position, frame.data) == (
        "change",
        'project:"q"',
        42,
        {"id": "g", "n": [1, None]},
    )


def test_subscribed_frames_carry_position_and_snapshot() -> None:
    text = Subscribed(
        topic="shot:s", ref=1, position=9, recovered=False, snapshot={"shot": None}
    ).encode()
    assert json.loads(text) == {
        "type": "subscribed",
        "topic": "shot:s",
        "ref": 1,
        "position": 9,
        "recovered": False,
        "snapshot": {"shot": None},
    }


def test_close_codes_below_4500_ask_the_client_to_resume() -> None:
    resumable = {name for name, code in CLOSE_CODES.items() if code.resumable}
    assert {"slow_consumer", "idle_timeout", "bad_token", "auth_timeout"} <= resumable
    assert CLOSE_CODES["slow_consumer"].code == 4001
    assert (CLOSE_CODES["bad_token"].code, CLOSE_CODES["auth_timeout"].code) == (4401, 4408)
    assert not CLOSE_CODES["protocol_error"].resumable


def test_topics_split_into_kind_and_key() -> None:
    assert split_topic("credits:user-1") == ("credits", "user-1")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
frame_like = st.fixed_dictionaries(
    {"type": st.sampled_from(["auth", "subscribe", "unsubscribe", "ping", "pong", "x"])},
    optional={
        "topic": st.text(max_size=30) | st.sampled_from(["project:a", "credits:b"]),
        "since": json_values,
        "ref": json_values,
        "token": json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(json_values, frame_like))
def test_any_json_is_either_a_frame_or_a_bad_frame_never_a_crash(value: object) -> None:
    try:
        frame = parse_client_frame(json.dumps(value))
    except BadFrameError as refused:
        assert refused.topic is None or isinstance(refused.topic, str)
        assert refused.ref is None or isinstance(refused.ref, str | int)
    else:
        assert frame.type in ("auth", "subscribe", "unsubscribe", "ping", "pong")
