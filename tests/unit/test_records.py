"""api.records without a server: the journal's JSON round trip and the state sets."""

from __future__ import annotations

import json
from typing import Any

import pytest

from api.records import SETTLED_STATES, TERMINAL_STATES, JobEvent, JobRecord, JobState


def full_record() -> JobRecord:
    return JobRecord(
        local_id="0123abcd",
        name="duck",
        source="/images/duck.png",
        params={"output_format": "glb", "resolution": 256},
        base_url="https://modelslab.com",
        flavor="enterprise",
        state=JobState.PROCESSING.value,
        image_url="https://cdn.invalid/duck.png",
        remote_id="81234",
        eta=12.5,
        future_links=["https://cdn.invalid/out/a.glb"],
        output_urls=[],
        proxy_links=["https://mirror.invalid/out/a.glb"],
        meta={"file_prefix": "a", "nested": {"x": [1, 2]}},
        file_path=None,
        message="Processing on the server",
        progress=0.4,
        created_at=1.0,
        updated_at=2.0,
        submitted_at=1.5,
        history=[["queued", 1.0], ["submitting", 1.2], ["processing", 1.6]],
        extra={"batch_row": 3},
    )


def test_round_trip_through_json_is_lossless() -> None:
    record = full_record()
    again = JobRecord.from_dict(json.loads(json.dumps(record.to_dict())))
    assert again == record
    assert again.to_dict() == record.to_dict()


def test_to_dict_is_a_deep_copy_with_the_state_as_text() -> None:
    record = full_record()
    record.state = JobState.DOWNLOADED  # an enum member set by code
    data = record.to_dict()
    assert data["state"] == "downloaded" and type(data["state"]) is str
    data["meta"]["nested"]["x"].append(3)
    data["history"].clear()
    assert record.meta["nested"]["x"] == [1, 2] and len(record.history) == 3


def test_from_dict_does_not_share_the_callers_objects() -> None:
    data = full_record().to_dict()
    record = JobRecord.from_dict(data)
    data["future_links"].append("https://evil.invalid/x")
    assert record.future_links == ["https://cdn.invalid/out/a.glb"]


def test_from_dict_ignores_unknown_keys_and_fills_defaults() -> None:
    minimal = {"local_id": "a1", "name": "n", "source": "s", "base_url": "b", "flavor": "f", "from_the_future": 1}
    record = JobRecord.from_dict(minimal)
    assert record.state == "queued" and record.params == {} and record.future_links == [] and record.error is None


def test_integer_remote_id_becomes_text() -> None:
    data = {**full_record().to_dict(), "remote_id": 81234}
    assert JobRecord.from_dict(data).remote_id == "81234"


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"local_id": None}, ValueError),
        ({"name": 3}, ValueError),
        ({"state": "exploded"}, ValueError),
        ({"params": []}, ValueError),
        ({"meta": "x"}, ValueError),
        ({"history": {}}, ValueError),
        ({"output_urls": "https://x.invalid/a.obj"}, ValueError),
    ],
)
def test_from_dict_refuses_wrong_types(change: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        JobRecord.from_dict({**full_record().to_dict(), **change})


def test_from_dict_refuses_a_non_object() -> None:
    with pytest.raises(TypeError):
        JobRecord.from_dict(["not", "a", "record"])  # type: ignore[arg-type]


def test_copy_is_independent() -> None:
    record = full_record()
    clone = record.copy()
    clone.meta["nested"]["x"].append(9)
    clone.history.append(["failed", 3.0])
    assert record.meta["nested"]["x"] == [1, 2] and len(record.history) == 3


@pytest.mark.parametrize("state", list(JobState))
def test_terminal_and_settled_sets(state: JobState) -> None:
    record = full_record()
    record.state = state.value
    terminal = state.value in {"imported", "failed", "cancelled"}
    settled = terminal or state.value in {"downloaded", "timed_out"}
    assert record.is_terminal is terminal and (state in TERMINAL_STATES) is terminal
    assert record.is_settled is settled and (state in SETTLED_STATES) is settled


def test_states_are_their_text() -> None:
    assert JobState("timed_out") is JobState.TIMED_OUT
    assert JobState.TIMED_OUT == "timed_out" and str(JobState.TIMED_OUT) == "timed_out"
    assert f"{JobState.TIMED_OUT}" == "timed_out" and f"[{JobState.FAILED:>8}]" == "[  failed]"
    assert json.dumps({"state": JobState.QUEUED}) == '{"state": "queued"}'
    assert "queued" in TERMINAL_STATES | {JobState.QUEUED}  # plain strings find members in the sets


@pytest.mark.parametrize(
    ("remote_id", "history", "submitted"),
    [
        (None, [["queued", 1.0], ["uploading", 2.0]], False),
        (None, [["queued", 1.0], ["submitting", 2.0], ["failed", 3.0]], True),  # the answer may have been lost
        ("81234", [], True),
        (None, [[]], False),  # a damaged history entry is not a submit
    ],
)
def test_was_submitted(remote_id: str | None, history: list[list[Any]], submitted: bool) -> None:
    record = full_record()
    record.remote_id, record.history = remote_id, history
    assert record.was_submitted is submitted


def test_event_carries_its_own_record() -> None:
    record = full_record()
    event = JobEvent(record.local_id, record.state, record.progress, record.message, record.copy())
    record.state = "failed"
    assert event.record.state == "processing" and event.state == "processing"
