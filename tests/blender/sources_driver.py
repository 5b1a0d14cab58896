"""Scenarios of the sources test, run INSIDE a fresh Blender process (the bpy module): images from inside Blender
(a generated image, Render Result, the active camera), text to 3D, several views, the newer revision's fields,
adopting a remote job, recall/again and the enterprise server actions.

`<bpy venv python> sources_driver.py SPEC.json`, like scenario_driver.py. Each scenario reports what it finds in
the scene and the journal; the test module asserts (and reads the server's counters).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _api(context: Any) -> Any:
    return sys.modules[f"{context.module}.blender.scripting"]


def _module(context: Any, name: str) -> Any:
    import importlib

    return importlib.import_module(f"{context.module}.{name}")


def _objects() -> set[str]:
    import bpy

    return {obj.name for obj in bpy.data.objects}


def _operator(call: Any, **props: Any) -> dict[str, Any]:
    """Run an operator (EXEC_DEFAULT); its result, error text and the objects it made."""
    before = _objects()
    outcome: dict[str, Any] = {"result": None, "error": None}
    try:
        outcome["result"] = sorted(call("EXEC_DEFAULT", **props))
    except (RuntimeError, TypeError, ValueError) as exc:
        outcome["error"] = str(exc)
    outcome["objects"] = sorted(_objects() - before)
    return outcome


def _object(obj: Any, context: Any) -> dict[str, Any]:
    session = _module(context, "blender.session")
    job_id = obj.get("modelslab_job_id")
    record = session.get_record(job_id) if job_id else None
    return {
        "name": obj.name,
        "vertices": len(obj.data.vertices) if obj.type == "MESH" else 0,
        "job_id": job_id,
        "record": record.to_dict() if record is not None else None,
    }


def _uploads(context: Any) -> list[str]:
    folder = context.user_dir / "uploads"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def _error(call: Any) -> dict[str, Any] | None:
    try:
        call()
    except Exception as exc:
        return {"type": type(exc).__name__, "category": str(getattr(exc, "category", "")), "message": str(exc)}
    return None


def _paint(image: Any, opaque: bool) -> None:
    """A red disc on a transparent background (or nothing at all when not opaque)."""
    import numpy as np

    width, height = image.size
    y, x = np.mgrid[0:height, 0:width]
    inside = ((x - width / 2) ** 2 + (y - height / 2) ** 2) < (0.35 * width) ** 2
    pixels = np.zeros((height, width, 4), dtype=np.float32)
    if opaque:
        pixels[inside] = (0.8, 0.1, 0.05, 1.0)
    image.pixels.foreach_set(pixels.ravel())


def _workbench_scene() -> Any:
    import bpy

    scene = bpy.context.scene
    # Not the default EEVEE (it needs a GPU; bpy 5.3 crashed in it here at times) nor Workbench, which the camera
    # source switches to and must switch back from: Cycles on the CPU, one sample.
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 1
    scene.render.resolution_x = scene.render.resolution_y = 256
    scene.render.resolution_percentage = 100
    return scene


# --- scenarios (the extension enabled) ------------------------------------------------------------------------------
def images(context: Any, params: dict[str, Any]) -> dict[str, Any]:
    """A generated image, an all-transparent one, Render Result (script and operator), the active camera, and an
    empty camera view."""
    import bpy

    modelslab = _api(context)
    out: dict[str, Any] = {}
    photo = bpy.data.images.new("Photo", 128, 128, alpha=True)
    _paint(photo, True)
    out["datablock"] = _object(modelslab.generate(bpy.data.images["Photo"], **params), context)
    out["uploads_after_datablock"] = _uploads(context)
    blank = bpy.data.images.new("Blank", 64, 64, alpha=True)
    _paint(blank, False)
    out["blank_error"] = _error(lambda: modelslab.generate(blank, **params))
    out["missing_error"] = _error(lambda: modelslab.generate(bpy.data.images.get("Nope") or 7, **params))

    scene = _workbench_scene()
    bpy.ops.render.render()
    out["render_result"] = _object(modelslab.generate(bpy.data.images["Render Result"], **params), context)
    op = _operator(bpy.ops.modelslab.image_to_3d, image_name="Render Result", **params)
    out["render_result_operator"] = {**op, "object": _object(bpy.data.objects[op["objects"][0]], context)}
    out["engine_after"] = scene.render.engine
    out["film_transparent_after"] = scene.render.film_transparent

    op = _operator(bpy.ops.modelslab.image_to_3d, source="CAMERA", **params)
    out["camera"] = {**op, "object": _object(bpy.data.objects[op["objects"][0]], context)}
    out["uploads_after_camera"] = _uploads(context)
    out["camera_after"] = scene.camera.name if scene.camera else None
    front = scene.camera
    side = bpy.data.objects.new("Side", front.data)  # the same lens, seen from +X, looking at the origin
    scene.collection.objects.link(side)
    side.location = (front.location.length, 0.0, front.location.z)
    side.rotation_euler = (front.rotation_euler.x, 0.0, 1.5708)
    op = _operator(bpy.ops.modelslab.image_to_3d, source="CAMERA", cameras="Camera;Side", **params)
    out["two_cameras"] = {**op, "object": _object(bpy.data.objects[op["objects"][0]], context)}
    out["camera_after_two"] = scene.camera.name if scene.camera else None
    out["uploads_after_two"] = _uploads(context)

    for obj in list(bpy.data.objects):  # nothing in front of the camera any more (keep the camera itself)
        if obj.type not in ("CAMERA", "LIGHT"):
            bpy.data.objects.remove(obj)
    out["empty_camera"] = _operator(bpy.ops.modelslab.image_to_3d, source="CAMERA", **params)
    out["uploads_after_empty"] = _uploads(context)
    out["viewport_reason"] = _module(context, "blender.sources").unavailable("VIEWPORT")
    out["clipboard_reason"] = _module(context, "blender.sources").unavailable("CLIPBOARD")
    out["viewport_operator"] = _operator(bpy.ops.modelslab.image_to_3d, source="VIEWPORT", **params)
    return out


def text_views_params(context: Any, params: dict[str, Any], front: str, side: str) -> dict[str, Any]:
    """text_to_3d and generate_from_text; two views by operator and script; a newer field set or not."""
    import bpy

    modelslab = _api(context)
    out: dict[str, Any] = {}
    op = _operator(bpy.ops.modelslab.text_to_3d, prompt="a red chair", seed=11)
    out["text_operator"] = {**op, "object": _object(bpy.data.objects[op["objects"][0]], context)}
    out["text_script"] = _object(modelslab.generate_from_text("a blue vase", seed=5), context)
    out["text_empty"] = _operator(bpy.ops.modelslab.text_to_3d, prompt="   ")
    out["text_bad"] = _error(lambda: modelslab.generate_from_text("a cup", guidance_scale=99.0))

    op = _operator(bpy.ops.modelslab.image_to_3d, image=front, extra_views=side, **params)
    out["views_operator"] = {**op, "object": _object(bpy.data.objects[op["objects"][0]], context)}
    photo = bpy.data.images.new("Side", 96, 96, alpha=True)
    _paint(photo, True)
    out["views_script"] = _object(modelslab.generate([front, photo], **params), context)
    out["uploads_after_views"] = _uploads(context)
    out["views_too_many"] = _error(lambda: modelslab.generate([front] * 5, **params))

    op = _operator(bpy.ops.modelslab.image_to_3d, image=front, ss_sampling_steps=12, mesh_simplify=0.95, **params)
    out["revision_operator"] = {**op, "object": _object(bpy.data.objects[op["objects"][0]], context)}
    settings = bpy.context.scene.modelslab
    settings.ss_guidance_strength = 4.0
    settings.use_ss_guidance_strength = True
    settings.temp = True
    settings.use_temp = True
    out["revision_scene_on"] = _object(modelslab.generate(front, **params), context)
    settings.use_ss_guidance_strength = False
    settings.use_temp = False
    out["revision_scene_off"] = _object(modelslab.generate(front, **params), context)
    out["revision_bad"] = _operator(bpy.ops.modelslab.image_to_3d, image=front, ss_sampling_steps=99, **params)
    return out


def adopt_recall(context: Any, params: dict[str, Any], remote_ids: list[str], image: str) -> dict[str, Any]:
    """Adopt two remote jobs (operator, script), a malformed id; recall a job into the sidebar; run it again."""
    import bpy

    modelslab = _api(context)
    out: dict[str, Any] = {}
    op = _operator(bpy.ops.modelslab.import_job, job_id=remote_ids[0])
    out["adopt_operator"] = {**op, "object": _object(bpy.data.objects[op["objects"][0]], context)}
    out["adopt_script"] = _object(modelslab.adopt(remote_ids[1]), context)
    out["adopt_bad"] = _operator(bpy.ops.modelslab.import_job, job_id="../etc/passwd")

    obj = modelslab.generate(image, seed=5, ground=True, target_height=1.25, **params)
    first = _object(obj, context)
    out["first"] = first
    settings = bpy.context.scene.modelslab
    settings.image_source, settings.image_path, settings.seed, settings.resolution = "URL", "", 0, 256
    settings.ground, settings.target_height = False, 0.0
    out["recall"] = _operator(bpy.ops.modelslab.recall_job, job_id=first["job_id"])
    out["scene_after_recall"] = {
        "image_source": settings.image_source,
        "image_path": settings.image_path,
        "seed": settings.seed,
        "resolution": settings.resolution,
        "ground": settings.ground,
        "target_height": round(settings.target_height, 4),
    }
    op = _operator(bpy.ops.modelslab.again_job, job_id=first["job_id"])
    out["again"] = {**op, "object": _object(bpy.data.objects[op["objects"][0]], context)}
    out["recall_unknown"] = _operator(bpy.ops.modelslab.recall_job, job_id="nope")
    return out


def admin(context: Any) -> dict[str, Any]:
    """Each enterprise server action through the operator, with the answer it reported."""
    import bpy

    preferences = _module(context, "blender.preferences")
    out: dict[str, Any] = {}
    for action in ("system_details", "clear_cache", "clear_queue", "update_server", "restart_server"):
        out[action] = _operator(bpy.ops.modelslab.server_action, action=action)
        out[action]["status"] = preferences.admin_status.get(action)
    return out


if __name__ == "__main__":
    # Never run against a real user's Blender configuration: HOME must be the test's temporary one.
    if not os.environ.get("MODELSLAB_TEST_HOME") or os.environ.get("MODELSLAB_TEST_HOME") != os.environ.get("HOME"):
        sys.exit("sources_driver.py: HOME is not the test's temporary user dir; refusing to run")
    sys.path.insert(0, str(HERE))
    import scenario_driver
    import scenarios

    for _name in ("images", "text_views_params", "adopt_recall", "admin"):
        setattr(scenarios, _name, globals()[_name])  # scenario_driver runs scenarios.<name>
    sys.exit(scenario_driver.main())
