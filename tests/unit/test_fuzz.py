"""Property-based tests: whatever the server or the caller throws at the parser and the validator,
the only exception that comes out is api.errors.ModelsLabError (with a known category and no key in it).
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from api.errors import Category, ModelsLabError, register_secret
from api.params import (
    CHUNK_SIZE_RANGE,
    FOREGROUND_RATIO_RANGE,
    OUTPUT_FORMATS,
    RESOLUTION_RANGE,
    SEED_RANGE,
    GenerationParams,
    check_http_url,
    is_url,
)

FUZZ_KEY = "fuzz-secret-key-5b1d0e77"
register_secret(FUZZ_KEY)

# Deterministic in CI (same examples every run), no example database written into the repo.
FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# --- strategies -----------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["", " ", "0", "1e9", "NaN", "true", ".85", "obj", "processing", "success", FUZZ_KEY]),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)
urlish = st.one_of(
    st.text(max_size=60),
    st.builds(
        lambda scheme, host, rest: f"{scheme}{host}{rest}",
        st.sampled_from(["http://", "https://", "ftp://", "file://", "HTTP://", "//", "", "javascript:", "data:"]),
        st.one_of(
            st.sampled_from(["127.0.0.1", "localhost:8765", "[::1]", "[", "[::1", "a:99999", "a:-1", "x.invalid", ""]),
            st.text(max_size=20),
        ),
        st.one_of(st.just(""), st.text(max_size=30), st.just("/" + "a" * 2100)),
    ),
)
PARAM_FIELDS = {
    "init_image": st.one_of(urlish, json_values),
    "foreground_ratio": st.one_of(st.floats(0.0, 1.5), json_values),
    "remove_bg": st.one_of(st.booleans(), json_values),
    "resolution": st.one_of(st.integers(0, 600), json_values),
    "chunk_size": st.one_of(st.integers(0, 13000), json_values),
    "seed": st.one_of(st.integers(-5, 2**33), json_values),
    "output_format": st.one_of(st.sampled_from([*OUTPUT_FORMATS, "OBJ", "fbx", ""]), json_values),
    "webhook": st.one_of(st.none(), urlish, json_values),
    "track_id": st.one_of(st.none(), st.text(max_size=300), json_values),
}
param_dicts = st.fixed_dictionaries({}, optional=PARAM_FIELDS)


def _only_modelslab_errors(call, *args: Any, **kwargs: Any) -> Any:
    """Run call; a ModelsLabError is fine (returned), anything else fails the test with the input shown."""
    try:
        return call(*args, **kwargs)
    except ModelsLabError as error:
        assert isinstance(error.category, Category)
        assert error.message and error.fix
        assert FUZZ_KEY not in f"{error} {error.message} {error.fix} {error.server_message or ''}"
        return error


# --- the parameter validator ----------------------------------------------------------------------


@FUZZ
@given(values=param_dicts)
@example(values={"init_image": "http://["})  # urlparse raises ValueError on an unclosed IPv6 bracket
@example(values={"init_image": 12345})
@example(values={"init_image": "http://127.0.0.1/a.png", "webhook": ["http://x"]})
@example(values={"init_image": "http://127.0.0.1/a.png", "resolution": float("nan")})
@example(values={"init_image": "http://127.0.0.1/a.png", "resolution": True})
@example(values={"init_image": "http://127.0.0.1/a.png", "output_format": {"obj": 1}})
def test_validate_raises_only_invalid_input(values: dict[str, Any]) -> None:
    params = GenerationParams(**values)
    outcome = _only_modelslab_errors(params.validate)
    if isinstance(outcome, ModelsLabError):
        assert outcome.category is Category.INVALID_INPUT
    else:
        assert outcome is params


@FUZZ
@given(values=param_dicts)
@example(values={"init_image": "http://a:99999/x.png"})  # a port no socket can have
@example(values={"init_image": "http://127.0.0.1/x.png", "foreground_ratio": 1})
def test_accepted_params_are_in_range_and_accepted_by_the_server(values: dict[str, Any]) -> None:
    """What the client lets through must never be refused by the service's validation (a wasted round trip)."""
    from server.app import RequestError, validate_submit

    params = GenerationParams(**values)
    try:
        params.validate()
    except ModelsLabError:
        return
    assert isinstance(params.resolution, int) and RESOLUTION_RANGE[0] <= params.resolution <= RESOLUTION_RANGE[1]
    assert isinstance(params.chunk_size, int) and CHUNK_SIZE_RANGE[0] <= params.chunk_size <= CHUNK_SIZE_RANGE[1]
    assert isinstance(params.seed, int) and SEED_RANGE[0] <= params.seed <= SEED_RANGE[1]
    assert not isinstance(params.foreground_ratio, bool) and math.isfinite(params.foreground_ratio)
    assert FOREGROUND_RATIO_RANGE[0] <= params.foreground_ratio <= FOREGROUND_RATIO_RANGE[1]
    assert params.output_format in OUTPUT_FORMATS and isinstance(params.remove_bg, bool)
    body = params.to_body()
    text = json.dumps({"key": FUZZ_KEY, **body}, allow_nan=False)  # the body is strict JSON
    try:
        validate_submit(json.loads(text))
    except RequestError as refused:
        pytest.fail(f"client accepted {values!r} but the service refuses it: {refused}")
    from urllib.parse import urlsplit

    for url in (params.init_image, params.webhook):
        if url:
            urlsplit(url).port  # noqa: B018 - raises ValueError for a port out of range


