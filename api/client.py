"""HTTP client for ModelsLab's Image-to-3D API: submit, fetch, upload, download, account calls.

Pure Python (requests), no bpy. Every failure becomes a categorised ModelsLabError; the API key only
ever travels in JSON request bodies and never appears in an error, a log line or a written file.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import errno
import json
import logging
import math
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import requests
import urllib3.exceptions

from . import __version__
from .errors import Category, ModelsLabError, invalid_input, register_secret
from .images import check_image_file
from .params import GenerationParams

log = logging.getLogger(__name__)
USER_AGENT = f"modelslab-blender/{__version__}"
FLAVOR_PATHS = {"enterprise": "/api/v1/enterprise/3d", "standard": "/api/v6/3d"}
UPLOAD_PATH = "/api/v6/base64_to_url"
WALLET_PATH = "/api/wallet_balance"
SYSTEM_PATH = "/api/v1/enterprise/3d/system_details"
MAX_JSON_BYTES = 8 << 20  # an API answer bigger than this is not one we understand
DOWNLOAD_CHUNK = 1 << 20
MAX_MESSAGE_CHARS = 300
MESH_FORMATS = ("obj", "glb", "ply", "stl")
_JOB_ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}
_PROCESSING_STATUSES = {"processing", "queued", "queue", "pending", "starting", "running", "in_progress"}
_AUTH_WORDS = ("api key", "apikey", "api_key", "invalid key", "unauthori", "not authorized", "unauthenticated")
_CREDIT_WORDS = ("insufficient", "balance", "credit", "top up", "top-up", "payment required")
_RATE_WORDS = ("too many", "rate limit", "rate-limit", "queue is full", "slow down")
_INPUT_WORDS = ("required", "must be", "invalid", "not supported", "unsupported", "too large", "not reachable")
_TLS_FIX = (
    "TLS certificate verification failed. Behind a corporate proxy or TLS inspection, set the CA bundle "
    "path (a PEM file with your company's root certificate) in the add-on preferences; verification is "
    "never turned off."
)
_MAYBE_ACCEPTED_FIX = (
    "The job may have been accepted (and charged) by the server; it was not sent again to avoid paying "
    "twice. Check your ModelsLab dashboard or wait for the webhook before submitting again."
)


@dataclass
class ClientConfig:
    """Where and how to talk to the service. The env var MODELSLAB_BASE_URL is read by callers, not here."""

    base_url: str = "https://modelslab.com"
    flavor: str = "enterprise"  # or "standard" (/api/v6/3d/...)
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    ca_bundle: str | None = None  # path to a PEM bundle; verification is never disabled
    proxy: str | None = None  # e.g. http://proxy:3128, used for http and https
    max_download_bytes: int = 1 << 30
    max_retries: int = 4  # for idempotent calls (fetch, download, upload, wallet, system)
    backoff_base: float = 0.5  # seconds, doubles per attempt, capped by backoff_max
    backoff_max: float = 8.0
    max_retry_after: float = 120.0  # a 429's retry_after is honoured up to this; longer -> rate_limited error


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
        elif raw_status in _PROCESSING_STATUSES:
            status = "processing"
        else:
            raise ModelsLabError(
                Category.SERVER, f"The service answered with an unknown job status {raw_status[:40]!r}."
            )
        job_id = payload.get("id")
        meta = payload.get("meta")
        message = _message_of(payload)
        return cls(
            status=status,
            job_id=None if job_id is None or str(job_id).strip() == "" else str(job_id).strip(),
            eta=_non_negative(_as_float(payload.get("eta"))),
            output=_url_list(payload.get("output")),
            proxy_links=_url_list(payload.get("proxy_links")),
            future_links=_url_list(payload.get("future_links")),
            meta=meta if isinstance(meta, dict) else {},
            message=message or None,
            generation_time=_as_float(payload.get("generationTime", payload.get("generation_time"))),
            raw=payload,
        )


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _non_negative(value: float | None) -> float | None:
    return None if value is None else max(0.0, value)


def _url_list(value: Any) -> list[str]:
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


def _message_of(payload: dict) -> str:
    for name in ("message", "messege", "error", "errors", "detail"):
        text = _flatten(payload.get(name))
        if text:
            return text[:MAX_MESSAGE_CHARS]
    return ""


def _retry_after_seconds(body_value: Any, header_value: str | None) -> float | None:
    seconds = _as_float(body_value)
    if seconds is None and header_value:
        seconds = _as_float(header_value.strip())
        if seconds is None:
            try:
                when = email.utils.parsedate_to_datetime(header_value)
                seconds = when.timestamp() - time.time()
            except (TypeError, ValueError, IndexError):
                seconds = None
    return max(0.0, seconds) if seconds is not None else None


def _category_for(http_status: int, message: str) -> Category:
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
    if http_status == 404 or "expired" in lowered:
        return Category.EXPIRED
    if http_status in (400, 413, 422):
        return Category.INVALID_INPUT
    if http_status >= 500:
        return Category.SERVER
    if http_status < 400 and any(word in lowered for word in _INPUT_WORDS):
        return Category.INVALID_INPUT
    return Category.SERVER


class _Answer(ModelsLabError):
    """A ModelsLabError from parse_response that also says whether trying again may help."""

    transient: bool = False


def _answer_error(
    category: Category, message: str, fix: str | None = None, *, transient: bool = False, **extra: Any
) -> _Answer:
    error = _Answer(category, message, fix, **extra)
    error.transient = transient
    return error


def parse_response(http_status: int, body: bytes, content_type: str, *, retry_after_header: str | None = None) -> dict:
    """Decode one API answer: return the JSON object of a success/processing answer, raise ModelsLabError else.

    Handles error JSON with HTTP 200, 4xx/5xx with JSON or HTML bodies, malformed JSON, `message` or
    `messege`, and `status: failed`. The request body is never part of any message.
    """
    content_type = (content_type or "").lower()
    text_start = body[:200].lstrip().lower()
    looks_html = "html" in content_type or text_start.startswith((b"<!doctype", b"<html", b"<head", b"<body"))
    payload: Any = None
    if not looks_html:
        try:
            payload = json.loads(body) if body.strip() else None
        except (ValueError, UnicodeDecodeError, RecursionError):  # deep nesting raises RecursionError
            payload = None
    if not isinstance(payload, dict):
        if 200 <= http_status < 300:
            what = "an HTML page" if looks_html else ("an empty answer" if not body.strip() else "malformed JSON")
            raise _answer_error(
                Category.SERVER,
                f"The service answered with {what} instead of JSON (HTTP {http_status}).",
                transient=True,
                http_status=http_status,
            )
        what = "an HTML error page" if looks_html else "a non-JSON answer"
        category = _category_for(http_status, "")
        retry_after = _retry_after_seconds(None, retry_after_header) if category is Category.RATE_LIMITED else None
        raise _answer_error(
            category,
            f"The service answered HTTP {http_status} with {what} (a proxy or gateway in between?).",
            transient=http_status >= 500,
            http_status=http_status,
            retry_after=retry_after,
        )
    status = str(payload.get("status", "")).strip().lower()
    if http_status < 400 and status not in ("error", "failed", "fail"):
        if http_status >= 300:
            raise _answer_error(Category.SERVER, f"Unexpected HTTP {http_status} from the service.")
        return payload
    message = _message_of(payload)
    if status in ("failed", "fail") and http_status < 400:
        raise _answer_error(
            Category.SERVER,
            f"The job failed on the server: {message or 'no reason given'}",
            "Try another image or different settings (e.g. remove_bg, foreground_ratio).",
            server_message=message or None,
            http_status=http_status,
        )
    category = _category_for(http_status, message)
    retry_after = None
    if category is Category.RATE_LIMITED:
        retry_after = _retry_after_seconds(payload.get("retry_after"), retry_after_header)
    shown = message or "no message"
    if http_status >= 400:
        text = f"The service answered HTTP {http_status}: {shown}"
    else:
        text = f"The service answered with an error: {shown}"
    fix = None
    if category is Category.INVALID_INPUT:
        fix = "Correct the request as the service says and try again."
    raise _answer_error(
        category,
        text,
        fix,
        # An unexplained error answer (5xx, or "status: error" with HTTP 200 such as "Server is busy") may pass.
        transient=category is Category.SERVER and (http_status >= 500 or http_status < 400),
        server_message=message or None,
        http_status=http_status,
        retry_after=retry_after,
    )


# --- transport errors -------------------------------------------------------------------------------------------
def _split(url: str) -> tuple[str, str, str]:
    """(scheme, netloc without credentials, hostname); never raises on odd URLs (e.g. 'http://[')."""
    try:
        parts = urlsplit(url)
        hostname = parts.hostname or ""
    except ValueError:
        return "", "", ""
    return parts.scheme.lower(), parts.netloc.rsplit("@", 1)[-1], hostname.lower()


def _host_of(url: str) -> str:
    return _split(url)[1] or url[:80]


def _reason_chain(exc: BaseException) -> list[BaseException]:
    """The exception, the urllib3 error inside requests' wrapper, its `reason`, and their causes."""
    seen: list[BaseException] = []
    todo: list[Any] = [exc]
    while todo:
        item = todo.pop(0)
        if not isinstance(item, BaseException) or any(item is s for s in seen):
            continue
        seen.append(item)
        todo.extend(arg for arg in item.args if isinstance(arg, BaseException))
        todo.append(getattr(item, "reason", None))
        todo.append(item.__cause__)
    return seen


