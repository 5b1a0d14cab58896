"""The built zip: Blender's tool accepts it, it ships only the extension, it installs and registers the shared names."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.helpers.blender import EXTENSION_ID, FAST_PARAMS, BlenderOn, UserDir, run_scenario
from tests.helpers.paths import example_image
from tests.helpers.servers import ServerProcess
from tests.helpers.shipping import manifest, ships

OPERATORS = {
    "image_to_3d",
    "cancel_job",
    "reimport_job",
    "open_job_folder",
    "copy_result_url",
    "test_connection",
    "clear_finished_jobs",
}
PREFERENCES = {
    "api_key",
    "base_url",
    "flavor",
    "ca_bundle",
    "proxy",
    "max_concurrent_jobs",
    "poll_timeout",
    "cache_dir",
    "cache_retention_days",
    "auto_import",
    "import_scale",
    "forward_axis",
    "up_axis",
    "shade_smooth",
    "decimate_ratio",
}
SCENE_SETTINGS = {
    "image_source",
    "image_path",
    "image_url",
    "foreground_ratio",
    "remove_bg",
    "resolution",
    "chunk_size",
    "seed",
    "output_format",
    "webhook",
    "track_id",
}


def blender_ext_tool() -> Path:
    """blender_ext.py of the Blender this test runs with (4.2's tool checks the 5.0-built zip too)."""
    import importlib.util

    spec = importlib.util.find_spec("bpy")
    assert spec and spec.submodule_search_locations
    found = [
        path
        for location in spec.submodule_search_locations
        for path in Path(location).glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py")
    ]
    assert found, "blender_ext.py not found in the bpy package"
    return found[0]


def test_zip_validates_with_this_blenders_tool(extension_zip: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(blender_ext_tool()), "validate", str(extension_zip)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_zip_ships_the_extension_and_nothing_else(extension_zip: Path) -> None:
    with zipfile.ZipFile(extension_zip) as archive:
        names = [info.filename for info in archive.infolist() if not info.is_dir()]
    leaked = [n for n in names if not ships(n) or n.endswith(".blend1")]
    assert not leaked, f"development files in the zip: {leaked}"
    for required in ("blender_manifest.toml", "__init__.py", "api/__init__.py", "api/client.py", "api/jobs.py"):
        assert required in names, f"{required} missing from the zip"
    for package in ("blender/", "operators/", "panels/"):
        assert any(n.startswith(package) and n.endswith(".py") for n in names), f"no {package} code in the zip"


def test_legacy_zip_has_the_same_files_under_the_module_folder(extension_zip: Path) -> None:
    legacy = extension_zip.with_name(extension_zip.stem + "-legacy.zip")
    assert legacy.is_file(), f"{legacy.name} was not built next to {extension_zip.name}"
    with zipfile.ZipFile(extension_zip) as archive:
        files = {info.filename for info in archive.infolist() if not info.is_dir()}
    with zipfile.ZipFile(legacy) as archive:
        legacy_files = {info.filename for info in archive.infolist() if not info.is_dir()}
        init_source = archive.read(f"{EXTENSION_ID}/__init__.py").decode("utf-8")
    assert legacy_files == {f"{EXTENSION_ID}/{name}" for name in files}
    # Blender 3.4-4.1 read bl_info from the module's source without running it.
    tree = ast.parse(init_source)
    bl_info = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "bl_info" for t in node.targets)
    )
    assert tuple(bl_info["blender"])[:2] <= (3, 4), bl_info["blender"]
    assert tuple(bl_info["version"]) == (0, 1, 0)
    assert bl_info["name"]


def test_manifest_and_bl_info_agree_on_the_version() -> None:
    data = manifest()
    assert data["id"] == EXTENSION_ID
    assert data["version"] == "0.1.0"
    assert len(data["tagline"]) <= 64 and data["tagline"][-1].isalnum()
    assert set(data["permissions"]) == {"network", "files"}


def test_installs_enables_and_registers_the_shared_names(user_dir: UserDir, extension_zip: Path) -> None:
    run = run_scenario(user_dir, extension_zip, "smoke")
    result = run.result
    assert OPERATORS <= set(result["operators"]), f"missing operators: {OPERATORS - set(result['operators'])}"
    assert PREFERENCES <= set(result["prefs"]), f"missing preferences: {PREFERENCES - set(result['prefs'])}"
    assert result["api_key_subtype"] == "PASSWORD"
    assert result["scene_settings"] is not None, "bpy.types.Scene.modelslab is not registered"
    assert SCENE_SETTINGS <= set(result["scene_settings"]), SCENE_SETTINGS - set(result["scene_settings"])
    assert result["script_alias"], "the script API (with generate) is not reachable while enabled"
    assert not result["top_level_alias"], "the extension put a top-level `modelslab` module into sys.modules"
    # Enabling must stay light: no HTTP stack and no worker threads until a job needs them.
    assert not result["requests_imported"], "enabling the add-on imported requests"
    assert result["threads"] == ["MainThread"], result["threads"]
    assert result["user_dir"].startswith(str(user_dir.home)), result["user_dir"]


def test_legacy_zip_installs_as_an_add_on_and_generates(blender_on: BlenderOn, fresh_server: ServerProcess) -> None:
    """The 3.4-4.1 package, installed the old way into this Blender: module `modelslab_3d`, same behaviour."""
    props = {"image": str(example_image()), **FAST_PARAMS}
    run = blender_on(fresh_server)("generate", install="legacy", kwargs={"props": props})
    attempt = run.result["runs"][0]
    assert attempt["error"] is None, attempt["error"]
    assert len(attempt["new_objects"]) == 1
    assert attempt["new_objects"][0]["vertices"] == fresh_server.stats()["jobs"][0]["vertices"]
    assert run.result["journal"] and run.result["journal"][0]["state"] == "imported"
