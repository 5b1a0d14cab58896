"""Script API, also importable as `import modelslab` while the add-on is enabled.

    import modelslab
    obj = modelslab.generate("/path/to/chair.png", resolution=256)     # background: blocks, returns the object

In a background session (`blender -b`, the bpy module) `generate()` blocks until the mesh is imported and
returns the new object, raising ModelsLabError (with `.category`, `.message`, `.fix`) on failure. In an
interactive session it returns at once with a `JobHandle` (the sidebar's timer imports the mesh when it
arrives) unless `wait=True` is given, which blocks the UI until the object is in the scene.

The batch helpers (`submit`, `wait_any`, `import_result`, `result`, `run`, `resume`) are what
scripts/batch.py uses; they run the same code as the `modelslab.image_to_3d` operator.
"""

import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import bpy

from ..api import Category, GenerationParams, ModelsLabError
from . import runtime

__all__ = [
    "Category",
    "GenerationParams",
    "JobHandle",
    "ModelsLabError",
    "cancel",
    "configure",
    "generate",
    "import_job",
    "import_result",
    "jobs",
    "result",
    "resume",
    "run",
    "settings",
    "shutdown",
    "submit",
    "wait",
    "wait_any",
]

configure = runtime.configure
settings = runtime.settings


class JobHandle:
    """A submitted job (interactive generate()); look it up again with .record / .object."""

    def __init__(self, local_id: str, name: str) -> None:
        self.local_id = local_id
        self.name = name

    def __repr__(self) -> str:
        return f"JobHandle({self.local_id!r}, {self.name!r}, state={self.state!r})"

    @property
    def record(self) -> Any:
        """The current JobRecord copy (state, progress, error, file_path ...)."""
        return runtime.get_record(self.local_id)

    @property
    def state(self) -> str:
        """queued/uploading/.../downloaded/imported/failed/cancelled/timed_out."""
        record = self.record
        return str(record.state) if record is not None else "unknown"

    @property
    def object(self) -> bpy.types.Object | None:
        """The imported object once the timer has imported it, else None."""
        record = self.record
        name = getattr(record, "object_name", None)
        return bpy.data.objects.get(name) if name else None


def _params(values: dict[str, Any], use_scene: bool) -> GenerationParams:
    scene = getattr(bpy.context, "scene", None)
    fallback = getattr(scene, "modelslab", None) if use_scene else None
    return runtime.build_params(values, fallback)


def submit(
    image: str, *, name: str | None = None, extra: dict | None = None, use_scene: bool = False, **params: Any
) -> Any:
    """Validate and submit one job (non-blocking); returns its JobRecord (`.local_id`). Raises ModelsLabError
    (nothing sent) on bad input.

    params: resolution, foreground_ratio, remove_bg, chunk_size, seed, output_format, webhook, track_id.
    Unset ones take the API defaults (or the scene's settings when use_scene=True). Never auto-imported by the
    interactive timer: call import_job() when it is downloaded.
    """
    return runtime.submit(image, _params(params, use_scene), name=name, auto_import=False, origin="script", extra=extra)


def wait(local_id: str, timeout: float | None = None, on_event: Callable[[Any], None] | None = None) -> Any:
    """Block until the job is settled or timeout passes; returns its JobRecord."""
    return runtime.wait_for(local_id, timeout, on_event)


def wait_any(
    local_ids: Iterable[str], timeout: float | None = None, on_event: Callable[[Any], None] | None = None
) -> Any:
    """Block until one of local_ids is settled; returns its JobRecord (None on timeout).

    Settled jobs count at once, so pass only the ids not handled yet.
    """
    return runtime.wait_any(local_ids, timeout, on_event)


def import_job(local_id: str, *, again: bool | None = None) -> bpy.types.Object:
    """Import a downloaded job's mesh into the current scene (main thread); marks it imported.

    An IMPORTED job is imported again from the cache (a new object). Raises ModelsLabError (and marks a
    downloaded job failed(bad_mesh)) when the file cannot be imported.
    """
    if again is None:
        record = runtime.get_record(local_id)
        again = record is not None and str(record.state) == runtime.IMPORTED
    return runtime.import_job(local_id, again=again)


import_result = import_job


def result(local_id: str, obj: bpy.types.Object | None = None, image: str | None = None) -> dict[str, Any]:
    """The job's result dict: {image, status, job_id, remote_id, seconds, file, object, vertices} or {..., error}."""
    record = runtime.get_record(local_id)
    if record is None:
        raise ModelsLabError(Category.INVALID_INPUT, f"No job with id {local_id!r}.")
    if obj is None and record.object_name:
        obj = bpy.data.objects.get(record.object_name)
    return runtime.result_of(record, obj, image)


def error_result(image: str, error: ModelsLabError) -> dict[str, Any]:
    """The result dict of an input that failed before it became a job."""
    return {"image": image, "status": "failed", "error": error.to_dict()}


def generate(
    image: str, *, timeout: float | None = None, wait: bool | None = None, name: str | None = None, **params: Any
) -> Any:
    """Image (path, //path or http(s) URL) -> a new object in the scene.

    Background session (or wait=True): blocks and returns the bpy.types.Object; raises ModelsLabError on
    failure (the job stays resumable when it timed out). Interactive session: returns a JobHandle at once.
    Unset params use the scene's ModelsLab settings, like the operator.
    """
    blocking = bpy.app.background if wait is None else bool(wait)
    record = runtime.submit(
        image, _params(params, True), name=name, auto_import=None if not blocking else False, origin="script"
    )
    if not blocking:
        return JobHandle(record.local_id, record.name)
    final = runtime.wait_for(record.local_id, timeout, print_progress if bpy.app.background else None)
    return object_or_raise(final)


