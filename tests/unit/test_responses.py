"""api.responses without a server: every answer shape of the contract becomes a JobStatus or a categorised error."""

from __future__ import annotations

import json
import time
from email.utils import formatdate
from typing import Any

import pytest

from api.errors import Category, ModelsLabError
from api.responses import AnswerError, JobStatus, category_for, parse_response, retry_after_seconds

JSON = "application/json"
PROCESSING = {
    "status": "processing",
    "tip": "wait",
    "eta": 12.3,
    "message": "Request processing",
    "fetch_result": "https://example.invalid/api/v1/enterprise/3d/fetch/81234",
    "id": 81234,
    "output": [],
    "future_links": ["https://example.invalid/out/a.obj"],
    "meta": {"foreground_ratio": ".85"},
}
SUCCESS = {
    "status": "success",
    "generationTime": 10.97,
    "id": None,
    "output": ["https://example.invalid/out/924a.obj"],
    "proxy_links": ["https://mirror.invalid/out/924a.obj"],
    "meta": {"file_prefix": "924a"},
}


def body(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def status_of(payload: dict, http_status: int = 200) -> JobStatus:
    return JobStatus.from_payload(parse_response(http_status, body(payload), JSON))


def error_of(http_status: int, raw: bytes, content_type: str = JSON, **kwargs: Any) -> AnswerError:
    with pytest.raises(ModelsLabError) as info:
        parse_response(http_status, raw, content_type, **kwargs)
    assert isinstance(info.value, AnswerError)
    return info.value


# --- success and processing ----------------------------------------------------------------------------------
def test_processing_answer_is_normalised() -> None:
    status = status_of(PROCESSING)
    assert status.status == "processing"
    assert status.job_id == "81234"  # an integer id becomes text
    assert status.eta == pytest.approx(12.3)
    assert status.output == []
    assert status.future_links == ["https://example.invalid/out/a.obj"]
    assert status.meta == {"foreground_ratio": ".85"}
    assert status.message == "Request processing"


def test_success_answer_with_null_id_keeps_outputs_and_mirrors() -> None:
    status = status_of(SUCCESS)
    assert status.status == "success" and status.job_id is None
    assert status.output == ["https://example.invalid/out/924a.obj"]
    assert status.proxy_links == ["https://mirror.invalid/out/924a.obj"]
    assert status.generation_time == pytest.approx(10.97)


@pytest.mark.parametrize(
    ("raw_id", "expected"),
    [(81234, "81234"), ("abc-1", "abc-1"), ("  7 ", "7"), (None, None), ("", None), ("   ", None)],
)
def test_id_types(raw_id: Any, expected: str | None) -> None:
    assert status_of({**PROCESSING, "id": raw_id}).job_id == expected


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ([], []),
        ("", []),
        ("https://x.invalid/a.obj", ["https://x.invalid/a.obj"]),
        ([" https://x.invalid/a.obj ", "", None, 3], ["https://x.invalid/a.obj"]),
        (None, []),
        ({"url": "https://x.invalid/a.obj"}, []),
    ],
)
def test_output_shapes(output: Any, expected: list[str]) -> None:
    assert status_of({**PROCESSING, "output": output}).output == expected


@pytest.mark.parametrize(
    ("eta", "expected"), [("7.5", 7.5), (-3, 0.0), (True, None), ("soon", None), (float("nan"), None), (None, None)]
)
def test_eta_is_a_non_negative_number_or_none(eta: Any, expected: float | None) -> None:
    assert status_of({**PROCESSING, "eta": eta}).eta == expected  # NaN travels as the bare JSON word NaN


@pytest.mark.parametrize("word", ["queued", "PENDING", " running ", "in_progress", "starting"])
def test_processing_spellings(word: str) -> None:
    assert status_of({**PROCESSING, "status": word}).status == "processing"


def test_unknown_job_status_is_a_server_error() -> None:
    with pytest.raises(ModelsLabError) as info:
        status_of({**PROCESSING, "status": "teleporting"})
    assert info.value.category is Category.SERVER and "teleporting" in info.value.message


# --- errors with HTTP 200 ------------------------------------------------------------------------------------
@pytest.mark.parametrize("field", ["message", "messege"])
def test_error_with_http_200_in_either_spelling(field: str) -> None:
    error = error_of(200, body({"status": "error", field: "Invalid API key"}))
    assert error.category is Category.AUTH
    assert error.server_message == "Invalid API key" and "Invalid API key" in error.message
    assert not error.transient


def test_unexplained_error_with_http_200_may_pass() -> None:
    error = error_of(200, body({"status": "error", "message": "Server is busy"}))
    assert error.category is Category.SERVER and error.transient


def test_validation_errors_are_flattened_and_invalid_input() -> None:
    error = error_of(200, body({"status": "error", "message": {"init_image": ["The init image is required."]}}))
    assert error.category is Category.INVALID_INPUT
    assert error.server_message == "init_image: The init image is required."