# urllib3 2 has NameResolutionError; 1.26 (Debian's, under Blender 3.4) reports DNS failures as a plain
# socket.gaierror in the chain, which the message test below also catches.
_NAME_RESOLUTION_ERRORS: tuple[type[BaseException], ...] = tuple(
    cls for cls in (getattr(urllib3.exceptions, "NameResolutionError", None), socket.gaierror) if cls is not None
)


def _never_sent(exc: BaseException) -> bool:
    """True when the request surely did not reach the server: the connection itself was never made."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.SSLError):
        return True  # handshake failed before any byte of the request
    chain = _reason_chain(exc)
    return any(
        isinstance(item, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError)
        for item in chain
    )


def _network_error(exc: BaseException, url: str, config: ClientConfig, *, maybe_accepted: bool) -> ModelsLabError:
    """Turn a requests/urllib3 exception into ModelsLabError(network) with a message for people."""
    host = _host_of(url)
    chain = _reason_chain(exc)
    fix: str | None = _MAYBE_ACCEPTED_FIX if maybe_accepted else None
    if isinstance(exc, requests.exceptions.SSLError) or any(
        isinstance(item, urllib3.exceptions.SSLError) for item in chain
    ):
        detail = "certificate not trusted" if "CERTIFICATE_VERIFY_FAILED" in str(exc) else "TLS handshake failed"
        return ModelsLabError(Category.NETWORK, f"Secure connection to {host} failed ({detail}).", _TLS_FIX)
    if isinstance(exc, requests.exceptions.ProxyError):
        return ModelsLabError(
            Category.NETWORK,
            f"Could not go through the proxy to reach {host}.",
            "Check the proxy setting in the add-on preferences (or HTTPS_PROXY).",
        )
    if any(isinstance(item, _NAME_RESOLUTION_ERRORS) for item in chain) or any(
        "Name or service not known" in str(item) or "getaddrinfo failed" in str(item) for item in chain
    ):
        return ModelsLabError(
            Category.NETWORK,
            f"Could not resolve the host name {_split(url)[2] or host!r} (DNS).",
            "Check the base URL and your internet connection.",
        )
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return ModelsLabError(
            Category.NETWORK, f"Connecting to {host} timed out after {config.connect_timeout:g} s.", fix
        )
    if _never_sent(exc):
        refused = any(isinstance(item, ConnectionRefusedError) for item in chain) or "refused" in str(exc).lower()
        why = "connection refused" if refused else "could not connect"
        return ModelsLabError(Category.NETWORK, f"Could not connect to {host} ({why}).", fix)
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return ModelsLabError(
            Category.NETWORK, f"No answer from {host} within {config.read_timeout:g} s (read timeout).", fix
        )
    return ModelsLabError(
        Category.NETWORK, f"The connection to {host} broke before the answer was complete ({type(exc).__name__}).", fix
    )


def _is_loopback(url: str) -> bool:
    host = _split(url)[2]
    return host in _LOOPBACK_HOSTS or host.startswith("127.")


def _cancelled(message: str = "Cancelled.") -> ModelsLabError:
    return ModelsLabError(Category.CANCELLED, message)


class _DownloadFailure(Exception):
    """One download attempt failed; `retry` says whether the same URL is worth another go."""

    def __init__(
        self,
        error: ModelsLabError,
        retry: bool,
        retry_after: float | None = None,
        *,
        final: bool = False,
        retry_limit: int | None = None,
    ) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry = retry
        self.retry_after = retry_after
        self.final = final  # no other URL will do better (cancelled, size cap, local disk trouble)
        self.retry_limit = retry_limit  # fewer retries than max_retries for this kind of failure


class _FormatCheck:
    """Verifies a mesh format while it streams, looking at each chunk at most once and stopping early."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self.head = b""
        self.tail = b""
        self.found_v = False
        self.found_f = False

    def feed(self, chunk: bytes) -> None:
        if len(self.head) < 512:
            self.head += chunk[: 512 - len(self.head)]
        if self.fmt == "obj" and not (self.found_v and self.found_f):
            window = self.tail + chunk
            self.found_v = self.found_v or b"\nv " in window
            self.found_f = self.found_f or b"\nf " in window
        self.tail = chunk[-512:] if len(chunk) >= 512 else (self.tail + chunk)[-512:]

    def problem(self, size: int) -> str | None:
        """None if the bytes look like the expected format, else a short reason."""
        head = self.head
        if size == 0:
            return "the file is empty"
        if head.lstrip()[:15].lower().startswith((b"<!doctype", b"<html", b"<head", b"<?xml")):
            return "an HTML page came back instead of the mesh"
        if self.fmt == "obj":
            if head.startswith(b"v ") or head.startswith(b"\xef\xbb\xbfv "):
                self.found_v = True
            if not self.found_v or not self.found_f:
                return "not an OBJ mesh (no vertex 'v' or face 'f' lines)"
        elif self.fmt == "glb":
            if not head.startswith(b"glTF"):
                return "not a GLB file (no glTF header)"
            declared = int.from_bytes(head[8:12], "little") if len(head) >= 12 else -1
            if declared != size:
                return f"GLB size mismatch (header says {declared} bytes, got {size})"
        elif self.fmt == "ply":
            if not (head.startswith(b"ply\n") or head.startswith(b"ply\r\n")):
                return "not a PLY file (no 'ply' header)"
        elif self.fmt == "stl":
            count = int.from_bytes(head[80:84], "little") if len(head) >= 84 else -1
            if size != 84 + 50 * count and not (
                head.lstrip().lower().startswith(b"solid") and b"endsolid" in self.tail.lower()
            ):
                return "not an STL file (neither binary nor ASCII STL)"
        return None


