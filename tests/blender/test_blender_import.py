"""The operator against the local server, in a real Blender: what lands in the scene, the undo step, key hygiene."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest

from tests.helpers.blender import FAST_PARAMS, BlenderFn, UserDir, files_containing
from tests.helpers.keys import BLENDER_KEY
from tests.helpers.paths import example_image
from tests.helpers.servers import ServerProcess

CURSOR = (1.5, -2.25, 0.75)


def single_job(server: ServerProcess) -> dict:
    stats = server.stats()
    assert stats["submits"] == 1, f"expected exactly one submit, the server counted {stats['submits']}"
    assert len(stats["jobs"]) == 1
    return stats["jobs"][0]


def material_shows_color_attribute(obj: dict) -> bool:
    return any(
        node["name"] == "Color" and node["linked"]
        for material in obj["materials"]
        for node in material["attribute_nodes"]
    )


def test_operator_imports_the_mesh_at_the_cursor_with_provenance_and_one_undo_step(
    blender: BlenderFn, fresh_server: ServerProcess, user_dir: UserDir, tmp_path: Path
) -> None:
    image = str(example_image("duck_512.png"))
    blend_path = tmp_path / "saved.blend"
    run = blender(
        "generate",
        # The key only in the (PASSWORD) preference this time: the riskiest place for it to leak from.
        prefs={"api_key": BLENDER_KEY},
        env={"MODELSLAB_API_KEY": None},
        kwargs={
            "props": {"image": image, **FAST_PARAMS},
            "cursor": CURSOR,
            "undo_check": True,
            "save_blend": str(blend_path),
        },
    )
    result = run.result
    attempt = result["runs"][0]
    assert attempt["error"] is None, attempt["error"]
    assert attempt["result"] == ["FINISHED"]
    assert len(attempt["new_objects"]) == 1, [o["name"] for o in attempt["new_objects"]]
    obj = attempt["new_objects"][0]
    job = single_job(fresh_server)
    assert job["status"] == "success" and job["resolution"] == FAST_PARAMS["resolution"]

    # The mesh is the server's mesh, with its vertex colours shown by a material.
    assert obj["type"] == "MESH"
    assert obj["vertices"] == job["vertices"], (obj["vertices"], job["vertices"])
    assert obj["faces"] == job["faces"], (obj["faces"], job["faces"])
    assert "Color" in obj["color_attributes"], obj["attributes"]
    assert material_shows_color_attribute(obj), obj["materials"]

    # Placement and selection.
    assert obj["collections"] == ["ModelsLab"]
    assert result["modelslab_collection"] == [obj["name"]]
    assert obj["matrix_translation"] == pytest.approx(CURSOR, abs=1e-5)
    assert obj["selected"] and obj["active"]
    assert obj["name"].startswith("duck_512"), obj["name"]

    # Provenance, and the journal that agrees with it.
    custom = obj["custom"]
    assert len(result["journal"]) == 1
    record = result["journal"][0]
    assert record["state"] == "imported"
    assert custom["modelslab_job_id"] == record["local_id"]
    assert str(custom["modelslab_remote_id"]) == str(job["id"]) == str(record["remote_id"])
    assert Path(custom["modelslab_source"]).name == "duck_512.png"
    params = json.loads(custom["modelslab_params"])
    assert params["resolution"] == FAST_PARAMS["resolution"]
    datetime.datetime.fromisoformat(custom["modelslab_created"])
    assert record["object_name"] == obj["name"]
    assert all(BLENDER_KEY not in str(value) for value in custom.values())

    # One Ctrl+Z removes the whole import, and it was exactly one step.
    assert result["undo_poll"], "the import left no undo step"
    assert sorted(result["objects_after_one_undo"]) == sorted(result["objects_before"])
    assert not result["undo_poll_after_one_undo"], "the import made more than one undo step"

    # The key is nowhere: not in the saved .blend, the journal, the cache, Blender's config, or the output.
    assert blend_path.is_file() and blend_path.stat().st_size > 0
    assert files_containing(tmp_path / "saved.blend", BLENDER_KEY.encode()) == []
    assert files_containing(user_dir.home, BLENDER_KEY.encode()) == []
    assert BLENDER_KEY not in run.stdout and BLENDER_KEY not in run.stderr
    # Transient job state (the WindowManager job rows: cache path, result URL) is not saved either.
    blend_bytes = blend_path.read_bytes()
    transient = [record["file_path"], *record["output_urls"], *record["proxy_links"]]
    assert all(value and value.encode() not in blend_bytes for value in transient), transient


def test_key_from_the_environment_works_and_is_not_written_anywhere(
    blender: BlenderFn, fresh_server: ServerProcess, user_dir: UserDir, tmp_path: Path
) -> None:
    blend_path = tmp_path / "env-key.blend"
    run = blender(
        "generate",
        kwargs={"props": {"image": str(example_image("vase_plain.png")), **FAST_PARAMS}, "save_blend": str(blend_path)},
    )
    attempt = run.result["runs"][0]
    assert attempt["error"] is None, attempt["error"]
    assert len(attempt["new_objects"]) == 1
    assert attempt["new_objects"][0]["vertices"] == single_job(fresh_server)["vertices"]
    assert files_containing(tmp_path, BLENDER_KEY.encode()) == [], "key found in the user dir or the .blend"
    assert BLENDER_KEY not in run.stdout and BLENDER_KEY not in run.stderr


@pytest.mark.parametrize("output_format", ["glb", "ply", "stl"])
def test_other_formats_import_with_their_importer(
    blender: BlenderFn, fresh_server: ServerProcess, output_format: str
) -> None:
    run = blender(
        "generate",
        kwargs={
            "props": {"image": str(example_image("mushroom_rgba.png")), "output_format": output_format, **FAST_PARAMS}
        },
    )
    attempt = run.result["runs"][0]
    assert attempt["error"] is None, attempt["error"]
    assert len(attempt["new_objects"]) == 1, [o["name"] for o in attempt["new_objects"]]
    obj = attempt["new_objects"][0]
    job = single_job(fresh_server)
    assert job["output_format"] == output_format
    # Blender's importers keep the server's vertices and faces one to one for all four formats.
    assert obj["type"] == "MESH"
    assert (obj["vertices"], obj["faces"]) == (job["vertices"], job["faces"])
    assert obj["collections"] == ["ModelsLab"]
    if output_format in ("glb", "ply"):  # STL has no colours
        assert "Color" in obj["color_attributes"], f"{output_format}: colours not in `Color`: {obj['attributes']}"
        assert material_shows_color_attribute(obj), obj["materials"]
    assert run.result["journal"][0]["state"] == "imported"


def test_remote_base_url_is_refused_while_online_access_is_off(blender: BlenderFn, fresh_server: ServerProcess) -> None:
    run = blender(
        "generate",
        prefs={"base_url": "https://modelslab.com"},
        kwargs={"props": {"image": str(example_image()), **FAST_PARAMS}, "watch_network": True},
    )
    result = run.result
    attempt = result["runs"][0]
    assert attempt["error"] is not None, "a remote host was used although bpy.app.online_access is False"
    assert "[offline]" in attempt["error"], attempt["error"]
    assert attempt["new_objects"] == []
    assert result["network_events"] == [], f"network activity despite the refusal: {result['network_events']}"
    for record in result["journal"]:
        assert record["state"] == "failed" and record["error"]["category"] == "offline", record
    assert sum(fresh_server.stats()["requests"].values()) == 0


def test_reimport_uses_the_cache_and_test_connection_reads_the_wallet(
    blender: BlenderFn, fresh_server: ServerProcess
) -> None:
    run = blender("job_operators", kwargs={"props": {"image": str(example_image()), **FAST_PARAMS}})
    result = run.result
    assert result["generate"]["error"] is None, result["generate"]["error"]
    (first,) = result["generate"]["new_objects"]
    assert result["reimport_result"] == ["FINISHED"], result["reimport_result"]
    (again,) = result["reimported"]
    assert again["vertices"] == first["vertices"]
    assert again["custom"]["modelslab_job_id"] == first["custom"]["modelslab_job_id"]
    assert again["name"] != first["name"]
    assert result["connection"] == ["FINISHED"], result["connection"]
    stats = fresh_server.stats()
    # One submit and one mesh download for two objects: the re-import cost nothing.
    assert stats["submits"] == 1
    assert stats["requests"].get("download", 0) == 1, stats["requests"]
    assert stats["requests"].get("wallet", 0) == 1, stats["requests"]


def test_unset_operator_properties_fall_back_to_the_scene_settings(
    blender: BlenderFn, fresh_server: ServerProcess
) -> None:
    run = blender(
        "generate",
        kwargs={
            "props": {},  # nothing given: image and parameters come from scene.modelslab (the panel)
            "scene_settings": {
                "image_source": "FILE",
                "image_path": str(example_image("vase_plain.png")),
                "resolution": 40,
                "output_format": "ply",
            },
        },
    )
    attempt = run.result["runs"][0]
    assert attempt["error"] is None, attempt["error"]
    (obj,) = attempt["new_objects"]
    job = single_job(fresh_server)
    assert (job["resolution"], job["output_format"]) == (40, "ply")
    assert obj["name"].startswith("vase_plain") and obj["vertices"] == job["vertices"]


def test_script_api_generate_returns_the_object_and_raises_categorised_errors(
    blender: BlenderFn, fresh_server: ServerProcess
) -> None:
    run = blender(
        "script_api",
        kwargs={"image": str(example_image()), "params": FAST_PARAMS, "bad_params": {"resolution": 9999}},
    )
    result = run.result
    assert result["returned_type"] == "Object"
    assert result["object"]["collections"] == ["ModelsLab"]
    assert result["object"]["vertices"] == single_job(fresh_server)["vertices"]
    assert result["bad_error"] is not None and result["bad_error"]["category"] == "invalid_input", result["bad_error"]
    assert "resolution" in result["bad_error"]["message"]
    assert fresh_server.stats()["submits"] == 1