@pytest.mark.parametrize("word", ["failed", "fail"])
def test_failed_job(word: str) -> None:
    error = error_of(200, body({"status": word, "message": "GPU fell over"}))
    assert error.category is Category.SERVER and "job failed" in error.message and "GPU fell over" in error.message
    assert not error.transient


def test_failed_job_without_reason() -> None:
    assert "no reason given" in error_of(200, body({"status": "failed"})).message


def test_message_is_shortened() -> None:
    error = error_of(200, body({"status": "error", "message": "x" * 5000}))
    assert error.server_message is not None and len(error.server_message) == 300


# --- 4xx / 5xx -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("http_status", "category"),
    [
        (400, Category.INVALID_INPUT),
        (401, Category.AUTH),
        (402, Category.CREDITS),
        (403, Category.AUTH),
        (404, Category.EXPIRED),
        (413, Category.INVALID_INPUT),
        (422, Category.INVALID_INPUT),
        (429, Category.RATE_LIMITED),
        (500, Category.SERVER),
        (503, Category.SERVER),
    ],
)
def test_error_json_with_http_status(http_status: int, category: Category) -> None:
    error = error_of(http_status, body({"status": "error", "message": "something"}))
    assert error.category is category and error.http_status == http_status
    assert f"HTTP {http_status}" in error.message
    assert error.transient == (http_status >= 500)


def test_status_wins_over_words_for_404() -> None:
    """A 404 page naming e.g. /api/wallet_balance is not a credits error."""
    assert error_of(404, body({"message": "No route /api/wallet_balance"})).category is Category.EXPIRED


@pytest.mark.parametrize(
    ("message", "category"),
    [
        ("Invalid API key", Category.AUTH),
        ("Insufficient balance", Category.CREDITS),
        ("Too many requests", Category.RATE_LIMITED),
        ("The output has expired", Category.EXPIRED),
        ("init_image is required", Category.INVALID_INPUT),
        ("Server is busy", Category.SERVER),
    ],
)
def test_words_decide_below_400(message: str, category: Category) -> None:
    assert category_for(200, message) is category


def test_words_do_not_turn_a_5xx_into_invalid_input() -> None:
    assert category_for(500, "field is required") is Category.SERVER
    assert category_for(503, "the job has expired") is Category.EXPIRED


def test_429_retry_after_from_body_then_header() -> None:
    assert error_of(429, body({"status": "error", "retry_after": 30})).retry_after == 30.0
    from_header = error_of(429, body({"status": "error"}), retry_after_header="12")
    assert from_header.retry_after == 12.0
    assert error_of(500, body({"status": "error"}), retry_after_header="12").retry_after is None


def test_retry_after_http_date_and_garbage() -> None:
    soon = formatdate(time.time() + 60, usegmt=True)
    seconds = retry_after_seconds(None, soon)
    assert seconds is not None and 50 < seconds <= 61
    assert retry_after_seconds(None, formatdate(time.time() - 60, usegmt=True)) == 0.0
    assert retry_after_seconds(None, "whenever") is None
    assert retry_after_seconds("-5", None) == 0.0


# --- not JSON ------------------------------------------------------------------------------------------------
HTML = b"<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>"


@pytest.mark.parametrize(("http_status", "category"), [(502, Category.SERVER), (403, Category.AUTH)])
def test_html_error_page(http_status: int, category: Category) -> None:
    error = error_of(http_status, HTML, "text/html; charset=utf-8")
    assert error.category is category and "HTML error page" in error.message
    assert error.transient == (http_status >= 500)


def test_html_recognised_by_its_bytes_whatever_the_content_type() -> None:
    error = error_of(200, b"  \n<html><body>login</body></html>", JSON)
    assert error.category is Category.SERVER and "an HTML page" in error.message and error.transient


def test_html_429_keeps_the_retry_after_header() -> None:
    error = error_of(429, HTML, "text/html", retry_after_header="7")
    assert error.category is Category.RATE_LIMITED and error.retry_after == 7.0


@pytest.mark.parametrize(
    ("raw", "what"),
    [(b'{"status": "success", "output": [', "malformed JSON"), (b"", "an empty answer"), (b"[1, 2]", "malformed JSON")],
)
def test_malformed_json_with_200_is_transient(raw: bytes, what: str) -> None:
    error = error_of(200, raw)
    assert error.category is Category.SERVER and what in error.message and error.transient


def test_deeply_nested_json_is_not_a_crash() -> None:
    error = error_of(200, b"[" * 100_000 + b"]" * 100_000)
    assert error.category is Category.SERVER


def test_non_json_error_answer() -> None:
    error = error_of(401, b"Unauthorized", "text/plain")
    assert error.category is Category.AUTH and "non-JSON" in error.message


def test_redirect_with_json_is_unexpected() -> None:
    assert "Unexpected HTTP 302" in error_of(302, body(SUCCESS)).message


def test_the_request_body_never_appears() -> None:
    """parse_response only sees the answer; the key in a body echoed back is redacted by ModelsLabError."""
    secret = "sk-echoed-secret-123456"
    error = error_of(400, body({"status": "error", "message": f'bad request {{"key": "{secret}"}}'}))
    assert secret not in str(error) and secret not in (error.server_message or "")
