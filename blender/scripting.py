"""Script API: the enabled add-on package's `scripting` attribute (an extension adds no top-level module, as
Blender's extension policy asks; the legacy add-on is also `import modelslab`).

    import bpy, importlib
    modelslab = importlib.import_module(
        next(a for a in bpy.context.preferences.addons.keys() if a.rpartition(".")[2] == "modelslab_3d")
    ).scripting
    obj = modelslab.generate("/path/to/chair.png", resolution=256)     # background: blocks, returns the object

In a background session (`blender -b`, the bpy module) `generate()` blocks until the mesh is imported and
returns the new object, raising ModelsLabError (with `.category`, `.message`, `.fix`) on failure. In an
interactive session it returns at once with a `JobHandle` (the sidebar's timer imports the mesh when it
arrives) unless `wait=True` is given, which blocks the UI until the object is in the scene.

`generate_from_text(prompt)` makes a model from words (text to 3D), `adopt(remote_id)` imports a job submitted
elsewhere, `again(local_id)` runs a job again with a new seed.

`submit`, `wait_any`, `import_result` and `result` are the pieces; `run` and `resume` drive the batch engine
(blender/batch.py) that scripts/batch.py uses too. Everything runs the same code as the
`modelslab.image_to_3d` operator. This module only forwards: it holds no state and no logic of its own.
"""

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import bpy

from ..api import Category, GenerationParams, ModelsLabError
from ..api.records import JobState
from . import batch, commands, results, session
from .adopt import adopt as _adopt
from .adopt import again as _again
from .importer import import_job as _import_job
from .inputs import build_params
from .placement import OPTION_FIELDS, collect_import_options
from .sources import resolve_views, text_input

