"""The main-thread side of the session's JobRunner: job commands, the event pump, the timer and the handlers.

Used by the operators, the panels, the script API and the headless batch alike, so all of them run the
same code. Worker threads (api.jobs) never touch bpy; everything here runs on Blender's main thread:
- interactive sessions: a `bpy.app.timers` callback drains the runner's events (bounded per tick),
  updates the job rows, tags the sidebar for redraw and imports at most one mesh per tick;
- background sessions (`blender -b`, the bpy module): timers never fire, so callers block in
  results.wait_for() / wait_any() (which pump here) and import with importer.import_job().
"""

import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import bpy

from ..api import ModelsLabError
from ..api.records import SETTLED_STATES, JobState
from . import background
from .importer import import_job
from .rows import FINISHED_ROWS_HORIZON, MAX_ROWS, clear_row_index, job_rows, sync_rows, tag_redraw, update_row
from .session import (
    OTHER,
    RECOVERED,
    asked_from_here,
    check_ready,
    get_runner,
    journal,
    journal_has_files,
    note_settled,
    ownership,
    peek_runner,
    prune_cache,
    refresh_balance,
    session_lock,
    settings,
    shutdown_runner,
    state,
)
from .sources import drop_after_upload

if TYPE_CHECKING:
    from ..api.records import JobEvent, JobRecord

_API_PACKAGE = (__package__ or "modelslab_3d.blender").rpartition(".")[0] + ".api"
MAX_EVENTS_PER_TICK = 32
ACTIVE_INTERVAL = 0.1  # seconds between ticks while jobs run
IDLE_INTERVAL = 1.0
# Each sidebar redraw costs Blender a whole window update (on software OpenGL about as long as many timer ticks),
# so the sidebar is redrawn at once only for what the user waits to see: a job listed, a job ended, an import.
# Everything else (progress, intermediate states, messages) is shown with the once-a-second redraw that moves the
# running jobs' time labels and bars.
REDRAW_EVERY = 1.0

EventCallback = Callable[["JobEvent"], None]


class _Loop:
    """State of the timer and the listeners (a plain class: cheap to define at enable time)."""

    def __init__(self) -> None:
        self.listeners: list[EventCallback] = []
        self.timer_on = False
        self.last_redraw = 0.0
        self.redraw_pending = False  # a change the sidebar has not shown yet
        self.registered = False
        self.prewarm: threading.Thread | None = None
        # Work done off the main thread (the journal scan, the re-check of other processes' jobs) hands its
        # results to the main thread through this queue; pump() applies them.
        self.inbox: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.scan: threading.Thread | None = None
        self.watch: threading.Thread | None = None
        self.stop = threading.Event()


_loop = _Loop()


# --- jobs found in the journal -------------------------------------------------------------------------------------
def take_over(local_id: str) -> "JobRecord":
    """Resume one job in this session's runner (poll again, never resubmit) and track it; main thread."""
    check_ready()
    record = get_runner().resume(local_id)
    if ownership(record) == RECOVERED:
        state.recovered.add(local_id)
    if record.state not in SETTLED_STATES:
        state.active.add(local_id)
    return record


def note_resumed(records: list["JobRecord"], foreign: list["JobRecord"]) -> None:
    """Track what a journal scan found (main thread): resumed jobs run here, other processes' jobs are watched."""
    for record in records:
        if ownership(record) == RECOVERED:
            state.recovered.add(record.local_id)
        if record.state not in SETTLED_STATES:
            state.active.add(record.local_id)
    for record in foreign:
        state.foreign[record.local_id] = record
        if record.local_id not in state.hidden:
            _show(record)


def _show(record: "JobRecord") -> None:
    """Update the job's row; a job of another process gets a new row only while the list has room."""
    rows = job_rows()
    if rows is None:
        return
    if len(rows) >= MAX_ROWS and all(row.local_id != record.local_id for row in rows):
        return
    update_row(record, record.message)


# --- events --------------------------------------------------------------------------------------------------------
def add_listener(callback: EventCallback) -> None:
    """Call callback(event) on the main thread for every job event this session processes."""
    if callback not in _loop.listeners:
        _loop.listeners.append(callback)