def object_or_raise(record: Any) -> bpy.types.Object:
    state = str(record.state)
    if state == runtime.DOWNLOADED:
        return runtime.import_job(record.local_id)
    if state == runtime.IMPORTED and record.object_name and record.object_name in bpy.data.objects:
        return bpy.data.objects[record.object_name]
    if record.error:
        raise ModelsLabError.from_dict(record.error)
    if state == runtime.TIMED_OUT or state not in runtime.SETTLED:
        raise ModelsLabError(
            Category.SERVER,
            f"{record.name}: still processing on the server; it can be resumed later.",
            "Call modelslab.resume() later; the job is not submitted again.",
        )
    raise ModelsLabError(Category.SERVER, f"{record.name} ended as {state}.")


def run(
    images: Sequence[str],
    *,
    timeout: float | None = None,
    on_event: Callable[[Any], None] | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    **params: Any,
) -> list[dict[str, Any]]:
    """Submit every image, import each result as it arrives (main thread); one result dict per input, in order.

    Inputs that fail validation get an error dict at once (nothing sent). Concurrency is the runner's
    max_concurrent_jobs (configure(max_concurrent_jobs=K)). timeout bounds the whole wait; jobs still running
    then are reported as they are and stay resumable.
    """
    results: list[dict[str, Any] | None] = [None] * len(images)
    waiting: dict[str, int] = {}
    for index, image in enumerate(images):
        try:
            waiting[submit(image, **params).local_id] = index
        except ModelsLabError as exc:
            results[index] = error_result(image, exc)
            if on_result:
                on_result(results[index])  # type: ignore[arg-type]
    results_by_id = _settle(waiting, images, timeout, on_event, on_result)
    for local_id, index in waiting.items():
        results[index] = results_by_id[local_id]
    return [r for r in results if r is not None]


def resume(
    *,
    timeout: float | None = None,
    on_event: Callable[[Any], None] | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    import_downloaded: bool = True,
) -> list[dict[str, Any]]:
    """Finish the journal's unfinished jobs (never resubmitted): wait, import, return their result dicts."""
    records = runtime.resume_unfinished()
    runner = runtime.peek_runner()
    if runner is None:
        return []
    ids = [r.local_id for r in records if not r.is_terminal]
    for record in runner.records():
        if str(record.state) == runtime.DOWNLOADED and record.local_id not in ids:
            ids.append(record.local_id)
    waiting = {local_id: i for i, local_id in enumerate(ids)}
    found = [runtime.get_record(i) for i in ids]
    images = [str(runtime.result_of(r)["image"]) if r is not None else "" for r in found]
    if not import_downloaded:
        return [result(i) for i in ids]
    by_id = _settle(waiting, images, timeout, on_event, on_result)
    return [by_id[i] for i in ids]


def _settle(
    waiting: dict[str, int],
    images: Sequence[str],
    timeout: float | None,
    on_event: Callable[[Any], None] | None,
    on_result: Callable[[dict[str, Any]], None] | None,
) -> dict[str, dict[str, Any]]:
    """Wait for the jobs, import each downloaded one as it settles; result dicts by local id."""
    out: dict[str, dict[str, Any]] = {}
    pending = dict(waiting)
    deadline = None if timeout is None else time.monotonic() + timeout
    while pending:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            break
        record = runtime.wait_any(list(pending), remaining, on_event)
        if record is None:
            break
        index = pending.pop(record.local_id)
        out[record.local_id] = _finish(record, images[index])
        if on_result:
            on_result(out[record.local_id])
    for local_id, index in pending.items():  # timed out waiting: report as they are (resumable)
        record = runtime.get_record(local_id)
        if record is not None:
            out[local_id] = runtime.result_of(record, None, images[index])
            if on_result:
                on_result(out[local_id])
    return out


def _finish(record: Any, image: str) -> dict[str, Any]:
    obj = None
    if str(record.state) == runtime.DOWNLOADED:
        try:
            obj = runtime.import_job(record.local_id)
        except ModelsLabError:
            pass  # the job is now failed(bad_mesh); result() reports it
    latest = runtime.get_record(record.local_id) or record
    return runtime.result_of(latest, obj, image)


def cancel(local_id: str) -> dict[str, Any]:
    """Stop waiting for a job; the server may still charge for a job it had accepted."""
    return runtime.result_of(runtime.cancel(local_id))


def jobs() -> list[dict[str, Any]]:
    """Result dicts of the jobs this session's runner holds (submitted or resumed here)."""
    runner = runtime.peek_runner()
    return [runtime.result_of(r) for r in runner.records()] if runner is not None else []


def shutdown(wait: bool = True) -> None:
    """Stop the runner now (unfinished jobs stay journaled); the add-on starts a new one on next use."""
    runtime.shutdown_runner(wait=wait)


def print_progress(event: Any) -> None:
    """Progress lines for background sessions (stdout)."""
    percent = int(round(float(event.progress) * 100))
    print(f"ModelsLab: {event.record.name}: {event.state} {percent}% {event.message}".rstrip(), flush=True)
    sys.stdout.flush()
