"""The job list the sidebar draws: one row per job on the WindowManager, rebuilt from the runner's records.

Rows are a view, never saved: they are refreshed from events (update_row) and rebuilt from the runner or the
journal after a restart or a file load (sync_rows).
"""

import time
from typing import TYPE_CHECKING, Any

import bpy

from ..api import ModelsLabError
from ..api.records import SETTLED_STATES, JobState, may_have_been_charged
from . import session, ui_text
from .props import SESSION_EPOCH, field_labels
from .session import get_record, journal, journal_has_files, peek_runner, state

if TYPE_CHECKING:
    from ..api.records import JobRecord

MAX_ROWS = 50  # job rows rebuilt from the journal after a restart
FINISHED_ROWS_HORIZON = 24 * 3600.0  # finished jobs older than this are not listed again after a restart
_ERROR_STATES = (JobState.FAILED, JobState.CANCELLED)
NOTICE_OPERATOR = "notify"  # bpy.ops.modelslab.notify: a report in the status bar and the Info log

_row_index: dict[str, int] = {}
notices: list[tuple[str, str]] = []  # (level, text) of the status-bar notices this session gave, newest last


def job_rows() -> Any:
    """The WindowManager's job rows, or None (no window manager, or the add-on's properties are gone)."""
    wm = getattr(bpy.context, "window_manager", None)
    return getattr(wm, "modelslab_jobs", None) if wm is not None else None


def update_row(record: "JobRecord", message: str | None = None) -> None:
    """Show the record in its row (adding one, and selecting it, for a job not listed yet); a job that ends
    while listed is announced in the status bar."""
    global _row_index
    rows = job_rows()
    if rows is None:
        return
    index = _row_index.get(record.local_id)
    row = rows[index] if index is not None and index < len(rows) else None
    if row is None or row.local_id != record.local_id:
        _row_index = {r.local_id: i for i, r in enumerate(rows)}
        index = _row_index.get(record.local_id)
        if index is None:
            row = rows.add()
            row.local_id = record.local_id
            row.state = ""
            index = _row_index[record.local_id] = len(rows) - 1
            wm: Any = bpy.context.window_manager
            wm.modelslab_jobs_index = index
            row.name = _numbered(rows, record.name, index)
        row = rows[index]
    before = row.state
    _fill_row(row, record, message)
    ended = before and before not in SETTLED_STATES and record.state in SETTLED_STATES
    imported = before == JobState.DOWNLOADED and record.state != before
    if (ended or imported) and record.local_id not in state.pending_imports:
        words = ui_text.people_words(row.message or record.message, field_labels())
        notice = ui_text.finished_notice(row.name, str(record.state), row.object_name, row.took, words)
        if notice is not None:
            announce(*notice)


def _numbered(rows: Any, name: str, index: int) -> str:
    """The row's name, numbered when earlier rows show the same job name ("duck_512 (2)")."""
    same = sum(1 for i, r in enumerate(rows) if i < index and r.base_name == name)
    return name if same == 0 else f"{name} ({same + 1})"


def _owner(record: "JobRecord") -> str:
    """mine / other / recovered: the session's cheap answer by id (no file read) when it has one."""
    try:
        by_id = getattr(session, "ownership_of", None)
        if by_id is not None:
            return str(by_id(record.local_id))
        ownership = getattr(session, "ownership", None)
        return str(ownership(record)) if ownership is not None else "mine"
    except Exception:  # the list must draw whatever the ownership check hits
        return "mine"


def _fill_row(row: Any, record: "JobRecord", message: str | None = None) -> None:
    settled = record.state in SETTLED_STATES
    failed = record.state in _ERROR_STATES
    row.base_name = record.name
    row.state = str(record.state)
    row.progress = float(record.progress)
    error = record.error or {}
    row.category = error.get("category", "") if failed else ""
    row.fix = error.get("fix", "") if failed else ""
    text = error.get("message") if failed and error else (message or record.message)
    row.message = (text or "")[:500]
    row.created = record.created_at - SESSION_EPOCH
    ended = ui_text.settled_at(str(record.state), record.history, record.updated_at, record.downloaded_at)
    row.finished = (ended - SESSION_EPOCH) if settled else 0.0
    row.took = max(0.0, ended - record.created_at) if settled else 0.0
    eta = float(record.eta) if record.eta is not None and not settled else -1.0
    previous_due = row.due + SESSION_EPOCH if row.due and abs(eta - row.eta) < 1e-3 else 0.0
    due = ui_text.predicted_finish(
        str(record.state), None if eta < 0 else eta, record.submitted_at, record.updated_at, previous_due
    )
    row.eta = eta
    row.due = due - SESSION_EPOCH if due else 0.0
    row.submitted = (record.submitted_at - SESSION_EPOCH) if record.submitted_at else 0.0
    row.remote_id = record.remote_id or ""
    row.source = str(record.extra.get("original_source") or record.source)
    row.file_path = record.file_path or ""
    row.object_name = record.object_name or ""
    urls = list(record.output_urls or []) + list(record.proxy_links or [])
    row.result_url = urls[0] if urls else ""
    row.was_submitted = may_have_been_charged(record)
    row.owner = _owner(record)
    row.blend_file = str(record.extra.get("blend_file") or "")


