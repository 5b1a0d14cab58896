"""The steps a worker thread takes one job through (upload, submit, poll, download), and the checks a new job
passes before it is journaled (new_job_fields, adopted_job_fields).

Mixed into JobRunner (api.jobs), which owns the threads, the lock and the journal: a step reads the working
record under the runner's lock and reports every change through _update(), which journals and publishes it.
Steps wait only on the network and on the job's stop event, so cancel() and shutdown() take effect at once.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from . import polling
from .errors import Category, ModelsLabError, invalid_input
from .params import OUTPUT_FORMATS, TEXT, VIEW_NAMES, GenerationParams, check_http_url, is_url
from .polling import PollSchedule, PollTiming
from .records import JobRecord, JobState
from .responses import JobStatus

if TYPE_CHECKING:
    from .cache import MeshCache
    from .client import ModelsLabClient

log = logging.getLogger(__name__)

TIMED_OUT_MESSAGE = "Still processing on the server — resume later."
SUBMIT_UNKNOWN_FIX = (
    "The submit was interrupted, so the server may have accepted (and charged for) the job. It is not sent "
    "again automatically to avoid a double charge; check your ModelsLab account before generating again."
)


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
        self.ready_answer: Any = None  # the probe's open download answer, handed to the download step

    def drop_ready_answer(self) -> Any:
        """Take the probe's open answer (None when there is none); whoever takes it uses or closes it."""
        answer, self.ready_answer = self.ready_answer, None
        return answer

    def close_ready_answer(self) -> None:
        """Close the probe's open answer when nothing will use it."""
        answer = self.drop_ready_answer()
        if answer is not None:
            answer.close()


