"""Child process of the blender section, run by the bpy 5.0 module's Python with HOME set to a temporary user dir.

    python bench/bpy_probe.py install ZIP [ZIP...]     install extensions into user_default (not enabled)
    python bench/bpy_probe.py register MODULE CYCLES [WARM_UP_MODULE]
                                                       first (cold) enable in this fresh process, then warm cycles
    python bench/bpy_probe.py import MODULE OBJ ROUNDS add-on import vs bare wm.obj_import, alternating
    python bench/bpy_probe.py generate MODULE IMAGE_URL N  the operator N times, one after the other (blocking)

Prints one JSON line prefixed with RESULT_MARKER. Only stdlib + bpy (and the installed extension).
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from typing import Any

RESULT_MARKER = "@@BENCH_RESULT@@ "
WARM_UP_PAIRS = 2


def _addons() -> Any:
    """The enabled add-ons collection (typed loosely: the stubs allow no preferences)."""
    import bpy

    preferences: Any = bpy.context.preferences
    return preferences.addons


def install(zips: list[str]) -> dict[str, Any]:
    """Install each zip into the user_default repository without enabling it (userprefs are not saved)."""
    import bpy

    for path in zips:
        result = bpy.ops.extensions.package_install_files(filepath=path, repo="user_default", enable_on_install=False)
        if result != {"FINISHED"}:
            raise RuntimeError(f"package_install_files({path}) returned {result}")
    return {"installed": zips}


def _enable_ms(module: str, cpu: list[float] | None = None) -> float:
    """Wall milliseconds of one addon_enable (and, into `cpu`, the main thread's CPU milliseconds)."""
    import bpy

    cpu_start = time.thread_time()
    start = time.perf_counter()
    result = bpy.ops.preferences.addon_enable(module=module)
    elapsed = (time.perf_counter() - start) * 1000.0
    if cpu is not None:
        cpu.append((time.thread_time() - cpu_start) * 1000.0)
    if result != {"FINISHED"} or module not in _addons():
        raise RuntimeError(f"addon_enable({module}) returned {result}")
    return elapsed


HEAVY = ("requests", "urllib3", "numpy")
BLENDER_EXTENSION_MODULES = (
    "bl_pkg.cli.blender_ext",
    "bl_pkg.bl_extension_utils",
    "_bpy_internal.extensions.wheel_manager",
)


def register(module: str, cycles: int, warm_up: str | None) -> dict[str, Any]:
    """Cold: the first enable of `module` in this fresh process (its imports + register()); `warm_up`, an empty
    extension enabled just before, takes Blender's own one-time extension costs. Then warm disable/enable cycles."""
    import bpy

    if module in _addons():
        raise RuntimeError(f"{module} is already enabled at startup: the cold figure would be meaningless")
    if warm_up:
        # Blender's own extension machinery, which it loads lazily around the first extension enable of a process
        # whatever the extension is: loaded here so that only the add-on's own cost is timed below.
        import importlib

        for name in BLENDER_EXTENSION_MODULES:
            try:
                importlib.import_module(name)
            except ImportError:
                pass
    warm_up_ms = _enable_ms(warm_up) if warm_up else None
    heavy_before = sorted(name for name in HEAVY if name in sys.modules)
    cold_cpu: list[float] = []
    cold = _enable_ms(module, cold_cpu)
    heavy_after = sorted(name for name in HEAVY if name in sys.modules)
    warm, disable = [], []
    for _ in range(cycles):
        start = time.perf_counter()
        bpy.ops.preferences.addon_disable(module=module)
        disable.append((time.perf_counter() - start) * 1000.0)
        warm.append(_enable_ms(module))
    return {
        "warm_up_ms": warm_up_ms,
        "cold_ms": cold,
        "cold_cpu_ms": cold_cpu[0],
        "warm_ms": warm,
        "disable_ms": disable,
        "heavy_loaded_by_enable": [name for name in heavy_after if name not in heavy_before],
    }


def _clear_scene() -> None:
    import bpy

    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj, do_unlink=True)
    for mesh in list(bpy.data.meshes):
        if mesh.users == 0:
            bpy.data.meshes.remove(mesh)


