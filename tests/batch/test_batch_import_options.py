"""The batch's placing flags (--ground --height --facing --as-asset --bake) and its outputs (--export,
--asset-library): checked before any request, stored with each job, and read back from the files in a clean bpy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.batch import BatchHome
from tests.helpers.paths import EXAMPLE_IMAGES, REPO_ROOT
from tests.helpers.servers import ServerProcess

FAST = ["--resolution", "48"]

READ_BACK = r"""
import bpy, json, sys
blend, library, export = sys.argv[1:4]
out = {}
bpy.ops.wm.open_mainfile(filepath=blend)
bpy.context.view_layer.update()
collection = bpy.data.collections.get("ModelsLab")
objects = []
for ob in (collection.all_objects if collection else []):
    corners = [ob.matrix_world @ __import__("mathutils").Vector(c) for c in ob.bound_box]
    images = [n.image.name for s in ob.material_slots if s.material and s.material.use_nodes
              for n in s.material.node_tree.nodes if n.type == "TEX_IMAGE" and n.image]
    objects.append({"name": ob.name, "height": max(c.z for c in corners) - min(c.z for c in corners),
                    "lowest": min(c.z for c in corners), "images": images, "uv_layers": len(ob.data.uv_layers)})
out["objects"] = objects
bpy.ops.wm.read_homefile(use_empty=True)
with bpy.data.libraries.load(library, assets_only=True) as (source, target):
    out["library_assets"] = sorted(source.objects)
with bpy.data.libraries.load(library) as (source, target):
    target.objects = list(source.objects)
out["library_objects"] = [{"name": ob.name, "asset": ob.asset_data is not None,
                           "catalog": ob.asset_data.catalog_id if ob.asset_data else None}
                          for ob in target.objects]
before = set(bpy.data.objects.keys())
bpy.ops.import_scene.gltf(filepath=export)
new = [bpy.data.objects[name] for name in set(bpy.data.objects.keys()) - before]
out["export_images"] = sorted(n.image.name for ob in new for s in ob.material_slots if s.material
                              and s.material.use_nodes for n in s.material.node_tree.nodes
                              if n.type == "TEX_IMAGE" and n.image)
print("READBACK" + json.dumps(out))
"""


def read_back(home: BatchHome, blend: Path, library: Path, export: Path) -> dict[str, Any]:
    env = home.env()
    done = subprocess.run(
        [sys.executable, "-c", READ_BACK, str(blend), str(library), str(export)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    for line in done.stdout.splitlines():
        if line.startswith("READBACK"):
            return json.loads(line[len("READBACK") :])
    raise AssertionError(f"could not read the outputs back\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--height", "-1"], "target_height"),
        (["--bake", "100"], "bake_size"),
        (["--facing", "up"], "facing"),
        (["--export", "stl"], "export format"),
    ],
    ids=["negative-height", "bake-size", "facing", "export-format"],
)
def test_bad_placing_values_are_usage_errors_before_any_request(
    batch_home: BatchHome, fresh_server: ServerProcess, flags: list[str], named: str
) -> None:
    run = batch_home.run([*FAST, *flags, str(EXAMPLE_IMAGES[0])])
    assert run.returncode == 2, run.describe()
    assert named in run.stderr, run.describe()
    assert run.rows == []
    assert fresh_server.stats()["submits"] == 0 and fresh_server.stats()["uploads"] == 0


def test_placed_baked_exported_and_written_to_an_asset_library(
    batch_home: BatchHome, fresh_server: ServerProcess, tmp_path: Path
) -> None:
    library_dir = tmp_path / "library"
    blend = tmp_path / "scene.blend"
    images = [str(path) for path in EXAMPLE_IMAGES[:2]]
    flags = ["--ground", "--height", "1.5", "--facing", "X", "--bake", "256", "--export", "glb"]
    run = batch_home.run([*FAST, *flags, "--asset-library", str(library_dir), "--save-blend", str(blend), *images])
    assert run.returncode == 0, run.describe()
    assert [r["status"] for r in run.rows] == ["imported", "imported"], run.describe()
    options = [record["extra"]["import_options"] for record in batch_home.journal()]
    assert all(
        o["ground"] and o["target_height"] == 1.5 and o["facing"] == "X" and o["bake_size"] == 256 for o in options
    )
    exports = [Path(row["export"]) for row in run.rows]
    assert all(
        path.suffix == ".glb" and path.is_file() and path.parent == batch_home.out / "exports" for path in exports
    )
    [library] = list(library_dir.glob("*.blend"))
    assert (library_dir / "blender_assets.cats.txt").is_file()

    found = read_back(batch_home, blend, library, exports[0])
    assert len(found["objects"]) == 2, found
    for obj in found["objects"]:
        assert abs(obj["height"] - 1.5) < 1e-3, obj  # scaled to the height in world units
        assert abs(obj["lowest"]) < 1e-3, obj  # standing on the cursor's height (0)
        assert obj["images"] and obj["uv_layers"] >= 1, obj  # baked to a texture
    assert len(found["library_assets"]) == 2 and all(o["asset"] and o["catalog"] for o in found["library_objects"])
    assert found["export_images"], "the exported glb carries the baked texture"
    assert fresh_server.stats()["submits"] == 2
    assert os.path.getsize(exports[0]) > 0


SCRIPT_KEYWORDS = r"""
import importlib.util, json, sys
from pathlib import Path
repo, base_url, first, second = sys.argv[1:5]
spec = importlib.util.spec_from_file_location("modelslab_3d", Path(repo) / "__init__.py",
                                              submodule_search_locations=[repo])
