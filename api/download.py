"""Downloading a result mesh: streamed to a temp file, size-capped, format-checked, renamed only when complete.

The first URL that works wins (the primary output, then the proxy links). Each URL gets retries for transient
failures (network, truncation, 5xx, 429; bad content once); failures no other URL can cure (cancel, the size
cap, the local disk) end the download at once. The temp file is removed on any failure.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

import requests
import urllib3.exceptions

from .errors import Category, ModelsLabError, invalid_input
from .params import OUTPUT_FORMATS
from .responses import AnswerError, as_float, parse_response, plain_error
from .transport import ClientConfig, cancelled, host_of, network_error, sleep_unless_cancelled, split_url

log = logging.getLogger(__name__)
DOWNLOAD_CHUNK = 1 << 20
MAX_ERROR_BODY = 64 << 10  # of an error answer, only this much is read to classify it

OpenStream = Callable[[str], requests.Response]  # url -> a streamed GET response (the client's session)
Progress = Callable[[int, int | None], None]  # (bytes so far, expected total or None)


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


def download_mesh(
    open_stream: OpenStream,
    urls: Sequence[str],
    target: Path,
    config: ClientConfig,
    *,
    expected_format: str = "obj",
    cancel: threading.Event | None = None,
    progress: Progress | None = None,
) -> Path:
    """Stream the first URL that works to target and return target (see the module docstring)."""
    if isinstance(urls, str):  # one URL given as a plain string
        urls = [urls]
    fmt = (expected_format or "").lower().lstrip(".")
    if fmt not in OUTPUT_FORMATS:
        raise invalid_input(f"Unknown mesh format {expected_format!r}: use one of {', '.join(OUTPUT_FORMATS)}.")
    candidates = [u.strip() for u in dict.fromkeys(u for u in urls if isinstance(u, str)) if u.strip()]
    candidates = [u for u in candidates if split_url(u)[0] in ("http", "https") and split_url(u)[1]]
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
        return _download_any(open_stream, candidates, target, fmt, config, cancel, progress)


def _download_any(
    open_stream: OpenStream,
    candidates: list[str],
    target: Path,
    fmt: str,
    config: ClientConfig,
    cancel: threading.Event | None,
    progress: Progress | None,
) -> Path:
    errors: list[ModelsLabError] = []
    for url in candidates:
        attempt = 0
        while True:
            if cancel is not None and cancel.is_set():
                raise cancelled("Download cancelled.")
            try:
                _download_once(open_stream, url, target, fmt, config, cancel, progress)
                return target
            except _DownloadFailure as failure:
                if failure.final:
                    raise failure.error from None
                limit = config.max_retries
                if failure.retry_limit is not None:
                    limit = min(limit, failure.retry_limit)
                if not failure.retry or attempt >= limit:
                    errors.append(failure.error)
                    break
                wait = failure.retry_after if failure.retry_after is not None else config.backoff(attempt)
                if wait > config.max_retry_after:
                    errors.append(failure.error)
                    break
                log.info("retrying download in %.2f s after: %s", wait, failure.error)
                sleep_unless_cancelled(wait, cancel)
                attempt += 1
    raise _most_telling(errors)


def _most_telling(errors: list[ModelsLabError]) -> ModelsLabError:
    """The error to report after every URL failed: expired only when all expired, else the most specific."""
    if all(error.category is Category.EXPIRED for error in errors):
        return ModelsLabError(
            Category.EXPIRED, "The result file is gone from the server (HTTP 404); outputs expire after 24 h."
        )
    for category in (Category.BAD_MESH, Category.NETWORK, Category.RATE_LIMITED, Category.SERVER):
        for error in errors:
            if error.category is category:
                return error
    return errors[-1]


def _download_once(
    open_stream: OpenStream,
    url: str,
    target: Path,
    fmt: str,
    config: ClientConfig,
    cancel: threading.Event | None,
    progress: Progress | None,
) -> None:
    """One attempt on one URL; raises _DownloadFailure saying whether to retry, try the next URL, or stop."""
    host = host_of(url)
    response = _open(open_stream, url, config)
    with response:
        if response.status_code != 200:
            raise _refusal(response, host)
        expected = _expected_size(response, host, config.max_download_bytes)
        _stream_to(target, response, fmt, host, expected, config.max_download_bytes, cancel, progress)


def _open(open_stream: OpenStream, url: str, config: ClientConfig) -> requests.Response:
    try:
        return open_stream(url)
    except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema) as exc:
        error = ModelsLabError(Category.SERVER, f"The download link is not a valid URL ({type(exc).__name__}).")
        raise _DownloadFailure(error, retry=False) from None
    except requests.exceptions.RequestException as exc:
        tls = isinstance(exc, requests.exceptions.SSLError)
        raise _DownloadFailure(network_error(exc, url, config, maybe_accepted=False), retry=not tls) from None


def _refusal(response: requests.Response, host: str) -> _DownloadFailure:
    """The failure for a non-200 answer: 404 is expired, 429/5xx are worth retrying, the rest is not."""
    status = response.status_code
    if status == 404:
        return _DownloadFailure(
            ModelsLabError(Category.EXPIRED, f"The result file at {host} is gone (HTTP 404)."), retry=False
        )
    body = response.raw.read(MAX_ERROR_BODY, decode_content=True)
    try:
        parse_response(
            status,
            body,
            response.headers.get("Content-Type", ""),
            retry_after_header=response.headers.get("Retry-After"),
        )
        error = ModelsLabError(Category.SERVER, f"Download from {host} answered HTTP {status}.")
    except ModelsLabError as answer:
        plain = plain_error(answer) if isinstance(answer, AnswerError) else answer
        error = ModelsLabError(
            plain.category,
            f"Download from {host} failed: {plain.message}",
            plain.fix,
            http_status=status,
            retry_after=plain.retry_after,
        )
    return _DownloadFailure(error, retry=status == 429 or status >= 500, retry_after=error.retry_after)


def _expected_size(response: requests.Response, host: str, cap: int) -> int | None:
    """The announced size (None when unknown or compressed); refuses web pages and files over the cap."""
    if "text/html" in response.headers.get("Content-Type", "").lower():
        raise _DownloadFailure(
            ModelsLabError(
                Category.BAD_MESH, f"{host} sent a web page instead of the mesh (a login or bot-check page?)."
            ),
            retry=True,
            retry_limit=1,
        )
    total = as_float(response.headers.get("Content-Length"))
    expected = int(total) if total is not None and not response.headers.get("Content-Encoding") else None
    if expected is not None and expected > cap:
        raise _DownloadFailure(_too_big(expected, cap), retry=False, final=True)
    return expected


def _stream_to(
    target: Path,
    response: requests.Response,
    fmt: str,
    host: str,
    expected: int | None,
    cap: int,
    cancel: threading.Event | None,
    progress: Progress | None,
) -> None:
    """Write the body to the temp file, check it, and rename it to target; the temp file never outlives a failure."""
    check = _FormatCheck(fmt)
    # A fixed name per target: a .part left by a killed process is overwritten and then removed by the
    # next attempt (download_mesh() holds a per-target lock, so two threads never share it).
    temp = _temp_path(target)
    try:
        out = open(temp, "wb", buffering=0)
    except OSError as exc:
        raise _DownloadFailure(_local_write_error(exc, target.parent), retry=False, final=True) from None
    try:
        with out:
            done = _copy_body(response, out, target.parent, host, expected, cap, check, cancel, progress)
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


def _copy_body(
    response: requests.Response,
    out: BinaryIO,
    folder: Path,
    host: str,
    expected: int | None,
    cap: int,
    check: _FormatCheck,
    cancel: threading.Event | None,
    progress: Progress | None,
) -> int:
    """Copy the body chunk by chunk (cancellable, capped, fed to the format check); return the bytes written."""
    # read1 returns what arrived without waiting to fill the chunk; urllib3 1.26 (Debian's, used by
    # Blender 3.4) lacks it, and its read() has the same signature for this use.
    read = getattr(response.raw, "read1", None) or response.raw.read
    done = 0
    while True:
        if cancel is not None and cancel.is_set():
            raise _DownloadFailure(cancelled("Download cancelled."), retry=False, final=True)
        try:
            chunk = read(DOWNLOAD_CHUNK, decode_content=True)
        except (urllib3.exceptions.HTTPError, requests.exceptions.RequestException, OSError) as exc:
            error = ModelsLabError(
                Category.NETWORK, f"The download from {host} broke off after {done} bytes ({type(exc).__name__})."
            )
            raise _DownloadFailure(error, retry=True) from None
        if not chunk:
            return done
        done += len(chunk)
        if done > cap:
            raise _DownloadFailure(_too_big(done, cap), retry=False, final=True)
        check.feed(chunk)
        try:
            _write_all(out, chunk)
        except OSError as exc:
            raise _DownloadFailure(_local_write_error(exc, folder), retry=False, final=True) from None
        if progress is not None:
            progress(done, expected)


def _write_all(out: BinaryIO, chunk: bytes) -> None:
    """Write every byte: an unbuffered write may be short (disk full at the limit), then finish or fail."""
    written = out.write(chunk)
    if written != len(chunk):
        view = memoryview(chunk)[written:]
        while view:
            view = view[out.write(view) :]


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