# --- the client -------------------------------------------------------------------------------------------------
class ModelsLabClient:
    """Thread-safe client: one requests.Session per thread, the key only in JSON bodies."""

    def __init__(self, api_key: str, config: ClientConfig | None = None) -> None:
        self._api_key = (api_key or "").strip()
        register_secret(self._api_key)
        self.config = config or ClientConfig()
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()
        self._generation = 0

    def __repr__(self) -> str:
        return f"ModelsLabClient(base_url={self.config.base_url!r}, flavor={self.config.flavor!r})"

    # --- plumbing -----------------------------------------------------------------------------------------------
    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None or getattr(self._local, "generation", -1) != self._generation:
            session = requests.Session()
            session.headers["User-Agent"] = USER_AGENT
            # Proxies and the CA bundle are resolved per request by us (see _transport): with trust_env on,
            # requests would let env HTTPS_PROXY/REQUESTS_CA_BUNDLE override the explicit settings and read ~/.netrc.
            session.trust_env = False
            with self._lock:
                self._sessions.append(session)
            self._local.session = session
            self._local.generation = self._generation
        return session

    def close(self) -> None:
        """Close every thread's session (a later call opens a new one)."""
        with self._lock:
            sessions, self._sessions = self._sessions, []
            self._generation += 1
        for session in sessions:
            session.close()

    def _verify(self) -> str | bool:
        bundle = (self.config.ca_bundle or "").strip()
        if bundle:
            path = os.path.expanduser(bundle)
            if not os.path.isfile(path):
                raise ModelsLabError(
                    Category.NETWORK,
                    f"The CA bundle file {bundle!r} does not exist.",
                    "Fix or clear the CA bundle path in the add-on preferences.",
                )
            return path
        for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            value = os.environ.get(name, "").strip()
            if value and os.path.isfile(value):
                return value
        return True  # never False: verification is always on

    def _proxies(self, url: str) -> dict[str, str]:
        if _is_loopback(url):
            return {}  # the local server is never reached through a proxy
        proxy = (self.config.proxy or "").strip()
        if proxy:
            with contextlib.suppress(ValueError):
                register_secret(urlsplit(proxy).password)  # http://user:password@proxy: keep it out of messages
            return {"http": proxy, "https": proxy}
        return requests.utils.get_environ_proxies(url)  # env HTTP(S)_PROXY / NO_PROXY, as curl would

    def _transport(self, url: str) -> dict[str, Any]:
        return {
            "timeout": (self.config.connect_timeout, self.config.read_timeout),
            "verify": self._verify(),
            "proxies": self._proxies(url),
        }

    def _base(self) -> str:
        base = (self.config.base_url or "").strip().rstrip("/")
        scheme, netloc, _ = _split(base)
        if scheme not in ("http", "https") or not netloc:
            raise invalid_input(
                f"The base URL must start with https:// (or http:// for a local server), got {base[:80]!r}.",
                "Fix the base URL in the add-on preferences (default https://modelslab.com).",
            )
        return base

    def _flavor_path(self) -> str:
        flavor = (self.config.flavor or "enterprise").strip().lower()
        if flavor not in FLAVOR_PATHS:
            raise invalid_input(f"Unknown API flavour {flavor!r}: use 'enterprise' or 'standard'.")
        return FLAVOR_PATHS[flavor]

    def _require_key(self) -> None:
        if not self._api_key:
            raise ModelsLabError(
                Category.AUTH,
                "No API key is set.",
                "Enter your ModelsLab API key in the add-on preferences or set MODELSLAB_API_KEY.",
            )

    def _backoff(self, attempt: int) -> float:
        return min(self.config.backoff_max, self.config.backoff_base * (2**attempt))

    @staticmethod
    def _sleep(seconds: float, cancel: threading.Event | None) -> None:
        if seconds <= 0:
            return
        if cancel is None:
            time.sleep(seconds)
        elif cancel.wait(seconds):
            raise _cancelled()

    # Retries are a small loop, not urllib3's Retry: a 429's retry_after sits in the JSON body (urllib3 only sees
    # the header) and must be capped by max_retry_after, and submit needs "retry only if surely not sent", which
    # depends on why the connection failed. The adapters keep requests' default of no retries at all.
    def _post_json(
        self,
        path: str,
        body: dict[str, Any],
        *,
        idempotent: bool,
        cancel: threading.Event | None = None,
        missing_means_expired: bool = False,
    ) -> dict:
        try:
            return self._post_json_attempts(path, body, idempotent=idempotent, cancel=cancel)
        except ModelsLabError as error:
            # A 404 from fetch is an expired job; from any other endpoint it means the URL is wrong.
            if missing_means_expired or error.category is not Category.EXPIRED or error.http_status != 404:
                raise
            raise ModelsLabError(
                Category.SERVER,
                f"{self._base()} has no {path} endpoint (HTTP 404).",
                "Check the base URL and the API flavour (enterprise or standard) in the add-on preferences.",
                http_status=404,
            ) from None

    def _post_json_attempts(
        self, path: str, body: dict[str, Any], *, idempotent: bool, cancel: threading.Event | None = None
    ) -> dict:
        self._require_key()
        url = self._base() + path
        data = json.dumps({**body, "key": self._api_key}).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        attempt = 0
        while True:
            if cancel is not None and cancel.is_set():
                raise _cancelled()
            transport = self._transport(url)
            try:
                response = self._session().post(
                    url, data=data, headers=headers, stream=True, allow_redirects=False, **transport
                )
            except requests.exceptions.InvalidURL as exc:
                raise invalid_input(f"The base URL is not valid ({type(exc).__name__}).") from None
            except requests.exceptions.RequestException as exc:
                safe = idempotent or _never_sent(exc)
                error = _network_error(exc, url, self.config, maybe_accepted=not safe)
                tls = isinstance(exc, requests.exceptions.SSLError)
                if not safe or tls or attempt >= self.config.max_retries:
                    raise error from None
                log.info("retrying %s after: %s", path, error)
                self._sleep(self._backoff(attempt), cancel)
                attempt += 1
                continue
            try:
                payload = self._read_answer(response, url, idempotent=idempotent)
            except _Answer as error:
                delay = self._retry_delay(error, attempt, idempotent=idempotent)
                if delay is None:
                    raise _plain(error) from None
                log.info("retrying %s in %.2f s after: %s", path, delay, error)
                self._sleep(delay, cancel)
                attempt += 1
                continue
            except ModelsLabError as error:
                if not idempotent or attempt >= self.config.max_retries:
                    raise
                log.info("retrying %s after: %s", path, error)
                self._sleep(self._backoff(attempt), cancel)
                attempt += 1
                continue
            return payload

    def _read_answer(self, response: requests.Response, url: str, *, idempotent: bool) -> dict:
        with response:
            try:
                body = response.raw.read(MAX_JSON_BYTES + 1, decode_content=True)
            except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                raise _network_error(exc, url, self.config, maybe_accepted=not idempotent) from None
            if len(body) > MAX_JSON_BYTES:
                raise _answer_error(Category.SERVER, "The service's answer is too large to be an API answer.")
            if 300 <= response.status_code < 400:
                location = response.headers.get("Location", "")
                raise _answer_error(
                    Category.SERVER,
                    f"The service redirected (HTTP {response.status_code}) to {location[:120]!r}; the request "
                    "was not followed there to keep the API key safe.",
                    "Set the base URL to the address it redirects to (e.g. https:// instead of http://).",
                    http_status=response.status_code,
                )
            return parse_response(
                response.status_code,
                body,
                response.headers.get("Content-Type", ""),
                retry_after_header=response.headers.get("Retry-After"),
            )

    def _retry_delay(self, error: _Answer, attempt: int, *, idempotent: bool) -> float | None:
        """Seconds to wait before trying again, or None to give up with this error."""
        if attempt >= self.config.max_retries:
            return None
        if error.category is Category.RATE_LIMITED:
            # The server refused a 429'd request outright, so even a submit is safe to send again.
            wait = error.retry_after if error.retry_after is not None else self._backoff(attempt)
            return wait if wait <= self.config.max_retry_after else None
        if idempotent and error.transient:
            return self._backoff(attempt)
        return None

    # --- API calls ----------------------------------------------------------------------------------------------
    def submit(self, params: GenerationParams, *, cancel: threading.Event | None = None) -> JobStatus:
        """Start a job. Retried only when the server surely did not take it (429, connection never made)."""
        params.validate()
        path = self._flavor_path() + "/image_to_3d"
        payload = self._post_json(path, params.to_body(), idempotent=False, cancel=cancel)
        return JobStatus.from_payload(payload)

    def fetch(self, job_id: str, *, cancel: threading.Event | None = None) -> JobStatus:
        """Poll a job; the URL is built from base_url + flavour + id, never from the server's fetch_result."""
        text = str(job_id).strip() if job_id is not None else ""
        if not _JOB_ID_RE.fullmatch(text) or text.strip(".") == "":
            raise invalid_input(f"Not a valid job id: {text[:40]!r}.")
        path = f"{self._flavor_path()}/fetch/{quote(text, safe='')}"
        payload = self._post_json(path, {}, idempotent=True, cancel=cancel, missing_means_expired=True)
        return JobStatus.from_payload(payload)

    def upload_image(self, path: str | os.PathLike, *, cancel: threading.Event | None = None) -> str:
        """Upload a local image (checked first: type, size <= 5 MB) via base64_to_url; return its URL."""
        mime, _ = check_image_file(path)
        self._require_key()
        encoded = base64.b64encode(Path(os.path.expanduser(os.fspath(path))).read_bytes()).decode("ascii")
        payload = self._post_json(
            UPLOAD_PATH, {"base64_string": f"data:{mime};base64,{encoded}"}, idempotent=True, cancel=cancel
        )
        urls = _url_list(payload.get("output")) or _url_list(payload.get("image_url"))
        url = urls[0] if urls else ""
        if _split(url)[0] not in ("http", "https"):
            raise ModelsLabError(Category.SERVER, "The upload answer did not contain an image URL.")
        return url

    def wallet_balance(self) -> dict:
        """The account's balance: {"balance": float, "currency": str}."""
        payload = self._post_json(WALLET_PATH, {}, idempotent=True)
        inner = payload.get("data")
        data: dict = inner if isinstance(inner, dict) else payload
        balance = _as_float(data.get("balance", data.get("wallet_balance")))
        if balance is None:
            raise ModelsLabError(Category.SERVER, "The wallet answer did not contain a balance.")
        return {"balance": balance, "currency": str(data.get("currency") or "USD")}

    def system_details(self) -> dict:
        """Server/GPU details of an enterprise server (the `data` object, or the whole answer)."""
        payload = self._post_json(SYSTEM_PATH, {}, idempotent=True)
        data = payload.get("data")
        return dict(data) if isinstance(data, dict) else payload

    def probe(self, url: str, *, timeout: float | None = None) -> bool | None:
        """HEAD a result URL (e.g. a future_link): True if the file is there, False if not (yet) or unreachable,
        None if the server does not support HEAD. Never raises for network trouble; no key is sent."""
        scheme, netloc, _ = _split(url)
        if scheme not in ("http", "https") or not netloc:
            return False
        try:
            transport = self._transport(url)
        except ModelsLabError:
            return False
        if timeout is not None:
            transport["timeout"] = timeout
        try:
            response = self._session().head(url, allow_redirects=True, **transport)
        except requests.exceptions.RequestException:
            return False
        response.close()
        if response.status_code in (405, 501):
            return None
        return response.status_code == 200

    # --- download -----------------------------------------------------------------------------------------------
    def download(
        self,
        urls: Sequence[str],
        target: Path,
        *,
        expected_format: str = "obj",
        cancel: threading.Event | None = None,
        progress: Callable[[int, int | None], None] | None = None,
    ) -> Path:
        """Stream the first URL that works (primary, then proxy_links) to target; return target.

        Writes to `.<name>.part` beside target, size-capped and format-checked, renamed only when complete; the
        temp file is removed on any failure. Each URL gets retries for transient failures (network, truncation,
        5xx, 429; bad content once), then the next URL is tried.
        """
        if isinstance(urls, str):  # one URL given as a plain string
            urls = [urls]
        fmt = (expected_format or "").lower().lstrip(".")
        if fmt not in MESH_FORMATS:
            raise invalid_input(f"Unknown mesh format {expected_format!r}: use one of {', '.join(MESH_FORMATS)}.")
        candidates = [u.strip() for u in dict.fromkeys(u for u in urls if isinstance(u, str)) if u.strip()]
        candidates = [u for u in candidates if _split(u)[0] in ("http", "https") and _split(u)[1]]
        if not candidates:
            raise ModelsLabError(Category.SERVER, "The service gave no download link for the result.")
        target = Path(target)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _local_write_error(exc, target.parent) from None
        with _target_lock(target):
            with contextlib.suppress(OSError):
                _temp_path(target).unlink(missing_ok=True)  # left by a killed process
            return self._download_any(candidates, target, fmt, cancel, progress)

    def _download_any(
        self,
        candidates: list[str],
        target: Path,
        fmt: str,
        cancel: threading.Event | None,
        progress: Callable[[int, int | None], None] | None,
    ) -> Path:
        errors: list[ModelsLabError] = []
        for url in candidates:
            attempt = 0
            while True:
                if cancel is not None and cancel.is_set():
                    raise _cancelled("Download cancelled.")
                try:
                    self._download_once(url, target, fmt, cancel, progress)
                    return target
                except _DownloadFailure as failure:
                    if failure.final:
                        raise failure.error from None
                    limit = self.config.max_retries
                    if failure.retry_limit is not None:
                        limit = min(limit, failure.retry_limit)
                    if not failure.retry or attempt >= limit:
                        errors.append(failure.error)
                        break
                    wait = failure.retry_after if failure.retry_after is not None else self._backoff(attempt)
                    if wait > self.config.max_retry_after:
                        errors.append(failure.error)
                        break
                    log.info("retrying download in %.2f s after: %s", wait, failure.error)
                    self._sleep(wait, cancel)
                    attempt += 1
        if all(error.category is Category.EXPIRED for error in errors):
            raise ModelsLabError(
                Category.EXPIRED, "The result file is gone from the server (HTTP 404); outputs expire after 24 h."
            )
        for category in (Category.BAD_MESH, Category.NETWORK, Category.RATE_LIMITED, Category.SERVER):
            for error in errors:
                if error.category is category:
                    raise error
        raise errors[-1]

    def _download_once(
        self,
        url: str,
        target: Path,
        fmt: str,
        cancel: threading.Event | None,
        progress: Callable[[int, int | None], None] | None,
    ) -> None:
        cap = self.config.max_download_bytes
        host = _host_of(url)
        try:
            response = self._session().get(url, stream=True, **self._transport(url))
        except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema) as exc:
            error = ModelsLabError(Category.SERVER, f"The download link is not a valid URL ({type(exc).__name__}).")
            raise _DownloadFailure(error, retry=False) from None
        except requests.exceptions.RequestException as exc:
            tls = isinstance(exc, requests.exceptions.SSLError)
            raise _DownloadFailure(_network_error(exc, url, self.config, maybe_accepted=False), retry=not tls) from None
        with response:
            status = response.status_code
            if status != 200:
                body = response.raw.read(64 << 10, decode_content=True) if status != 404 else b""
                if status == 404:
                    error = ModelsLabError(Category.EXPIRED, f"The result file at {host} is gone (HTTP 404).")
                    raise _DownloadFailure(error, retry=False)
                try:
                    parse_response(
                        status,
                        body,
                        response.headers.get("Content-Type", ""),
                        retry_after_header=response.headers.get("Retry-After"),
                    )
                    error = ModelsLabError(Category.SERVER, f"Download from {host} answered HTTP {status}.")
                except ModelsLabError as answer:
                    error = _plain(answer) if isinstance(answer, _Answer) else answer
                    error = ModelsLabError(
                        error.category,
                        f"Download from {host} failed: {error.message}",
                        error.fix,
                        http_status=status,
                        retry_after=error.retry_after,
                    )
                retry = status == 429 or status >= 500
                raise _DownloadFailure(error, retry=retry, retry_after=error.retry_after)
            if "text/html" in response.headers.get("Content-Type", "").lower():
                raise _DownloadFailure(
                    ModelsLabError(
                        Category.BAD_MESH,
                        f"{host} sent a web page instead of the mesh (a login or bot-check page?).",
                    ),
                    retry=True,
                    retry_limit=1,
                )
            total = _as_float(response.headers.get("Content-Length"))
            expected = int(total) if total is not None and not response.headers.get("Content-Encoding") else None
            if expected is not None and expected > cap:
                raise _DownloadFailure(_too_big(expected, cap), retry=False, final=True)
            check = _FormatCheck(fmt)
            # A fixed name per target: a .part left by a killed process is overwritten and then removed by the
            # next attempt (download() holds a per-target lock, so two threads never share it).
            temp = _temp_path(target)
            try:
                out = open(temp, "wb", buffering=0)
            except OSError as exc:
                raise _DownloadFailure(_local_write_error(exc, target.parent), retry=False, final=True) from None
            done = 0
            try:
                with out:
                    write = out.write
                    # read1 returns what arrived without waiting to fill the chunk; urllib3 1.26 (Debian's, used by
                    # Blender 3.4) lacks it, and its read() has the same signature for this use.
                    read = getattr(response.raw, "read1", None) or response.raw.read
                    while True:
                        if cancel is not None and cancel.is_set():
                            raise _DownloadFailure(_cancelled("Download cancelled."), retry=False, final=True)
                        try:
                            chunk = read(DOWNLOAD_CHUNK, decode_content=True)
                        except (urllib3.exceptions.HTTPError, requests.exceptions.RequestException, OSError) as exc:
                            error = ModelsLabError(
                                Category.NETWORK,
                                f"The download from {host} broke off after {done} bytes ({type(exc).__name__}).",
                            )
                            raise _DownloadFailure(error, retry=True) from None
                        if not chunk:
                            break
                        done += len(chunk)
                        if done > cap:
                            raise _DownloadFailure(_too_big(done, cap), retry=False, final=True)
                        check.feed(chunk)
                        try:
                            written = write(chunk)
                            if written != len(chunk):  # a short write (disk full at the limit): finish or fail
                                view = memoryview(chunk)[written:]
                                while view:
                                    view = view[write(view) :]
                        except OSError as exc:
                            raise _DownloadFailure(
                                _local_write_error(exc, target.parent), retry=False, final=True
                            ) from None
                        if progress is not None:
                            progress(done, expected)
                if expected is not None and done != expected:
                    error = ModelsLabError(
                        Category.NETWORK, f"The download from {host} was cut short ({done} of {expected} bytes)."
                    )
                    raise _DownloadFailure(error, retry=True)
                problem = check.problem(done)
                if problem is not None:
                    # Once more on the same URL (an edge cache can serve garbage once), then the next URL.
                    raise _DownloadFailure(
                        ModelsLabError(Category.BAD_MESH, f"The file from {host} is not a valid mesh: {problem}."),
                        retry=True,
                        retry_limit=1,
                    )
                try:
                    if temp.stat().st_size != done:
                        raise OSError(errno.ENOSPC, "the file on disk is shorter than the bytes received")
                    os.replace(temp, target)
                except OSError as exc:
                    raise _DownloadFailure(_local_write_error(exc, target.parent), retry=False, final=True) from None
            except BaseException:
                temp.unlink(missing_ok=True)
                raise