def remove_listener(callback: EventCallback) -> None:
    """Undo add_listener."""
    if callback in _loop.listeners:
        _loop.listeners.remove(callback)


def pump(
    max_events: int | None = MAX_EVENTS_PER_TICK,
    max_imports: int = 1,
    on_event: EventCallback | None = None,
) -> bool:
    """Apply queued job events on the main thread; import up to max_imports meshes; True while work remains."""
    background_work = _apply_inbox()
    runner = peek_runner()
    if runner is None:
        _redraw_when_due(False, False)
        return background_work or _loop.redraw_pending
    events = runner.drain_events(max_events)
    urgent = False
    for event in events:
        urgent = _apply_event(event) or urgent
        for callback in list(_loop.listeners):
            callback(event)
        if on_event is not None:
            on_event(event)
    imported = 0
    while state.pending_imports and imported < max_imports:
        local_id = state.pending_imports.popleft()
        imported += 1
        try:
            import_job(local_id)
        except ModelsLabError as exc:
            print(f"ModelsLab: import of job {local_id} failed: {exc}", file=sys.stderr)
    _redraw_when_due(urgent or bool(imported), bool(events))
    return bool(
        background_work
        or state.active
        or state.pending_imports
        or _loop.redraw_pending
        or (max_events is not None and len(events) >= max_events)
    )


def _redraw_when_due(urgent: bool, changed: bool) -> None:
    """Tag the sidebar now for an urgent change; otherwise at most once per REDRAW_EVERY while jobs run or a
    change waits to be shown."""
    now = time.monotonic()
    _loop.redraw_pending = _loop.redraw_pending or changed
    if urgent or ((state.active or _loop.redraw_pending) and now - _loop.last_redraw >= REDRAW_EVERY):
        _loop.last_redraw = now
        _loop.redraw_pending = False
        tag_redraw()


def _apply_event(event: "JobEvent") -> bool:
    """Apply one job event (main thread); True when the user should see it at once (a new row, a job that
    ended and is not about to be imported)."""
    record = event.record
    rows = job_rows()
    listed = len(rows) if rows is not None else 0
    if record.state in SETTLED_STATES:
        charged_before = len(state.money.charged)
        note_settled(record)
        if len(state.money.charged) > charged_before and not bpy.app.background:
            refresh_balance()  # the sidebar's balance follows what was spent
        failed = record.state in (JobState.FAILED, JobState.TIMED_OUT)
        if record.local_id in state.active and failed and not bpy.app.background:
            print(f"ModelsLab: {record.name}: {record.state}: {event.message}", file=sys.stderr)  # the panel: the fix
        state.active.discard(record.local_id)
    else:
        state.active.add(record.local_id)
    if getattr(record, "adopted_from_closed_session", False):
        state.recovered.add(record.local_id)
    if record.state == JobState.DOWNLOADED and not bpy.app.background and _wants_auto_import(record):
        state.pending_imports.append(record.local_id)
    if record.local_id not in state.hidden:
        update_row(record, event.message)
    ended = record.state in SETTLED_STATES and record.local_id not in state.pending_imports  # the import redraws
    return ended or (rows is not None and len(rows) != listed)


def _wants_auto_import(record: "JobRecord") -> bool:
    """Jobs submitted in this session follow their own choice; resumed ones follow the preference, and one
    taken over from a closed session only into the .blend it was started from (else the row offers Import)."""
    if record.local_id in state.pending_imports:
        return False
    preference = settings().auto_import
    if record.local_id in state.submitted_here:
        return bool(record.extra.get("auto_import", preference))
    owner = ownership(record)
    if owner == OTHER or (owner == RECOVERED and not asked_from_here(record)):
        return False
    return preference


# --- work off the main thread: the startup scan and the re-check of other processes' jobs -------------------------
def _apply_inbox() -> bool:
    """Apply what the background threads found (main thread); True while one of them still works."""
    while True:
        try:
            kind, payload = _loop.inbox.get_nowait()
        except queue.Empty:
            break
        try:
            if kind == "scan":
                _apply_scan(*payload)
            elif kind == "foreign":
                _apply_foreign(payload)
        except Exception:  # one bad result must not stop the others
            traceback.print_exc()
    scanning = _loop.scan is not None and _loop.scan.is_alive()
    return scanning or not _loop.inbox.empty()