@FUZZ
@given(data=st.dictionaries(st.one_of(st.text(max_size=15), st.sampled_from(list(PARAM_FIELDS))), json_values))
def test_from_dict_of_any_journal_content_then_validate(data: dict[str, Any]) -> None:
    """A journal written by another version (or edited by hand) never crashes the loader."""
    params = _only_modelslab_errors(GenerationParams.from_dict, data)
    assert isinstance(params, GenerationParams)
    _only_modelslab_errors(params.validate, require_image=False)


@FUZZ
@given(values=param_dicts)
def test_round_trip_through_to_dict(values: dict[str, Any]) -> None:
    params = GenerationParams(**values)
    if isinstance(_only_modelslab_errors(params.validate), ModelsLabError):
        return
    again = GenerationParams.from_dict(json.loads(json.dumps(params.to_dict())))
    assert again == params


@FUZZ
@given(value=st.one_of(urlish, st.text(max_size=3000)))
@example(value="http://[")
@example(value="https://[::1")
@example(value="http://" + "a" * 3000)
def test_url_checks_raise_only_invalid_input(value: str) -> None:
    outcome = _only_modelslab_errors(check_http_url, value, "init_image")
    if isinstance(outcome, ModelsLabError):
        assert outcome.category is Category.INVALID_INPUT
    else:
        assert outcome == value and value.split(":", 1)[0].lower() in ("http", "https") and len(value) <= 2048
    result = _only_modelslab_errors(is_url, value)
    assert isinstance(result, bool | ModelsLabError)


# --- the response parser --------------------------------------------------------------------------

statuses = st.one_of(
    st.sampled_from(["success", "processing", "error", "failed", "SUCCESS", "", "queued", None, 1, True]),
    json_values,
)
_RESPONSE_FIELDS = {
    "id": json_values,
    "eta": st.one_of(st.floats(), json_values),
    "output": st.one_of(st.lists(st.one_of(st.text(max_size=30), json_values), max_size=3), json_values),
    "proxy_links": json_values,
    "future_links": json_values,
    "fetch_result": json_values,
    "message": json_values,
    "messege": json_values,
    "error_code": json_values,
    "retry_after": st.one_of(st.floats(), st.integers(-10, 10**12), json_values),
    "meta": json_values,
    "generationTime": json_values,
    "data": json_values,
    "image_url": json_values,
}
response_like = st.fixed_dictionaries({"status": statuses}, optional=_RESPONSE_FIELDS)
success_like = st.fixed_dictionaries({"status": st.sampled_from(["success", "processing"])}, optional=_RESPONSE_FIELDS)