_TARGET_LOCKS: dict[str, threading.Lock] = {}
_TARGET_LOCKS_GUARD = threading.Lock()


def _target_lock(target: Path) -> threading.Lock:
    """One lock per target path in this process (the few distinct targets make the dict's growth harmless)."""
    key = os.path.abspath(target)
    with _TARGET_LOCKS_GUARD:
        return _TARGET_LOCKS.setdefault(key, threading.Lock())


def _temp_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.part")


def _local_write_error(exc: OSError, folder: Path) -> ModelsLabError:
    reason = exc.strerror or type(exc).__name__
    return ModelsLabError(
        Category.INVALID_INPUT,
        f"Could not write the downloaded mesh into the folder {folder}: {reason}.",
        "Free some disk space or choose a writable cache folder in the add-on preferences, then resume the job "
        "(it is not generated or charged again).",
    )


def _too_big(size: int, cap: int) -> ModelsLabError:
    return ModelsLabError(
        Category.BAD_MESH,
        f"The result file is larger than the download limit ({size / (1 << 20):.1f} MB > {cap / (1 << 20):.1f} MB).",
        "Raise the download size limit if you trust the file, or generate at a lower resolution.",
    )


def _plain(error: ModelsLabError) -> ModelsLabError:
    """A public ModelsLabError (not the internal subclass) with the same fields."""
    return ModelsLabError(
        error.category,
        error.message,
        error.fix,
        server_message=error.server_message,
        http_status=error.http_status,
        retry_after=error.retry_after,
    )
