"""Reading the service's answers: parse_response, JobStatus and the error classification (no network code).

Everything a server sends is untrusted: every variant of the contract (id as text/number/null, output as a
list/""/a string, `message` or `messege`, error JSON with HTTP 200, HTML error pages, malformed JSON) becomes
either a JobStatus or a categorised ModelsLabError. The request body is never part of any message.
"""

from __future__ import annotations

import email.utils
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

from .errors import Category, ModelsLabError

MAX_MESSAGE_CHARS = 300
PROCESSING_STATUSES = frozenset({"processing", "queued", "queue", "pending", "starting", "running", "in_progress"})
_AUTH_WORDS = ("api key", "apikey", "api_key", "invalid key", "unauthori", "not authorized", "unauthenticated")
_CREDIT_WORDS = ("insufficient", "balance", "credit", "top up", "top-up", "payment required")
_RATE_WORDS = ("too many", "rate limit", "rate-limit", "queue is full", "slow down")
_INPUT_WORDS = ("required", "must be", "invalid", "not supported", "unsupported", "too large", "not reachable")
_HTML_STARTS = (b"<!doctype", b"<html", b"<head", b"<body")


@dataclass
class JobStatus:
    """One parsed success/processing answer of submit or fetch (error/failed answers raise instead)."""

    status: str  # "processing" | "success"
    job_id: str | None
    eta: float | None
    output: list[str]
    proxy_links: list[str]
    future_links: list[str]
    meta: dict
    message: str | None
    generation_time: float | None
    raw: dict = field(repr=False)

    @classmethod
    def from_payload(cls, payload: dict) -> JobStatus:
        """Normalise the variants: id str/int/null, output []/""/str, eta/generationTime as numbers."""
        raw_status = str(payload.get("status", "")).strip().lower()
        if raw_status == "success":
            status = "success"
        elif raw_status in PROCESSING_STATUSES:
            status = "processing"
        else:
            raise ModelsLabError(
                Category.SERVER, f"The service answered with an unknown job status {raw_status[:40]!r}."
            )
        job_id = payload.get("id")
        meta = payload.get("meta")
        message = message_of(payload)
        return cls(
            status=status,
            job_id=None if job_id is None or str(job_id).strip() == "" else str(job_id).strip(),
            eta=_non_negative(as_float(payload.get("eta"))),
            output=url_list(payload.get("output")),
            proxy_links=url_list(payload.get("proxy_links")),
            future_links=url_list(payload.get("future_links")),
            meta=meta if isinstance(meta, dict) else {},
            message=message or None,
            generation_time=as_float(payload.get("generationTime", payload.get("generation_time"))),
            raw=payload,
        )


def as_float(value: Any) -> float | None:
    """value as a finite float (numbers and numeric text), else None; booleans are not numbers."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _non_negative(value: float | None) -> float | None:
    return None if value is None else max(0.0, value)


def url_list(value: Any) -> list[str]:
    """The non-empty strings of a list, or a one-element list for a non-empty string; [] for anything else."""
    if isinstance(value, str):
        return [value.strip()] if value.strip() else []
    if isinstance(value, list | tuple):
        return [item.strip() for item in value if isinstance(item, str) and item.strip()]
    return []


def _flatten(value: Any) -> str:
    """Server messages may be strings, lists or {field: [messages]} (validation errors)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_flatten(v)}" for k, v in value.items() if _flatten(v))
    if isinstance(value, list | tuple):
        return "; ".join(part for part in (_flatten(v) for v in value) if part)
    return str(value)


def message_of(payload: dict) -> str:
    """The server's message (`message`, the misspelt `messege`, `error`, `errors` or `detail`), shortened."""
    for name in ("message", "messege", "error", "errors", "detail"):
        text = _flatten(payload.get(name))
        if text:
            return text[:MAX_MESSAGE_CHARS]
    return ""


def retry_after_seconds(body_value: Any, header_value: str | None) -> float | None:
    """Seconds to wait from a body `retry_after` or a Retry-After header (seconds or an HTTP date), >= 0."""
    seconds = as_float(body_value)
    if seconds is None and header_value:
        seconds = as_float(header_value.strip())
        if seconds is None:
            try:
                when = email.utils.parsedate_to_datetime(header_value)
                seconds = when.timestamp() - time.time()
            except (TypeError, ValueError, IndexError):
                seconds = None
    return max(0.0, seconds) if seconds is not None else None


