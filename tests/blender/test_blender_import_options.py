"""Import options in a real Blender, with numbers read from the scene: grounding, target height, facing, fit to a
placeholder, re-import; a baked texture that survives a glTF round trip; assets read back in a clean bpy; bad
values refused before any request."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.blender import (
    FAST_PARAMS,
    BlenderRun,
    UserDir,
    run_scenario,
)
from tests.helpers.keys import BLENDER_KEY
from tests.helpers.paths import example_image
from tests.helpers.servers import ServerProcess

DRIVER = Path(__file__).resolve().parent / "import_options_driver.py"
INSPECT_MARKER = "@@MODELSLAB_INSPECT@@ "
CURSOR = [1.0, -2.0, 0.5]
TOLERANCE = 1e-4


def run_driver(user_dir: UserDir, zip_path: Path, server: ServerProcess, scenario: str, **kwargs: Any) -> Any:
    """One scenario of import_options_driver.py in a fresh Blender with the extension, pointed at server."""
    env = {"MODELSLAB_API_KEY": BLENDER_KEY}
    prefs = {"base_url": server.url}
    return run_scenario(
        user_dir, zip_path, scenario, env=env, timeout=240.0, driver=DRIVER, prefs=prefs, kwargs=kwargs
    ).result


def inspect(kind: str, *args: str) -> dict[str, Any]:
    """A clean bpy (no add-on, factory settings) reads a written file back."""
    process = subprocess.run(
        [sys.executable, str(DRIVER), "--inspect", kind, *args], capture_output=True, text=True, timeout=240
    )
    payload = None
    for line in reversed(process.stdout.splitlines()):
        if line.startswith(INSPECT_MARKER):
            payload = json.loads(line[len(INSPECT_MARKER) :])
            break
    run = BlenderRun(process.args, process.returncode, process.stdout, process.stderr, 0.0, payload=payload)
    return run.result


@pytest.fixture
def image() -> str:
    return str(example_image("duck_512.png"))


def test_ground_height_facing_fit_and_reimport_measured_in_the_scene(
    user_dir: UserDir, extension_zip: Path, fresh_server: ServerProcess, image: str
) -> None:
    result = run_driver(
        user_dir, extension_zip, fresh_server, "placement", image=image, params=FAST_PARAMS, cursor=CURSOR
    )
    plain, grounded, facing = result["plain"]["box"], result["grounded"]["box"], result["facing_x"]["box"]

    # Without options: origin at the cursor, the service's size, half the mesh below the cursor.
    assert plain["origin"] == pytest.approx(CURSOR, abs=TOLERANCE)
    assert plain["low"][2] < CURSOR[2] - 0.1, plain

    # Ground + height: exactly 1.5 tall in world space, lowest point at the cursor's height, centred on it,
    # origin at the bottom centre, uniform scale.
    assert grounded["size"][2] == pytest.approx(1.5, abs=TOLERANCE)
    assert grounded["low"][2] == pytest.approx(CURSOR[2], abs=TOLERANCE)
    assert grounded["centre_xy"] == pytest.approx(CURSOR[:2], abs=TOLERANCE)
    assert grounded["origin"] == pytest.approx(CURSOR, abs=TOLERANCE)
    assert max(grounded["scale"]) - min(grounded["scale"]) < TOLERANCE
    ratio = 1.5 / plain["size"][2]
    assert grounded["size"][0] == pytest.approx(plain["size"][0] * ratio, rel=1e-4)  # proportions kept
    assert grounded["import_info"]["size"] == pytest.approx(grounded["size"], abs=1e-3)
    assert result["grounded"]["size_text"].count(" x ") == 2 and result["grounded"]["size_text"].endswith("1.5 m")

    # Facing +X: turned 90 degrees about Z, so the width and depth swap; still grounded at 1.5.
    assert facing["size"][0] == pytest.approx(grounded["size"][1], rel=1e-4)
    assert facing["size"][1] == pytest.approx(grounded["size"][0], rel=1e-4)
    assert facing["size"][2] == pytest.approx(1.5, abs=TOLERANCE)
    assert facing["low"][2] == pytest.approx(CURSOR[2], abs=TOLERANCE)
    assert abs(facing["rotation_z_degrees"] - grounded["rotation_z_degrees"]) == pytest.approx(90.0, abs=1e-3)

    # Re-import applies the job's stored options again, at the cursor's new place.
    again = result["reimported"]
    assert again["box"]["job_id"] == grounded["job_id"]
    assert again["box"]["size"] == pytest.approx(grounded["size"], abs=TOLERANCE)
    assert again["box"]["low"][2] == pytest.approx(again["cursor"][2], abs=TOLERANCE)
    assert again["box"]["centre_xy"] == pytest.approx(again["cursor"][:2], abs=TOLERANCE)

    # Fit to a rotated, non-uniformly scaled placeholder: inside its box, touching it on the tightest axis,
    # bottoms aligned, centred; the placeholder hidden, not deleted.
    fit = result["fit"]
    half = [size / 2 for size in fit["placeholder_size"]]
    low, high = fit["in_placeholder_frame"]["low"], fit["in_placeholder_frame"]["high"]
    for axis in range(3):
        assert -half[axis] - TOLERANCE <= low[axis] and high[axis] <= half[axis] + TOLERANCE, (axis, low, high, half)
    assert low[2] == pytest.approx(-half[2], abs=TOLERANCE)  # bottoms aligned
    assert max((high[a] - low[a]) / (2 * half[a]) for a in range(3)) == pytest.approx(1.0, abs=TOLERANCE)
    assert (low[0] + high[0]) / 2 == pytest.approx(0.0, abs=TOLERANCE)
    assert (low[1] + high[1]) / 2 == pytest.approx(0.0, abs=TOLERANCE)
    assert fit["placeholder_exists"] and fit["placeholder_hidden"] and fit["placeholder_hidden_render"]
    assert fit["box"]["import_info"]["placeholder"] == "Placeholder"
    assert fit["selected_after"] == [fit["box"]["name"]]


def test_bad_import_options_are_refused_before_any_request(
    user_dir: UserDir, extension_zip: Path, fresh_server: ServerProcess, image: str
) -> None:
    result = run_driver(user_dir, extension_zip, fresh_server, "refusals", image=image, params=FAST_PARAMS)
    bad = result["bad"]
    # The operator reports for people: the field by its label in the sidebar, the category last for logs.
    for name, label in (
        ("negative_height", '"Height"'),
        ("bake_too_small", '"Bake Texture"'),
        ("bake_too_large", '"Bake Texture"'),
        ("fit_nothing_selected", '"Fit to Selected"'),
    ):
        assert bad[name]["result"] is None and bad[name]["objects"] == [], (name, bad[name])
        assert "[invalid_input]" in bad[name]["error"] and label in bad[name]["error"], (name, bad[name]["error"])
    assert "'-Y'" in bad["facing_unknown"]["error"]  # Blender's enum refuses it, listing the allowed axes
    for name, field in (("negative_height", "target_height"), ("bake", "bake_size"), ("facing", "facing")):
        error = result["script_check"][name]
        assert error["category"] == "invalid_input" and field in error["message"] and error["fix"], error
    assert fresh_server.stats()["submits"] == 0


def test_baked_texture_survives_a_gltf_round_trip(
    user_dir: UserDir, extension_zip: Path, fresh_server: ServerProcess, image: str, tmp_path: Path
) -> None:
    out_dir = tmp_path / "exports"
    out_dir.mkdir()
    result = run_driver(
        user_dir,
        extension_zip,
        fresh_server,
        "bake_export",
        image=image,
        params=FAST_PARAMS,
        size=512,
        out_dir=str(out_dir),
    )
    assert result["generate"]["error"] is None and result["warning"] is None, result
    assert result["uv_layers"], "no UV map after Smart UV Project"
    low, high = result["uv_range"]
    assert min(low) >= 0.0 and max(high) <= 1.0 and high[0] - low[0] > 0.5, result["uv_range"]
    assert result["images"] == [
        {
            "material": result["images"][0]["material"],
            "image": result["images"][0]["image"],
            "size": [512, 512],
            "packed": True,
            "has_data": True,
        }
    ]
    assert not result["attribute_still_linked"]
    assert result["render_engine_after"] == result["render_engine_before"]  # the bake put the scene's engine back
    # sRGB 0..1 units; the bake reads 8-bit texels, so about 0.002 is the floor
    assert result["in_scene_corner_difference"]["median"] < 0.005, result["in_scene_corner_difference"]

    for fmt in ("glb", "fbx", "obj"):
        assert Path(result["exports"][fmt]).stat().st_size > 10_000, fmt
    assert any(name.endswith(".png") for name in result["files"]), result["files"]  # the OBJ's texture beside it
    assert result["mtl"] and "map_Kd" in result["mtl"], result["mtl"]

    back = inspect("glb", result["exports"]["glb"], result["reference"])
    assert len(back["meshes"]) == 1
    assert back["images"] and back["images"][0]["size"] == [512, 512], back["images"]
    assert back["color_attributes"] == []  # the texture alone: no vertex colours multiplied into it
    assert back["position_match_max"] < 1e-3, back["position_match_max"]
    assert back["mean_colour_difference"] < 0.005, back
    assert back["corner_difference"]["median"] < 0.005 and back["corner_difference"]["p95"] < 0.02, back


def test_assets_are_marked_and_a_library_reads_back_in_a_clean_bpy(
    user_dir: UserDir, extension_zip: Path, fresh_server: ServerProcess, image: str, tmp_path: Path
) -> None:
    blend = tmp_path / "scene" / "scene.blend"
    blend.parent.mkdir()
    library_dir = tmp_path / "library"
    result = run_driver(
        user_dir,
        extension_zip,
        fresh_server,
        "assets",
        image=image,
        params=FAST_PARAMS,
        blend_path=str(blend),
        library_dir=str(library_dir),
    )
    asset = result["asset"]
    assert asset is not None and result["warning"] is None, result["warning"]
    assert asset["catalog_id"] == result["catalog_id_constant"]
    assert "source: duck_512.png" in asset["tags"] and "seed: 42" in asset["tags"], asset["tags"]
    assert f"job: {result['job_id']}" in asset["tags"] and f"resolution: {FAST_PARAMS['resolution']}" in asset["tags"]
    assert "duck_512.png" in asset["description"] and result["job_id"] in asset["description"]
    assert asset["preview_size"] == [128, 128]
    assert not result["other_is_asset_before"] and not result["other_is_asset_after"]
    # the catalog file appears when the unsaved file is saved
    assert not result["catalog_before_save"]
    assert result["catalog_after_save"] and f"{asset['catalog_id']}:ModelsLab:ModelsLab" in result["catalog_after_save"]

    back = inspect("library", result["library"])
    assert len(back["assets_listed"]) == 2, back["assets_listed"]
    assert back["catalog_file"] and "VERSION 1" in back["catalog_file"] and asset["catalog_id"] in back["catalog_file"]
    for found in back["objects"]:
        assert found["is_asset"] and found["catalog_id"] == asset["catalog_id"], found
        assert found["preview_size"] == [128, 128] and 0.05 < found["preview_opaque_fraction"] < 0.95, found
        assert found["preview_colour_spread"] > 0.02, found  # a rendered picture, not a flat fill
        assert any(tag.startswith("job: ") for tag in found["tags"]) and found["vertices"] > 100, found
