"""The one engine for many jobs: the script API's run()/resume() and scripts/batch.py both drive it.

It keeps at most `limit` jobs in flight (the runner's worker pool is sized to the same number, so this is the
only throttle), lets fewer in while the server refuses submits with 429 (the runner itself waits and submits
such a job again: a refusal is never charged), imports each result on the main thread as it settles, and
reports one row per input. Stopped early (stop event or timeout), it reports every unfinished input as
interrupted; jobs the server has stay in the journal and are resumable.
"""

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bpy

from ..api import ModelsLabError
from ..api.errors import invalid_input
from ..api.params import fields_for
from ..api.records import JobState, may_have_been_charged
from .adopt import adopt
from .commands import resume_job, resume_unfinished, submit
from .importer import import_job
from .inputs import build_params, display_name, source_identity
from .placement import collect_import_options
from .results import failure_row, interrupted_row, original_source, result_of, wait_any
from .session import get_record, journal, peek_runner, settings
from .sources import drop_captures, render_camera, text_input

if TYPE_CHECKING:
    from ..api.records import JobEvent, JobRecord

WAIT_SLICE = 0.25  # seconds one wait for "any job settled" blocks before a stop request is checked again
Row = dict[str, Any]


@dataclass
class BatchItem:
    """One input of the batch and what became of it (row is set once it is reported)."""

    image: str  # what the row names: a path or URL, "text:<prompt>", "camera:<name>", "remote:<id>"
    local_id: str | None = None
    kind: str = "image"  # image, text (value: the prompt), camera, remote (value: the remote job id)
    value: str = ""
    started: float = field(default_factory=time.monotonic)
    resumed: bool = False
    row: Row | None = None