def _start_scan() -> None:
    """Read the journal on a worker thread: resume this process's (and orphaned) unfinished jobs, find the
    ones other live processes own, and collect recent jobs for the list; the main thread applies the result."""
    if _loop.scan is not None and _loop.scan.is_alive():
        return
    runner = None
    current = settings()
    if current.api_key:
        try:
            check_ready(current)
            runner = get_runner(prune=False)  # pruned below, off the main thread
            state.resumed = True
        except ModelsLabError as exc:
            print(f"ModelsLab: unfinished jobs not resumed: {exc}", file=sys.stderr)
    jobs = journal()
    lock = session_lock()

    def work() -> None:
        try:
            found = background.scan_journal(runner, current, jobs, lock, prune_cache, FINISHED_ROWS_HORIZON, MAX_ROWS)
            _loop.inbox.put(("scan", found))
        except ModelsLabError as exc:
            print(f"ModelsLab: the job journal could not be read: {exc}", file=sys.stderr)
        except Exception:
            traceback.print_exc()

    thread = threading.Thread(target=work, name="modelslab-journal-scan", daemon=True)
    _loop.scan = thread
    thread.start()
    ensure_timer()


def _apply_scan(
    resumed: list["JobRecord"], foreign: list["JobRecord"], recent: list["JobRecord"], known: set[str]
) -> None:
    runner = peek_runner()
    held = {r.local_id for r in runner.records()} if runner is not None else set()
    foreign_ids = {r.local_id for r in foreign}
    for record in recent:  # jobs of earlier sessions, for the list (the runner's own are shown from events)
        if record.local_id not in held and record.local_id not in foreign_ids and record.local_id not in state.hidden:
            update_row(record)
    note_resumed(resumed, foreign)
    if runner is not None:  # downloaded earlier and waiting: the same rule as a fresh download
        for record in runner.records():
            if record.state == JobState.DOWNLOADED and not bpy.app.background and _wants_auto_import(record):
                state.pending_imports.append(record.local_id)
    tag_redraw()
    if not bpy.app.background:
        _start_watch(known)


def _start_watch(known: "set[str] | None" = None) -> None:
    """Follow the journal on a worker thread (interactive sessions): jobs another live process starts or runs
    are listed with their progress, and a job whose owner has ended (closed or crashed) is taken over here.

    Each look lists the journal folder (names only) and reads just the files not seen before and those of other
    processes' running jobs; known: ids already handled (the startup scan's)."""
    if _loop.watch is not None and _loop.watch.is_alive():
        return

    def watched() -> set[str]:
        return set(state.foreign)

    args = (journal(), _loop.stop, set(known or ()), _loop.inbox, lambda: state.lock, watched)
    thread = threading.Thread(target=background.follow_journal, args=args, name="modelslab-journal-watch", daemon=True)
    _loop.watch = thread
    thread.start()
    ensure_timer()  # the timer applies what the watch finds


def _apply_foreign(found: list[tuple[str, "JobRecord | None", bool]]) -> None:
    """What the watch found (main thread): list other processes' jobs, take over those whose owner ended."""
    lock = state.lock
    mine = lock.session_id if lock is not None else None
    orphaned = []
    for local_id, record, alive in found:
        if record is None:
            state.foreign.pop(local_id, None)
            continue
        if record.owner:
            state.owners_seen[record.owner] = (alive, time.monotonic())
        if record.is_terminal or record.owner == mine:
            state.foreign.pop(local_id, None)
        elif alive:
            state.foreign[local_id] = record
        else:
            state.foreign.pop(local_id, None)
            orphaned.append(local_id)
        if local_id not in state.hidden:
            _show(record)
    _loop.redraw_pending = _loop.redraw_pending or bool(found)  # shown with the next once-a-second redraw
    if orphaned and settings().api_key:
        for local_id in orphaned:  # taken over once: the runner claims it under the folder-wide takeover lock
            try:
                take_over(local_id)  # the timer's next ticks follow it
            except ModelsLabError as exc:
                print(f"ModelsLab: job {local_id} not taken over: {exc}", file=sys.stderr)


