"""Jobs you can recall or adopt: follow a remote job started elsewhere, load a job's settings back into the
sidebar, or run a job again with a new seed. Main thread; the runner does the network work."""

import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bpy

from ..api import GenerationParams
from ..api.errors import invalid_input
from ..api.params import SPECS, TEXT, fields_for, is_url
from . import commands, runtime
from .inputs import ImageInput, resolve_image
from .placement import OPTION_FIELDS, collect_import_options
from .session import check_ready, current_blend_file, get_record, get_runner, state

if TYPE_CHECKING:
    from ..api.records import JobRecord

SEED_MAX = 2**31 - 1  # the scene's seed is a 32-bit signed property


def adopt(
    remote_id: str,
    *,
    name: str | None = None,
    auto_import: bool | None = None,
    origin: str = "script",
    import_options: dict[str, Any] | None = None,
) -> "JobRecord":
    """Follow a remote job (started by the CLI, a web app, a webhook pipeline) like one of ours: it is fetched,
    downloaded and imported. Nothing is submitted. Raises ModelsLabError(invalid_input) for a malformed id."""
    current = check_ready()
    runner = get_runner()
    extra: dict[str, Any] = {
        "auto_import": current.auto_import if auto_import is None else bool(auto_import),
        "origin": origin,
        "original_source": f"remote:{str(remote_id).strip()}",
        "blend_file": current_blend_file(),
    }
    if import_options is not None:
        extra["import_options"] = import_options
    record = runner.adopt(remote_id, name=name, extra=extra)
    state.hidden.discard(record.local_id)
    state.submitted_here.add(record.local_id)
    state.active.add(record.local_id)
    runtime.pump(max_imports=0)
    runtime.ensure_timer()
    return record


def _record(local_id: str) -> "JobRecord":
    record = get_record(local_id) if isinstance(local_id, str) and local_id else None
    if record is None:
        raise invalid_input(f"No job with id {str(local_id)[:80]!r}.", "Pick a job from the sidebar's list.")
    return record


def recall(local_id: str, scene: Any = None) -> "JobRecord":
    """Load a job's parameters, source and import options back into the scene's settings (the sidebar)."""
    record = _record(local_id)
    settings: Any = getattr(scene or bpy.context.scene, "modelslab")  # noqa: B009
    params = GenerationParams.from_dict(record.params)
    original = str(record.extra.get("original_source") or record.source)
    if not record.params:
        raise invalid_input(f"Job {record.name!r} was adopted: its settings are not known.", "Nothing to recall.")
    for name in fields_for(params.kind):
        value = getattr(params, name)
        if name == "prompt" or not hasattr(settings, name):
            continue
        if SPECS[name].optional and not isinstance(value, str) and hasattr(settings, f"use_{name}"):
            setattr(settings, f"use_{name}", value is not None)
            if value is None:
                continue
        setattr(settings, name, "" if value is None else value)
    if params.kind == TEXT:
        settings.image_source, settings.prompt = "TEXT", params.prompt
    elif original.startswith("image:"):
        settings.image_source, settings.image_name = "IMAGE", original[len("image:") :]
    elif original.startswith("camera:"):
        settings.image_source, settings.camera_name = "CAMERA", original[len("camera:") :]
    elif is_url(original):
        settings.image_source, settings.image_url = "URL", original
    elif original and not original.startswith(("viewport", "clipboard", "remote:")):
        settings.image_source, settings.image_path = "FILE", original
    options = record.extra.get("import_options")
    if isinstance(options, dict):
        for name in OPTION_FIELDS:
            if name in options and hasattr(settings, name):
                setattr(settings, name, options[name])
    return record


def again(local_id: str, *, auto_import: bool | None = None, origin: str = "operator") -> "JobRecord":
    """Submit a job again with a new seed: same source (the file again when it still exists, else the image the
    server already has), same parameters and import options. A new job, charged like any."""
    record = _record(local_id)
    if not record.params:
        raise invalid_input(f"Job {record.name!r} was adopted: its settings are not known.", "Nothing to run again.")
    params = GenerationParams.from_dict(record.params)
    old_seed = params.seed
    params.seed = random.randint(1, SEED_MAX)
    while params.seed == old_seed:
        params.seed = random.randint(1, SEED_MAX)
    original = str(record.extra.get("original_source") or record.source)
    resolved: ImageInput
    if params.kind == TEXT:
        resolved = ImageInput("", record.name, original, False)
    elif original and not is_url(original) and Path(original).is_file():
        resolved = resolve_image(original)
    else:
        url = record.image_url or (record.source if is_url(record.source) else "")
        if not url:
            raise invalid_input(
                f"Job {record.name!r}: its image is gone and the server's copy is unknown.",
                "Generate it again from the image.",
            )
        resolved = ImageInput(url, record.name, original, True)
    if params.kind != TEXT:
        params.init_image = ""
    extra: dict[str, Any] = {}
    options = record.extra.get("import_options")
    if isinstance(options, dict):
        extra["import_options"] = collect_import_options({k: v for k, v in options.items() if k in OPTION_FIELDS})
    return commands.submit(resolved, params, name=record.name, auto_import=auto_import, origin=origin, extra=extra)