class Batch:
    """Many images (and/or journaled jobs) -> imported objects, with at most `limit` jobs in flight.

    params: generation parameters (unset ones from the scene when use_scene, else the API defaults).
    import_options: placement of each result (batch_import_options()), stored with each job it submits.
    tag: JSON data stored on each job (extra["batch"]) so a later run can find the jobs to resume.
    on_row(row) gets each input's result as it is known; on_progress(text) a line per change;
    after_import(obj, row) may decorate an imported object's row (copies, previews) before it is reported.
    """

    def __init__(
        self,
        params: dict[str, Any] | None = None,
        *,
        limit: int | None = None,
        use_scene: bool = False,
        import_options: dict[str, Any] | None = None,
        tag: dict[str, Any] | None = None,
        stop: threading.Event | None = None,
        timeout: float | None = None,
        on_row: Callable[[Row], None] | None = None,
        on_event: Callable[["JobEvent"], None] | None = None,
        on_progress: Callable[[str], None] | None = None,
        after_import: Callable[[bpy.types.Object, Row], None] | None = None,
    ) -> None:
        self.params = dict(params or {})
        self.limit = int(limit if limit is not None else settings().max_concurrent_jobs)
        self.window = self.limit
        self.use_scene = use_scene
        self.import_options = import_options
        self.tag = tag
        self.stop = stop or threading.Event()
        self.timeout = timeout
        self.on_row = on_row
        self.on_event = on_event
        self.on_progress = on_progress
        self.after_import = after_import
        self.items: list[BatchItem] = []
        self.pending: deque[BatchItem] = deque()
        self.active: dict[str, BatchItem] = {}
        self.covered: set[str] = set()  # source keys of resumed jobs: those inputs are not submitted again
        self.last_state: dict[str, str] = {}
        self.imported = 0
        self.failed = 0
        self.interrupted = False

    # --- the work list ------------------------------------------------------------------------------------------
    def add(self, images: Iterable[str]) -> None:
        """Inputs to submit (in order), except those a resumed job already covers."""
        for image in images:
            self._add(BatchItem(image=image))

    def add_prompts(self, prompts: Iterable[str]) -> None:
        """Text prompts to submit (text to 3D), in order."""
        for prompt in prompts:
            self._add(BatchItem(image=text_input(prompt).original, kind="text", value=prompt))

    def add_camera(self) -> None:
        """The scene's active camera, rendered with a transparent background when its turn comes."""
        scene = getattr(bpy.context, "scene", None)
        camera = getattr(scene, "camera", None)
        self._add(BatchItem(image=f"camera:{camera.name if camera is not None else ''}", kind="camera"))

    def add_remote(self, remote_ids: Iterable[str]) -> None:
        """Remote jobs to adopt (started elsewhere): fetched, downloaded and imported; nothing submitted."""
        for remote_id in remote_ids:
            self._add(BatchItem(image=f"remote:{str(remote_id).strip()}", kind="remote", value=str(remote_id)))

    def _add(self, item: BatchItem) -> None:
        if source_identity(item.image) in self.covered:
            return
        self.items.append(item)
        self.pending.append(item)

    def follow(self, record: "JobRecord", note: str | None = None) -> BatchItem:
        """Report a job that already exists (resumed or downloaded earlier); never submitted again."""
        item = BatchItem(image=original_source(record), local_id=record.local_id, resumed=True)
        self.covered.add(source_identity(item.image))
        self.items.append(item)
        self.active[record.local_id] = item
        self.last_state[record.local_id] = str(record.state)
        if note:
            self._say(item, note)
        return item

    def resume_tagged(self, *, reported: set[str], reimport_reported: bool) -> None:
        """Follow the jobs an earlier batch with this tag left: the newest journal job per input.

        Imported jobs count when the earlier run never reported them (`reported`: job ids it did), or when
        reimport_reported (the killed run's scene is gone): they are imported again from the cache, no request.
        Reported ones are left alone, and their inputs are not submitted again.
        Failed ones that may have been charged are reported, never sent again; others are simply resubmitted.
        """
        latest: dict[str, JobRecord] = {}
        for record in journal().all():
            if (record.extra or {}).get("batch") != self.tag:
                continue
            key = source_identity(original_source(record))
            if key not in latest or record.created_at > latest[key].created_at:
                latest[key] = record
        chosen = []
        for key, record in latest.items():
            ended = record.state in (JobState.FAILED, JobState.CANCELLED)
            if ended and not may_have_been_charged(record):
                continue  # the server never took it: an input given again is simply submitted again
            if record.state == JobState.IMPORTED:
                if not (record.file_path and Path(record.file_path).is_file()):
                    continue
                if record.local_id in reported and not reimport_reported:
                    self.covered.add(key)  # done and reported earlier: given again, it is not submitted again
                    continue
            chosen.append(record)
        for record in sorted(chosen, key=lambda r: r.created_at):
            item = self.follow(record, f"resuming job {record.local_id} ({record.state}; not submitted again)")
            if record.state in (JobState.DOWNLOADED, JobState.IMPORTED):
                continue  # imported from the cache when the loop meets it
            if record.state in (JobState.FAILED, JobState.CANCELLED) and not record.remote_id:
                # It may have reached the server (no id to follow it by): report it, never send it again.
                self._report_failure(item, None, record)
                continue
            try:
                resume_job(record.local_id)
            except ModelsLabError as error:
                self._report_failure(item, error.to_dict(), record)

    # --- the loop -----------------------------------------------------------------------------------------------
    def run(self) -> list[Row]:
        """Run until every input is reported, or stop/timeout (then the rest are reported as interrupted)."""
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while (self.pending or self.active) and not self.stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            self._fill_window()
            if not self.active:
                continue
            record = wait_any(list(self.active), WAIT_SLICE, self._event)
            if record is not None and not self.stop.is_set():
                self._settled(record)
        if self.stop.is_set() or self.pending or self.active:
            self._interrupt()
        return [item.row for item in self.items if item.row is not None]

    def count_text(self) -> str:
        """[done/total done, imported, failed]."""
        finished = self.imported + self.failed
        return f"[{finished}/{len(self.items)} done, {self.imported} imported, {self.failed} failed]"

    def _say(self, item: BatchItem, text: str) -> None:
        if self.on_progress is not None:
            self.on_progress(f"{display_name(item.image)}: {text} {self.count_text()}")

    def _event(self, event: "JobEvent") -> None:
        """One progress line per state change; a submit refused with 429 narrows the window."""
        if self.on_event is not None:
            self.on_event(event)
        item = self.active.get(event.local_id)
        new_state = str(event.state)
        previous = self.last_state.get(event.local_id)
        if item is None or previous == new_state:
            return
        self.last_state[event.local_id] = new_state
        self._say(item, f"{new_state} - {event.message}" if event.message else new_state)
        if new_state == JobState.QUEUED and previous == JobState.SUBMITTING:
            # Refused (429; not charged, the runner submits it again later): fewer in flight until results come.
            narrower = max(1, len(self.active) - 1)
            if narrower < self.window:
                self.window = narrower
                self._say(item, f"server busy (rate limited): at most {self.window} job(s) in flight for now")

    def _fill_window(self) -> None:
        while self.pending and len(self.active) < self.window and not self.stop.is_set():
            item = self.pending.popleft()
            item.started = time.monotonic()
            try:
                record = self._start(item)
            except ModelsLabError as error:
                self._report_failure(item, error.to_dict(), None)
                continue
            item.local_id = record.local_id
            self.active[record.local_id] = item
            self.last_state[record.local_id] = str(record.state)
            self._say(item, f"queued as job {record.local_id}")

    def _start(self, item: BatchItem) -> "JobRecord":
        """Submit (or adopt) one input; raises ModelsLabError before any request for bad input."""
        extra: dict[str, Any] = {} if self.tag is None else {"batch": self.tag}
        if self.import_options is not None:
            extra["import_options"] = dict(self.import_options)
        if item.kind == "remote":
            return adopt(item.value, auto_import=False, origin="script", import_options=extra.get("import_options"))
        scene = getattr(bpy.context, "scene", None)
        fallback = getattr(scene, "modelslab", None) if self.use_scene else None
        kind = "text" if item.kind == "text" else "image"
        values = {name: value for name, value in self.params.items() if name in fields_for(kind)}
        if kind == "text":
            params = build_params({**values, "prompt": item.value}, fallback, kind="text")
            return submit(text_input(item.value), params, auto_import=False, origin="script", extra=extra)
        params = build_params(values, fallback)
        if item.kind == "camera":
            captured = render_camera()
            extra["captures"] = [captured.source]
            try:
                return submit(captured, params, auto_import=False, origin="script", extra=extra)
            except ModelsLabError:
                drop_captures([captured.source])
                raise
        return submit(item.image, params, auto_import=False, origin="script", extra=extra)

    def _settled(self, record: "JobRecord") -> None:
        item = self.active.pop(record.local_id)
        if record.state not in (JobState.DOWNLOADED, JobState.IMPORTED):
            self._report_failure(item, None, record)
            return
        try:
            obj = import_job(record.local_id, again=record.state == JobState.IMPORTED)
        except ModelsLabError:
            self._report_failure(item, None, get_record(record.local_id) or record)  # now failed(bad_mesh)
            return
        row = result_of(get_record(record.local_id) or record, obj, item.image)
        row["status"] = JobState.IMPORTED.value
        self._finish_row(item, row)
        if self.after_import is not None:
            self.after_import(obj, row)
        self.imported += 1
        self.window = min(self.limit, self.window + 1)  # after a 429 slow-down, widen again
        self._say(item, f"imported as {obj.name!r} ({row.get('vertices', 0)} vertices)")
        self._report(item, row)

    def _report_failure(self, item: BatchItem, error: dict | None, record: "JobRecord | None") -> None:
        self.active.pop(item.local_id or "", None)
        row = failure_row(item.image, error, record)
        self._finish_row(item, row)
        self.failed += 1
        self._say(item, f"{row['status']}: [{row['error']['category']}] {row['error']['message']}")
        self._report(item, row)

    @staticmethod
    def _finish_row(item: BatchItem, row: Row) -> None:
        row["seconds"] = round(time.monotonic() - item.started, 2)
        if item.resumed:
            row["resumed"] = True

    def _interrupt(self) -> None:
        """Stop waiting; every unfinished input gets an interrupted row (its job stays in the journal)."""
        self.interrupted = True
        for item in self.items:
            if item.row is None:
                record = get_record(item.local_id) if item.local_id else None
                self._report(item, interrupted_row(item.image, record))
        self.pending.clear()
        self.active.clear()

    def _report(self, item: BatchItem, row: Row) -> None:
        item.row = row
        if self.on_row is not None:
            self.on_row(row)