__all__ = [
    "Category",
    "GenerationParams",
    "JobHandle",
    "ModelsLabError",
    "adopt",
    "again",
    "cancel",
    "configure",
    "generate",
    "generate_from_text",
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

configure = session.configure
settings = session.settings
print_progress = results.print_progress
object_or_raise = results.object_or_raise


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
        return session.get_record(self.local_id)

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


def _params(values: dict[str, Any], use_scene: bool, kind: str = "image") -> GenerationParams:
    scene = getattr(bpy.context, "scene", None)
    return build_params(values, getattr(scene, "modelslab", None) if use_scene else None, kind=kind)


def _images(image: Any, values: dict[str, Any], extra: dict | None) -> tuple[Any, dict[str, Any], dict | None]:
    """image (a path/URL, an image datablock, or a list of 2-4 views) -> (the front, values with extra_views,
    extra with the temporary captures the importer removes)."""
    front, views, captures = resolve_views(image)
    if views:
        values = {**values, "extra_views": views}
    if captures:
        extra = {**(extra or {}), "captures": captures}
    return front, values, extra


def _finish(record: Any, blocking: bool, timeout: float | None) -> Any:
    if not blocking:
        return JobHandle(record.local_id, record.name)
    final = results.wait_for(record.local_id, timeout, print_progress if bpy.app.background else None)
    return results.object_or_raise(final)


def _split(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Keyword arguments -> (generation parameters, import options)."""
    options = {name: values[name] for name in OPTION_FIELDS if name in values}
    return {name: value for name, value in values.items() if name not in options}, options


def _with_import_options(extra: dict | None, options: dict[str, Any], use_scene: bool) -> dict | None:
    """extra with the checked import options of one submit (the scene's Import settings when use_scene)."""
    if not options and not use_scene:
        return extra
    scene = getattr(bpy.context, "scene", None)
    checked = collect_import_options(options, getattr(scene, "modelslab", None) if use_scene else None)
    return {**(extra or {}), "import_options": checked}


def submit(
    image: Any, *, name: str | None = None, extra: dict | None = None, use_scene: bool = False, **params: Any
) -> Any:
    """Validate and submit one job (non-blocking); returns its JobRecord (`.local_id`). Raises ModelsLabError
    (nothing sent) on bad input.

    params: resolution, foreground_ratio, remove_bg, chunk_size, seed, output_format, webhook, track_id, and the
    import options ground, target_height, fit_to_selected, facing, as_asset, bake_size (applied by import_job).
    Unset ones take the API defaults (or the scene's settings when use_scene=True). Never auto-imported by the
    interactive timer: call import_job() when it is downloaded.
    """
    values, options = _split(params)
    _params(values, use_scene)  # every field checked before an image is captured or rendered
    front, values, extra = _images(image, values, extra)
    generation = _params(values, use_scene)
    extra = _with_import_options(extra, options, use_scene)
    return commands.submit(front, generation, name=name, auto_import=False, origin="script", extra=extra)


def wait(local_id: str, timeout: float | None = None, on_event: Callable[[Any], None] | None = None) -> Any:
    """Block until the job is settled or timeout passes; returns its JobRecord."""
    return results.wait_for(local_id, timeout, on_event)


def wait_any(
    local_ids: Iterable[str], timeout: float | None = None, on_event: Callable[[Any], None] | None = None
) -> Any:
    """Block until one of local_ids is settled; returns its JobRecord (None on timeout).

    Settled jobs count at once, so pass only the ids not handled yet.
    """
    return results.wait_any(local_ids, timeout, on_event)


def import_job(local_id: str, *, again: bool | None = None) -> bpy.types.Object:
    """Import a downloaded job's mesh into the current scene (main thread); marks it imported.

    An IMPORTED job is imported again from the cache (a new object). Raises ModelsLabError (and marks a
    downloaded job failed(bad_mesh)) when the file cannot be imported.
    """
    if again is None:
        record = session.get_record(local_id)
        again = record is not None and record.state == JobState.IMPORTED
    return _import_job(local_id, again=again)


import_result = import_job


def result(local_id: str, obj: bpy.types.Object | None = None, image: str | None = None) -> dict[str, Any]:
    """The job's result dict: {image, status, job_id, remote_id, seconds, file, object, vertices} or {..., error}."""
    record = session.get_record(local_id)
    if record is None:
        raise ModelsLabError(Category.INVALID_INPUT, f"No job with id {local_id!r}.")
    if obj is None and record.object_name:
        obj = bpy.data.objects.get(record.object_name)
    return results.result_of(record, obj, image)


def error_result(image: str, error: ModelsLabError) -> dict[str, Any]:
    """The result dict of an input that failed before it became a job."""
    return results.failure_row(image, error.to_dict())


def generate(
    image: Any, *, timeout: float | None = None, wait: bool | None = None, name: str | None = None, **params: Any
) -> Any:
    """Image -> a new object in the scene. image: a path, //path or http(s) URL, an image datablock
    (bpy.data.images["Photo"], "Render Result", "Viewer Node": written to a temporary PNG as you see it), or a
    list of 2-4 views of one object, front first (then right side, back, left side).

    Background session (or wait=True): blocks and returns the bpy.types.Object; raises ModelsLabError on
    failure (the job stays resumable when it timed out). Interactive session: returns a JobHandle at once.
    Unset params (and import options: ground, target_height, fit_to_selected, facing, as_asset, bake_size) use
    the scene's ModelsLab settings, like the operator; the newer revision's fields (ss_guidance_strength,
    ss_sampling_steps, slat_guidance_strength, slat_sampling_steps, mesh_simplify, render, temp) are sent only
    when given here or switched on in the scene.
    """
    blocking = bpy.app.background if wait is None else bool(wait)
    values, options = _split(params)
    _params(values, True)  # every field checked before an image is captured or rendered
    extra = _with_import_options(None, options, True)
    front, values, extra = _images(image, values, extra)
    generation = _params(values, True)
    record = commands.submit(
        front, generation, name=name, auto_import=None if not blocking else False, origin="script", extra=extra
    )
    return _finish(record, blocking, timeout)


def generate_from_text(
    prompt: str, *, timeout: float | None = None, wait: bool | None = None, name: str | None = None, **params: Any
) -> Any:
    """A text prompt -> a new object (POST …/3d/text_to_3d), like generate(): blocks in the background.

    params: negative_prompt, guidance_scale, num_inference_steps, seed, output_format, foreground_ratio,
    remove_bg, webhook, track_id, model_id (enterprise) and the import options. The local server answers with an
    offline stand-in (the prompt's words, reconstructed): real text to 3D needs the ModelsLab service.
    """
    blocking = bpy.app.background if wait is None else bool(wait)
    values, options = _split(params)
    generation = _params({**values, "prompt": prompt}, True, kind="text")
    extra = _with_import_options(None, options, True)
    record = commands.submit(
        text_input(prompt),
        generation,
        name=name,
        auto_import=None if not blocking else False,
        origin="script",
        extra=extra,
    )
    return _finish(record, blocking, timeout)


def adopt(
    remote_id: str, *, timeout: float | None = None, wait: bool | None = None, name: str | None = None, **options: Any
) -> Any:
    """Import a job someone else submitted (the CLI, a web app, a webhook pipeline) by its remote id: it is
    fetched, downloaded and imported like one of ours. Nothing is submitted or charged by this call.

    options: the import options (ground, target_height, facing, as_asset, bake_size); blocks in the background.
    """
    blocking = bpy.app.background if wait is None else bool(wait)
    values, placing = _split(options)
    if values:
        raise ModelsLabError(
            Category.INVALID_INPUT,
            f"adopt() takes import options only, not {', '.join(sorted(values))}.",
            "The job's parameters were chosen by whoever submitted it.",
        )
    checked = _with_import_options(None, placing, True)
    record = _adopt(
        remote_id,
        name=name,
        auto_import=None if not blocking else False,
        import_options=(checked or {}).get("import_options"),
    )
    return _finish(record, blocking, timeout)


def again(local_id: str, *, timeout: float | None = None, wait: bool | None = None) -> Any:
    """Run a job again with a new seed (same source, parameters and import options): a new, charged job."""
    blocking = bpy.app.background if wait is None else bool(wait)
    record = _again(local_id, auto_import=None if not blocking else False, origin="script")
    return _finish(record, blocking, timeout)


def run(
    images: Sequence[str],
    *,
    timeout: float | None = None,
    on_event: Callable[[Any], None] | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    **params: Any,
) -> list[dict[str, Any]]:
    """Submit every image, import each result as it arrives (main thread); one result dict per input, in order.

    Inputs that fail validation get an error dict (nothing sent). At most max_concurrent_jobs are in flight
    (configure(max_concurrent_jobs=K)). timeout bounds the whole run; inputs unfinished then are reported with
    status "interrupted" (`resumable` when the job exists: resume() finishes it later).
    """
    values, options = _split(params)
    return batch.run_images(
        images, values, timeout=timeout, on_event=on_event, on_row=on_result, import_options=options or None
    )


def resume(
    *,
    timeout: float | None = None,
    on_event: Callable[[Any], None] | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    import_downloaded: bool = True,
) -> list[dict[str, Any]]:
    """Finish the journal's unfinished jobs (never resubmitted): wait, import, return their result dicts."""
    return batch.resume_journal(
        timeout=timeout, on_event=on_event, on_row=on_result, import_downloaded=import_downloaded
    )


def cancel(local_id: str) -> dict[str, Any]:
    """Stop waiting for a job; the server may still charge for a job it had accepted."""
    return results.result_of(commands.cancel(local_id))


def jobs() -> list[dict[str, Any]]:
    """Result dicts of the jobs this session's runner holds (submitted or resumed here)."""
    runner = session.peek_runner()
    return [results.result_of(r) for r in runner.records()] if runner is not None else []


def shutdown(wait: bool = True) -> None:
    """Stop the runner now (unfinished jobs stay journaled); the add-on starts a new one on next use."""
    session.shutdown_runner(wait=wait)
