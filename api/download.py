"""Downloading a result mesh: streamed to a temp file, size-capped, format-checked, checked to be
self-contained (api.meshcheck), renamed only when complete.

The first URL that works wins (the primary output, then the proxy links). Each URL gets retries for transient
failures (network, truncation, 5xx, 429; bad content once); failures no other URL can cure (cancel, the size
cap, the local disk, the time limit of the whole download) end the download at once. The temp file is removed
on any failure.

Several processes (two Blenders, a batch) may download the same job into one cache folder: each attempt
writes its own temp file (mkstemp, locked while written) and renames it into place atomically, and a valid
file already at the target is used as it is. No process truncates or removes another's file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

import requests
import urllib3.exceptions

from .errors import Category, ModelsLabError, invalid_input
from .journal import replace_retrying
from .meshcheck import MeshScan
from .params import OUTPUT_FORMATS
from .responses import AnswerError, as_float, parse_response, plain_error
from .transport import ClientConfig, cancelled, host_of, network_error, sleep_unless_cancelled, split_url

log = logging.getLogger(__name__)
DOWNLOAD_CHUNK = 1 << 20
MAX_ERROR_BODY = 64 << 10  # of an error answer, only this much is read to classify it
TEMP_SUFFIX = ".part"

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
    time_limit: float | None = None,
) -> Path:
    """Stream the first URL that works to target and return target (see the module docstring).

    A valid, self-contained file already at target is returned without downloading. time_limit (seconds,
    default config.download_time_limit) bounds the whole download: every URL, retry and wait.
    """
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
    limit = config.download_time_limit if time_limit is None else time_limit
    deadline = time.monotonic() + max(0.0, float(limit))
    created = not target.parent.exists()
    with _target_lock(target):
        if _valid_file(target, fmt):
            return target  # finished earlier, or by another process
        try:
            try:
                return _download_any(open_stream, candidates, target, fmt, config, cancel, progress, deadline)
            finally:
                # After the transfer, not before it: the leftovers of a killed download wait a few milliseconds
                # more and the mesh does not wait for the folder scan.
                _remove_abandoned_temp_files(target)
        except BaseException:
            if created:
                with contextlib.suppress(OSError):
                    target.parent.rmdir()  # the folder made for this download, when nothing else is in it
            raise


def _download_any(
    open_stream: OpenStream,
    candidates: list[str],
    target: Path,
    fmt: str,
    config: ClientConfig,
    cancel: threading.Event | None,
    progress: Progress | None,
    deadline: float,
) -> Path:
    errors: list[ModelsLabError] = []
    for url in candidates:
        attempt = 0
        while True:
            if cancel is not None and cancel.is_set():
                raise cancelled("Download cancelled.")
            if time.monotonic() >= deadline:
                raise _out_of_time(config, errors)
            try:
                _download_once(open_stream, url, target, fmt, config, cancel, progress, deadline)
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
                if time.monotonic() + wait >= deadline:
                    errors.append(failure.error)
                    raise _out_of_time(config, errors) from None
                log.info("retrying download in %.2f s after: %s", wait, failure.error)
                sleep_unless_cancelled(wait, cancel)
                attempt += 1
    raise _most_telling(errors)


def _out_of_time(config: ClientConfig, errors: list[ModelsLabError]) -> ModelsLabError:
    last = f" The last problem: {errors[-1].message}" if errors else ""
    return ModelsLabError(
        Category.NETWORK,
        f"Gave up downloading the result after {config.download_time_limit:g} s.{last}",
        "Resume the job later: the result is downloaded again without a new charge.",
    )


def _most_telling(errors: list[ModelsLabError]) -> ModelsLabError:
    """The error to report after every URL failed: expired only when all expired, else the most specific."""
    if all(error.category is Category.EXPIRED for error in errors):
        return ModelsLabError(
            Category.EXPIRED, "The result file is gone from the server (HTTP 404); outputs expire after 24 h."
        )
    for category in (Category.OFFLINE, Category.BAD_MESH, Category.NETWORK, Category.RATE_LIMITED, Category.SERVER):
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
    deadline: float,
) -> None:
    """One attempt on one URL; raises _DownloadFailure saying whether to retry, try the next URL, or stop."""
    host = host_of(url)
    response = _open(open_stream, url, config)
    with response:
        if response.status_code != 200:
            raise _refusal(response, host)
        expected = _expected_size(response, host, config.max_download_bytes)
        stop = _Stop(cancel, deadline, config)
        _stream_to(target, response, fmt, host, expected, config.max_download_bytes, stop, progress)


class _Stop:
    """Why a transfer must stop before its end: the cancel event, or the whole download's time limit."""

    def __init__(self, cancel: threading.Event | None, deadline: float, config: ClientConfig) -> None:
        self.cancel = cancel
        self.deadline = deadline
        self.config = config

    def check(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise _DownloadFailure(cancelled("Download cancelled."), retry=False, final=True)
        if time.monotonic() >= self.deadline:
            raise _DownloadFailure(_out_of_time(self.config, []), retry=False, final=True)


def _open(open_stream: OpenStream, url: str, config: ClientConfig) -> requests.Response:
    try:
        return open_stream(url)
    except ModelsLabError as refused:  # refused before any request (online access is off and the host is remote)
        raise _DownloadFailure(refused, retry=False) from None
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
    stop: _Stop,
    progress: Progress | None,
) -> None:
    """Write the body to a temp file of this attempt, check it, and rename it to target; the temp file never
    outlives a failure."""
    check = _FormatCheck(fmt)
    scan = MeshScan(fmt)  # the self-containment check reads the bytes as they stream: no second pass
    out, temp = _open_temp(target)
    try:
        with out:
            _hold(out)
            done = _copy_body(response, out, target.parent, host, expected, cap, (check, scan), stop, progress)
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
        _check_complete(temp, target, done)
        _check_contained(scan, temp, target, host)
        if not _move_into_place(temp, target, fmt):
            with contextlib.suppress(OSError):
                temp.unlink()  # another process finished first: its file stays (it may be importing it), ours goes
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise


