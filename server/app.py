"""HTTP layer of the local ModelsLab-compatible server: routes, validation, fault injection, CLI."""

from __future__ import annotations

import argparse
import base64
import binascii
import http.client
import io
import ipaddress
import json
import logging
import math
import random
import re
import shutil
import signal
import socket
import ssl
import sys
import tempfile
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from .faults import GENERIC, MESH_KINDS, TERMINAL, FaultBook, FaultError, Fired, parse_rules
from .store import SERVER_VERSION, Config, Job, Store, is_loopback_host

log = logging.getLogger("server")

MAX_BODY = 16 << 20
MAX_UPLOAD = 5 << 20
MAX_REMOTE_IMAGE = 20 << 20
MAX_URL = 2048
IMAGE_TIMEOUT = 10.0
# Every failure to get an image from a URL the policy allows answers this one text, so the answers cannot
# tell an open port from a closed one, a 404 from a non-image, or a missing name from a private address.
IMAGE_UNREACHABLE = "image URL not reachable: no image could be fetched from that URL"
JOB_KINDS = frozenset(
    {"job_failed", "processing_polls", "processing_forever", "hostile_names", "pad_output", "hold_job"}
)
FETCH_JOB_KINDS = frozenset({"job_failed", "processing_polls", "processing_forever", "hostile_names", "expired"})
DOWNLOAD_KINDS = frozenset({"expired", "truncate", "html_mesh", "corrupt_mesh", "slow_download"})
OUTPUT_FORMATS = ("obj", "glb", "ply", "stl")
MESH_TYPES = {"obj": "model/obj", "glb": "model/gltf-binary", "ply": "application/octet-stream", "stl": "model/stl"}
IMAGE_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp", "gif": "image/gif", "bmp": "image/bmp"}
FETCH_PATHS = {"enterprise": "/api/v1/enterprise/3d/fetch", "v6": "/api/v6/3d/fetch"}
SERVER_ACTIONS = ("clear_queue", "clear_cache", "restart_server", "update_server")
POST_ROUTES: list[tuple[re.Pattern[str], str, str]] = [
    (re.compile(r"/api/v1/enterprise/3d/(?P<kind>image|text)_to_3d"), "submit", "enterprise"),
    (re.compile(r"/api/v6/3d/(?P<kind>image|text)_to_3d"), "submit", "v6"),
    (re.compile(r"/api/v1/enterprise/3d/fetch/(?P<id>[^/]*)"), "fetch", "enterprise"),
    (re.compile(r"/api/v6/3d/fetch/(?P<id>[^/]*)"), "fetch", "v6"),
    (re.compile(r"/api/v6/base64_to_url"), "upload", ""),
    (re.compile(r"/api/wallet_balance"), "wallet", ""),
    (re.compile(r"/api/v1/enterprise/3d/system_details"), "system", ""),
    (re.compile(rf"/api/v1/enterprise/3d/(?P<action>{'|'.join(SERVER_ACTIONS)})"), "system", ""),
]
MAX_PROMPT = 2000
MAX_VIEWS = 4
PROXY_HTML = (
    "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n<center><h1>{code} {reason}</h1></center>\r\n"
    "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
MESH_HTML = (
    "<!DOCTYPE html><html><head><title>Just a moment...</title></head><body><h1>Checking your browser</h1>"
    "<p>This download is protected. Please enable JavaScript and cookies to continue.</p></body></html>\n"
)
DEFAULT_ERROR_MESSAGES = {
    401: "Invalid API key",
    402: "Insufficient balance: please top up your wallet",
    403: "Forbidden",
    404: "Not found",
    429: "Too many requests",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service temporarily unavailable",
}


class RequestError(Exception):
    """An answer other than success, raised from inside a handler."""

    def __init__(self, status: int, message: str, **extra: Any):
        super().__init__(message)
        self.status = status
        self.payload = {"status": "error", "message": message, **extra}


def _as_int(body: dict, name: str, default: Any, low: int, high: int) -> Any:
    value = body.get(name, default)
    if value is None or value == "":
        return default
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RequestError(400, f"The {name} must be an integer between {low} and {high}.")
    return value


def _as_float(body: dict, name: str, default: Any, low: float, high: float) -> Any:
    value = body.get(name, default)
    if value is None or value == "":
        return default
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise RequestError(400, f"The {name} must be a number between {low:g} and {high:g}.") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RequestError(400, f"The {name} must be a number between {low:g} and {high:g}.")
    if not low <= value <= high:
        raise RequestError(400, f"The {name} must be a number between {low:g} and {high:g}.")
    return float(value)


def _as_bool(body: dict, name: str, default: bool) -> bool:
    value = body.get(name, default)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.strip().lower() in ("true", "yes", "1")
    raise RequestError(400, f"The {name} field must be true or false.")


def _http_url(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RequestError(400, f"The {name} field is required.")
    value = value.strip()
    parsed = urlparse(value)
    if len(value) > MAX_URL or parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise RequestError(400, f"The {name} must be a valid http(s) URL.")
    return value


def _optional_text(body: dict, name: str, limit: int) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise RequestError(400, f"The {name} must be a string of at most {limit} characters.")
    return value


def _images(body: dict) -> tuple[str, list[str] | None]:
    """(the first image URL, every view's URL when multi_image is true, else None)."""
    multi = _as_bool(body, "multi_image", False)
    image = body.get("init_image") or body.get("image")
    if not image:
        raise RequestError(400, "The init_image field is required.")
    if not multi:
        if isinstance(image, list):
            raise RequestError(400, "The init_image must be one URL; send multi_image: true with a list of views.")
        return _http_url(image, "init_image"), None
    if isinstance(image, str):
        image = [image]
    if not isinstance(image, list) or not 2 <= len(image) <= MAX_VIEWS:
        raise RequestError(400, f"With multi_image, init_image must be a list of 2 to {MAX_VIEWS} image URLs.")
    views = [_http_url(url, "init_image") for url in image]
    return views[0], views


def validate_submit(body: dict, kind: str = "image") -> dict[str, Any]:
    """Normalise and check the image_to_3d (or text_to_3d) fields like the service does; RequestError(400) else."""
    params: dict[str, Any] = {"kind": kind}
    if kind == "text":
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise RequestError(400, "The prompt field is required.")
        if len(prompt) > MAX_PROMPT:
            raise RequestError(400, f"The prompt must be at most {MAX_PROMPT} characters.")
        params["prompt"] = prompt.strip()
        params["negative_prompt"] = _optional_text(body, "negative_prompt", MAX_PROMPT)
        params["guidance_scale"] = _as_float(body, "guidance_scale", None, 1.0, 20.0)
        params["num_inference_steps"] = _as_int(body, "num_inference_steps", None, 1, 50)
        params["model_id"] = _optional_text(body, "model_id", 100)
        params["resolution"] = 256
        params["chunk_size"] = 8192
    else:
        params["init_image"], params["views"] = _images(body)
        params["resolution"] = _as_int(body, "resolution", 256, 32, 512)
        params["chunk_size"] = _as_int(body, "chunk_size", 8192, 1, 12000)
        params["ss_guidance_strength"] = _as_float(body, "ss_guidance_strength", None, 0.0, 10.0)
        params["ss_sampling_steps"] = _as_int(body, "ss_sampling_steps", None, 1, 50)
        params["slat_guidance_strength"] = _as_float(body, "slat_guidance_strength", None, 0.0, 10.0)
        params["slat_sampling_steps"] = _as_int(body, "slat_sampling_steps", None, 1, 50)
        params["mesh_simplify"] = _as_float(body, "mesh_simplify", None, 0.9, 0.98)
        params["render"] = _as_bool(body, "render", False)
        params["temp"] = "yes" if _as_bool(body, "temp", False) else "no"
    params["foreground_ratio"] = _as_float(body, "foreground_ratio", 0.85, 0.1, 1.0)
    params["remove_bg"] = _as_bool(body, "remove_bg", False)
    seed = _as_int(body, "seed", 0, 0, 2**32 - 1)
    params["seed"] = seed or random.randint(1, 2**31 - 1)
    fmt = body.get("output_format") or "obj"
    if not isinstance(fmt, str) or fmt.lower() not in OUTPUT_FORMATS:
        raise RequestError(400, f"The output_format must be one of: {', '.join(OUTPUT_FORMATS)}.")
    params["output_format"] = fmt.lower()
    webhook = body.get("webhook")
    params["webhook"] = _http_url(webhook, "webhook") if webhook else None
    track_id = body.get("track_id")
    if track_id is not None and (
        isinstance(track_id, bool) or not isinstance(track_id, str | int) or len(str(track_id)) > 256
    ):
        raise RequestError(400, "The track_id must be a string of at most 256 characters.")
    params["track_id"] = track_id if track_id not in ("",) else None
    return params


def _image_kind(data: bytes) -> str | None:
    """Pillow's format name (lower case) if data is a readable image, else None."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt = (image.format or "").lower()
            image.verify()
    except Exception:
        return None
    return fmt or None


class ModelsLabHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that carries the state and stays quiet about clients that hang up."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(
        self,
        address: tuple[str, int],
        config: Config,
        store: Store,
        faults: FaultBook,
        tls: ssl.SSLContext | None = None,
    ):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)
        self.config = config
        self.store = store
        self.faults = faults
        self.tls = tls
        self.scheme = "https" if tls else "http"

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        if self.tls is not None:
            # The handshake runs in the handler thread (Handler.setup), so one stalled client cannot block accept().
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError | ssl.SSLError):
            return
        super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    """One request; all answers carry Content-Length so keep-alive clients work."""

    protocol_version = "HTTP/1.1"
    server_version = "ModelsLabLocal/1.0"
    timeout = 120
    server: ModelsLabHTTPServer

    # --- plumbing ----------------------------------------------------------------------------
    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.config.log_requests:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")

    @property
    def store(self) -> Store:
        return self.server.store

    @property
    def faults(self) -> FaultBook:
        return self.server.faults

    def base_url(self) -> str:
        host = str(self.headers.get("Host", ""))
        if host and re.fullmatch(r"[A-Za-z0-9.\-]+(:\d+)?|\[[0-9A-Fa-f:.]+\](:\d+)?", host):
            return f"{self.server.scheme}://{host}"
        address = self.server.server_address
        return f"{self.server.scheme}://{address[0]!s}:{address[1]}"

    def send_bytes(self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self.send_bytes(status, json.dumps(payload).encode(), "application/json", headers)

    def drop(self) -> None:
        """Close the connection without (or in the middle of) an answer."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                self.close_connection = True
                raise RequestError(411, "Chunked request bodies are not supported; send Content-Length.")
            return b""
        try:
            size = int(length)
        except ValueError:
            self.close_connection = True
            raise RequestError(400, "Bad Content-Length.") from None
        if size > MAX_BODY:
            self.close_connection = True
            raise RequestError(413, "Request body too large.")
        return self.rfile.read(size) if size > 0 else b""

    def client_is_loopback(self) -> bool:
        address = self.client_address[0]
        return is_loopback_host(address) and address not in self.server.config.remote_peers

    def do_GET(self) -> None:
        self.dispatch()

    def do_HEAD(self) -> None:
        self.dispatch()

    def do_POST(self) -> None:
        self.dispatch()

    def do_PUT(self) -> None:
        self.dispatch()

    def do_DELETE(self) -> None:
        self.dispatch()

    def dispatch(self) -> None:
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        if len(path) > 1:
            path = path.rstrip("/")
        try:
            if path.startswith("/__admin/"):
                self.admin(path)
            elif self.command == "POST":
                self.api(path)
            elif self.command in ("GET", "HEAD"):
                self.files(path)
            else:
                self.read_body()
                raise RequestError(405, "Method not allowed.")
        except RequestError as exc:
            self.send_json(exc.status, exc.payload)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception:
            log.exception("unhandled error for %s %s", self.command, path)
            self.close_connection = True
            try:
                self.send_json(500, {"status": "error", "message": "Internal server error"})
            except OSError:
                pass

    # --- faults ------------------------------------------------------------------------------
    def send_fault(self, fired: Fired) -> None:
        """Answer with a terminal fault."""
        kind = fired.fault
        if kind == "drop_connection":
            self.drop()
        elif kind == "http_error":
            status = int(fired.get("status", 500))
            try:
                reason = HTTPStatus(status).phrase
            except ValueError:
                reason = "Error"
            if fired.get("body", "json") == "html":
                page = PROXY_HTML.format(code=status, reason=reason)
                self.send_bytes(status, page.encode(), "text/html; charset=utf-8")
            else:
                message = fired.get("message") or DEFAULT_ERROR_MESSAGES.get(status, reason)
                self.send_json(status, {"status": "error", "message": message, "error_code": str(status)})
        elif kind == "rate_limit":
            retry_after = fired.get("retry_after", 1)
            self.send_json(
                429,
                {"status": "error", "message": "Too many requests", "retry_after": retry_after},
                {"Retry-After": str(math.ceil(retry_after))},
            )
        elif kind == "malformed_json":
            whole = json.dumps({"status": "processing", "message": "Request processing", "eta": 12.5, "output": []})
            self.send_bytes(200, whole[: len(whole) // 2].encode(), "application/json")
        elif kind == "status_error":
            self.send_json(200, {"status": "error", fired.get("spelling", "message"): fired.get("text", "")})
        elif kind == "expired":
            self.send_json(404, {"status": "error", "message": "Request expired: outputs are deleted after 24 hours"})
        elif kind == "html_mesh":
            self.send_bytes(200, MESH_HTML.encode(), "text/html; charset=utf-8")
        elif kind == "corrupt_mesh":
            size = int(fired.get("bytes", 256))
            self.send_bytes(200, random.Random(size).randbytes(size), "application/octet-stream")
        else:  # pragma: no cover - parse_rule only lets known kinds in
            raise AssertionError(kind)

    @staticmethod
    def terminal(fired: dict[str, Fired]) -> Fired | None:
        return next((item for kind, item in fired.items() if kind in TERMINAL), None)

    @staticmethod
    def delay(fired: dict[str, Fired]) -> None:
        if "delay" in fired:
            time.sleep(float(fired["delay"].get("seconds", 1.0)))

    # --- API ---------------------------------------------------------------------------------
    def api(self, path: str) -> None:
        route = next(((p.fullmatch(path), e, f) for p, e, f in POST_ROUTES if p.fullmatch(path)), None)
        if route is None:
            self.read_body()
            raise RequestError(404, f"Unknown endpoint {path[:200]}")
        match, endpoint, flavor = route
        assert match is not None
        raw = self.read_body()
        self.store.count_request(endpoint)
        fired = self.faults.take(endpoint, GENERIC)
        terminal = self.terminal(fired)
        if terminal is not None and terminal.fault != "drop_connection":
            self.delay(fired)
            self.send_fault(terminal)
            return
        try:
            status, payload, headers = self.api_answer(endpoint, flavor, match, raw)
        except RequestError as exc:
            status, payload, headers = exc.status, exc.payload, {}
        self.delay(fired)
        if terminal is not None:  # drop_connection: the request was handled, the answer is lost
            self.drop()
            return
        self.send_json(status, payload, headers)

    def api_answer(
        self, endpoint: str, flavor: str, match: re.Match[str], raw: bytes
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        try:
            body = json.loads(raw or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise RequestError(400, "The request body must be JSON.") from None
        if not isinstance(body, dict):
            raise RequestError(400, "The request body must be a JSON object.")
        key = body.get("key")
        if not isinstance(key, str) or not key.strip():
            raise RequestError(401, "Invalid API key", error_code="missing_key")
        keys = self.server.config.keys
        if keys is not None and key not in keys:
            raise RequestError(401, "Invalid API key", error_code="invalid_key")
        if endpoint == "submit":
            return self.submit(flavor, match.group("kind"), body, key)
        if endpoint == "fetch":
            return self.fetch(flavor, match.group("id"), key)
        if endpoint == "upload":
            return self.upload(body)
        if endpoint == "wallet":
            with self.store.lock:
                balance = round(self.store.balance, 2)
            return 200, {"status": "success", "data": {"balance": balance, "currency": "USD"}}, {}
        action = match.groupdict().get("action")
        if action:
            return self.server_action(action, key)
        return self.system()

    def processing_payload(self, job: Job, base: str) -> dict[str, Any]:
        output, _ = self.store.links(job, base)
        fetch_url = f"{base}{FETCH_PATHS[job.flavor]}/{job.id}"
        return {
            "status": "processing",
            "tip": f"Your request is processing. Fetch the result with the fetch API: {fetch_url}",
            "eta": self.store.eta(job),
            "message": "Request processing",
            "fetch_result": fetch_url,
            "id": job.id,
            # The service answers [] or "" here; alternate so clients meet both.
            "output": "" if job.seq % 2 else [],
            "future_links": output,
            "meta": self.store.meta(job),
        }

    def submit(self, flavor: str, kind: str, body: dict, key: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        config = self.server.config
        params = validate_submit(body, kind)
        if not self.store.can_pay():
            raise RequestError(402, DEFAULT_ERROR_MESSAGES[402])
        if config.max_queue and self.store.active_jobs() >= config.max_queue:
            raise RequestError(429, "Too many requests: your queue is full", retry_after=5)
        if kind == "text":
            images: list[bytes] = []  # the stand-in draws the prompt when the job runs
        else:
            images = [self.load_image(url) for url in params["views"] or [params["init_image"]]]
        mesh_kinds = {name for name, fmt in MESH_KINDS.items() if fmt == params["output_format"]}
        job_faults = self.faults.take("submit", JOB_KINDS | mesh_kinds)
        base = self.base_url()
        job = self.store.create_job(flavor, params, images, key, job_faults, base, self.client_is_loopback())
        return 200, self.processing_payload(job, base), {}

    def load_image(self, url: str) -> bytes:
        """The image bytes behind init_image, under one allow-list whatever address the server listens on.

        - this server's own uploads (recognised by their unguessable name, whatever host the URL names);
        - loopback URLs, only for clients on this machine (they could fetch those themselves);
        - with --allow-remote-images, hosts whose every address is public (no private, link-local, loopback).
        Redirects are not followed, and connections go to the address that was checked.
        """
        parsed = urlparse(url)
        if parsed.path.startswith("/uploads/"):
            own = self.store.upload_path(unquote(parsed.path[len("/uploads/") :]))
            if own is not None:
                return own.read_bytes()
        try:
            port = parsed.port or (443 if parsed.scheme == "https" else 80)
        except ValueError:
            raise RequestError(400, IMAGE_UNREACHABLE) from None
        host = parsed.hostname or ""
        if is_loopback_host(host):
            if not self.client_is_loopback():
                raise RequestError(
                    400, "image URL not reachable: this server fetches loopback URLs only for clients on its machine"
                )
            if port == self.server.server_address[1]:  # itself: only uploads, handled above
                raise RequestError(400, IMAGE_UNREACHABLE)
            allowed = is_loopback_address
        elif self.server.config.allow_remote_images:
            allowed = is_public_address
        else:
            raise RequestError(
                400,
                "image URL not reachable: this local server fetches only its own uploads and, for clients on its "
                "machine, loopback URLs (start it with --allow-remote-images to allow public hosts)",
            )
        data = fetch_image(parsed.scheme, host, port, parsed, allowed)
        if data is None or _image_kind(data) is None:
            raise RequestError(400, IMAGE_UNREACHABLE)
        return data

    def fetch(self, flavor: str, raw_id: str, key: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        raw_id = unquote(raw_id).strip()
        job = self.store.job_for(int(raw_id), key) if re.fullmatch(r"\d{1,18}", raw_id) else None
        if job is None:
            raise RequestError(404, "Request not found: no job with this id")
        if self.store.expired(job):
            raise RequestError(404, "Request expired: outputs are deleted after 24 hours")
        fired = self.faults.take("fetch", FETCH_JOB_KINDS)
        if "expired" in fired:
            raise RequestError(404, "Request expired: outputs are deleted after 24 hours")
        base = self.base_url()
        with self.store.lock:
            self.store.apply_job_faults(job, fired)
            if job.status == "failed":
                return 200, self.store.result_payload(job, base), {}
            if job.status == "success" and not job.forever:
                if job.extra_polls <= 0:
                    return 200, self.store.result_payload(job, base), {}
                job.extra_polls -= 1
            return 200, self.processing_payload(job, base), {}

    def upload(self, body: dict) -> tuple[int, dict[str, Any], dict[str, str]]:
        text = body.get("base64_string")
        if not isinstance(text, str) or not text.strip():
            raise RequestError(400, "The base64_string field is required.")
        text = text.strip()
        if text.startswith("data:"):
            header, sep, text = text.partition(",")
            if not sep or ";base64" not in header:
                raise RequestError(400, "The base64_string must be base64 data (data:image/...;base64,...).")
        text = re.sub(r"\s+", "", text)
        if len(text) * 3 // 4 > MAX_UPLOAD + 3:
            raise RequestError(400, "Image too large: the limit is 5 MB.")
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(400, "The base64_string is not valid base64.") from None
        if len(data) > MAX_UPLOAD:
            raise RequestError(400, "Image too large: the limit is 5 MB.")
        kind = _image_kind(data)
        if kind not in IMAGE_TYPES:
            raise RequestError(400, "The base64_string is not an image (png, jpeg, webp, gif or bmp).")
        upload_id, name = self.store.add_upload(data, "jpg" if kind == "jpeg" else kind)
        url = f"{self.base_url()}/uploads/{name}"
        return 200, {"status": "success", "output": [url], "id": upload_id, "message": "Image uploaded"}, {}

    def server_action(self, action: str, key: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        """The enterprise server's clear_queue, clear_cache, restart_server and update_server."""
        data: dict[str, Any]
        if action == "clear_queue":
            dropped = self.store.clear_queue(key)
            data, message = {"removed_jobs": dropped}, f"Queue cleared: {len(dropped)} queued job(s) removed"
        elif action == "clear_cache":
            data = self.store.clear_cache(key)
            message = f"Cache cleared: {data['files_removed']} output file(s) deleted"
        elif action == "restart_server":
            data = self.store.restart_workers()
            message = f"Server restarted: {data['workers']} worker(s), {data['restarted_jobs']} job(s) started again"
        else:
            data = {"version": SERVER_VERSION, "latest": SERVER_VERSION, "updated": False}
            message = f"Server is up to date (version {SERVER_VERSION})"
        return 200, {"status": "success", "message": message, "data": data}, {}

    def system(self) -> tuple[int, dict[str, Any], dict[str, str]]:
        stats = self.store.stats({}, [])
        return (
            200,
            {
                "status": "success",
                "data": {
                    "server": "ModelsLab local server",
                    "version": SERVER_VERSION,
                    "gpu": "none (CPU reconstruction)",
                    "workers": self.server.config.workers,
                    "queue": stats["queue_depth"],
                    "running": stats["running"],
                    "max_resolution": 512,
                    "output_formats": list(OUTPUT_FORMATS),
                },
            },
            {},
        )

    # --- files -------------------------------------------------------------------------------
    def files(self, path: str) -> None:
        raw_path = self.path.split("?", 1)[0]
        if path.startswith("/uploads/"):
            self.store.count_request("uploads")
            file = self.store.upload_path(unquote(path[len("/uploads/") :]))
            if file is None:
                raise RequestError(404, "File not found")
            self.send_file(file, IMAGE_TYPES.get(file.suffix.lstrip(".").replace("jpg", "jpeg"), "image/png"), {})
            return
        for prefix in ("/out/", "/cdn/out/"):
            if raw_path.startswith(prefix):
                self.download(unquote(raw_path[len(prefix) :]))
                return
        raise RequestError(404, f"Unknown endpoint {path[:200]}")

    def download(self, name: str) -> None:
        job, file = self.store.output_for(name)
        if self.command == "HEAD":  # watching future_links never consumes a fault
            self.store.count_request("download_head")
            if file is None:
                raise RequestError(404, "File not found (not ready yet, or expired)")
            self.send_file(file, MESH_TYPES[job.fmt] if job else "application/octet-stream", {})
            return
        if file is None and job is not None and job.status in ("queued", "processing"):
            # A GET that watches for the result (a client probing with the download request itself) is a
            # plain 404 like HEAD's: it never consumes a fault meant for the download.
            self.store.count_request("download_wait")
            raise RequestError(404, "File not found (not ready yet)")
        self.store.count_request("download")
        fired = self.faults.take("download", GENERIC)
        terminal = self.terminal(fired)
        if terminal is None and file is not None:
            fired.update(self.faults.take("download", DOWNLOAD_KINDS))
            terminal = self.terminal(fired)
        self.delay(fired)
        if terminal is not None:
            self.send_fault(terminal)
            return
        if file is None or job is None:
            raise RequestError(404, "File not found (not ready yet, or expired)")
        self.send_file(file, MESH_TYPES[job.fmt], fired, job)

    def send_file(self, file: Path, content_type: str, fired: dict[str, Fired], job: Job | None = None) -> None:
        size = file.stat().st_size
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(size))
        self.send_header("Last-Modified", self.date_time_string(int(file.stat().st_mtime)))
        self.end_headers()
        if self.command == "HEAD":
            return
        limit = size
        if "truncate" in fired:
            limit = min(size, int(fired["truncate"].get("bytes", size // 2)))
        rate = float(fired["slow_download"].get("bytes_per_second")) if "slow_download" in fired else 0.0
        if job is not None:
            self.store.count_download(job, completed=False)
        with file.open("rb") as handle:
            if not rate and limit == size:
                self.connection.sendfile(handle)
            else:
                self.stream(handle, limit, rate)
        if limit < size:
            self.drop()
        elif job is not None:
            self.wfile.flush()
            self.store.count_download(job, completed=True)

    def stream(self, handle: Any, limit: int, rate: float) -> None:
        chunk = max(1, int(rate / 20)) if rate else 1 << 20
        sent = 0
        start = time.monotonic()
        while sent < limit:
            data = handle.read(min(chunk, limit - sent))
            if not data:
                break
            self.wfile.write(data)
            sent += len(data)
            if rate:
                ahead = sent / rate - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)

    # --- admin -------------------------------------------------------------------------------
    def admin(self, path: str) -> None:
        raw = self.read_body() if self.command in ("POST", "PUT") else b""
        if not self.client_is_loopback():
            raise RequestError(403, "Admin endpoints answer loopback clients only.")
        if path == "/__admin/stats" and self.command == "GET":
            self.send_json(200, self.store.stats(self.faults.counts(), self.faults.rules()))
            return
        if path == "/__admin/faults" and self.command == "GET":
            self.send_json(200, {"status": "success", "rules": self.faults.rules()})
            return
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise RequestError(400, "The request body must be JSON.") from None
        if path == "/__admin/faults" and self.command == "POST":
            if not isinstance(body, dict):
                raise RequestError(400, 'Send {"rules": [...]}, {"add": [...]} or {"clear": true}.')
            try:
                if body.get("clear"):
                    self.faults.clear()
                if "rules" in body:
                    self.faults.replace(parse_rules(body["rules"]))
                if "add" in body:
                    self.faults.add(parse_rules(body["add"]))
            except FaultError as exc:
                raise RequestError(400, str(exc)) from None
            self.send_json(200, {"status": "success", "rules": self.faults.rules()})
            return
        if path == "/__admin/release" and self.command == "POST":
            ids = body.get("ids") if isinstance(body, dict) else None
            if ids is not None and (
                not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
            ):
                raise RequestError(400, 'Send {"ids": [job ids]} or {} for every held job.')
            self.send_json(200, {"status": "success", "released": self.store.release(ids)})
            return
        if path == "/__admin/reset" and self.command == "POST":
            self.store.reset()
            self.faults.reset()
            self.send_json(200, {"status": "success"})
            return
        raise RequestError(404, f"Unknown admin endpoint {path[:200]}")


def is_loopback_address(address: str) -> bool:
    """True for a loopback IP address (a resolved one, scope id allowed)."""
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def is_public_address(address: str) -> bool:
    """True for a globally routable IP address (not private, loopback, link-local, mapped or reserved)."""
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_global
    except ValueError:
        return False


def fetch_image(scheme: str, host: str, port: int, parsed: Any, allowed: Any) -> bytes | None:
    """GET the URL from an address of `host` that `allowed` accepts (every address must be); None on any failure."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return None
    addresses = [info[4] for info in infos]
    if not addresses or not all(allowed(str(address[0])) for address in addresses):
        return None
    target = parsed.path or "/"
    if parsed.query:
        target += "?" + parsed.query
    connection: http.client.HTTPConnection
    try:
        sock = socket.create_connection((str(addresses[0][0]), port), timeout=IMAGE_TIMEOUT)
        if scheme == "https":
            context = ssl.create_default_context()
            connection = http.client.HTTPSConnection(host, port, timeout=IMAGE_TIMEOUT, context=context)
            sock = context.wrap_socket(sock, server_hostname=host)
        else:
            connection = http.client.HTTPConnection(host, port, timeout=IMAGE_TIMEOUT)
        connection.sock = sock  # pinned: no second lookup between the check and the connection
        try:
            connection.request("GET", target, headers={"User-Agent": "ModelsLabLocal/1.0"})
            response = connection.getresponse()
            if response.status != 200:
                return None
            data = response.read(MAX_REMOTE_IMAGE + 1)
        finally:
            connection.close()
    except (OSError, http.client.HTTPException, ValueError):
        return None
    return data if len(data) <= MAX_REMOTE_IMAGE else None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of `python -m server`."""
    parser = argparse.ArgumentParser(prog="python -m server", description="Local ModelsLab-compatible server")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (0 = pick a free one)")
    parser.add_argument("--workers", type=int, default=2, help="parallel reconstructions")
    parser.add_argument("--keys", default=None, help="comma-separated accepted API keys (default: any non-empty)")
    parser.add_argument("--expire-seconds", type=float, default=86400.0, help="outputs disappear after this")
    parser.add_argument("--job-seconds", type=float, default=0.0, help="every job takes at least this long")
    parser.add_argument("--data-dir", default=None, help="where uploads and outputs go (default: a temp dir)")
    parser.add_argument("--allow-remote-images", action="store_true", help="fetch init_image from any host")
    parser.add_argument(
        "--remote-peers",
        default="",
        help="comma-separated loopback addresses whose clients are treated as on another machine (for tests)",
    )
    parser.add_argument("--fault", action="append", default=[], help="fault rule as JSON (repeatable)")
    parser.add_argument("--fault-seed", type=int, default=None, help="seed of the RNG behind `probability`")
    parser.add_argument("--balance", type=float, default=100.0, help="starting wallet balance (USD)")
    parser.add_argument("--max-queue", type=int, default=0, help="answer 429 beyond this many active jobs (0 = off)")
    parser.add_argument("--log-requests", action="store_true", help="log every request on stderr")
    parser.add_argument("--tls-cert", default=None, help="serve HTTPS with this PEM certificate (chain)")
    parser.add_argument("--tls-key", default=None, help="the PEM private key of --tls-cert")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the server until SIGTERM/SIGINT."""
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    faults = FaultBook(args.fault_seed)
    try:
        for text in args.fault:
            faults.add(parse_rules(json.loads(text)))
    except (ValueError, FaultError) as exc:
        print(f"python -m server: error: bad --fault: {exc}", file=sys.stderr)
        return 2
    tls = None
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            print("python -m server: error: --tls-cert and --tls-key go together", file=sys.stderr)
            return 2
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            tls.load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as exc:
            print(f"python -m server: error: cannot load the TLS certificate: {exc}", file=sys.stderr)
            return 2
    own_dir = args.data_dir is None
    data_dir = Path(tempfile.mkdtemp(prefix="modelslab-server-")) if own_dir else Path(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    keys = frozenset(k.strip() for k in args.keys.split(",") if k.strip()) if args.keys else None
    config = Config(
        host=args.host,
        port=args.port,
        workers=max(1, args.workers),
        keys=keys,
        expire_seconds=args.expire_seconds,
        job_seconds=max(0.0, args.job_seconds),
        data_dir=data_dir,
        allow_remote_images=args.allow_remote_images,
        remote_peers=frozenset(a.strip() for a in args.remote_peers.split(",") if a.strip()),
        balance=args.balance,
        max_queue=max(0, args.max_queue),
        log_requests=args.log_requests,
    )
    store = Store(config)
    httpd = ModelsLabHTTPServer((args.host, args.port), config, store, faults, tls)
    port = httpd.server_address[1]
    host = f"[{args.host}]" if ":" in args.host else args.host
    if not is_loopback_host(args.host):
        print(
            f"python -m server: warning: listening on {args.host}, beyond this machine: anyone who can reach port "
            f"{port} can use it{'' if keys else ' with any key (set --keys)'}; links follow the Host each client used; "
            "admin endpoints and loopback image URLs stay for clients on this machine (see server/README.md)",
            file=sys.stderr,
            flush=True,
        )

    def _stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    print(f"ModelsLab local server listening on {httpd.scheme}://{host}:{port}", flush=True)
    try:
        httpd.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
        store.shutdown()
        if own_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
    return 0
