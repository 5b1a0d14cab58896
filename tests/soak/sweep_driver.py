"""One Blender (bpy module) process that enables the checkout as the legacy add-on `modelslab_3d`, sets its
preferences and runs the `modelslab.image_to_3d` operator once (background mode: blocking), then disables it.

    python tests/soak/sweep_driver.py SPEC.json RESULT.json

SPEC: {"image": str, "props": {...}, "prefs": {...}, "online_access": bool}. The API key and base URL come
from the environment (MODELSLAB_API_KEY, MODELSLAB_BASE_URL), as a studio's render farm would set them.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import threading
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
ADDON = "modelslab_3d"


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    result_path = Path(sys.argv[2])
    import bpy

    addon_utils = importlib.import_module("addon_utils")  # after bpy: it lives in Blender's own scripts

    addons = Path(bpy.utils.user_resource("SCRIPTS", path="addons", create=True))
    link = addons / ADDON
    if not link.exists():
        link.symlink_to(REPO_ROOT, target_is_directory=True)
    bpy.utils.refresh_script_paths()  # the user add-ons folder did not exist when Blender started
    if spec.get("online_access"):
        bpy.context.preferences.system.use_online_access = True  # the user allowed it in Preferences > System
    threads_before = sorted(t.name for t in threading.enumerate())
    addon_utils.enable(ADDON, default_set=True, handle_error=_raise)
    prefs = bpy.context.preferences.addons[ADDON].preferences
    for name, value in spec.get("prefs", {}).items():
        setattr(prefs, name, value)
    objects_before = {obj.name for obj in bpy.data.objects}
    error = None
    try:
        outcome = sorted(bpy.ops.modelslab.image_to_3d(image=spec["image"], **spec.get("props", {})))
    except RuntimeError as exc:  # an operator that reported ERROR raises with the report's text
        outcome, error = ["CANCELLED"], str(exc)
    new_objects = sorted({obj.name for obj in bpy.data.objects} - objects_before)
    collection = bpy.data.collections.get("ModelsLab")
    addon_utils.disable(ADDON, default_set=True, handle_error=_raise)
    threads_after = sorted(t.name for t in threading.enumerate())
    result = {
        "outcome": outcome,
        "error": error,
        "new_objects": new_objects,
        "modelslab_collection": sorted(o.name for o in collection.objects) if collection else [],
        "threads_before": threads_before,
        "threads_after": threads_after,
        "user_dir": os.environ.get("MODELSLAB_USER_DIR", ""),
    }
    result_path.write_text(json.dumps(result), encoding="utf-8")
    return 0


def _raise(exc: BaseException) -> None:
    raise exc


if __name__ == "__main__":
    sys.exit(main())
