"""Jobs: the record the journal stores, the events the caller drains, and the runner that drives them.

The runner owns a small pool of worker threads. A worker takes one job through upload -> submit -> poll ->
download and journals every state change. Workers never block on anything but the network and a per-job
threading.Event, so cancel() and shutdown() take effect at once. The caller (Blender's main thread, a
batch script) drains `events` and imports downloaded meshes itself, then calls mark_imported().
"""

from __future__ import annotations

import copy
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from .errors import Category, ModelsLabError, invalid_input
from .params import GenerationParams, check_http_url, is_url

if TYPE_CHECKING:
    from .cache import MeshCache
    from .client import JobStatus, ModelsLabClient
    from .journal import JobJournal

log = logging.getLogger(__name__)


class JobState(StrEnum):
    """Where a job is in its life; the value is what the journal and events carry."""

    QUEUED = "queued"
    UPLOADING = "uploading"
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    PROCESSING = "processing"
    DOWNLOADING = "downloading"
    DOWNLOADED = "downloaded"
    IMPORTED = "imported"
    TIMED_OUT = "timed_out"  # still processing on the server: resumable
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATES = frozenset({JobState.IMPORTED, JobState.FAILED, JobState.CANCELLED})
SETTLED_STATES = TERMINAL_STATES | {JobState.DOWNLOADED, JobState.TIMED_OUT}

TIMED_OUT_MESSAGE = "Still processing on the server — resume later."
_FACT_FIELDS = frozenset({"remote_id", "submitted_at", "eta", "future_links", "meta", "image_url", "params"})
SUBMIT_UNKNOWN_FIX = (
    "The submit was interrupted, so the server may have accepted (and charged for) the job. It is not sent "
    "again automatically to avoid a double charge; check your ModelsLab account before generating again."
)