def _encodings(text: str) -> st.SearchStrategy[bytes]:
    raw = text.encode("utf-8")
    return st.sampled_from(
        [
            raw,
            raw[: len(raw) // 2],
            b"\xef\xbb\xbf" + raw,
            text.encode("utf-16"),
            raw + b"\x00garbage",
            b"   \n" + raw + b"\n\n",
        ]
    )


bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda value: json.dumps(value).encode()),
    response_like.map(lambda value: json.dumps(value).encode()),
    response_like.flatmap(lambda value: _encodings(json.dumps(value))),
    st.sampled_from(
        [
            b"",
            b"null",
            b"[]",
            b'"success"',
            b"NaN",
            b'{"status": "success", "output": ["x"], "eta": NaN}',
            b'{"status": "success", "eta": Infinity}',
            b"<html><body><h1>502 Bad Gateway</h1></body></html>",
            b'{"status": "processing", "message": "Request processing", "eta": 12.5, "outpu',
            b"\xff\xfe\x00\x00",
            b'{"status": "error", "message": "bad key ' + FUZZ_KEY.encode() + b'"}',
            b'{"status": "error", "messege": {"key": "' + FUZZ_KEY.encode() + b'"}}',
            b'{"status":"error","message":"Too many requests","retry_after":1e308}',
            b'{"status":"error","message":"Too many requests","retry_after":-5}',
            b'{"status":"error","message":"Too many requests","retry_after":"soon"}',
            b"1" * 5000,
        ]
    ),
)
http_statuses = st.one_of(
    st.sampled_from([200, 201, 204, 301, 400, 401, 402, 403, 404, 408, 413, 429, 500, 502, 503, 504]),
    st.integers(min_value=-1, max_value=1000),
)
content_types = st.one_of(
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "text/html; charset=utf-8",
            "text/plain",
            "",
            "application/octet-stream",
            "APPLICATION/JSON",
            "application/problem+json",
        ]
    ),
    st.text(max_size=40),
)


@FUZZ
@given(http_status=http_statuses, body=bodies, content_type=content_types)
def test_parse_response_raises_only_modelslab_error(http_status: int, body: bytes, content_type: str) -> None:
    from api.client import parse_response

    outcome = _only_modelslab_errors(parse_response, http_status, body, content_type)
    if isinstance(outcome, ModelsLabError):
        return
    assert isinstance(outcome, dict), f"parse_response returned {type(outcome).__name__}"
    json.dumps(outcome)  # what it hands on is plain JSON data
    assert str(outcome.get("status", "")).lower() not in ("error", "failed"), "an error answer was not raised"


@FUZZ
@given(http_status=http_statuses, body=bodies, content_type=content_types)
def test_parse_response_error_texts_never_carry_the_key(http_status: int, body: bytes, content_type: str) -> None:
    from api.client import parse_response

    try:
        parse_response(http_status, body, content_type)
    except ModelsLabError as error:
        text = " ".join(
            [str(error), repr(error), error.message, error.fix, error.server_message or "", json.dumps(error.to_dict())]
        )
        assert FUZZ_KEY not in text
    except Exception:  # an escaping non-ModelsLabError is reported by the test above
        return


@FUZZ
@given(body=success_like)
def test_success_shapes_become_job_status_or_a_modelslab_error(body: dict[str, Any]) -> None:
    """Odd types in a success/processing answer (id as dict, eta as text, output as number) are absorbed."""
    from api.client import JobStatus, parse_response

    parsed = _only_modelslab_errors(parse_response, 200, json.dumps(body).encode(), "application/json")
    if isinstance(parsed, ModelsLabError):
        return
    status = _only_modelslab_errors(JobStatus.from_payload, parsed)
    if isinstance(status, ModelsLabError):
        return
    assert status.status in ("success", "processing")
    assert status.job_id is None or isinstance(status.job_id, str)
    assert isinstance(status.output, list) and all(isinstance(u, str) for u in status.output)
    assert isinstance(status.proxy_links, list) and all(isinstance(u, str) for u in status.proxy_links)
    assert isinstance(status.future_links, list) and all(isinstance(u, str) for u in status.future_links)
    assert status.eta is None or (isinstance(status.eta, float) and math.isfinite(status.eta) and status.eta >= 0)
    assert isinstance(status.meta, dict)


