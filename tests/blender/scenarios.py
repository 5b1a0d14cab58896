"""Scenarios that run inside a fresh Blender process (imported by scenario_driver.py); each returns a JSON-able
dict.

Only the extension's public surface is used: its operators, its preferences, its script API (README's one-liner),
the journal files it writes, and what ends up in bpy.data. Assertions live in the test modules; a
scenario measures and reports.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bpy


@dataclass
class Context:
    """What the child knows: the enabled module name and the spec the test sent."""

    module: str
    spec: dict
    network_events: list[tuple[str, str]] = field(default_factory=list)

    @property
    def user_dir(self) -> Path:
        """The extension's user directory (journal in jobs/, cache in meshes/)."""
        if self.module.startswith("bl_ext."):
            return Path(bpy.utils.extension_path_user(self.module, create=True))
        return Path(bpy.utils.user_resource("CONFIG", path="modelslab_3d", create=True))

    def apply_prefs(self) -> None:
        """Set the spec's AddonPreferences values by name (unknown names fail loudly)."""
        addon_prefs = bpy.context.preferences.addons[self.module].preferences
        for name, value in self.spec.get("prefs", {}).items():
            if not hasattr(addon_prefs, name):
                raise AttributeError(f"the add-on preferences have no property {name!r}")
            setattr(addon_prefs, name, value)

    def watch_network(self) -> None:
        """Record every socket connect / DNS lookup this process makes from now on (a PEP 578 audit hook)."""
        events = self.network_events

        def hook(event: str, args: tuple) -> None:
            if event in ("socket.connect", "socket.getaddrinfo"):
                events.append((event, repr(args[1] if event == "socket.connect" else args[:2])))

        sys.addaudithook(hook)


# --- measuring helpers ------------------------------------------------------------------------------


def script_module() -> Any:
    """The script API the way README tells scripts to reach it (the enabled add-on's scripting module), or None."""
    import importlib

    name = next((a for a in bpy.context.preferences.addons.keys() if a.rpartition(".")[2] == "modelslab_3d"), None)
    return importlib.import_module(name).scripting if name else None


def object_names() -> set[str]:
    return {obj.name for obj in bpy.data.objects}


def describe_object(obj: bpy.types.Object) -> dict[str, Any]:
    """Everything the tests check about an imported object."""
    mesh = obj.data if obj.type == "MESH" else None
    materials = []
    for slot in obj.material_slots:
        material = slot.material
        if material is None:
            continue
        attribute_nodes = []
        if material.use_nodes and material.node_tree:
            for node in material.node_tree.nodes:
                if node.bl_idname in ("ShaderNodeAttribute", "ShaderNodeVertexColor"):
                    name = getattr(node, "attribute_name", None) or getattr(node, "layer_name", "")
                    linked = any(output.is_linked for output in node.outputs)
                    attribute_nodes.append({"type": node.bl_idname, "name": name, "linked": linked})
        materials.append({"name": material.name, "attribute_nodes": attribute_nodes})
    attributes = {}
    if mesh is not None:
        for attribute in mesh.attributes:
            attributes[attribute.name] = {"domain": attribute.domain, "data_type": attribute.data_type}
    custom = {}
    for key in obj.keys():
        value = obj[key]
        custom[key] = value if isinstance(value, str | int | float | bool) else repr(value)
    view_layer = bpy.context.view_layer
    return {
        "name": obj.name,
        "type": obj.type,
        "vertices": len(mesh.vertices) if mesh is not None else None,
        "faces": len(mesh.polygons) if mesh is not None else None,
        "attributes": attributes,
        "color_attributes": [a.name for a in mesh.color_attributes] if mesh is not None else [],
        "materials": materials,
        "collections": [c.name for c in obj.users_collection],
        "location": list(obj.location),
        "matrix_translation": list(obj.matrix_world.translation),
        "selected": obj.select_get(),
        "active": view_layer.objects.active == obj,
        "custom": custom,
    }


def journal_records(context: Context) -> list[dict]:
    """Every journal file's JSON (unreadable ones as {"unreadable": name})."""
    records = []
    for path in sorted((context.user_dir / "jobs").glob("*.json")):
        try:
            records.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            records.append({"unreadable": path.name})
    return records


def run_operator(undo: bool = False, **props: Any) -> dict[str, Any]:
    """Call bpy.ops.modelslab.image_to_3d(**props) the way a script does; report what happened."""
    before = object_names()
    started = time.monotonic()
    outcome: dict[str, Any] = {"result": None, "error": None, "error_type": None}
    try:
        result = bpy.ops.modelslab.image_to_3d("EXEC_DEFAULT", undo, **props)
        outcome["result"] = sorted(result)
    except RuntimeError as exc:  # an ERROR report raised by bpy.ops
        outcome["error"] = str(exc)
        outcome["error_type"] = type(exc).__name__
    except (TypeError, ValueError) as exc:  # a property value bpy refused
        outcome["error"] = str(exc)
        outcome["error_type"] = type(exc).__name__
    outcome["seconds"] = round(time.monotonic() - started, 3)
    new = sorted(object_names() - before)
    outcome["new_objects"] = [describe_object(bpy.data.objects[name]) for name in new]
    return outcome