package = importlib.util.module_from_spec(spec); sys.modules["modelslab_3d"] = package; spec.loader.exec_module(package)
package.register()
import bpy
from mathutils import Vector
modelslab = package.scripting
modelslab.configure(base_url=base_url)
out = {}

def world_box(ob):
    bpy.context.view_layer.update()
    corners = [ob.matrix_world @ Vector(c) for c in ob.bound_box]
    return {"height": max(c.z for c in corners) - min(c.z for c in corners), "lowest": min(c.z for c in corners)}

try:
    modelslab.generate(first, resolution=48, target_height=-2.0)
except modelslab.ModelsLabError as error:
    out["bad"] = [error.category.value, error.message]
try:
    modelslab.run([first, second], resolution=48, fit_to_selected=True)
except modelslab.ModelsLabError as error:
    out["bad_fit"] = [error.category.value, error.message]
obj = modelslab.generate(first, resolution=48, ground=True, target_height=2.0)
out["generate"] = world_box(obj)
rows = modelslab.run([first, second], resolution=48, ground=True, target_height=0.5)
out["run"] = [world_box(bpy.data.objects[row["object"]]) for row in rows]
modelslab.shutdown(wait=True)
package.unregister()
print("SCRIPTED" + json.dumps(out))
"""


def test_script_keywords_place_results_and_bad_values_raise_before_any_request(
    batch_home: BatchHome, fresh_server: ServerProcess
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT_KEYWORDS, str(REPO_ROOT), fresh_server.url, *map(str, EXAMPLE_IMAGES[:2])],
        env=batch_home.env(),
        cwd=str(batch_home.root),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("SCRIPTED")]
    assert lines, f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    out = json.loads(lines[0][len("SCRIPTED") :])
    assert out["bad"][0] == "invalid_input" and "target_height" in out["bad"][1], out
    assert out["bad_fit"][0] == "invalid_input" and "fit_to_selected" in out["bad_fit"][1], out
    assert abs(out["generate"]["height"] - 2.0) < 1e-3 and abs(out["generate"]["lowest"]) < 1e-3, out
    assert [round(box["height"], 3) for box in out["run"]] == [0.5, 0.5], out
    assert all(abs(box["lowest"]) < 1e-3 for box in out["run"]), out
    assert fresh_server.stats()["submits"] == 3, "the refused calls sent nothing"