@dataclass
class JobRecord:
    """Everything known about one job; exactly what the journal stores (JSON). Never holds the API key."""

    local_id: str
    name: str
    source: str
    params: dict[str, Any]
    base_url: str
    flavor: str
    state: str = JobState.QUEUED.value
    image_url: str | None = None
    remote_id: str | None = None
    eta: float | None = None
    future_links: list[str] = field(default_factory=list)
    output_urls: list[str] = field(default_factory=list)
    proxy_links: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    file_path: str | None = None
    file_bytes: int | None = None
    object_name: str | None = None
    error: dict[str, str] | None = None
    message: str = ""  # the latest human-readable status line (survives restarts, unlike events)
    progress: float = 0.0
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    submitted_at: float | None = None
    downloaded_at: float | None = None
    history: list[list[Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe deep copy of the fields."""
        data = asdict(self)
        data["state"] = str(self.state)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobRecord:
        """Rebuild a record; unknown keys are ignored, wrong types raise ValueError/TypeError."""
        if not isinstance(data, dict):
            raise TypeError("a job record must be a JSON object")
        for name in ("local_id", "name", "source", "base_url", "flavor"):
            if not isinstance(data.get(name), str):
                raise ValueError(f"job record field {name!r} is missing or not text")
        state = JobState(data.get("state", JobState.QUEUED.value)).value
        known = {f.name for f in fields(cls)}
        values = {k: copy.deepcopy(v) for k, v in data.items() if k in known}
        values["state"] = state
        for name in ("params", "meta", "extra"):
            if not isinstance(values.get(name, {}), dict):
                raise ValueError(f"job record field {name!r} is not an object")
        values.setdefault("params", {})
        for name in ("future_links", "output_urls", "proxy_links", "history"):
            if not isinstance(values.get(name, []), list):
                raise ValueError(f"job record field {name!r} is not a list")
        if values.get("remote_id") is not None:
            values["remote_id"] = str(values["remote_id"])
        return cls(**values)

    def copy(self) -> JobRecord:
        """An independent deep copy (events and callers get these, never the runner's own record)."""
        return copy.deepcopy(self)

    @property
    def is_terminal(self) -> bool:
        """Imported, failed or cancelled: nothing more will happen."""
        return self.state in TERMINAL_STATES

    @property
    def is_settled(self) -> bool:
        """The runner has nothing more to do (terminal, downloaded, or timed out)."""
        return self.state in SETTLED_STATES

    @property
    def was_submitted(self) -> bool:
        """True when a submit may have reached the server (so credits may have been spent)."""
        return self.remote_id is not None or any(entry and entry[0] == JobState.SUBMITTING for entry in self.history)


@dataclass
class JobEvent:
    """One change of a job, with a copy of its record taken when the event was made."""

    local_id: str
    state: str
    progress: float
    message: str
    record: JobRecord


class _Stopped(Exception):
    """Raised inside a worker when its job was cancelled or the runner is shutting down."""


class _Job:
    """The runner's private bookkeeping around one record."""

    def __init__(self, record: JobRecord) -> None:
        self.record = record  # the working copy, changed under the runner's lock
        self.public = record.copy()  # the last change that was journaled and announced: what callers see
        self.stop = threading.Event()  # set by cancel() and shutdown(): every wait of this job ends at once
        self.scheduled = False  # in the work queue or on a worker
        self.update_lock = threading.Lock()  # one change at a time per job, journal write included


def _dedupe(urls: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for url in urls:
        if isinstance(url, str) and url:
            seen.setdefault(url, None)
    return list(seen)


def _looks_like_url(source: str) -> bool:
    try:
        return is_url(source)
    except ValueError:  # e.g. "http://[::1/x": unbalanced IPv6 brackets
        return "://" in source


def _check_image_url(url: str) -> None:
    """invalid_input unless url is an http(s) URL with a host and a valid port."""
    try:
        check_http_url(url, "image URL")
        parts = urlsplit(url)
        port = parts.port  # raises ValueError when out of range
        if not parts.hostname or port == 0:
            raise ValueError("no host")
    except ValueError:
        raise invalid_input(
            f"image URL: not a valid http(s) URL: {url[:80]!r}.", "Check the address (host and port)."
        ) from None


def _name_from_source(source: str) -> str:
    if _looks_like_url(source):
        stem = PurePosixPath(unquote(urlsplit(source).path)).stem or (urlsplit(source).hostname or "")
    else:
        stem = Path(source).stem
    return stem.strip()[:63] or "image"


MAX_ODD_ANSWERS = 3  # consecutive non-5xx `server` errors while polling (malformed JSON, status error) before giving up


def _poll_error_is_final(error: ModelsLabError, odd_answers: int) -> bool:
    """Whether an error while polling ends the job. Network trouble, 429 and 5xx never do (the poll timeout
    leaves the job resumable); the server saying the job failed does; other odd answers do when they persist.
    """
    if error.category in (Category.NETWORK, Category.RATE_LIMITED):
        return False
    if error.category is not Category.SERVER:
        return True  # expired, auth, credits, invalid id: asking again cannot help
    if error.http_status is None or error.http_status >= 500:
        return False
    if "job failed" in error.message.lower():
        return True
    return odd_answers >= MAX_ODD_ANSWERS


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"


def _normalise_base(url: str) -> str:
    return (url or "").strip().rstrip("/").lower()


class JobRunner:
    """A bounded pool of workers that takes jobs from an image to a mesh file in the cache.

    Polling policy: the first wait after submit is the server's `eta` (capped), then fetches back off from
    poll_interval_min to poll_interval_max. Around the predicted finish the runner also sends cheap HEAD
    requests to the first `future_links` URL every HEAD_INTERVAL seconds and downloads as soon as it answers 200.
    """

    HEAD_INTERVAL = 0.25  # seconds between HEAD probes near the predicted finish
    HEAD_WINDOW = 5.0  # how long after the predicted finish the probes stay that tight
    HEAD_LEAD = 1.0  # probes start this long (at most 20 % of the eta) before the predicted finish
    ETA_WAIT_CAP = 30.0  # never wait longer than this between two fetches
    FETCH_LEAD = 0.3  # fetch slightly before the predicted finish
    PROBE_TIMEOUT = (5.0, 5.0)  # (connect, read) seconds of one HEAD probe
    PROGRESS_EVENT_STEP = 0.05  # download progress events at most every 5 %...
    PROGRESS_EVENT_SECONDS = 0.5  # ...or every half second

    def __init__(
        self,
        client: ModelsLabClient,
        journal: JobJournal,
        cache: MeshCache,
        *,
        max_workers: int = 4,
        poll_timeout: float = 600.0,
        poll_interval_min: float = 1.0,
        poll_interval_max: float = 5.0,
    ) -> None:
        if not isinstance(max_workers, int) or isinstance(max_workers, bool) or not 1 <= max_workers <= 64:
            raise invalid_input(f"max_workers must be a whole number from 1 to 64, got {max_workers!r}.")
        for label, value in (
            ("poll_timeout", poll_timeout),
            ("poll_interval_min", poll_interval_min),
            ("poll_interval_max", poll_interval_max),
        ):
            if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
                raise invalid_input(f"{label} must be a number of seconds > 0, got {value!r}.")
        self.client = client
        self.journal = journal
        self.cache = cache
        self.max_workers = max_workers
        self.poll_timeout = float(poll_timeout)
        self.poll_interval_min = float(poll_interval_min)
        self.poll_interval_max = max(float(poll_interval_max), self.poll_interval_min)
        self.events: queue.Queue[JobEvent] = queue.Queue()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._jobs: dict[str, _Job] = {}
        self._work: queue.Queue[str | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._pending = 0  # ids in the work queue
        self._idle = 0  # workers waiting for work
        self._closed = False

    # --- public API ------------------------------------------------------------------------------------------
    def submit(
        self,
        source: str,
        params: GenerationParams,
        *,
        name: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> JobRecord:
        """Validate (before any request), journal the job as QUEUED and schedule it; returns a copy of the record.

        source is a local image file or an http(s) URL. Raises ModelsLabError(invalid_input) for bad input and a
        categorised ModelsLabError when the journal cannot be written; in both cases nothing was sent.
        """
        self._check_open()
        if not isinstance(params, GenerationParams):
            raise invalid_input("params must be a GenerationParams.")
        if not isinstance(source, str) or not source.strip():
            raise invalid_input("No image was given.", "Choose an image file or an image URL.")
        source = source.strip()
        params = GenerationParams.from_dict(params.to_dict())
        image_url: str | None
        if _looks_like_url(source):
            _check_image_url(source)
            params.init_image = source
            params.validate()
            image_url = source
        else:
            path = Path(source).expanduser()
            if not path.is_file():
                raise invalid_input(f"Image file not found: {source}", "Choose an existing image file.")
            from .images import check_image_file

            check_image_file(path)
            source = str(path.absolute())
            params.init_image = ""
            params.validate(require_image=False)
            image_url = None
        extra = dict(extra or {})
        try:
            json.dumps(extra)
        except (TypeError, ValueError) as exc:
            raise invalid_input(f"extra must be JSON-safe data: {exc}.") from None
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise invalid_input("name must be non-empty text.")
        base_url, flavor = self._client_target(self.client)
        now = time.time()
        record = JobRecord(
            local_id=uuid.uuid4().hex,
            name=(name or _name_from_source(source)).strip(),
            source=source,
            params=params.to_dict(),
            base_url=base_url,
            flavor=flavor,
            image_url=image_url,
            message="Queued",
            created_at=now,
            updated_at=now,
            history=[[JobState.QUEUED.value, now]],
            extra=extra,
        )
        self.journal.save(record)  # a journal that cannot be written stops the job before anything is sent
        job = _Job(record)
        with self._changed:
            self._jobs[record.local_id] = job
            self._emit(record.copy())
        self._schedule(job)
        return record.copy()

    def resume_unfinished(self) -> list[JobRecord]:
        """Take over the journal's unfinished jobs; returns copies of them after resuming.

        SUBMITTED/PROCESSING/DOWNLOADING/TIMED_OUT jobs poll/download again; QUEUED/UPLOADING start again (never
        charged yet); SUBMITTING becomes FAILED(network) and is never resubmitted. DOWNLOADED jobs whose file
        exists are left for the caller to import (one event each, like a fresh download); those whose file
        vanished are downloaded again. Corrupt journal files are skipped (see journal.problems).
        """
        self._check_open()
        resumed: list[JobRecord] = []
        for record in self.journal.unfinished():
            job = self._adopt(record)
            resumed.append(self._resume_job(job, explicit=False))
        return resumed

    def resume(self, local_id: str) -> JobRecord:
        """Resume one job (also a failed or cancelled one the server had accepted: it is polled, never resubmitted)."""
        self._check_open()
        return self._resume_job(self._find(local_id), explicit=True)

    def cancel(self, local_id: str) -> JobRecord:
        """Stop working on a job at once; CANCELLED. A job the server accepted may still be charged."""
        job = self._find(local_id)
        with job.update_lock:
            with self._lock:
                record = job.record
                if record.is_terminal or record.state == JobState.DOWNLOADED:
                    return record.copy()
                if record.state == JobState.SUBMITTING:
                    message = "Cancelled while submitting: the server may have accepted the job and may still charge."
                elif record.was_submitted:
                    message = "Cancelled: stopped waiting. The server had accepted the job and may still charge for it."
                else:
                    message = "Cancelled before anything was sent; nothing was charged."
                job.stop.set()
                error = ModelsLabError(Category.CANCELLED, message)
                snapshot = self._apply(job, JobState.CANCELLED, message, None, {"error": error.to_dict()})
            return self._commit(job, snapshot)

    def wait(self, local_id: str, timeout: float | None = None) -> JobRecord:
        """Block until the job is settled (or the runner stopped working on it); returns a copy either way."""
        job = self._find(local_id)
        with self._changed:
            self._changed.wait_for(lambda: self._is_idle(job), timeout)
            return job.public.copy()

    def wait_any(self, local_ids: Iterable[str], timeout: float | None = None) -> JobRecord | None:
        """Block until one of the jobs is settled (or no longer worked on); return a copy of it, None on timeout.

        Jobs that are already settled count, so a caller removes the ids it has handled before calling again.
        """
        jobs = [self._find(local_id) for local_id in local_ids]
        if not jobs:
            return None
        with self._changed:

            def first_idle() -> _Job | None:
                return next((job for job in jobs if self._is_idle(job)), None)

            done = self._changed.wait_for(first_idle, timeout)
            return done.public.copy() if done else None

    def get(self, local_id: str) -> JobRecord | None:
        """A copy of the job's record (looked up in the journal when the runner does not hold it), or None."""
        with self._lock:
            job = self._jobs.get(local_id)
            if job is not None:
                return job.public.copy()
        try:
            return self.journal.load(local_id)
        except ModelsLabError:
            return None

    def records(self) -> list[JobRecord]:
        """Copies of the records this runner holds, oldest first."""
        with self._lock:
            return sorted((job.public.copy() for job in self._jobs.values()), key=lambda r: r.created_at)

    def mark_imported(self, local_id: str, object_name: str) -> JobRecord:
        """The caller imported the downloaded mesh as object_name: IMPORTED (terminal)."""
        job = self._find(local_id)
        with job.update_lock:
            with self._lock:
                if job.record.state not in (JobState.DOWNLOADED, JobState.IMPORTED):
                    raise invalid_input(f"Job {local_id} has no downloaded mesh to import (state {job.record.state}).")
                snapshot = self._apply(
                    job, JobState.IMPORTED, f"Imported as {object_name}", 1.0, {"object_name": str(object_name)}
                )
            return self._commit(job, snapshot)

    def mark_failed(self, local_id: str, error: ModelsLabError) -> JobRecord:
        """The caller could not finish the job (e.g. the import failed): FAILED with that error."""
        job = self._find(local_id)
        with job.update_lock:
            with self._lock:
                if job.record.is_terminal and job.record.state != JobState.IMPORTED:
                    return job.record.copy()
                job.stop.set()
                snapshot = self._apply(job, JobState.FAILED, error.message, None, {"error": error.to_dict()})
            return self._commit(job, snapshot)

    def forget(self, local_id: str, *, delete_journal: bool = True) -> None:
        """Drop a terminal job from the runner (and its journal file); the cached mesh stays for prune()."""
        job = self._find(local_id)
        with self._changed:
            if not job.record.is_terminal or job.scheduled:
                raise invalid_input(f"Job {local_id} is still {job.record.state}; cancel it first.")
            self._jobs.pop(local_id, None)
        if delete_journal:
            self.journal.delete(local_id)

    def prune_cache(self, older_than_days: float) -> int:
        """MeshCache.prune, keeping the files of every job not terminal (e.g. downloaded, not imported yet)."""
        latest = {record.local_id: (record.state, record.file_path) for record in self.journal.unfinished()}
        with self._lock:  # the runner's own view is newer than the journal's
            latest.update((i, (job.record.state, job.record.file_path)) for i, job in self._jobs.items())
        keep = [path for state, path in latest.values() if path and state not in TERMINAL_STATES]
        return self.cache.prune(older_than_days, keep=keep)

    def drain_events(self, max_events: int | None = None) -> list[JobEvent]:
        """Take up to max_events (all when None) queued events without blocking."""
        drained: list[JobEvent] = []
        while max_events is None or len(drained) < max_events:
            try:
                drained.append(self.events.get_nowait())
            except queue.Empty:
                break
        return drained

    def shutdown(self, wait: bool = True, timeout: float = 10.0) -> None:
        """Stop waiting in every job and (when wait) join every worker thread, at most timeout seconds in total.

        Jobs keep their last journaled state (an interrupted poll stays SUBMITTED/PROCESSING), so a later
        resume_unfinished() picks them up. A worker inside a network call finishes that call first.
        """
        with self._changed:
            first = not self._closed
            self._closed = True
            for job in self._jobs.values():
                job.stop.set()
            while True:  # jobs never started stay as journaled
                try:
                    local_id = self._work.get_nowait()
                except queue.Empty:
                    break
                if local_id is not None:
                    self._pending -= 1
                    if local_id in self._jobs:
                        self._jobs[local_id].scheduled = False
            threads = list(self._threads)
            if first:
                for _ in threads:
                    self._work.put(None)
            self._changed.notify_all()
        if not wait:
            return
        deadline = time.monotonic() + max(0.0, timeout)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [thread.name for thread in threads if thread.is_alive()]
        if alive:
            log.warning("ModelsLab job workers still busy in a network call after shutdown: %s", ", ".join(alive))

    @property
    def closed(self) -> bool:
        """True after shutdown()."""
        return self._closed

    def threads(self) -> list[threading.Thread]:
        """The worker threads started so far (for tests and diagnostics)."""
        with self._lock:
            return list(self._threads)

    # --- bookkeeping --------------------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise ModelsLabError(Category.CANCELLED, "The job runner has been shut down.", "Start a new session.")

    def _find(self, local_id: str) -> _Job:
        with self._lock:
            job = self._jobs.get(local_id)
        if job is not None:
            return job
        record = self.journal.load(local_id) if isinstance(local_id, str) else None
        if record is None:
            raise invalid_input(f"No job with id {str(local_id)[:80]!r}.")
        return self._adopt(record)

    def _adopt(self, record: JobRecord) -> _Job:
        """The runner's job for a journal record (the one already held wins)."""
        with self._lock:
            job = self._jobs.get(record.local_id)
            if job is None:
                job = self._jobs[record.local_id] = _Job(record)
            return job

    @staticmethod
    def _is_idle(job: _Job) -> bool:
        return job.public.is_settled or not job.scheduled

    @staticmethod
    def _client_target(client: Any) -> tuple[str, str]:
        config = getattr(client, "config", None)
        return (
            str(getattr(config, "base_url", "") or "https://modelslab.com"),
            str(getattr(config, "flavor", "") or "enterprise"),
        )

    def _emit(self, snapshot: JobRecord, message: str | None = None) -> None:
        """Queue an event (called with the lock held, so events keep the order of the changes)."""
        self.events.put(
            JobEvent(
                local_id=snapshot.local_id,
                state=snapshot.state,
                progress=snapshot.progress,
                message=snapshot.message if message is None else message,
                record=snapshot,
            )
        )

    def _apply(
        self,
        job: _Job,
        state: JobState | None,
        message: str | None,
        progress: float | None,
        changes: dict[str, Any],
        force: bool = False,
    ) -> JobRecord:
        """Change the working record (runner lock held); returns a snapshot for _commit."""
        record = job.record
        if record.state == JobState.CANCELLED and state != JobState.CANCELLED and not force:
            # A cancelled job stays cancelled whatever its worker still reports; only facts are kept
            # (e.g. the remote id of a submit that returned after the cancel).
            changes = {key: value for key, value in changes.items() if key in _FACT_FIELDS}
            state = message = progress = None
        for key, value in changes.items():
            setattr(record, key, value)
        now = time.time()
        if state is not None and record.state != state:
            record.state = state.value
            record.history.append([state.value, now])
        if message is not None:
            record.message = message
        if progress is not None:
            record.progress = max(0.0, min(1.0, float(progress)))
        record.updated_at = now
        return record.copy()

    def _commit(self, job: _Job, snapshot: JobRecord, *, save: bool = True, strict: bool = False) -> JobRecord:
        """Journal the snapshot (job.update_lock held), then publish it: event, waiters, get()/records().

        A failed journal write is reported in an extra event and the job goes on, except when strict (the write
        before a submit): then it raises and nothing is sent.
        """
        warning = None
        if save:
            try:
                self.journal.save(snapshot)
            except ModelsLabError as exc:
                if strict:
                    raise
                log.warning("%s", exc)
                warning = f"Warning: {exc.message} The job continues but cannot be resumed after a restart."
        with self._changed:
            job.public = snapshot
            self._emit(snapshot.copy())
            if warning:
                self._emit(snapshot.copy(), warning)
            self._changed.notify_all()
        return snapshot.copy()

    def _update(
        self,
        job: _Job,
        state: JobState | None = None,
        message: str | None = None,
        progress: float | None = None,
        *,
        save: bool = True,
        strict: bool = False,
        force: bool = False,
        **changes: Any,
    ) -> JobRecord:
        with job.update_lock:
            with self._lock:
                snapshot = self._apply(job, state, message, progress, changes, force)
            return self._commit(job, snapshot, save=save, strict=strict)

    def _schedule(self, job: _Job) -> None:
        with self._changed:
            if self._closed or job.scheduled:
                return
            job.scheduled = True
            if job.stop.is_set():
                job.stop = threading.Event()
            self._pending += 1
            self._work.put(job.record.local_id)
            if self._pending > self._idle and len(self._threads) < self.max_workers:
                self._idle += 1
                thread = threading.Thread(
                    target=self._worker, name=f"modelslab-job-{len(self._threads) + 1}", daemon=True
                )
                self._threads.append(thread)
                thread.start()

    def _resume_job(self, job: _Job, *, explicit: bool) -> JobRecord:
        with self._changed:
            if job.scheduled:
                return job.public.copy()
            record = job.record.copy()
            state = JobState(record.state)
        if state == JobState.SUBMITTING:
            error = ModelsLabError(
                Category.NETWORK, "The job was interrupted while it was being submitted.", SUBMIT_UNKNOWN_FIX
            )
            return self._update(job, JobState.FAILED, error.message, None, error=error.to_dict())
        if state == JobState.IMPORTED:
            if explicit:
                raise invalid_input(f"Job {record.local_id} is already imported; re-import it instead.")
            return record
        if state == JobState.DOWNLOADED and record.file_path and Path(record.file_path).is_file():
            return self._update(job, None, "Downloaded earlier; ready to import", save=False)
        if state in (JobState.FAILED, JobState.CANCELLED):
            if not explicit:
                return record
            if record.remote_id is None:
                raise invalid_input(
                    f"Job {record.local_id} never got a server id, so it cannot be resumed.",
                    "Generate it again." if not record.was_submitted else SUBMIT_UNKNOWN_FIX,
                )
        if state in (JobState.QUEUED, JobState.UPLOADING):  # never sent: goes to the current server
            base_url, flavor = self._client_target(self.client)
            self._update(job, None, "Resumed", save=False, base_url=base_url, flavor=flavor)
        else:
            mismatch = self._server_mismatch(record)
            if mismatch:
                return self._update(job, None, mismatch, save=False)
        # Resumed jobs leave the settled states at once, so wait() waits for the new outcome.
        if state in (JobState.TIMED_OUT, JobState.FAILED, JobState.CANCELLED):
            self._update(job, JobState.PROCESSING, "Resumed: asking the server again", None, force=True, error=None)
        elif state == JobState.DOWNLOADED:
            if record.output_urls:
                self._update(job, JobState.DOWNLOADING, "The downloaded file is missing; downloading it again")
            elif record.remote_id is not None:
                self._update(job, JobState.PROCESSING, "The downloaded file is missing; asking the server again")
            else:
                error = ModelsLabError(Category.BAD_MESH, "The downloaded file is missing and no URL is known.")
                return self._update(job, JobState.FAILED, error.message, None, error=error.to_dict())
        self._schedule(job)
        with self._lock:
            return job.public.copy()

    def _server_mismatch(self, record: JobRecord) -> str | None:
        base_url, flavor = self._client_target(self.client)
        if (_normalise_base(base_url), flavor) == (_normalise_base(record.base_url), record.flavor):
            return None
        return (
            f"Not resumed: this job was submitted to {record.base_url} ({record.flavor} API) but the add-on now "
            f"uses {base_url} ({flavor}). Switch back to resume it."
        )

    # --- the worker ---------------------------------------------------------------------------------------------
    def _worker(self) -> None:
        while True:
            local_id = self._work.get()
            with self._changed:
                self._idle -= 1
                if local_id is None:
                    return
                self._pending -= 1
                job = self._jobs.get(local_id)
                closed = self._closed
            try:
                if job is not None and not closed:
                    self._drive(job)
            finally:
                self._release(job)

    def _release(self, job: _Job | None) -> None:
        """The worker is done with job; waits for a change in flight (e.g. a cancel being journaled) to publish."""
        if job is None:
            with self._changed:
                self._idle += 1
            return
        with job.update_lock, self._changed:
            job.scheduled = False
            self._idle += 1
            self._changed.notify_all()

    def _drive(self, job: _Job) -> None:
        """Take one job as far as it goes: never raises (errors become FAILED, stops leave the state as is)."""
        try:
            submitted_eta: float | None = None
            while True:
                self._check_stop(job)
                with self._lock:
                    state = JobState(job.record.state)
                if state in (JobState.QUEUED, JobState.UPLOADING):
                    submitted_eta = self._step_submit(job)
                elif state in (JobState.SUBMITTED, JobState.PROCESSING, JobState.TIMED_OUT):
                    if not self._step_poll(job, submitted_eta):
                        return
                    submitted_eta = None
                elif state == JobState.DOWNLOADING:
                    self._step_download(job)
                else:
                    return
        except _Stopped:
            return
        except ModelsLabError as exc:
            if not job.stop.is_set():
                self._fail(job, exc)
        except Exception as exc:
            log.exception("Unexpected error in ModelsLab job %s", job.record.local_id)
            if not job.stop.is_set():
                self._fail(
                    job,
                    ModelsLabError(
                        Category.SERVER,
                        f"Unexpected error: {type(exc).__name__}: {exc}",
                        "This looks like a bug in the add-on; please report it. A submitted job can be resumed.",
                    ),
                )

    def _fail(self, job: _Job, error: ModelsLabError) -> None:
        self._update(job, JobState.FAILED, error.message, None, error=error.to_dict())

    @staticmethod
    def _check_stop(job: _Job) -> None:
        if job.stop.is_set():
            raise _Stopped

    def _step_submit(self, job: _Job) -> float | None:
        """Upload a local image, then submit once; returns the server's eta."""
        with self._lock:
            record = job.record.copy()
        client = self.client
        params = GenerationParams.from_dict(record.params)
        if _looks_like_url(record.source):
            params.init_image = record.image_url or record.source
        else:
            self._update(job, JobState.UPLOADING, "Uploading the image", 0.02, save=True)
            image_url = client.upload_image(record.source, cancel=job.stop)
            self._check_stop(job)
            params.init_image = image_url
            self._update(job, None, "Image uploaded", 0.04, image_url=image_url, params=params.to_dict())
        params.validate()
        self._check_stop(job)  # the last moment where stopping costs nothing
        status = self._submit_once(job, client, params)
        # Recorded even when cancelled or shutting down meanwhile: the server has the job now.
        changes: dict[str, Any] = {
            "remote_id": status.job_id,
            "eta": status.eta,
            "future_links": list(status.future_links),
            "submitted_at": time.time(),
        }
        if status.meta:
            changes["meta"] = dict(status.meta)
        if status.status == "success" and status.output:
            changes.update(output_urls=list(status.output), proxy_links=list(status.proxy_links))
            self._update(job, JobState.SUBMITTED, "Submitted", 0.08, **changes)
            self._update(job, JobState.DOWNLOADING, "Ready on the server; downloading", 0.8)
            return None
        if status.job_id is None and not status.future_links:
            self._update(job, JobState.SUBMITTED, "Submitted", 0.08, **changes)
            raise ModelsLabError(
                Category.SERVER,
                "The server accepted the job but returned no id and no output links, so it cannot be followed.",
                "Check your ModelsLab account for the result.",
            )
        eta_text = f" (about {_seconds(status.eta)})" if status.eta else ""
        self._update(job, JobState.SUBMITTED, f"Submitted{eta_text}", 0.08, **changes)
        return status.eta

    def _submit_once(self, job: _Job, client: Any, params: GenerationParams) -> JobStatus:
        """Send the job; sent again only after a refusal (429) the client gave up waiting on, never otherwise."""
        give_up = time.monotonic() + self.poll_timeout
        while True:
            # Journal SUBMITTING before the request: after a crash it tells us never to send this job again.
            self._update(job, JobState.SUBMITTING, "Submitting", 0.05, strict=True)
            try:
                return client.submit(params, cancel=job.stop)
            except Exception as exc:
                if isinstance(exc, ModelsLabError) and exc.category is Category.CANCELLED:
                    # The client only stops this way between attempts the server refused (429) or never received.
                    self._update(job, JobState.QUEUED, "Interrupted before the server took the job; not charged.")
                    raise _Stopped from None
                if isinstance(exc, ModelsLabError) and exc.category is Category.RATE_LIMITED:
                    wait = max(exc.retry_after or self.poll_interval_max, self.poll_interval_min)
                    wait = min(wait, self.ETA_WAIT_CAP)
                    if time.monotonic() + wait < give_up:
                        # A 429 is a refusal: the server did not take (or charge for) the job, so waiting is safe.
                        self._update(
                            job,
                            JobState.QUEUED,
                            f"The server rate limited the submit (nothing was charged); retrying in {_seconds(wait)}",
                        )
                        if job.stop.wait(wait):
                            raise _Stopped from None
                        continue
                # Recorded even while shutting down, so a resume does not mistake it for an interrupted submit.
                if not isinstance(exc, ModelsLabError):
                    log.exception("Unexpected error while submitting ModelsLab job %s", job.record.local_id)
                    exc = ModelsLabError(
                        Category.NETWORK, f"The submit failed unexpectedly ({type(exc).__name__}).", SUBMIT_UNKNOWN_FIX
                    )
                self._fail(job, exc)
                raise _Stopped from None

    def _processing_progress(self, record: JobRecord, eta: float | None) -> float:
        if not record.submitted_at or eta is None:
            return max(record.progress, 0.1)
        elapsed = max(0.0, time.time() - record.submitted_at)
        total = elapsed + max(0.0, eta)
        return 0.1 + 0.7 * (elapsed / total if total > 0 else 1.0)

    def _step_poll(self, job: _Job, submitted_eta: float | None) -> bool:
        """Wait for the server's result; True when it is ready to download, False after the poll timeout."""
        with self._lock:
            record = job.record.copy()
        client = self.client
        future = _dedupe(record.future_links)
        start = time.monotonic()
        deadline = start + self.poll_timeout
        fetch_interval = self.poll_interval_min
        predicted: float | None = None
        next_fetch = start
        if submitted_eta is not None:  # fresh submit: the first wait is the server's eta
            predicted = start + max(0.0, submitted_eta)
            next_fetch = start + min(max(submitted_eta - self.FETCH_LEAD, 0.25), self.ETA_WAIT_CAP)
        if record.remote_id is None:
            next_fetch = float("inf")  # only the future links can tell (submit returned no id)
        probing = bool(future)
        next_probe = self._next_probe(start, predicted, submitted_eta, first=True)
        last_fetch = -float("inf")
        final_check = False
        odd_answers = 0
        while True:
            self._check_stop(job)
            now = time.monotonic()
            if now >= next_fetch and record.remote_id is not None:
                last_fetch = now
                try:
                    status = client.fetch(record.remote_id, cancel=job.stop)
                except ModelsLabError as exc:
                    odd = exc.category is Category.SERVER and (exc.http_status or 500) < 500
                    odd_answers = odd_answers + 1 if odd else 0
                    if _poll_error_is_final(exc, odd_answers):
                        raise
                    self._check_stop(job)
                    wait = max(fetch_interval, min(exc.retry_after or 0.0, self.ETA_WAIT_CAP))
                    fetch_interval = min(fetch_interval * 2, self.poll_interval_max)
                    next_fetch = time.monotonic() + wait
                    self._update(job, None, f"Still waiting; the last status check failed: {exc.message}", save=False)
                else:
                    odd_answers = 0
                    self._check_stop(job)
                    if status.status == "success":
                        return self._ready(job, status.output, status.proxy_links, status.meta)
                    now = time.monotonic()
                    if status.future_links:
                        future = _dedupe(status.future_links)
                        probing = probing or bool(future)
                    predicted = now + status.eta if status.eta is not None else predicted
                    if status.eta is not None and status.eta > fetch_interval:
                        wait = min(status.eta - self.FETCH_LEAD, self.ETA_WAIT_CAP)
                    else:
                        wait = fetch_interval
                        fetch_interval = min(fetch_interval * 1.5, self.poll_interval_max)
                    next_fetch = now + wait
                    self._note_processing(job, status, future)
            if probing and now >= next_probe:
                found = self._probe(client, future[0])
                self._check_stop(job)
                if found:
                    return self._ready(job, future, [], None)
                if found is None:
                    probing = False
                now = time.monotonic()
                next_probe = self._next_probe(now, predicted, None, first=False)
            now = time.monotonic()
            if now >= deadline:
                if record.remote_id is not None and not final_check and now - last_fetch > self.HEAD_INTERVAL:
                    final_check = True  # one last look before giving up (the eta may have been past the deadline)
                    next_fetch = now
                    continue
                self._update(job, JobState.TIMED_OUT, TIMED_OUT_MESSAGE)
                return False
            wake = min(next_fetch, next_probe if probing else float("inf"), deadline)
            if job.stop.wait(max(0.0, wake - now)):
                raise _Stopped

    def _next_probe(self, now: float, predicted: float | None, eta: float | None, *, first: bool) -> float:
        """When to send the next HEAD: tight around the predicted finish, slower when far from it."""
        if predicted is None:
            return now + (0.0 if first else self.poll_interval_min / 2)
        lead = min(self.HEAD_LEAD, 0.2 * eta) if eta is not None else self.HEAD_LEAD
        if now < predicted - lead:
            return predicted - lead
        late = now - predicted - self.HEAD_WINDOW
        if late <= 0:
            return now + self.HEAD_INTERVAL
        return now + min(self.poll_interval_min, self.HEAD_INTERVAL * (1.0 + late / self.HEAD_WINDOW))

    def _note_processing(self, job: _Job, status: JobStatus, future: list[str]) -> None:
        with self._lock:
            record = job.record
            new_state = record.state != JobState.PROCESSING
            new_links = future != record.future_links
            progress = self._processing_progress(record, status.eta)
        eta_text = f" (about {_seconds(status.eta)} left)" if status.eta else ""
        changes: dict[str, Any] = {"eta": status.eta, "future_links": future}
        if status.meta:
            changes["meta"] = dict(status.meta)
        self._update(
            job,
            JobState.PROCESSING,
            f"Processing on the server{eta_text}",
            progress,
            save=new_state or new_links,
            **changes,
        )

    def _ready(self, job: _Job, output: list[str], proxy_links: list[str], meta: dict | None) -> bool:
        urls = _dedupe(output)
        if not urls:
            raise ModelsLabError(Category.SERVER, "The server reported success but gave no output URL.")
        changes: dict[str, Any] = {"output_urls": urls, "proxy_links": _dedupe(proxy_links)}
        if meta:
            changes["meta"] = dict(meta)
        self._update(job, JobState.DOWNLOADING, "Ready on the server; downloading", 0.8, **changes)
        return True

    def _step_download(self, job: _Job) -> None:
        with self._lock:
            record = job.record.copy()
        urls = _dedupe([*record.output_urls, *record.proxy_links])
        if not urls:
            if record.remote_id is None:
                raise ModelsLabError(Category.SERVER, "No output URL is known for this job.")
            self._update(job, JobState.PROCESSING, "Asking the server for the output links")
            return
        if record.file_path and Path(record.file_path).is_file():
            target = Path(record.file_path)
        else:
            target = self.cache.path_for(record, urls[0])
        if not (target.is_file() and target.stat().st_size > 0):
            self._update(job, None, "Downloading", 0.8, file_path=str(target))
            fmt = str(record.params.get("output_format") or "obj")
            try:
                target = self.client.download(
                    urls, target, expected_format=fmt, cancel=job.stop, progress=self._progress_callback(job)
                )
            except OSError as exc:  # the cache folder, not the network: read-only, disk full, removed
                raise ModelsLabError(
                    Category.INVALID_INPUT,
                    f"Cannot write the mesh into the cache folder {target.parent}: {exc.strerror or exc}.",
                    "Free some disk space or choose a writable cache folder, then resume the job "
                    "(it is downloaded again without a new charge).",
                ) from None
            self._check_stop(job)
        size = Path(target).stat().st_size
        self._update(
            job,
            JobState.DOWNLOADED,
            f"Downloaded ({size / 1e6:.1f} MB)" if size >= 1e5 else f"Downloaded ({size} bytes)",
            1.0,
            file_path=str(target),
            file_bytes=size,
            downloaded_at=time.time(),
            error=None,
        )

    def _progress_callback(self, job: _Job):
        last = {"fraction": -1.0, "at": 0.0}

        def report(done: int, total: int | None) -> None:
            now = time.monotonic()
            fraction = done / total if total else 0.0
            if (
                fraction - last["fraction"] < self.PROGRESS_EVENT_STEP
                and now - last["at"] < self.PROGRESS_EVENT_SECONDS
            ):
                return
            last.update(fraction=fraction, at=now)
            mb = done / 1e6
            text = f"Downloading {mb:.1f} of {total / 1e6:.1f} MB" if total else f"Downloading {mb:.1f} MB"
            self._update(job, None, text, 0.8 + 0.2 * min(1.0, fraction), save=False)

        return report

    def _probe(self, client: Any, url: str) -> bool | None:
        """HEAD the URL: True when the file is there, False when not (yet), None when HEAD is not supported."""
        return client.probe(url, timeout=self.PROBE_TIMEOUT)
