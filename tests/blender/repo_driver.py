"""One step of the remote-repository test, run in a fresh Blender process (the bpy module).

Started by test_blender_repo.py as `<bpy venv python> repo_driver.py STEP SPEC.json` with HOME and
XDG_CONFIG_HOME pointing at the test's temporary user directory. What a step finds on disk - the installed
package, the repository's synced listing, the extension's user directory - is what the previous Blender left.
The preferences are set up again in each step (online access, the studio repository, the add-on enabled):
the bpy module starts from factory settings, and bpy 4.2 crashes in `wm.read_userpref`. Only Blender's own
extension operators install, sync and upgrade. Prints one JSON result line.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

# Never touch a real user's Blender configuration: HOME must be the test's temporary one (checked before bpy starts).
if os.environ.get("MODELSLAB_TEST_HOME") != os.environ.get("HOME") or not os.environ.get("HOME"):
    sys.exit("repo_driver.py: HOME is not the test's temporary user dir; refusing to run")

import bpy

RESULT_MARKER = "@@MODELSLAB_REPO_RESULT@@ "
PACKAGE_ID = "modelslab_3d"


def add_studio_repo(spec: dict[str, Any]) -> Any:
    """Allow online access, switch off extensions.blender.org (no internet here) and add the studio repository."""
    prefs = bpy.context.preferences
    prefs.system.use_online_access = True
    for repo in prefs.extensions.repos:
        if repo.use_remote_url:
            repo.enabled = False
    return prefs.extensions.repos.new(name="Studio", module=spec["repo_module"], remote_url=spec["remote_url"])


def enable_installed(spec: dict[str, Any]) -> None:
    """Enable the add-on the previous Blender installed (a restarted Blender enables it from its preferences)."""
    import addon_utils

    def fail(exc: BaseException) -> None:
        raise exc

    addon_utils.enable(module_name(spec), default_set=True, handle_error=fail)
    bpy.context.preferences.addons[module_name(spec)].preferences.base_url = spec["base_url"]


def module_name(spec: dict[str, Any]) -> str:
    return f"bl_ext.{spec['repo_module']}.{PACKAGE_ID}"


def installed_version(repo: Any) -> str | None:
    """The version in the installed package's manifest (what Blender lists), or None when not installed."""
    import tomllib

    manifest = Path(repo.directory) / PACKAGE_ID / "blender_manifest.toml"
    if not manifest.is_file():
        return None
    return str(tomllib.loads(manifest.read_text(encoding="utf-8"))["version"])


def updates_offered(repo: Any) -> int:
    """How many installed packages of repo have a different version in its synced listing.

    The same count Blender shows as "N updates available" (its status bar and Get Extensions); the UI's own
    counter is not computed in background mode, so ask the function that computes it.
    """
    import bl_pkg

    return int(bl_pkg.repo_stats_calc_outdated_for_repo_directory(bl_pkg.repo_cache_store_ensure(), repo.directory))


def sync(repo: Any) -> list[str]:
    return sorted(bpy.ops.extensions.repo_sync(repo_directory=repo.directory))


def addon_state(spec: dict[str, Any]) -> dict[str, Any]:
    module = module_name(spec)
    addon = bpy.context.preferences.addons.get(module)
    return {
        "enabled": addon is not None,
        "loaded": module in sys.modules,
        "operator_registered": hasattr(bpy.types, "MODELSLAB_OT_image_to_3d"),
        "base_url": addon.preferences.base_url if addon is not None and addon.preferences else None,
    }


def user_files(spec: dict[str, Any]) -> dict[str, str]:
    """Every file in the extension's user directory (journal, cache): relative path -> sha256."""
    root = Path(bpy.utils.extension_path_user(module_name(spec), create=False))
    if not root.is_dir():
        return {}
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def reimport(job_id: str) -> dict[str, Any]:
    """Re-import a finished job through the add-on (from its mesh cache); report the new objects."""
    before = set(bpy.data.objects.keys())
    try:
        result: Any = sorted(bpy.ops.modelslab.reimport_job(job_id=job_id))
    except RuntimeError as exc:
        result = str(exc)
    new = sorted(set(bpy.data.objects.keys()) - before)
    return {"result": result, "objects": new, "vertices": [len(bpy.data.objects[n].data.vertices) for n in new]}


def step_install(spec: dict[str, Any]) -> dict[str, Any]:
    """A studio machine's first contact: add the studio repository, sync, install from it, use the add-on."""
    repo = add_studio_repo(spec)
    out: dict[str, Any] = {"online_access": bpy.app.online_access, "sync": sync(repo)}
    out["installed_before"] = installed_version(repo)
    out["install"] = sorted(
        bpy.ops.extensions.package_install(repo_directory=repo.directory, pkg_id=PACKAGE_ID, enable_on_install=True)
    )
    out["installed_version"] = installed_version(repo)
    out["updates_offered"] = updates_offered(repo)
    bpy.context.preferences.addons[module_name(spec)].preferences.base_url = spec["base_url"]
    before = set(bpy.data.objects.keys())
    out["generate"] = sorted(bpy.ops.modelslab.image_to_3d(image=spec["image"], resolution=spec["resolution"]))
    new = sorted(set(bpy.data.objects.keys()) - before)
    out["job_ids"] = [bpy.data.objects[name].get("modelslab_job_id") for name in new]
    out["addon"] = addon_state(spec)
    out["user_files"] = user_files(spec)
    return out


def step_upgrade(spec: dict[str, Any]) -> dict[str, Any]:
    """After a new version was published: sync, see the update offered, apply it, keep using the add-on."""
    repo = add_studio_repo(spec)
    enable_installed(spec)
    out: dict[str, Any] = {"addon_before": addon_state(spec), "installed_before": installed_version(repo)}
    out["user_files_before"] = user_files(spec)
    out["updates_before_sync"] = updates_offered(repo)
    out["sync"] = sync(repo)
    out["updates_offered"] = updates_offered(repo)
    out["upgrade"] = sorted(bpy.ops.extensions.package_upgrade_all())
    out["installed_version"] = installed_version(repo)
    out["updates_after"] = updates_offered(repo)
    out["addon"] = addon_state(spec)
    out["user_files"] = user_files(spec)
    out["reimport"] = reimport(spec["job_id"])
    return out


def step_restart(spec: dict[str, Any]) -> dict[str, Any]:
    """Blender started again after the upgrade: the new version loads and still finds the old job."""
    repo = add_studio_repo(spec)
    enable_installed(spec)
    return {
        "installed_version": installed_version(repo),
        "addon": addon_state(spec),
        "user_files": user_files(spec),
        "reimport": reimport(spec["job_id"]),
    }


STEPS = {"install": step_install, "upgrade": step_upgrade, "restart": step_restart}


def main() -> int:
    step, spec_path = sys.argv[1], Path(sys.argv[2])
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    payload: dict[str, Any] = {"ok": False, "blender": bpy.app.version_string}
    try:
        payload["result"] = STEPS[step](spec)
        payload["ok"] = True
    except BaseException:
        payload["traceback"] = traceback.format_exc()
    payload["threads_at_end"] = sorted(t.name for t in threading.enumerate())
    sys.stdout.write(RESULT_MARKER + json.dumps(payload, default=str) + "\n")
    sys.stdout.flush()
    return 0 if payload["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
