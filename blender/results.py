"""Blocking waits (background sessions, scripts) and what a finished job reports: the object, or a result dict.

Timers never fire in background sessions, so these waits pump the runner's events themselves.
"""

import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bpy

from ..api import Category, ModelsLabError
from ..api.records import SETTLED_STATES, JobState
from .importer import import_job
from .runtime import EventCallback, pump
from .session import get_runner, state
from .ui_text import settled_at

if TYPE_CHECKING:
    from ..api.records import JobEvent, JobRecord

WAIT_STEP = 0.5  # seconds one runner wait blocks before events are pumped again
_ERROR_STATES = (JobState.FAILED, JobState.CANCELLED, JobState.TIMED_OUT)


class _Deadline:
    """An optional deadline cut into WAIT_STEP slices (events are pumped between two slices)."""

    def __init__(self, timeout: float | None) -> None:
        self.at = None if timeout is None else time.monotonic() + timeout

    def step(self) -> float:
        return WAIT_STEP if self.at is None else min(WAIT_STEP, max(0.0, self.at - time.monotonic()))

    def passed(self) -> bool:
        return self.at is not None and time.monotonic() >= self.at


def wait_for(local_id: str, timeout: float | None = None, on_event: EventCallback | None = None) -> "JobRecord":
    """Block until the job is settled (or timeout); events are applied and passed to on_event meanwhile."""
    runner = get_runner()
    deadline = _Deadline(timeout)
    while True:
        record = runner.wait(local_id, timeout=deadline.step())
        pump(max_events=None, max_imports=0, on_event=on_event)
        if record.is_settled or deadline.passed():
            return runner.get(local_id) or record
        if record.state not in SETTLED_STATES and local_id not in state.active:
            # the runner stopped working on it (e.g. resume refused): nothing more will happen
            return record


def wait_any(
    local_ids: Iterable[str], timeout: float | None = None, on_event: EventCallback | None = None
) -> "JobRecord | None":
    """Block until one of the jobs is settled; returns it (None on timeout). Pass only ids not yet handled."""
    ids = list(local_ids)
    if not ids:
        return None
    runner = get_runner()
    deadline = _Deadline(timeout)
    while True:
        record = runner.wait_any(ids, timeout=deadline.step())
        pump(max_events=None, max_imports=0, on_event=on_event)
        if record is not None:
            return runner.get(record.local_id) or record
        if deadline.passed():
            return None


def object_or_raise(record: "JobRecord") -> bpy.types.Object:
    """The settled job's object (importing a downloaded mesh now), or its error as ModelsLabError."""
    if record.state == JobState.DOWNLOADED:
        return import_job(record.local_id)
    if record.state == JobState.IMPORTED and record.object_name and record.object_name in bpy.data.objects:
        return bpy.data.objects[record.object_name]
    if record.error:
        raise ModelsLabError.from_dict(record.error)
    if record.state == JobState.TIMED_OUT or record.state not in SETTLED_STATES:
        raise ModelsLabError(
            Category.SERVER,
            f"{record.name}: still processing on the server; it can be resumed later.",
            "Call modelslab.resume() later; the job is not submitted again.",
        )
    raise ModelsLabError(Category.SERVER, f"{record.name} ended as {record.state}.")


def print_progress(event: "JobEvent") -> None:
    """Progress lines for background sessions (stdout)."""
    percent = int(round(float(event.progress) * 100))
    print(f"ModelsLab: {event.record.name}: {event.state} {percent}% {event.message}".rstrip(), flush=True)
    sys.stdout.flush()


# --- result dicts --------------------------------------------------------------------------------------------------
def original_source(record: "JobRecord") -> str:
    """The image the user gave for the job (not a re-encoded copy)."""
    return str((record.extra or {}).get("original_source") or record.source)


def error_fields(error: dict | None) -> dict[str, str]:
    """An error dict reduced to its three text fields (category, message, fix)."""
    error = error or {}
    return {
        "category": str(error.get("category") or Category.SERVER.value),
        "message": str(error.get("message") or ""),
        "fix": str(error.get("fix") or ""),
    }


def result_of(record: "JobRecord", obj: bpy.types.Object | None = None, image: str | None = None) -> dict[str, Any]:
    """The per-job result: image/status/job_id/remote_id/seconds, then file/object/vertices or the error."""
    result: dict[str, Any] = {
        "image": image if image is not None else original_source(record),
        "status": str(record.state),
        "job_id": record.local_id,
        "remote_id": record.remote_id,
        # A job's duration is its own: a later re-import does not lengthen it.
        "seconds": round(
            max(
                0.0,
                settled_at(str(record.state), record.history, record.updated_at, record.downloaded_at)
                - record.created_at,
            ),
            3,
        ),
    }
    if record.state in _ERROR_STATES:
        error = record.error or {}
        if record.state == JobState.TIMED_OUT and not error:
            error = {
                "category": Category.SERVER.value,
                "message": record.message or "Still processing on the server — resume later.",
                "fix": "Resume the job later; it is not submitted again.",
            }
        result["error"] = dict(error)
        if record.state == JobState.CANCELLED and "category" not in result["error"]:
            result["error"]["category"] = Category.CANCELLED.value
    if record.file_path:
        result["file"] = record.file_path
    if obj is not None:
        result["object"] = obj.name
        mesh = obj.data
        result["vertices"] = len(mesh.vertices) if isinstance(mesh, bpy.types.Mesh) else 0
    elif record.object_name:
        result["object"] = record.object_name
    return result


def failure_row(image: str, error: dict | None, record: "JobRecord | None" = None) -> dict[str, Any]:
    """The result of an input that did not become an object: status failed/cancelled/timed_out and a
    three-field error; a file only when one is on disk; timed-out jobs are marked resumable."""
    row: dict[str, Any] = result_of(record, None, image) if record is not None else {"image": image}
    if row.get("status") not in (JobState.FAILED, JobState.CANCELLED, JobState.TIMED_OUT):
        row["status"] = JobState.FAILED.value
    if row.get("file") and not Path(row["file"]).is_file():
        del row["file"]  # a download that never completed
    fallback = {"category": Category.SERVER.value, "message": "The job did not finish."}
    row["error"] = error_fields(error or row.get("error") or fallback)
    if row["status"] == JobState.TIMED_OUT:
        row["resumable"] = True
    return row


def interrupted_row(image: str, record: "JobRecord | None") -> dict[str, Any]:
    """The result of an input left unfinished by an interruption: resumable when it became a job."""
    row: dict[str, Any] = {"image": image, "status": "interrupted"}
    if record is None:
        row["resumable"] = False  # never submitted: it is simply submitted on the next run
    else:
        row.update({"job_id": record.local_id, "remote_id": record.remote_id, "state": str(record.state)})
        row["resumable"] = True
    return row