def import_compare(module: str, obj_path: str, rounds: int) -> dict[str, Any]:
    """Alternate bare `wm.obj_import` and the add-on's importer (import_mesh with its default options)."""
    import importlib

    import bpy

    if module not in _addons():
        _enable_ms(module)
    importer = importlib.import_module(f"{module}.blender.importer")

    def bare() -> float:
        start = time.perf_counter()
        result = bpy.ops.wm.obj_import(filepath=obj_path)
        elapsed = time.perf_counter() - start
        if result != {"FINISHED"}:
            raise RuntimeError(f"wm.obj_import returned {result}")
        return elapsed

    def addon(index: int) -> float:
        provenance = importer.Provenance(
            job_id=f"bench{index}", remote_id=str(1000 + index), source="duck_512.png", params={"resolution": 256}
        )
        start = time.perf_counter()
        importer.import_mesh(
            bpy.context,
            obj_path,
            "obj",
            name="duck_512",
            options=importer.ImportOptions(),
            provenance=provenance,
        )
        return time.perf_counter() - start

    first = {"bare_s": bare(), "addon_s": None}
    _clear_scene()
    first["addon_s"] = addon(-1)
    _clear_scene()
    for index in range(WARM_UP_PAIRS):  # unmeasured: the allocator and caches settle over the first calls
        bare()
        _clear_scene()
        addon(-2 - index)
        _clear_scene()
    bare_s, addon_s = [], []
    for index in range(rounds):
        if index % 2 == 0:
            bare_s.append(bare())
            _clear_scene()
            addon_s.append(addon(index))
        else:
            addon_s.append(addon(index))
            _clear_scene()
            bare_s.append(bare())
        _clear_scene()
    addon(rounds)
    view_layer: Any = bpy.context.view_layer
    obj: Any = view_layer.objects.active
    undo_push: Any = bpy.ops.ed.undo_push
    check = {
        "collection": [c.name for c in obj.users_collection],
        "material": [m.name for m in obj.data.materials if m],
        "color_attributes": [a.name for a in obj.data.color_attributes],
        "vertices": len(obj.data.vertices),
        "custom_props": sorted(k for k in obj.keys() if k.startswith("modelslab_")),
        "undo_push_poll": bool(undo_push.poll()),
    }
    return {"first": first, "bare_s": bare_s, "addon_s": addon_s, "check": check}


def generate(module: str, image_url: str, count: int) -> dict[str, Any]:
    """Run the add-on's operator `count` times one after the other (background mode: it returns with the object in
    the scene); the moment each returned and the object's remote job id. Server and key come from the env."""
    import bpy

    if module not in _addons():
        _enable_ms(module)
    rows = []
    for _ in range(count):
        started = time.time()
        ops: Any = bpy.ops
        result = ops.modelslab.image_to_3d(image=image_url)
        in_scene = time.time()
        if result != {"FINISHED"}:
            raise RuntimeError(f"modelslab.image_to_3d returned {result}")
        view_layer: Any = bpy.context.view_layer
        obj: Any = view_layer.objects.active
        rows.append({"submitted_at": started, "in_scene_at": in_scene, "remote_id": str(obj["modelslab_remote_id"])})
    return {"jobs": rows}


def main(argv: list[str]) -> int:
    """Dispatch the command and print its JSON result on one marked line."""
    payload: dict[str, Any] = {"ok": False}
    try:
        import bpy  # noqa: F401  (first, as in Blender)

        command = argv[0]
        if command == "install":
            payload["result"] = install(argv[1:])
        elif command == "register":
            payload["result"] = register(argv[1], int(argv[2]), argv[3] if len(argv) > 3 else None)
        elif command == "generate":
            payload["result"] = generate(argv[1], argv[2], int(argv[3]))
        elif command == "import":
            payload["result"] = import_compare(argv[1], argv[2], int(argv[3]))
        else:
            raise SystemExit(f"unknown command {command!r}")
        payload["ok"] = True
    except BaseException:
        payload["traceback"] = traceback.format_exc()
    sys.stdout.write(RESULT_MARKER + json.dumps(payload) + "\n")
    sys.stdout.flush()
    return 0 if payload["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