def category_for(http_status: int, message: str) -> Category:
    """The error category of an error answer, from its HTTP status first, then from the server's words."""
    lowered = message.lower()
    if http_status in (401, 403):
        return Category.AUTH
    if http_status == 402:
        return Category.CREDITS
    if http_status == 429:
        return Category.RATE_LIMITED
    if http_status == 404:  # before the word tests: a 404 page naming e.g. /api/wallet_balance is not "credits"
        return Category.EXPIRED
    if any(word in lowered for word in _AUTH_WORDS):
        return Category.AUTH
    if any(word in lowered for word in _CREDIT_WORDS):
        return Category.CREDITS
    if any(word in lowered for word in _RATE_WORDS):
        return Category.RATE_LIMITED
    if "expired" in lowered:
        return Category.EXPIRED
    if http_status in (400, 413, 422):
        return Category.INVALID_INPUT
    if http_status >= 500:
        return Category.SERVER
    if http_status < 400 and any(word in lowered for word in _INPUT_WORDS):
        return Category.INVALID_INPUT
    return Category.SERVER


class AnswerError(ModelsLabError):
    """A ModelsLabError from parse_response that also says whether trying again may help (`transient`)."""

    transient: bool = False


def answer_error(
    category: Category, message: str, fix: str | None = None, *, transient: bool = False, **extra: Any
) -> AnswerError:
    """An AnswerError with the given transient flag; extra are ModelsLabError's keyword fields."""
    error = AnswerError(category, message, fix, **extra)
    error.transient = transient
    return error


def plain_error(error: ModelsLabError) -> ModelsLabError:
    """A public ModelsLabError (not the internal AnswerError subclass) with the same fields."""
    return ModelsLabError(
        error.category,
        error.message,
        error.fix,
        server_message=error.server_message,
        http_status=error.http_status,
        retry_after=error.retry_after,
    )


def looks_like_html(body: bytes, content_type: str) -> bool:
    """True for an HTML page (by Content-Type or by its first bytes)."""
    return "html" in (content_type or "").lower() or body[:200].lstrip().lower().startswith(_HTML_STARTS)


def parse_response(http_status: int, body: bytes, content_type: str, *, retry_after_header: str | None = None) -> dict:
    """Decode one API answer: return the JSON object of a success/processing answer, raise ModelsLabError else.

    Handles error JSON with HTTP 200, 4xx/5xx with JSON or HTML bodies, malformed JSON, `message` or
    `messege`, and `status: failed`. The request body is never part of any message. The errors raised are
    AnswerErrors, whose `transient` says whether the same request may succeed later.
    """
    looks_html = looks_like_html(body, content_type)
    payload: Any = None
    if not looks_html:
        try:
            payload = json.loads(body) if body.strip() else None
        except (ValueError, UnicodeDecodeError, RecursionError):  # deep nesting raises RecursionError
            payload = None
    if not isinstance(payload, dict):
        raise _not_json_error(http_status, body, looks_html, retry_after_header)
    status = str(payload.get("status", "")).strip().lower()
    if http_status < 400 and status not in ("error", "failed", "fail"):
        if http_status >= 300:
            raise answer_error(Category.SERVER, f"Unexpected HTTP {http_status} from the service.")
        return payload
    raise _error_answer(http_status, payload, status, retry_after_header)


def _not_json_error(http_status: int, body: bytes, looks_html: bool, retry_after_header: str | None) -> AnswerError:
    if 200 <= http_status < 300:
        what = "an HTML page" if looks_html else ("an empty answer" if not body.strip() else "malformed JSON")
        return answer_error(
            Category.SERVER,
            f"The service answered with {what} instead of JSON (HTTP {http_status}).",
            transient=True,
            http_status=http_status,
        )
    what = "an HTML error page" if looks_html else "a non-JSON answer"
    category = category_for(http_status, "")
    retry_after = retry_after_seconds(None, retry_after_header) if category is Category.RATE_LIMITED else None
    return answer_error(
        category,
        f"The service answered HTTP {http_status} with {what} (a proxy or gateway in between?).",
        transient=http_status >= 500,
        http_status=http_status,
        retry_after=retry_after,
    )


def _error_answer(http_status: int, payload: dict, status: str, retry_after_header: str | None) -> AnswerError:
    message = message_of(payload)
    if status in ("failed", "fail") and http_status < 400:
        return answer_error(
            Category.SERVER,
            f"The job failed on the server: {message or 'no reason given'}",
            "Try another image or different settings (e.g. remove_bg, foreground_ratio).",
            server_message=message or None,
            http_status=http_status,
        )
    category = category_for(http_status, message)
    retry_after = None
    if category is Category.RATE_LIMITED:
        retry_after = retry_after_seconds(payload.get("retry_after"), retry_after_header)
    shown = message or "no message"
    if http_status >= 400:
        text = f"The service answered HTTP {http_status}: {shown}"
    else:
        text = f"The service answered with an error: {shown}"
    fix = None
    if category is Category.INVALID_INPUT:
        fix = "Correct the request as the service says and try again."
    return answer_error(
        category,
        text,
        fix,
        # An unexplained error answer (5xx, or "status: error" with HTTP 200 such as "Server is busy") may pass.
        transient=category is Category.SERVER and (http_status >= 500 or http_status < 400),
        server_message=message or None,
        http_status=http_status,
        retry_after=retry_after,
    )
