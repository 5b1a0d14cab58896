"""Blender's extension policy: installed through Blender's own installer, the extension adds no top-level module
and no sys.path entry (addon_utils._extensions_warnings_get() stays empty, the list Preferences shows with a
warning sign), and scripts still reach the script API with the one-liner README documents. The legacy add-on
(no policy there) keeps `import modelslab`."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from tests.helpers.blender import RESULT_MARKER, UserDir, parse_payload, run_process
from tests.helpers.keys import BLENDER_KEY
from tests.helpers.paths import EXAMPLE_IMAGE, REPO_ROOT
from tests.helpers.servers import ServerProcess

# Runs inside a fresh bpy process: argv = [zip, install mode, README one-liner, server URL, image].
DRIVER = r"""
import json, sys, traceback
import bpy  # Blender starts here; addon_utils comes with it
import addon_utils

zip_path, install, one_liner, base_url, image = sys.argv[1:6]
out = {}

def warnings():
    addon_utils._is_first_reset()  # recompute, as opening Preferences does
    return {name: list(lines) for name, lines in addon_utils._extensions_warnings_get().items()}

try:
    if install == "extension":
        out["install"] = sorted(bpy.ops.extensions.package_install_files(
            filepath=zip_path, repo="user_default", enable_on_install=True))
    else:
        out["install"] = sorted(bpy.ops.preferences.addon_install(filepath=zip_path, overwrite=True))
        addon_utils.enable("modelslab_3d", default_set=True)
    out["enabled"] = [name for name in bpy.context.preferences.addons.keys() if name.endswith("modelslab_3d")]
    out["warnings_enabled"] = warnings()
    out["alias_loaded"] = "modelslab" in sys.modules
    out["top_level_from_addon"] = sorted(
        name for name, module in sys.modules.items()
        if "." not in name and "modelslab" in (getattr(module, "__file__", None) or "")
    )
    namespace = {}
    exec(one_liner, namespace)
    modelslab = namespace["modelslab"]
    out["script_api"] = modelslab.__name__
    if install == "legacy":
        import modelslab as legacy_alias
        out["legacy_alias_is_script_api"] = legacy_alias is modelslab
    bpy.context.preferences.addons[out["enabled"][0]].preferences.base_url = base_url
    obj = modelslab.generate(image, resolution=48, timeout=60)
    out["object"] = {"name": obj.name, "vertices": len(obj.data.vertices), "job": obj.get("modelslab_job_id")}
    out["warnings_after_generate"] = warnings()
    out["alias_after_generate"] = "modelslab" in sys.modules
    modelslab.shutdown(wait=True)
except BaseException:
    out["traceback"] = traceback.format_exc()
sys.stdout.write(MARKER + json.dumps(out) + "\n")
sys.stdout.flush()
"""


def readme_one_liner() -> str:
    """The lines of README's script example that find the script API (up to the line ending in `.scripting`)."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    for block in re.findall(r"```python\n(.*?)```", text, flags=re.S):
        if "modelslab = " in block and ".scripting" in block:
            head = block.split(".scripting", 1)[0]
            return head + ".scripting"
    raise AssertionError("README has no script example that reaches the script API")


def run_driver(user_dir: UserDir, zip_path: Path, install: str, server: ServerProcess) -> dict[str, Any]:
    code = f"MARKER = {RESULT_MARKER!r}\n" + DRIVER
    command = [sys.executable, "-c", code, str(zip_path), install, readme_one_liner(), server.url, str(EXAMPLE_IMAGE)]
    run = run_process(
        command,
        env=user_dir.env({"MODELSLAB_API_KEY": BLENDER_KEY}),
        timeout=180,
        cwd=user_dir.root,
        payload=parse_payload,
    )
    result = run.payload
    assert result is not None and "traceback" not in result, run.report() + "\n" + json.dumps(result, indent=1)
    return result


def test_extension_adds_no_top_level_module_and_the_documented_line_reaches_the_script_api(
    user_dir: UserDir, extension_zip: Path, fresh_server: ServerProcess
) -> None:
    result = run_driver(user_dir, extension_zip, "extension", fresh_server)
    assert result["install"] == ["FINISHED"]
    assert result["enabled"] == ["bl_ext.user_default.modelslab_3d"], result["enabled"]
    assert result["warnings_enabled"] == {}, result["warnings_enabled"]
    assert not result["alias_loaded"] and result["top_level_from_addon"] == [], result
    assert result["script_api"] == "bl_ext.user_default.modelslab_3d.blender.scripting"
    assert result["object"]["vertices"] > 100 and result["object"]["job"], result["object"]
    assert result["warnings_after_generate"] == {}, "a job's lazily loaded modules broke the policy"
    assert not result["alias_after_generate"]
    assert fresh_server.stats()["submits"] == 1


def test_legacy_add_on_keeps_import_modelslab_and_the_same_line_works(
    user_dir: UserDir, extension_zip: Path, fresh_server: ServerProcess
) -> None:
    legacy_zip = extension_zip.with_name(extension_zip.name[: -len(".zip")] + "-legacy.zip")
    result = run_driver(user_dir, legacy_zip, "legacy", fresh_server)
    assert result["enabled"] == ["modelslab_3d"], result["enabled"]
    assert result["alias_loaded"] and result["legacy_alias_is_script_api"], result
    assert result["script_api"] == "modelslab_3d.blender.scripting"
    assert result["object"]["vertices"] > 100, result["object"]