def _dedupe(urls: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for url in urls:
        if isinstance(url, str) and url:
            seen.setdefault(url, None)
    return list(seen)


def _format_of(url: str) -> str:
    """The mesh format a link's file name says (an adopted job's format is not known otherwise); obj if none."""
    suffix = PurePosixPath(urlsplit(url).path).suffix.lstrip(".").lower()
    return suffix if suffix in OUTPUT_FORMATS else "obj"


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"


# --- a new job's inputs, checked before anything is journaled or sent -------------------------------------------
def new_job_fields(source: str, params: GenerationParams, name: str | None, extra: Any) -> dict[str, Any]:
    """The checked fields of a job to submit (JobRunner._start's keywords); invalid_input before any request.

    An image job's source is a local image file or an http(s) URL (the front view); params.extra_views may hold
    more views as local files or URLs, each checked here. A text job (params.kind "text") has no image: source
    is "" and the job is named from its prompt.
    """
    if not isinstance(params, GenerationParams):
        raise invalid_input("params must be a GenerationParams.")
    params = GenerationParams.from_dict(params.to_dict())
    image_url: str | None = None
    if params.kind == TEXT:
        if not isinstance(source, str) or source.strip():
            raise invalid_input('A text job takes no image; give source="".', "Clear the image.")
        params.validate()
        source = ""
        default_name = _name_from_prompt(params.prompt)
    else:
        if not isinstance(source, str) or not source.strip():
            raise invalid_input("No image was given.", "Choose an image file or an image URL.")
        source = source.strip()
        params.validate(require_image=False)  # fields and the number of views first
        params.extra_views = [_checked_view(view, number) for number, view in enumerate(params.extra_views, 2)]
        local_views = any(not is_url(view) for view in params.extra_views)
        if is_url(source):
            check_http_url(source, "image URL")
            params.init_image = source
            params.validate(require_image=not local_views)
            image_url = source
        else:
            source = _checked_local_image(source, "Image file")
            params.init_image = ""
        default_name = _name_from_source(source)
    extra = _checked_extra(extra, name)
    return {
        "name": (name or default_name).strip(),
        "source": source,
        "params": params.to_dict(),
        "image_url": image_url,
        "extra": extra,
    }


def adopted_job_fields(remote_id: Any, name: str | None, extra: Any) -> dict[str, Any]:
    """The checked fields of a job someone else submitted (JobRunner._start's keywords); invalid_input if bad."""
    from .client import check_job_id  # imported on first use: the client loads `requests`

    text = str(remote_id).strip() if isinstance(remote_id, str | int) and not isinstance(remote_id, bool) else ""
    check_job_id(text, "Paste the job's id as the service reported it (e.g. 1234).")
    extra = _checked_extra(extra, name)
    extra.setdefault("adopted", True)
    name = (name or f"job {text}").strip()[:63]
    return {"name": name, "source": "", "params": {}, "image_url": None, "extra": extra, "remote_id": text}


def _checked_extra(extra: Any, name: str | None) -> dict[str, Any]:
    """A copy of the caller's extra data, refused unless it is JSON-safe; also refuses an empty name."""
    extra = dict(extra or {})
    try:
        json.dumps(extra)
    except (TypeError, ValueError) as exc:
        raise invalid_input(f"extra must be JSON-safe data: {exc}.") from None
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise invalid_input("name must be non-empty text.")
    return extra


def _name_from_source(source: str) -> str:
    if is_url(source):
        stem = PurePosixPath(unquote(urlsplit(source).path)).stem or (urlsplit(source).hostname or "")
    else:
        stem = Path(source).stem
    return stem.strip()[:63] or "image"


def _name_from_prompt(prompt: str) -> str:
    words = " ".join(str(prompt or "").split())
    if len(words) > 40:
        words = words[:40].rsplit(" ", 1)[0] or words[:40]
    return words or "text"


def _checked_local_image(source: str, what: str) -> str:
    """The absolute path of a local image that passes the upload checks (type, size), else invalid_input."""
    path = Path(source).expanduser()
    if not path.is_file():
        raise invalid_input(f"{what} not found: {source}", "Choose an existing image file.")
    from .images import check_image_file

    try:
        check_image_file(path)
    except ModelsLabError as error:
        if what == "Image file":
            raise
        raise ModelsLabError(error.category, f"{what.rsplit(':', 1)[0]}: {error.message}", error.fix) from None
    return str(path.absolute())


def _checked_view(view: object, number: int) -> str:
    """One extra view (view 2, 3 or 4): an http(s) URL, or a local image file (made absolute)."""
    label = f"extra_views (view {number}, {VIEW_NAMES[min(number, len(VIEW_NAMES)) - 1]})"
    if not isinstance(view, str) or not view.strip():
        raise invalid_input(f"{label}: no image was given.", "Choose an image file or an image URL for each view.")
    view = view.strip()
    if is_url(view):
        return check_http_url(view, label)
    return _checked_local_image(view, f"{label}: image file")


class WorkerSteps:
    """What a worker does with one job; JobRunner provides the state, the lock and _update()."""

    HEAD_INTERVAL = polling.HEAD_INTERVAL
    HEAD_WINDOW = polling.HEAD_WINDOW
    BACKOFF = polling.BACKOFF
    ETA_WAIT_CAP = polling.ETA_WAIT_CAP
    FETCH_LEAD = polling.FETCH_LEAD
    PROBE_TIMEOUT = (5.0, 5.0)  # (connect, read) seconds of one probe (HEAD, or GET up to its headers)
    PROGRESS_EVENT_STEP = 0.05  # download progress events at most every 5 %...
    PROGRESS_EVENT_SECONDS = 0.5  # ...or every half second...
    PROGRESS_EVENT_MIN_GAP = 0.1  # ...and never closer together than this

    # Provided by JobRunner.
    client: ModelsLabClient
    cache: MeshCache
    poll_timeout: float
    poll_interval_min: float
    poll_interval_max: float
    _lock: threading.Lock

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
        raise NotImplementedError  # JobRunner journals and publishes the change

    def _update_beside(
        self, job: _Job, message: str, progress: float, *, durable: bool, **changes: Any
    ) -> threading.Thread:
        raise NotImplementedError  # JobRunner: the same change, journaled on a helper thread

    def _drive(self, job: _Job) -> None:
        """Take one job as far as it goes: never raises (errors become FAILED, stops leave the state as is)."""
        try:
            submitted_eta: tuple[float, float] | None = None  # (the submit answer's eta, when it came)
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
        finally:
            job.close_ready_answer()  # stopped between the probe and the download

    def _fail(self, job: _Job, error: ModelsLabError) -> None:
        self._update(job, JobState.FAILED, error.message, None, error=error.to_dict())

    @staticmethod
    def _check_stop(job: _Job) -> None:
        if job.stop.is_set():
            raise _Stopped

    def _step_submit(self, job: _Job) -> tuple[float, float] | None:
        """Upload a local image, then submit once; returns the server's eta and when it came (monotonic)."""
        with self._lock:
            record = job.record.copy()
        client = self.client
        params = GenerationParams.from_dict(record.params)
        if params.kind == TEXT:
            pass  # a prompt, nothing to upload
        elif is_url(record.source):
            params.init_image = record.image_url or record.source
        else:
            self._update(job, JobState.UPLOADING, "Uploading the image", 0.02, save=True)
            image_url = client.upload_image(record.source, cancel=job.stop)
            self._check_stop(job)
            params.init_image = image_url
            self._update(job, None, "Image uploaded", 0.04, image_url=image_url, params=params.to_dict())
        if any(not is_url(view) for view in params.extra_views):
            self._upload_views(job, client, params)
        params.validate()
        self._check_stop(job)  # the last moment where stopping costs nothing
        status = self._submit_once(job, client, params)
        answered = time.monotonic()
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
        return None if status.eta is None else (status.eta, answered)

    def _upload_views(self, job: _Job, client: Any, params: GenerationParams) -> None:
        """Upload the local extra views after the front, in order; each URL replaces its path in the journal."""
        views = list(params.extra_views)
        for index, view in enumerate(views):
            if is_url(view):
                continue
            number = index + 2
            self._update(job, JobState.UPLOADING, f"Uploading view {number} of {1 + len(views)}", 0.04, save=True)
            views[index] = client.upload_image(view, cancel=job.stop)
            self._check_stop(job)
            params.extra_views = list(views)
            self._update(job, None, f"View {number} uploaded", 0.04, params=params.to_dict())

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

    def _step_poll(self, job: _Job, submitted_eta: tuple[float, float] | None) -> bool:
        """Wait for the server's result; True when it is ready to download, False after the poll timeout.

        submitted_eta: the eta of a submit that just happened and the monotonic time its answer came, so the
        first check lands at the predicted finish however long the journal writes in between took.
        """
        with self._lock:
            record = job.record.copy()
        client = self.client
        future = _dedupe(record.future_links)
        start = time.monotonic()
        eta = None if submitted_eta is None else submitted_eta[0] - (start - submitted_eta[1])
        age = max(0.0, time.time() - record.submitted_at) if record.submitted_at else 0.0
        schedule = PollSchedule(
            start,
            self._poll_timing(),
            eta=eta,
            can_fetch=record.remote_id is not None,
            future_links=bool(future),
            age=age,
            phase=random.random(),  # jobs sent together spread their checks instead of arriving at once
        )
        while True:
            self._check_stop(job)
            now = time.monotonic()
            if schedule.fetch_due(now):
                assert record.remote_id is not None  # fetch_due is never true without one
                schedule.fetch_started(now)
                try:
                    status = client.fetch(record.remote_id, cancel=job.stop)
                except ModelsLabError as exc:
                    if schedule.fetch_failed(time.monotonic(), exc):
                        raise
                    self._check_stop(job)
                    self._update(job, None, f"Still waiting; the last status check failed: {exc.message}", save=False)
                else:
                    self._check_stop(job)
                    if status.status == "success":
                        return self._ready(job, status.output, status.proxy_links, status.meta)
                    now = time.monotonic()
                    if status.future_links:
                        future = _dedupe(status.future_links)
                    schedule.fetch_answered(now, status.eta, future_links=bool(status.future_links))
                    self._note_processing(job, status, future)
            if schedule.probe_due(now):
                if now >= schedule.predicted:
                    # Near the finish the probe is the download request itself: when the file is there its
                    # bytes are already on their way, no second round trip (and a 429 goes to the download,
                    # which honours its wait).
                    job.ready_answer = client.open_if_ready(future[0], timeout=self.PROBE_TIMEOUT)
                    found: bool | None = job.ready_answer is not None
                else:
                    found = self._probe(client, future[0])
                self._check_stop(job)
                if found:
                    return self._ready(job, future, [], None)
                schedule.probed(time.monotonic(), supported=found is not None)
            now = time.monotonic()
            if schedule.timed_out(now):
                self._update(job, JobState.TIMED_OUT, TIMED_OUT_MESSAGE)
                return False
            if job.stop.wait(max(0.0, schedule.wake_at() - now)):
                raise _Stopped

    def _poll_timing(self) -> PollTiming:
        """The schedule's constants as this runner has them now (tests and settings may change them)."""
        return PollTiming(
            timeout=self.poll_timeout,
            interval_min=self.poll_interval_min,
            interval_max=self.poll_interval_max,
            head_interval=self.HEAD_INTERVAL,
            head_window=self.HEAD_WINDOW,
            backoff=self.BACKOFF,
            eta_wait_cap=self.ETA_WAIT_CAP,
            fetch_lead=self.FETCH_LEAD,
        )

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
        # Published now, journaled by the download step (no fsync): a crash in between only means asking again.
        self._update(job, JobState.DOWNLOADING, "Ready on the server; downloading", 0.8, save=False, **changes)
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
        if target.is_file() and target.stat().st_size > 0:
            job.close_ready_answer()  # the file is here already (an earlier run or another process)
        else:
            # Journaled (no fsync) beside the transfer's first milliseconds rather than before them: the step
            # waits for it before it ends, and every later change of the job (progress, the result, a failure)
            # waits for it too, so a Blender that stops mid-download leaves "downloading" (with the links) for the
            # next session and for other Blenders to see. A kill within that first millisecond leaves the state
            # before it: the job is asked again and downloaded without a new charge.
            journaling = self._update_beside(job, "Downloading", 0.8, durable=False, file_path=str(target))
            fmt = str(record.params.get("output_format") or _format_of(urls[0]))
            try:
                target = self.client.download(
                    urls,
                    target,
                    expected_format=fmt,
                    cancel=job.stop,
                    progress=self._progress_callback(job),
                    opened=job.drop_ready_answer(),
                )
            except OSError as exc:  # the cache folder, not the network: read-only, disk full, removed
                raise ModelsLabError(
                    Category.INVALID_INPUT,
                    f"Cannot write the mesh into the cache folder {target.parent}: {exc.strerror or exc}.",
                    "Free some disk space or choose a writable cache folder, then resume the job "
                    "(it is downloaded again without a new charge).",
                ) from None
            finally:
                journaling.join()
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

    def _progress_callback(self, job: _Job) -> Callable[[int, int | None], None]:
        """Progress events while the bytes arrive, none sooner than PROGRESS_EVENT_MIN_GAP after the start or the
        last one: a fast download spends nothing on them."""
        last = {"fraction": 0.0, "at": time.monotonic()}

        def report(done: int, total: int | None) -> None:
            now = time.monotonic()
            fraction = done / total if total else 0.0
            since = now - last["at"]
            if since < self.PROGRESS_EVENT_MIN_GAP or (
                fraction - last["fraction"] < self.PROGRESS_EVENT_STEP and since < self.PROGRESS_EVENT_SECONDS
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
