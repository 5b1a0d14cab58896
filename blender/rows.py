"""The job list the sidebar draws: one row per job on the WindowManager, rebuilt from the runner's records.

Rows are a view, never saved: they are refreshed from events (update_row) and rebuilt from the runner or the
journal after a restart or a file load (sync_rows).
"""

import time
from typing import TYPE_CHECKING, Any

import bpy

from ..api import ModelsLabError
from ..api.records import SETTLED_STATES, JobState
from .props import SESSION_EPOCH
from .session import get_record, journal, journal_has_files, peek_runner, state

if TYPE_CHECKING:
    from ..api.records import JobRecord

MAX_ROWS = 50  # job rows rebuilt from the journal after a restart
FINISHED_ROWS_HORIZON = 24 * 3600.0  # finished jobs older than this are not listed again after a restart
_ERROR_STATES = (JobState.FAILED, JobState.CANCELLED)

_row_index: dict[str, int] = {}


def job_rows() -> Any:
    """The WindowManager's job rows, or None (no window manager, or the add-on's properties are gone)."""
    wm = getattr(bpy.context, "window_manager", None)
    return getattr(wm, "modelslab_jobs", None) if wm is not None else None


def update_row(record: "JobRecord", message: str | None = None) -> None:
    """Show the record in its row (adding one, and selecting it, for a job not listed yet)."""
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
            index = _row_index[record.local_id] = len(rows) - 1
            wm: Any = bpy.context.window_manager
            wm.modelslab_jobs_index = index
        row = rows[index]
    _fill_row(row, record, message)


def _fill_row(row: Any, record: "JobRecord", message: str | None = None) -> None:
    settled = record.state in SETTLED_STATES
    failed = record.state in _ERROR_STATES
    row.name = record.name
    row.state = str(record.state)
    row.progress = float(record.progress)
    error = record.error or {}
    row.category = error.get("category", "") if failed else ""
    row.fix = error.get("fix", "") if failed else ""
    text = error.get("message") if failed and error else (message or record.message)
    row.message = (text or "")[:500]
    row.created = record.created_at - SESSION_EPOCH
    row.finished = (record.updated_at - SESSION_EPOCH) if settled else 0.0
    row.eta = float(record.eta) if record.eta is not None and not settled else -1.0
    row.remote_id = record.remote_id or ""
    row.source = str(record.extra.get("original_source") or record.source)
    row.file_path = record.file_path or ""
    row.object_name = record.object_name or ""
    urls = list(record.output_urls or []) + list(record.proxy_links or [])
    row.result_url = urls[0] if urls else ""
    row.was_submitted = bool(record.was_submitted)


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


def tag_redraw() -> None:
    """Redraw the 3D views' sidebars (cheap: no-op without windows)."""
    wm = getattr(bpy.context, "window_manager", None)
    if wm is None:
        return
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