def set_cursor(location: tuple[float, float, float]) -> None:
    bpy.context.scene.cursor.location = location


def thread_names() -> list[str]:
    return sorted(f"{t.name}{' (daemon)' if t.daemon else ''}" for t in threading.enumerate())


def operator_registered() -> bool:
    return hasattr(bpy.types, "MODELSLAB_OT_image_to_3d")


# --- scenarios --------------------------------------------------------------------------------------


def smoke(context: Context) -> dict[str, Any]:
    """Installed and enabled: which operators, preferences and scene settings exist."""
    operators = sorted(name for name in dir(bpy.ops.modelslab) if not name.startswith("_"))
    prefs = bpy.context.preferences.addons[context.module].preferences
    pref_props = prefs.bl_rna.properties if prefs is not None else {}
    pref_names = sorted(p.identifier for p in pref_props if p.identifier != "rna_type")
    api_key_prop = pref_props.get("api_key") if prefs is not None else None
    scene_settings = getattr(bpy.context.scene, "modelslab", None)
    scene_names = (
        sorted(p.identifier for p in scene_settings.bl_rna.properties if p.identifier != "rna_type")
        if scene_settings is not None
        else None
    )
    alias = script_module()
    return {
        "blender": bpy.app.version_string,
        "operators": operators,
        "prefs": pref_names,
        "api_key_subtype": api_key_prop.subtype if api_key_prop else None,
        "scene_settings": scene_names,
        "script_alias": bool(alias and hasattr(alias, "generate")),
        "top_level_alias": "modelslab" in sys.modules,
        "requests_imported": "requests" in sys.modules,
        "user_dir": str(context.user_dir),
        "threads": thread_names(),
    }