def _open_temp(target: Path) -> tuple[BinaryIO, Path]:
    """A new, unique temp file beside target (its folder made if needed), opened unbuffered for writing."""
    for _ in range(2):
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=target.parent)
        except FileNotFoundError:
            continue  # the folder was removed between the two calls (a cleanup in another process): once more
        except OSError as exc:
            raise _DownloadFailure(_local_write_error(exc, target.parent), retry=False, final=True) from None
        return os.fdopen(fd, "wb", buffering=0), Path(name)
    raise _DownloadFailure(_interfered(target.parent, "its folder kept disappearing"), retry=True)


def _check_complete(temp: Path, target: Path, done: int) -> None:
    """The temp file on disk is still there and holds every byte received."""
    try:
        size = temp.stat().st_size
    except FileNotFoundError:
        raise _DownloadFailure(_interfered(target.parent, "the partial download vanished"), retry=True) from None
    except OSError as exc:
        raise _DownloadFailure(_local_write_error(exc, target.parent), retry=False, final=True) from None
    if size != done:
        raise _DownloadFailure(
            _interfered(target.parent, "the file on disk is shorter than the bytes received"), retry=True
        )


def _check_contained(scan: MeshScan, temp: Path, target: Path, host: str) -> None:
    """api.meshcheck's verdict on the finished temp file (fed while streaming), names resolved in target's folder."""
    try:
        scan.check(temp, display=host)
    except ModelsLabError as error:
        if not temp.exists():
            raise _DownloadFailure(_interfered(target.parent, "the partial download vanished"), retry=True) from None
        # The same bytes come back on a retry; another URL (a mirror) may hold a clean copy.
        raise _DownloadFailure(error, retry=False) from None


def _move_into_place(temp: Path, target: Path, fmt: str) -> bool:
    """Rename the checked temp file to target and return True, or return False when another process already
    put a valid file there."""
    if _valid_file(target, fmt):
        return False
    try:
        replace_retrying(temp, target, pause=0.05)
    except FileNotFoundError:
        raise _DownloadFailure(_interfered(target.parent, "the partial download vanished"), retry=True) from None
    except OSError as exc:
        if _valid_file(target, fmt):
            return False  # e.g. Windows: the target was open in another process that had just put it there
        raise _DownloadFailure(_local_write_error(exc, target.parent), retry=False, final=True) from None
    return True