def announce(level: str, text: str) -> None:
    """Say something in the status bar and the Info log the way Blender's own background jobs do (a report of
    a finished operator). Kept in `notices` as well; background sessions have no status bar (and print their own
    progress), so there it is only kept."""
    notices.append((level, text))
    del notices[:-20]
    if bpy.app.background:
        return
    wm = getattr(bpy.context, "window_manager", None)
    windows = list(wm.windows) if wm is not None else []
    if not windows:
        return
    ops: Any = bpy.ops
    operator = getattr(ops.modelslab, NOTICE_OPERATOR)
    try:
        with bpy.context.temp_override(window=windows[0], screen=windows[0].screen):  # type: ignore[attr-defined]
            operator("INVOKE_DEFAULT", text=text, level=level)
    except (RuntimeError, AttributeError, TypeError) as exc:  # e.g. during unregister: the text is in stdout
        print(f"{text} ({exc})", flush=True)


def sync_rows() -> None:
    """Rebuild the job rows from the runner (or, before one exists, the journal's recent jobs)."""
    global _row_index
    rows = job_rows()
    if rows is None:
        return
    runner = peek_runner()
    if runner is not None:
        records = runner.records()
    else:
        if not journal_has_files():
            rows.clear()
            _row_index = {}
            return
        records = sorted(journal().all(), key=lambda r: r.created_at)
    horizon = time.time() - FINISHED_ROWS_HORIZON
    keep = [r for r in records if r.local_id not in state.hidden and (not r.is_terminal or r.updated_at > horizon)]
    rows.clear()
    for record in keep[-MAX_ROWS:]:
        row = rows.add()
        row.local_id = record.local_id
        _fill_row(row, record)
        row.name = _numbered(rows, record.name, len(rows) - 1)
    _row_index = {r.local_id: i for i, r in enumerate(rows)}
    tag_redraw()


def forget_finished() -> int:
    """Hide finished jobs from the list and drop their journal files; returns how many."""
    runner = peek_runner()
    removed = 0
    rows = job_rows()
    ids = [row.local_id for row in rows] if rows is not None else []
    if runner is not None:
        ids += [r.local_id for r in runner.records() if r.local_id not in ids]
    for local_id in ids:
        record = get_record(local_id)
        if record is None or not record.is_terminal:
            continue
        try:
            if runner is not None:
                runner.forget(local_id)
            else:
                journal().delete(local_id)
        except ModelsLabError:  # a journal file that cannot be removed stays listed
            continue
        state.hidden.add(local_id)
        removed += 1
    sync_rows()
    return removed


def clear_row_index() -> None:
    """Forget the row positions (unregister)."""
    global _row_index
    _row_index = {}


def refresh_bars(rows: Any) -> None:
    """Move the running rows' bars with the time (Blender before 4.0 draws them from this property)."""
    now = time.time() - SESSION_EPOCH
    for row in rows:
        if row.state and row.state not in SETTLED_STATES:
            fraction = ui_text.progress_view(now, row.state, row.progress, row.submitted, row.due, row.created)[0]
            row.bar = 100.0 * fraction


def tag_redraw() -> None:
    """Redraw the 3D views' sidebars (cheap: no-op without windows); running rows' bars move first."""
    wm = getattr(bpy.context, "window_manager", None)
    if wm is None:
        return
    rows = getattr(wm, "modelslab_jobs", None)
    if rows is not None:
        refresh_bars(rows)
    for window in wm.windows:
        screen = window.screen
        if screen is None:
            continue
        for area in screen.areas:
            # only the sidebar (and the preferences, for the connection test): never the whole viewport
            wanted = "UI" if area.type == "VIEW_3D" else "WINDOW" if area.type == "PREFERENCES" else None
            if wanted is None:
                continue
            for region in area.regions:
                if region.type == wanted:
                    region.tag_redraw()