def generate(
    context: Context,
    props: dict[str, Any],
    cursor: tuple[float, float, float] | None = None,
    undo_check: bool = False,
    save_blend: str | None = None,
    watch_network: bool = False,
    repeat: int = 1,
    scene_settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the operator (optionally several times), then report objects, journal, undo and saved file."""
    if watch_network:
        context.watch_network()
    for name, value in (scene_settings or {}).items():
        setattr(bpy.context.scene.modelslab, name, value)
    if cursor is not None:
        set_cursor(cursor)
    out: dict[str, Any] = {"objects_before": sorted(object_names())}
    if undo_check:
        bpy.ops.ed.undo_push(message="before ModelsLab import")  # initialises the undo stack in background mode
    out["runs"] = [run_operator(undo=undo_check, **props) for _ in range(repeat)]
    out["objects_after"] = len(bpy.data.objects)
    collection = bpy.data.collections.get("ModelsLab")
    out["modelslab_collection"] = sorted(o.name for o in collection.objects) if collection else None
    out["journal"] = journal_records(context)
    out["threads"] = thread_names()
    if save_blend:
        bpy.ops.wm.save_as_mainfile(filepath=save_blend, compress=False)
        out["saved"] = save_blend
    if undo_check:
        out["undo_poll"] = bpy.ops.ed.undo.poll()
        if out["undo_poll"]:
            bpy.ops.ed.undo()
        out["objects_after_one_undo"] = sorted(object_names())
        out["undo_poll_after_one_undo"] = bpy.ops.ed.undo.poll()
    out["network_events"] = context.network_events
    return out


def disable_enable_cycles(context: Context, props: dict[str, Any], cycles: int = 3) -> dict[str, Any]:
    """Generate once, then disable/enable the add-on `cycles` times, recording threads and registration."""
    import addon_utils

    baseline = thread_names()
    first = run_operator(**props)
    threads_after_job = thread_names()
    steps = []
    for _ in range(cycles):
        addon_utils.disable(context.module, default_set=True)
        disabled = {
            "threads": thread_names(),
            "operator_registered": operator_registered(),
            "script_alias": script_module() is not None,
            "top_level_alias": "modelslab" in sys.modules,
            "scene_settings": hasattr(bpy.types.Scene, "modelslab"),
        }
        addon_utils.enable(context.module, default_set=True)
        context.apply_prefs()  # Blender drops an add-on's preferences when it is disabled
        enabled = {
            "threads": thread_names(),
            "operator_registered": operator_registered(),
            "script_alias": script_module() is not None,
            "top_level_alias": "modelslab" in sys.modules,
        }
        steps.append({"disabled": disabled, "enabled": enabled})
    last = run_operator(**props)
    addon_utils.disable(context.module, default_set=True)
    return {
        "baseline": baseline,
        "first": first,
        "threads_after_job": threads_after_job,
        "cycles": steps,
        "last": last,
        "threads_after_final_disable": thread_names(),
    }


def start_and_hang(context: Context, props: dict[str, Any]) -> dict[str, Any]:
    """Start a job that the server keeps 'processing'; the test kills this process mid-poll."""
    print("MODELSLAB_TEST: starting job", flush=True)
    return run_operator(**props)


def resume_after_restart(context: Context, timeout: float = 60.0) -> dict[str, Any]:
    """A new process with the same user dir: `modelslab.resume()` finishes the journal's unfinished job."""
    modelslab = script_module()

    out: dict[str, Any] = {"journal_at_start": journal_records(context)}
    names_before = object_names()
    out["results"] = modelslab.resume(timeout=timeout)
    new = sorted(object_names() - names_before)
    out["new_objects"] = [describe_object(bpy.data.objects[name]) for name in new]
    out["journal_at_end"] = journal_records(context)
    return out


def _wait_for_status(local_id: str, wanted: set[str], timeout: float = 30.0) -> str:
    """Poll the script API until the job reaches one of the wanted states (the child is the user here)."""
    modelslab = script_module()

    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        status = modelslab.result(local_id)["status"]
        if status in wanted:
            return status
        time.sleep(0.05)
    raise TimeoutError(f"job {local_id} stayed {status!r}, never reached {sorted(wanted)}")


def job_operators(context: Context, props: dict[str, Any]) -> dict[str, Any]:
    """Generate, then re-import from the cache, test the connection, clear finished jobs."""
    out: dict[str, Any] = {"generate": run_operator(**props)}
    objects = out["generate"]["new_objects"]
    local_id = objects[0]["custom"]["modelslab_job_id"] if objects else ""
    before = object_names()
    try:
        out["reimport_result"] = sorted(bpy.ops.modelslab.reimport_job(job_id=local_id))
    except RuntimeError as exc:
        out["reimport_result"] = str(exc)
    out["reimported"] = [describe_object(bpy.data.objects[n]) for n in sorted(object_names() - before)]
    try:
        out["connection"] = sorted(bpy.ops.modelslab.test_connection())
    except RuntimeError as exc:
        out["connection"] = str(exc)
    out["clear"] = sorted(bpy.ops.modelslab.clear_finished_jobs())
    out["journal"] = journal_records(context)
    return out


def cancel_running_job(context: Context, props: dict[str, Any]) -> dict[str, Any]:
    """Submit (non-blocking script API), cancel with the operator while the server is still working."""
    modelslab = script_module()

    names_before = object_names()
    record = modelslab.submit(props.pop("image"), **props)
    out: dict[str, Any] = {"status_before_cancel": _wait_for_status(record.local_id, {"submitted", "processing"})}
    out["cancel_result"] = sorted(bpy.ops.modelslab.cancel_job(job_id=record.local_id))
    final = modelslab.wait(record.local_id, timeout=30)
    out["final_state"] = str(final.state)
    out["final_message"] = final.message
    out["new_objects"] = sorted(object_names() - names_before)
    out["journal"] = journal_records(context)
    return out


def disable_mid_job(context: Context, props: dict[str, Any]) -> dict[str, Any]:
    """Disable the add-on while a job waits on the server, then enable again and resume it."""
    import addon_utils

    modelslab = script_module()

    baseline = thread_names()
    names_before = object_names()
    record = modelslab.submit(props.pop("image"), **props)
    out: dict[str, Any] = {"status_before_disable": _wait_for_status(record.local_id, {"submitted", "processing"})}
    out["threads_while_running"] = thread_names()
    started = time.monotonic()
    addon_utils.disable(context.module, default_set=True)
    out["disable_seconds"] = round(time.monotonic() - started, 3)
    out["threads_after_disable"] = thread_names()
    out["baseline"] = baseline
    out["journal_after_disable"] = journal_records(context)
    out["objects_after_disable"] = sorted(object_names() - names_before)
    addon_utils.enable(context.module, default_set=True)
    context.apply_prefs()
    alias_again = script_module()  # reachable again once re-enabled

    out["results"] = alias_again.resume(timeout=60)
    new = sorted(object_names() - names_before)
    out["new_objects"] = [describe_object(bpy.data.objects[name]) for name in new]
    out["journal_at_end"] = journal_records(context)
    return out


def script_api(context: Context, image: str, params: dict[str, Any], bad_params: dict[str, Any]) -> dict[str, Any]:
    """The script API: generate() blocks and returns the object; bad input raises ModelsLabError."""
    modelslab = script_module()

    out: dict[str, Any] = {}
    obj = modelslab.generate(image, **params)
    out["returned_type"] = type(obj).__name__
    out["object"] = describe_object(obj)
    try:
        modelslab.generate(image, **bad_params)
        out["bad_error"] = None
    except modelslab.ModelsLabError as exc:
        out["bad_error"] = {"category": str(exc.category), "message": exc.message, "fix": exc.fix}
    out["journal"] = journal_records(context)
    return out