# --- the timer and handlers ----------------------------------------------------------------------------------------
def _timer_tick() -> float | None:
    if not _loop.registered:
        _loop.timer_on = False
        return None
    try:
        busy = pump(MAX_EVENTS_PER_TICK, 1)
    except Exception:  # never let the timer die silently: report and keep ticking
        traceback.print_exc()
        busy = True
    return ACTIVE_INTERVAL if busy else IDLE_INTERVAL


def ensure_timer() -> None:
    """Start the drain timer (interactive sessions only; timers never fire in background mode)."""
    if bpy.app.background or not _loop.registered:
        return
    if not bpy.app.timers.is_registered(_timer_tick):
        bpy.app.timers.register(_timer_tick, first_interval=ACTIVE_INTERVAL, persistent=True)
    _loop.timer_on = True


def _start_prewarm() -> None:
    if f"{_API_PACKAGE}.client" in sys.modules or (_loop.prewarm is not None and _loop.prewarm.is_alive()):
        return
    thread = threading.Thread(target=background.prewarm_imports, name="modelslab-preload", daemon=True)
    _loop.prewarm = thread
    thread.start()


def _startup() -> None:
    """First tick after enabling (interactive): preload the client; the journal is read on a worker thread
    (list, resume of this process's and orphaned jobs, other processes' jobs) and applied on the main thread."""
    if not _loop.registered:
        return None
    _start_prewarm()
    try:
        if settings().api_key:
            refresh_balance()  # the balance when the session starts, for the sidebar
        if journal_has_files():
            _start_scan()  # starts the watch once applied
        else:
            session_lock()
            _start_watch()
    except Exception:
        traceback.print_exc()
    return None


@bpy.app.handlers.persistent
def _on_load_post(*_args: Any) -> None:
    """After a file loads: rebuild the rows; interactive sessions resume and queue pending imports."""
    try:
        runner = peek_runner()
        if runner is None and not bpy.app.background:
            _startup()  # the journal is read off the main thread; the rows follow from that
            return
        sync_rows()
        if runner is None or bpy.app.background:
            return
        for record in state.foreign.values():
            if record.local_id not in state.hidden:
                _show(record)
        for record in runner.records():  # e.g. a recovered job whose own .blend was just opened
            if record.state == JobState.DOWNLOADED and _wants_auto_import(record):
                state.pending_imports.append(record.local_id)
        ensure_timer()
    except Exception:
        traceback.print_exc()


def register() -> None:
    """Install handlers and (interactive) the startup tick. Cheap: no network modules are imported."""
    _loop.registered = True
    _loop.stop = threading.Event()
    add_listener(drop_after_upload)  # captured images are removed once their job no longer needs them
    if _on_load_post not in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.append(_on_load_post)
    if not bpy.app.background:
        bpy.app.timers.register(_startup, first_interval=0.2, persistent=True)


def unregister() -> None:
    """Stop the timer and the runner (no threads left), remove handlers; journaled jobs stay for next time."""
    _loop.registered = False
    for timer in (_timer_tick, _startup):
        if bpy.app.timers.is_registered(timer):
            bpy.app.timers.unregister(timer)
    _loop.timer_on = False
    if _on_load_post in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(_on_load_post)
    _loop.stop.set()
    for thread in (_loop.scan, _loop.watch):
        if thread is not None:
            thread.join(10.0)  # journal reads only (the scan's resume stops with the runner below)
    _loop.scan = _loop.watch = None
    while not _loop.inbox.empty():
        _loop.inbox.get_nowait()
    shutdown_runner(wait=True)
    if _loop.prewarm is not None:
        _loop.prewarm.join(10.0)  # imports only: finishes quickly; no thread is left behind
        _loop.prewarm = None
    _loop.listeners.clear()
    state.hidden.clear()
    clear_row_index()
    state.overrides.clear()
