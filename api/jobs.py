"""The job runner: a bounded pool of worker threads that takes jobs from an image to a mesh in the cache.

A worker takes one job through upload -> submit -> poll -> download and every state change is journaled before
it is announced; the steps, and the checks a new job passes before it is journaled, live in api.worker. Workers
never block on anything but the network and a per-job threading.Event, so cancel() and shutdown() take effect at
once. The caller (Blender's main thread, a batch script) drains `events` and imports downloaded meshes itself,
then calls mark_imported().

The record model lives in api.records and the poll timetable in api.polling; their names stay importable here.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import Category, ModelsLabError, invalid_input
from .params import GenerationParams
from .polling import MAX_ODD_ANSWERS
from .records import SETTLED_STATES, TERMINAL_STATES, JobEvent, JobRecord, JobState, may_have_been_charged
from .worker import SUBMIT_UNKNOWN_FIX, TIMED_OUT_MESSAGE, WorkerSteps, _Job, adopted_job_fields, new_job_fields

if TYPE_CHECKING:
    from .cache import MeshCache
    from .client import ModelsLabClient
    from .journal import JobJournal
    from .ownership import SessionLock

__all__ = [
    "MAX_ODD_ANSWERS",
    "SETTLED_STATES",
    "SUBMIT_UNKNOWN_FIX",
    "TERMINAL_STATES",
    "TIMED_OUT_MESSAGE",
    "JobEvent",
    "JobRecord",
    "JobRunner",
    "JobState",
]

log = logging.getLogger(__name__)

_FACT_FIELDS = frozenset({"remote_id", "submitted_at", "eta", "future_links", "meta", "image_url", "params"})
RECOVERED_MESSAGE = "Recovered from a closed session"
FOREIGN_MESSAGE = "Running in another Blender (or batch) that shares this folder; it is left to that process."


def _normalise_base(url: str) -> str:
    return (url or "").strip().rstrip("/").lower()


class JobRunner(WorkerSteps):
    """A bounded pool of workers that takes jobs from an image to a mesh file in the cache.

    Polling follows api.polling: HEAD probes of the first `future_links` URL on the official CLI's timetable
    until the server's `eta`, one fetch just before it, a probe at it, then one every HEAD_INTERVAL for
    HEAD_WINDOW seconds, then a gap growing with the job's age (BACKOFF) up to poll_interval_max; fetches take
    a check's place from poll_interval_min after the eta on.
    The download starts as soon as a probe answers 200 or a fetch says success. A job still processing at
    poll_timeout becomes TIMED_OUT (resumable). The timetable's constants are class attributes from WorkerSteps.

    Several processes may share one journal. With an owner (this process's api.ownership.SessionLock) every job
    it starts names that session, and the runner never polls, downloads or changes a job whose owner is
    another live process (see foreign()); a job whose owner has ended is taken over once, under the lock's
    takeover(), and marked adopted_from_closed_session. Without an owner every journaled job is treated as
    this process's own.
    """

    def __init__(
        self,
        client: ModelsLabClient,
        journal: JobJournal,
        cache: MeshCache,
        *,
        max_workers: int = 4,
        poll_timeout: float = 3600.0,
        poll_interval_min: float = 1.0,
        poll_interval_max: float = 5.0,
        owner: SessionLock | None = None,
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
        self.owner = owner
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

        An image job's source is a local image file or an http(s) URL (the front view); params.extra_views may
        hold more views as local files or URLs, each checked here and local ones uploaded after the front. A text
        job (params.kind "text") has no image: source is "" and the job is named from its prompt. Raises
        ModelsLabError(invalid_input) for bad input and a categorised ModelsLabError when the journal cannot be
        written; in both cases nothing was sent.
        """
        self._check_open()
        return self._start(**new_job_fields(source, params, name, extra))

    def adopt(self, remote_id: str, *, name: str | None = None, extra: dict[str, Any] | None = None) -> JobRecord:
        """Follow a job someone else submitted (the CLI, a web app, a webhook pipeline) like one of ours.

        The record starts SUBMITTED with remote_id: the worker only polls (fetch), downloads and leaves the mesh
        for the caller to import. Nothing is submitted and nothing is charged by this call. The mesh format is
        taken from the output link's name. Raises invalid_input for a malformed id (before any request).
        """
        self._check_open()
        return self._start(**adopted_job_fields(remote_id, name, extra))

    def _start(
        self,
        *,
        name: str,
        source: str,
        params: dict[str, Any],
        image_url: str | None,
        extra: dict[str, Any],
        remote_id: str | None = None,
    ) -> JobRecord:
        """Journal a new job (QUEUED, or SUBMITTED when it already has a remote id) and schedule it."""
        base_url, flavor = self._client_target(self.client)
        now = time.time()
        state = JobState.QUEUED if remote_id is None else JobState.SUBMITTED
        record = JobRecord(
            local_id=uuid.uuid4().hex,
            name=name,
            source=source,
            params=params,
            base_url=base_url,
            flavor=flavor,
            state=state.value,
            image_url=image_url,
            remote_id=remote_id,
            submitted_at=None if remote_id is None else now,
            message="Queued" if remote_id is None else "Adopted: asking the server for the job",
            created_at=now,
            updated_at=now,
            history=[[state.value, now]],
            extra=extra,
            owner=self.owner.session_id if self.owner is not None else None,
        )
        self.journal.save(record)  # a journal that cannot be written stops the job before anything is sent
        job = _Job(record)
        with self._changed:
            self._jobs[record.local_id] = job
            self._emit(record.copy())
        self._schedule(job)
        return record.copy()

    def resume_unfinished(self) -> list[JobRecord]:
        """Take over the journal's unfinished jobs that are this process's to run; returns copies after resuming.

        SUBMITTED/PROCESSING/DOWNLOADING/TIMED_OUT jobs poll/download again; QUEUED/UPLOADING start again (never
        charged yet); SUBMITTING becomes FAILED(network) and is never resubmitted. DOWNLOADED jobs whose file
        exists are left for the caller to import (one event each, like a fresh download); those whose file
        vanished are downloaded again. Corrupt journal files are skipped (see journal.problems).
        With an owner, jobs of another live process are skipped (see foreign()); jobs whose process has ended
        are adopted (owner = this session, adopted_from_closed_session = True).
        """
        self._check_open()
        resumed: list[JobRecord] = []
        for record in self.journal.unfinished():
            job = self._claim(record)
            if job is not None:
                resumed.append(self._resume_job(job, explicit=False))
        return resumed

    def foreign(self) -> list[JobRecord]:
        """Copies of the journal's unfinished jobs that another live process owns, oldest first (empty without
        an owner). This runner never polls, downloads or changes them; read the journal again to follow them."""
        if self.owner is None:
            return []
        with self._lock:
            held = set(self._jobs)
        found = [
            record
            for record in self.journal.unfinished()
            if record.local_id not in held and self._owned_elsewhere(record)
        ]
        return sorted(found, key=lambda r: r.created_at)

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
                elif may_have_been_charged(record):
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
            # Called on Blender's main thread: no fsync. A power cut that undoes this write also loses the unsaved
            # scene, and the job then offers its import again, which is what the user needs.
            return self._commit(job, snapshot, durable=False)

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
        claimed = self._claim(record)
        if claimed is None:
            raise invalid_input(f"Job {record.name!r}: {FOREIGN_MESSAGE}")
        return claimed

    def _adopt(self, record: JobRecord) -> _Job:
        """The runner's job for a journal record (the one already held wins)."""
        with self._lock:
            job = self._jobs.get(record.local_id)
            if job is None:
                job = self._jobs[record.local_id] = _Job(record)
            return job

    def _owned_elsewhere(self, record: JobRecord) -> bool:
        """True when another live process owns the record (never without an owner of our own)."""
        owner = self.owner
        return owner is not None and record.owner != owner.session_id and owner.owner_alive(record.owner)

    def _claim(self, record: JobRecord) -> _Job | None:
        """The runner's job for a journal record, taking it over when its owner has ended; None when another live
        process owns it. The check and the journal write happen under the folder-wide takeover lock, so of two
        processes adopting the same job one wins and the other then sees a live owner."""
        owner = self.owner
        with self._lock:
            held = self._jobs.get(record.local_id)
        if held is not None or owner is None or record.owner == owner.session_id:
            return held or self._adopt(record)
        with owner.takeover():
            current = self.journal.load(record.local_id) or record
            if current.owner == owner.session_id:
                return self._adopt(current)
            if owner.owner_alive(current.owner):
                return None
            current.owner = owner.session_id
            current.adopted_from_closed_session = True
            if not current.is_terminal:
                current.message = f"{RECOVERED_MESSAGE}: {current.message}" if current.message else RECOVERED_MESSAGE
            current.updated_at = time.time()
            self.journal.save(current)
        return self._adopt(current)

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

    def _commit(
        self, job: _Job, snapshot: JobRecord, *, save: bool = True, strict: bool = False, durable: bool = True
    ) -> JobRecord:
        """Journal the snapshot (job.update_lock held), then publish it: event, waiters, get()/records().

        A failed journal write is reported in an extra event and the job goes on, except when strict (the write
        before a submit): then it raises and nothing is sent.
        """
        warning = None
        if save:
            try:
                self.journal.save(snapshot, durable=durable)
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
        durable: bool = True,
        **changes: Any,
    ) -> JobRecord:
        with job.update_lock:
            with self._lock:
                snapshot = self._apply(job, state, message, progress, changes, force)
            return self._commit(job, snapshot, save=save, strict=strict, durable=durable)

    def _update_beside(
        self, job: _Job, message: str, progress: float, *, durable: bool, **changes: Any
    ) -> threading.Thread:
        """Apply a change now and journal and publish it on a helper thread while the caller goes on; join the
        returned thread before the caller's step ends. job.update_lock is taken here and released by the helper,
        so every later change of the job (a progress event, the end of the download, a failure, a cancel) waits
        for this one to be on disk first."""
        job.update_lock.acquire()
        try:
            with self._lock:
                snapshot = self._apply(job, None, message, progress, changes)
            thread = threading.Thread(
                target=self._commit_then_release,
                args=(job, snapshot, durable),
                name=f"modelslab-journal-{job.record.local_id}",
                daemon=True,
            )
            thread.start()
        except BaseException:
            job.update_lock.release()
            raise
        return thread

    def _commit_then_release(self, job: _Job, snapshot: JobRecord, durable: bool) -> None:
        try:
            self._commit(job, snapshot, durable=durable)
        except Exception:
            log.exception("Could not journal ModelsLab job %s", snapshot.local_id)
        finally:
            job.update_lock.release()

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
                    "Generate it again." if not may_have_been_charged(record) else SUBMIT_UNKNOWN_FIX,
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