def _valid_file(path: Path, fmt: str) -> bool:
    """True when path is a regular file that passes the format check and is self-contained."""
    try:
        if not path.is_file() or path.is_symlink():
            return False
        check = _FormatCheck(fmt)
        scan = MeshScan(fmt)
        size = 0
        with open(path, "rb") as handle:
            while chunk := handle.read(DOWNLOAD_CHUNK):
                size += len(chunk)
                check.feed(chunk)
                scan.feed(chunk)
        if check.problem(size) is not None:
            return False
        scan.check(path)
        return True
    except (OSError, ModelsLabError):
        return False


def _copy_body(
    response: requests.Response,
    out: BinaryIO,
    folder: Path,
    host: str,
    expected: int | None,
    cap: int,
    checks: tuple[_FormatCheck, MeshScan],
    stop: _Stop,
    progress: Progress | None,
) -> int:
    """Copy the body chunk by chunk (cancellable, capped, fed to the format check); return the bytes written."""
    # read1 returns what arrived without waiting to fill the chunk; urllib3 1.26 (Debian's, used by
    # Blender 3.4) lacks it, and its read() has the same signature for this use.
    read = getattr(response.raw, "read1", None) or response.raw.read
    done = 0
    while True:
        stop.check()
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
        try:
            _write_all(out, chunk)
        except OSError as exc:
            raise _DownloadFailure(_local_write_error(exc, folder), retry=False, final=True) from None
        for check in checks:
            check.feed(chunk)
        if progress is not None:
            progress(done, expected)


def _write_all(out: BinaryIO, chunk: bytes) -> None:
    """Write every byte: an unbuffered write may be short (disk full at the limit), then finish or fail."""
    written = out.write(chunk)
    if written != len(chunk):
        view = memoryview(chunk)[written:]
        while view:
            view = view[out.write(view) :]


def _has_statement(data: bytes, keyword: bytes) -> bool:
    """Whether data holds a line "<keyword> ..." after a newline: a single-byte search (memchr speed) for the
    keyword's letter, which a run of vertex lines hardly contains; many false hits fall back to a plain search."""
    at = data.find(keyword)
    for _ in range(64):
        if at < 0:
            return False
        if at > 0 and data[at - 1] == 0x0A and data[at + 1 : at + 2] == b" ":
            return True
        at = data.find(keyword, at + 1)
    return b"\n" + keyword + b" " in data


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
            seam = self.tail[-2:] + chunk[:2]  # a statement that starts across the chunk boundary
            self.found_v = self.found_v or b"\nv " in seam or _has_statement(chunk, b"v")
            self.found_f = self.found_f or b"\nf " in seam or _has_statement(chunk, b"f")
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


def _legacy_temp_path(target: Path) -> Path:
    """The fixed temp name of earlier versions (one per target), left behind when such a process was killed."""
    return target.with_name(f".{target.name}{TEMP_SUFFIX}")


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only

    def _hold(out: BinaryIO) -> None:
        """Windows refuses to delete a file another process has open: nothing more to do."""

    def _abandoned(path: Path) -> bool:
        return True  # deleting it fails while its writer still has it open

else:
    import fcntl

    def _hold(out: BinaryIO) -> None:
        """Lock the temp file while it is written, so a cleanup in another process can tell it is alive."""
        with contextlib.suppress(OSError):
            fcntl.flock(out.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _abandoned(path: Path) -> bool:
        """True when no live process holds the temp file's lock (its writer was killed)."""
        try:
            with open(path, "rb") as handle:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True  # closing the handle drops the lock
        except OSError:
            return False


def _remove_abandoned_temp_files(target: Path) -> None:
    """Delete temp files of target whose writer is gone (killed mid-download); never one still being written."""
    try:
        leftovers = [*target.parent.glob(f".{target.name}.*{TEMP_SUFFIX}"), _legacy_temp_path(target)]
    except OSError:
        return
    for path in leftovers:
        with contextlib.suppress(OSError):
            if path.is_file() and not path.is_symlink() and _abandoned(path):
                path.unlink()


def _interfered(folder: Path, what: str) -> ModelsLabError:
    """A download spoiled on this disk by something other than lack of space or rights (retried)."""
    return ModelsLabError(
        Category.NETWORK,
        f"The download into {folder} was disturbed ({what}); another process may be using the same folder.",
        "Try again: nothing is charged for downloading again.",
    )


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
        "Generate at a lower resolution. The limit guards your disk against a runaway server; scripts using the "
        "api package directly can change it with ClientConfig(max_download_bytes=...).",
    )
