"""Job commands for every entry point (operators, script API, batch): submit, cancel, resume. Each validates
before any request, hands the job to the session's runner and lets the runtime's pump/timer follow it."""

from typing import TYPE_CHECKING, Any

import bpy

from ..api import GenerationParams
from .inputs import ImageInput, resolve_image
from .rows import update_row
from .runtime import ensure_timer, note_resumed, pump, take_over
from .session import check_ready, current_blend_file, get_runner, journal_has_files, refresh_balance, state

if TYPE_CHECKING:
    from ..api.records import JobRecord


def submit(
    image: str | ImageInput,
    params: GenerationParams,
    *,
    name: str | None = None,
    auto_import: bool | None = None,
    origin: str = "script",
    extra: dict[str, Any] | None = None,
) -> "JobRecord":
    """Validate everything (no request before that), then hand the job to the runner; returns its record.

    auto_import: whether the interactive timer imports the mesh when it arrives (default: the preference).
    """
    resolved = image if isinstance(image, ImageInput) else resolve_image(image)
    current = check_ready()
    runner = get_runner()
    want_import = current.auto_import if auto_import is None else bool(auto_import)
    job_extra = dict(extra or {})
    job_extra.update(
        {
            "auto_import": want_import,
            "origin": origin,
            "original_source": resolved.original,
            "blend_file": current_blend_file(),  # a recovered job is imported only into this file
        }
    )
    if state.money.balance_at_start is None and state.money.thread is None and not bpy.app.background:
        refresh_balance()  # the balance before this session's first job (the batch asks for it itself)
    record = runner.submit(resolved.source, params, name=name or resolved.name, extra=job_extra)
    state.hidden.discard(record.local_id)
    state.submitted_here.add(record.local_id)
    state.active.add(record.local_id)
    pump(max_imports=0)
    ensure_timer()
    return record


def cancel(local_id: str) -> "JobRecord":
    """Stop waiting for a job (the server may still charge for it if it had accepted it)."""
    record = get_runner().cancel(local_id)
    pump(max_imports=0)
    update_row(record)
    return record


def resume_job(local_id: str) -> "JobRecord":
    """Resume one job (poll again, never resubmit)."""
    record = take_over(local_id)
    pump(max_imports=0)
    ensure_timer()
    return record


def resume_unfinished() -> list["JobRecord"]:
    """Take over the journal's unfinished jobs once per runner (poll/download again; never resubmit)."""
    if not journal_has_files():
        return []
    check_ready()
    runner = get_runner()
    if state.resumed:
        return [r for r in runner.records() if not r.is_terminal]
    state.resumed = True
    records = runner.resume_unfinished()
    note_resumed(records, runner.foreign())
    pump(max_imports=0)
    ensure_timer()
    return records