def batch_import_options(values: dict[str, Any], use_scene: bool) -> dict[str, Any]:
    """Import options for every result of a batch: explicit values, then (use_scene) the scene's Import settings,
    then the defaults. Never fit_to_selected: many results cannot all take one placeholder's place.

    Raises ModelsLabError(invalid_input) naming the field, before any request.
    """
    if values.get("fit_to_selected"):
        raise invalid_input(
            "fit_to_selected does not apply to a batch: every result would take the same placeholder's place.",
            "Generate one image with fit_to_selected, or place the batch's results with ground/target_height.",
        )
    scene = getattr(bpy.context, "scene", None)
    scene_settings = getattr(scene, "modelslab", None) if use_scene else None
    return collect_import_options({**values, "fit_to_selected": False}, scene_settings)


def run_images(
    images: Iterable[str],
    params: dict[str, Any],
    *,
    timeout: float | None = None,
    on_event: Callable[["JobEvent"], None] | None = None,
    on_row: Callable[[Row], None] | None = None,
    import_options: dict[str, Any] | None = None,
) -> list[Row]:
    """Submit every image (max_concurrent_jobs in flight), import each result; one row per input, in order."""
    placing = batch_import_options(import_options, use_scene=False) if import_options else None
    engine = Batch(params, import_options=placing, timeout=timeout, on_event=on_event, on_row=on_row)
    engine.add(images)
    return engine.run()


def resume_journal(
    *,
    timeout: float | None = None,
    on_event: Callable[["JobEvent"], None] | None = None,
    on_row: Callable[[Row], None] | None = None,
    import_downloaded: bool = True,
) -> list[Row]:
    """Finish the journal's unfinished jobs (never resubmitted) and the downloaded ones not imported yet."""
    records = resume_unfinished()
    runner = peek_runner()
    if runner is None:
        return []
    ids = [r.local_id for r in records if not r.is_terminal]
    ids += [r.local_id for r in runner.records() if r.state == JobState.DOWNLOADED and r.local_id not in ids]
    found = [record for record in map(get_record, ids) if record is not None]
    if not import_downloaded:
        return [result_of(record) for record in found]
    engine = Batch(timeout=timeout, on_event=on_event, on_row=on_row)
    for record in found:
        engine.follow(record)
    return engine.run()