# --- fixed cases the fuzzing must not lose sight of -----------------------------------------------


@pytest.mark.parametrize(
    ("http_status", "body", "content_type", "category"),
    [
        (401, b'{"status": "error", "message": "Invalid API key"}', "application/json", Category.AUTH),
        (200, b'{"status": "error", "message": "Invalid API key"}', "application/json", Category.AUTH),
        (402, b'{"status": "error", "message": "Insufficient balance"}', "application/json", Category.CREDITS),
        (403, b'{"status": "error", "message": "Forbidden"}', "application/json", Category.AUTH),
        (
            429,
            b'{"status":"error","message":"Too many requests","retry_after":3}',
            "application/json",
            Category.RATE_LIMITED,
        ),
        (500, b'{"status": "error", "message": "Internal server error"}', "application/json", Category.SERVER),
        (502, b"<html><h1>502 Bad Gateway</h1></html>", "text/html", Category.SERVER),
        (503, b"<html><h1>503</h1></html>", "text/html; charset=utf-8", Category.SERVER),
        (200, b'{"status": "processing", "eta": 12.5, "outp', "application/json", Category.SERVER),
        (200, b"<html>maintenance</html>", "text/html", Category.SERVER),
        (200, b"", "application/json", Category.SERVER),
        (200, b"[1, 2]", "application/json", Category.SERVER),
        (404, b'{"status": "error", "message": "Request expired"}', "application/json", Category.EXPIRED),
    ],
)
def test_known_answers_get_their_category(http_status: int, body: bytes, content_type: str, category: Category) -> None:
    from api.client import parse_response

    with pytest.raises(ModelsLabError) as caught:
        parse_response(http_status, body, content_type)
    assert caught.value.category is category, caught.value
    assert "Traceback" not in caught.value.message and "<html" not in caught.value.message.lower()


@pytest.mark.parametrize("spelling", ["message", "messege"])
def test_status_error_with_http_200_keeps_the_server_text(spelling: str) -> None:
    from api.client import parse_response

    body = json.dumps({"status": "error", spelling: "Server is busy, please try again later"}).encode()
    with pytest.raises(ModelsLabError) as caught:
        parse_response(200, body, "application/json")
    error = caught.value
    assert "Server is busy" in f"{error.message} {error.server_message or ''}"


def test_retry_after_is_carried_and_sane() -> None:
    from api.client import parse_response

    with pytest.raises(ModelsLabError) as caught:
        parse_response(429, b'{"status":"error","message":"Too many requests","retry_after":30}', "application/json")
    assert caught.value.category is Category.RATE_LIMITED and caught.value.retry_after == 30
    for hostile in (b"1e308", b"-5", b'"soon"', b"NaN"):
        body = b'{"status":"error","message":"Too many requests","retry_after":' + hostile + b"}"
        with pytest.raises(ModelsLabError) as caught:
            parse_response(429, body, "application/json")
        retry_after = caught.value.retry_after
        # A huge value is fine (the client gives up past max_retry_after); a negative or NaN one is not.
        assert retry_after is None or (math.isfinite(retry_after) and retry_after >= 0), retry_after


@pytest.mark.parametrize("opener", [b"[", b'{"a":'])
def test_deeply_nested_json_is_a_server_error(opener: bytes) -> None:
    """json.loads raises RecursionError (not ValueError) on deep nesting: it must still become ModelsLabError."""
    from api.client import parse_response

    closer = b"]" if opener == b"[" else b"}"
    for status in (200, 500):
        with pytest.raises(ModelsLabError) as caught:
            parse_response(status, opener * 100_000 + b"1" + closer * 100_000, "application/json")
        assert caught.value.category is Category.SERVER
