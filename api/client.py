"""HTTP client for ModelsLab's Image-to-3D API: the session, TLS and proxy settings, retries, and the endpoints.

Pure Python (requests), no bpy. Every failure becomes a categorised ModelsLabError; the API key only
ever travels in JSON request bodies and never appears in an error, a log line or a written file.
Answers are read by api.responses, result files are fetched by api.download.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import requests
import urllib3.exceptions

from . import __version__
from .download import download_mesh
from .errors import Category, ModelsLabError, invalid_input, register_secret
from .images import check_image_file
from .params import OUTPUT_FORMATS, GenerationParams
from .responses import AnswerError, JobStatus, answer_error, as_float, parse_response, plain_error, url_list
from .transport import (
    ClientConfig,
    cancelled,
    check_online_access,
    is_loopback,
    network_error,
    never_sent,
    sleep_unless_cancelled,
    split_url,
)

__all__ = [
    "ADMIN_ACTIONS",
    "MESH_FORMATS",
    "ClientConfig",
    "JobStatus",
    "ModelsLabClient",
    "check_job_id",
    "parse_response",
]

log = logging.getLogger(__name__)
USER_AGENT = f"modelslab-blender/{__version__}"
FLAVOR_PATHS = {"enterprise": "/api/v1/enterprise/3d", "standard": "/api/v6/3d"}
UPLOAD_PATH = "/api/v6/base64_to_url"
WALLET_PATH = "/api/wallet_balance"
ENTERPRISE_PATH = FLAVOR_PATHS["enterprise"]
# The enterprise server's admin endpoints (POST {base}/api/v1/enterprise/3d/<action> with {key}), in menu order.
ADMIN_ACTIONS = ("system_details", "clear_queue", "clear_cache", "restart_server", "update_server")
MAX_JSON_BYTES = 8 << 20  # an API answer bigger than this is not one we understand
MESH_FORMATS = OUTPUT_FORMATS  # the older name of the same tuple
_JOB_ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def check_job_id(text: str, fix: str | None = None) -> str:
    """Return text if it is a job id the fetch URL can carry (1-64 of A-Z a-z 0-9 _ . -), else invalid_input."""
    if not _JOB_ID_RE.fullmatch(text) or text.strip(".") == "":
        raise invalid_input(f"Not a valid job id: {text[:40]!r}.", fix)
    return text


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
        if is_loopback(url):
            return {}  # the local server is never reached through a proxy
        proxy = (self.config.proxy or "").strip()
        if proxy:
            with contextlib.suppress(ValueError):
                register_secret(urlsplit(proxy).password)  # http://user:password@proxy: keep it out of messages
            return {"http": proxy, "https": proxy}
        return requests.utils.get_environ_proxies(url)  # env HTTP(S)_PROXY / NO_PROXY, as curl would

    def _transport(self, url: str) -> dict[str, Any]:
        """Per-request settings; refuses (offline) a host that is not loopback when online access is off."""
        check_online_access(url, self.config)
        return {
            "timeout": (self.config.connect_timeout, self.config.read_timeout),
            "verify": self._verify(),
            "proxies": self._proxies(url),
            "hooks": {"response": [self._check_redirect]},
        }

    def _check_redirect(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        """Before a redirect is followed: its target must pass the same online-access rule as the first URL."""
        if response.is_redirect:
            check_online_access(urljoin(response.url, response.headers.get("Location", "")), self.config)

    def _base(self) -> str:
        base = (self.config.base_url or "").strip().rstrip("/")
        scheme, netloc, _ = split_url(base)
        if scheme not in ("http", "https") or not netloc:
            raise invalid_input(
                f"The base URL must start with https:// (or http:// for a local server), got {base[:80]!r}.",
                "Fix the base URL in the add-on preferences (default https://modelslab.com).",
            )
        return base

    def _flavor(self) -> str:
        flavor = (self.config.flavor or "enterprise").strip().lower()
        if flavor not in FLAVOR_PATHS:
            raise invalid_input(f"Unknown API flavour {flavor!r}: use 'enterprise' or 'standard'.")
        return flavor

    def _flavor_path(self) -> str:
        return FLAVOR_PATHS[self._flavor()]

    def _require_key(self) -> None:
        if not self._api_key:
            raise ModelsLabError(
                Category.AUTH,
                "No API key is set.",
                "Enter your ModelsLab API key in the add-on preferences or set MODELSLAB_API_KEY.",
            )

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
                raise cancelled()
            transport = self._transport(url)
            try:
                response = self._session().post(
                    url, data=data, headers=headers, stream=True, allow_redirects=False, **transport
                )
            except requests.exceptions.InvalidURL as exc:
                raise invalid_input(f"The base URL is not valid ({type(exc).__name__}).") from None
            except requests.exceptions.RequestException as exc:
                safe = idempotent or never_sent(exc)
                error = network_error(exc, url, self.config, maybe_accepted=not safe)
                tls = isinstance(exc, requests.exceptions.SSLError)
                if not safe or tls or attempt >= self.config.max_retries:
                    raise error from None
                log.info("retrying %s after: %s", path, error)
                sleep_unless_cancelled(self.config.backoff(attempt), cancel)
                attempt += 1
                continue
            try:
                payload = self._read_answer(response, url, idempotent=idempotent)
            except AnswerError as error:
                delay = self._retry_delay(error, attempt, idempotent=idempotent)
                if delay is None:
                    raise plain_error(error) from None
                log.info("retrying %s in %.2f s after: %s", path, delay, error)
                sleep_unless_cancelled(delay, cancel)
                attempt += 1
                continue
            except ModelsLabError as error:
                if not idempotent or attempt >= self.config.max_retries:
                    raise
                log.info("retrying %s after: %s", path, error)
                sleep_unless_cancelled(self.config.backoff(attempt), cancel)
                attempt += 1
                continue
            return payload

    def _read_answer(self, response: requests.Response, url: str, *, idempotent: bool) -> dict:
        with response:
            try:
                body = response.raw.read(MAX_JSON_BYTES + 1, decode_content=True)
            except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                raise network_error(exc, url, self.config, maybe_accepted=not idempotent) from None
            if len(body) > MAX_JSON_BYTES:
                raise answer_error(Category.SERVER, "The service's answer is too large to be an API answer.")
            if 300 <= response.status_code < 400:
                location = response.headers.get("Location", "")
                raise answer_error(
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

    def _retry_delay(self, error: AnswerError, attempt: int, *, idempotent: bool) -> float | None:
        """Seconds to wait before trying again, or None to give up with this error."""
        if attempt >= self.config.max_retries:
            return None
        if error.category is Category.RATE_LIMITED:
            # The server refused a 429'd request outright, so even a submit is safe to send again.
            wait = error.retry_after if error.retry_after is not None else self.config.backoff(attempt)
            return wait if wait <= self.config.max_retry_after else None
        if idempotent and error.transient:
            return self.config.backoff(attempt)
        return None

    # --- API calls ----------------------------------------------------------------------------------------------
    def submit(self, params: GenerationParams, *, cancel: threading.Event | None = None) -> JobStatus:
        """Start a job at the endpoint of params.kind (image_to_3d or text_to_3d) in the configured flavour.

        Validated first (nothing is sent for bad input). Retried only when the server surely did not take it
        (429, connection never made).
        """
        params.validate()
        flavor = self._flavor()
        body = params.to_body(flavor)
        path = f"{FLAVOR_PATHS[flavor]}/{params.endpoint}"
        payload = self._post_json(path, body, idempotent=False, cancel=cancel)
        return JobStatus.from_payload(payload)

    def fetch(self, job_id: str, *, cancel: threading.Event | None = None) -> JobStatus:
        """Poll a job; the URL is built from base_url + flavour + id, never from the server's fetch_result.

        Also how a job this add-on did not submit is adopted (one started by the CLI, a web app or a webhook
        pipeline): the server answers it for the key that submitted it, like any of ours.
        """
        text = check_job_id(str(job_id).strip() if job_id is not None else "")
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
        urls = url_list(payload.get("output")) or url_list(payload.get("image_url"))
        url = urls[0] if urls else ""
        if split_url(url)[0] not in ("http", "https"):
            raise ModelsLabError(Category.SERVER, "The upload answer did not contain an image URL.")
        return url

    def wallet_balance(self) -> dict:
        """The account's balance: {"balance": float, "currency": str}."""
        payload = self._post_json(WALLET_PATH, {}, idempotent=True)
        inner = payload.get("data")
        data: dict = inner if isinstance(inner, dict) else payload
        balance = as_float(data.get("balance", data.get("wallet_balance")))
        if balance is None:
            raise ModelsLabError(Category.SERVER, "The wallet answer did not contain a balance.")
        return {"balance": balance, "currency": str(data.get("currency") or "USD")}

    def system_details(self) -> dict:
        """Server/GPU details of an enterprise server (the `data` object, or the whole answer)."""
        payload = self.server_admin("system_details")
        data = payload.get("data")
        return dict(data) if isinstance(data, dict) else payload

    def server_admin(self, action: str) -> dict:
        """Call one of ADMIN_ACTIONS on the enterprise server and return its whole answer (a success JSON object).

        Enterprise flavour only: on the standard flavour, or for an unknown action, invalid_input is raised before
        any request. Only system_details is retried; the others act on the server and are sent once.
        """
        if action not in ADMIN_ACTIONS:
            raise invalid_input(f"Unknown server action {action!r}: use one of {', '.join(ADMIN_ACTIONS)}.")
        if self._flavor() != "enterprise":
            raise invalid_input(
                f"{action} is an enterprise server action; the standard API has no such endpoint.",
                "Switch the API flavour to enterprise in the add-on preferences (for a dedicated server).",
            )
        return dict(self._post_json(f"{ENTERPRISE_PATH}/{action}", {}, idempotent=action == "system_details"))

    def clear_queue(self) -> dict:
        """Enterprise: drop the server's queued jobs; returns the server's answer."""
        return self.server_admin("clear_queue")

    def clear_cache(self) -> dict:
        """Enterprise: delete the server's cached outputs; returns the server's answer."""
        return self.server_admin("clear_cache")

    def restart_server(self) -> dict:
        """Enterprise: restart the server's workers; returns the server's answer."""
        return self.server_admin("restart_server")

    def update_server(self) -> dict:
        """Enterprise: update the server's software; returns the server's answer (e.g. the version)."""
        return self.server_admin("update_server")

    def probe(self, url: str, *, timeout: float | tuple[float, float] | None = None) -> bool | None:
        """HEAD a result URL (e.g. a future_link): True if the file is there, False if not (yet) or unreachable,
        None if the server does not support HEAD. Never raises for network trouble; no key is sent.
        With online access off, a host that is not loopback is never contacted (False)."""
        response = self._watch(url, "HEAD", timeout)
        if response is None:
            return False
        response.close()
        if response.status_code in (405, 501):
            return None
        return response.status_code == 200

    def open_if_ready(
        self, url: str, *, timeout: float | tuple[float, float] | None = None
    ) -> requests.Response | None:
        """GET a result URL as a probe: the open, streamed answer when the file is there (200) or the server asks
        to come back later (429) - hand it to download(opened=...), which uses the transfer already on its way or
        honours the wait, or close it - and None when it is not there (yet), the server had trouble or was
        unreachable. Never raises; no key is sent. With online access off, a host that is not loopback is never
        contacted (None)."""
        response = self._watch(url, "GET", timeout)
        if response is not None and response.status_code not in (200, 429):
            response.close()
            return None
        return response

    def _watch(self, url: str, method: str, timeout: float | tuple[float, float] | None) -> requests.Response | None:
        """One keyless look at a result URL (redirects followed under the online-access rule); None when it
        could not be asked (not a web URL, refused offline, network trouble)."""
        scheme, netloc, _ = split_url(url)
        if scheme not in ("http", "https") or not netloc:
            return None
        try:
            transport = self._transport(url)
        except ModelsLabError:
            return None
        if timeout is not None:
            transport["timeout"] = timeout
        try:
            return self._session().request(method, url, stream=True, allow_redirects=True, **transport)
        except (requests.exceptions.RequestException, ModelsLabError):  # a redirect may be refused as offline
            return None

    # --- download -----------------------------------------------------------------------------------------------
    def download(
        self,
        urls: Sequence[str],
        target: Path,
        *,
        expected_format: str = "obj",
        cancel: threading.Event | None = None,
        progress: Callable[[int, int | None], None] | None = None,
        time_limit: float | None = None,
        opened: requests.Response | None = None,
    ) -> Path:
        """Stream the first URL that works (primary, then proxy_links) to target; return target.

        A valid file already at target is used as it is. Otherwise each attempt writes its own temp file beside
        target (`.<name>.<random>.part`), size-capped, format-checked and checked to name no other file
        (api.meshcheck), renamed only when complete; the temp file is removed on any failure. Each URL gets
        retries for transient failures (network, truncation, 5xx, 429; bad content once), then the next URL is
        tried, all within time_limit seconds (default config.download_time_limit). With online access off,
        hosts that are not loopback are refused as offline. opened: an answer from open_if_ready() for the
        first URL, used for its first attempt (closed here when not needed).
        """
        held = [opened] if opened is not None else []
        first_url = (urls if isinstance(urls, str) else next(iter(urls), "")).strip()

        def open_stream(url: str) -> requests.Response:
            if held and url == first_url:
                return held.pop()
            return self._session().get(url, stream=True, **self._transport(url))

        try:
            return download_mesh(
                open_stream,
                urls,
                target,
                self.config,
                expected_format=expected_format,
                cancel=cancel,
                progress=progress,
                time_limit=time_limit,
            )
        finally:
            for response in held:
                response.close()
