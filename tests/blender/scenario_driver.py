"""Runs INSIDE one fresh Blender process (the bpy module) for the blender test layer.

Started by tests.helpers.blender.run_scenario() as `<bpy venv python> scenario_driver.py SPEC.json` with HOME
and XDG_CONFIG_HOME pointing at a temporary user directory. It installs (or just enables) the built
extension, applies preferences, runs one function of scenarios.py and prints its JSON result on a
single marker line. The spec file lives outside HOME: it may hold the API key.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path

RESULT_MARKER = "@@MODELSLAB_TEST_RESULT@@ "  # tests.helpers.blender reads the line after it
EXTENSION_ID = "modelslab_3d"
EXTENSION_MODULE = f"bl_ext.user_default.{EXTENSION_ID}"


def ensure_enabled(zip_path: str, install: str) -> str:
    """Make the add-on enabled and return its module name.

    install: "extension" installs the zip into the user_default repository (Blender 4.2+ way),
    "legacy" installs the `-legacy.zip` with Install Add-on (module `modelslab_3d`), "none" enables
    what an earlier process with the same user dir installed (userprefs are not saved, so it is off).
    """
    import addon_utils
    import bpy

    if install == "extension":
        result = bpy.ops.extensions.package_install_files(
            filepath=zip_path, repo="user_default", enable_on_install=True
        )
        if result != {"FINISHED"}:
            raise RuntimeError(f"package_install_files returned {result}")
        module = EXTENSION_MODULE
    elif install == "legacy":
        legacy_zip = zip_path[: -len(".zip")] + "-legacy.zip"
        result = bpy.ops.preferences.addon_install(filepath=legacy_zip, overwrite=True)
        if result != {"FINISHED"}:
            raise RuntimeError(f"addon_install returned {result}")
        module = EXTENSION_ID
        addon_utils.enable(module, default_set=True, handle_error=_raise)
    elif install == "none":
        module = EXTENSION_MODULE
        addon_utils.enable(module, default_set=True, handle_error=_raise)
    else:
        raise ValueError(f"unknown install mode {install!r}")
    if module not in bpy.context.preferences.addons:
        enabled = list(bpy.context.preferences.addons.keys())
        raise RuntimeError(f"{module} is not enabled after install; enabled add-ons: {enabled}")
    return module


def _raise(exc: BaseException) -> None:
    raise exc


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    started = time.monotonic()
    payload: dict = {"ok": False}
    try:
        import scenarios  # imports bpy: Blender starts here

        payload["threads_before_enable"] = sorted(t.name for t in threading.enumerate())
        module = ensure_enabled(spec["zip"], spec.get("install", "extension"))
        context = scenarios.Context(module=module, spec=spec)
        context.apply_prefs()
        payload["result"] = getattr(scenarios, spec["scenario"])(context, **spec.get("kwargs", {}))
        payload["ok"] = True
    except BaseException:
        payload["traceback"] = traceback.format_exc()
    payload["seconds"] = round(time.monotonic() - started, 3)
    payload["threads_at_end"] = sorted(t.name for t in threading.enumerate())
    sys.stdout.write(RESULT_MARKER + json.dumps(payload, default=str) + "\n")
    sys.stdout.flush()
    code = 0 if payload["ok"] else 1
    bpy = sys.modules.get("bpy")
    if bpy is not None and tuple(bpy.app.version[:2]) == (4, 2):
        # bpy 4.2's own shutdown can segfault after a Cycles bake or an export, once everything is reported.
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    # Never run against a real user's Blender configuration: HOME must be the test's temporary one.
    if not os.environ.get("MODELSLAB_TEST_HOME") or os.environ.get("MODELSLAB_TEST_HOME") != os.environ.get("HOME"):
        sys.exit("scenario_driver.py: HOME is not the test's temporary user dir; refusing to run")
    sys.exit(main())
