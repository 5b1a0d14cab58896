"""Images from inside Blender, text to 3D, several views, the newer revision's fields, adopt, recall/again and the
enterprise server actions, in a real Blender (the bpy module) against the local server."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.blender import FAST_PARAMS, UserDir, make_spec, parse_payload, run_process
from tests.helpers.keys import BLENDER_KEY
from tests.helpers.paths import example_image
from tests.helpers.servers import ServerProcess

DRIVER = Path(__file__).resolve().parent / "sources_driver.py"
FRONT = str(example_image("duck_512.png"))
SIDE = str(example_image("vase_plain.png"))


def run_driver(
    user_dir: UserDir, zip_path: Path, server: ServerProcess, scenario: str, prefs: dict | None = None, **kwargs: Any
) -> Any:
    spec = make_spec(zip_path, scenario, prefs={"base_url": server.url, **(prefs or {})}, kwargs=kwargs)
    user_dir.runs += 1
    spec_path = user_dir.specs / f"spec-{user_dir.runs}.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    run = run_process(
        [sys.executable, str(DRIVER), str(spec_path)],
        env=user_dir.env({"MODELSLAB_API_KEY": BLENDER_KEY}),
        timeout=300.0,
        cwd=user_dir.root,
        payload=parse_payload,
    )
    return run.result


def imported(entry: dict[str, Any]) -> dict[str, Any]:
    """The record of an object made by a scenario, checked to be a real imported mesh."""
    obj = entry.get("object", entry)
    assert obj["vertices"] > 0, entry
    record = obj["record"]
    assert record is not None and record["state"] == "imported", record
    return record


def test_images_from_inside_blender(user_dir: UserDir, extension_zip: Path, fresh_server: ServerProcess) -> None:
    out = run_driver(user_dir, extension_zip, fresh_server, "images", params=FAST_PARAMS)

    datablock = imported(out["datablock"])
    assert datablock["extra"]["original_source"] == "image:Photo" and datablock["name"] == "Photo"
    assert datablock["image_url"] and "/uploads/" in datablock["image_url"]
    assert out["uploads_after_datablock"] == []  # the temporary PNG is gone once the job is done
    assert out["blank_error"]["category"] == "invalid_input" and "transparent" in out["blank_error"]["message"]
    assert out["missing_error"]["category"] == "invalid_input"

    render = imported(out["render_result"])
    assert render["extra"]["original_source"] == "image:Render Result"
    assert imported(out["render_result_operator"])["extra"]["original_source"] == "image:Render Result"

    camera = imported(out["camera"])
    assert camera["extra"]["original_source"] == "camera:Camera" and camera["name"] == "Camera"
    assert out["uploads_after_camera"] == []
    # the scene's own render settings are put back after the camera render
    assert out["engine_after"] != "BLENDER_WORKBENCH" and out["film_transparent_after"] is False
    assert out["camera_after"] == "Camera"

    two = imported(out["two_cameras"])
    assert two["meta"]["multi_image"] is True and len(two["meta"]["image"]) == 2
    assert out["camera_after_two"] == "Camera" and out["uploads_after_two"] == []

    empty = out["empty_camera"]
    assert empty["objects"] == [] and "invalid_input" in empty["error"] and "empty" in empty["error"]
    assert out["uploads_after_empty"] == []
    assert "window" in out["viewport_reason"] and "window" in out["clipboard_reason"]
    assert "invalid_input" in out["viewport_operator"]["error"]

    stats = fresh_server.stats()
    # Photo, Render Result twice, the camera, two cameras: nothing for the refused ones
    assert stats["submits"] == 5 and stats["requests"]["upload"] == 6


def test_text_views_and_the_newer_fields(user_dir: UserDir, extension_zip: Path, fresh_server: ServerProcess) -> None:
    out = run_driver(
        user_dir, extension_zip, fresh_server, "text_views_params", params=FAST_PARAMS, front=FRONT, side=SIDE
    )
    text = imported(out["text_operator"])
    assert text["params"]["kind"] == "text" and text["meta"]["prompt"] == "a red chair" and text["meta"]["seed"] == 11
    assert text["source"] == "" and text["name"] == "a red chair"
    script = imported(out["text_script"])
    assert script["meta"]["prompt"] == "a blue vase" and script["meta"]["seed"] == 5
    assert "invalid_input" in out["text_empty"]["error"] and out["text_empty"]["objects"] == []
    assert out["text_bad"]["category"] == "invalid_input" and "guidance_scale" in out["text_bad"]["message"]

    views = imported(out["views_operator"])
    assert views["meta"]["multi_image"] is True and len(views["meta"]["image"]) == 2
    assert views["meta"]["image"][1] == views["params"]["extra_views"][0]
    script_views = imported(out["views_script"])
    assert script_views["meta"]["multi_image"] is True and len(script_views["params"]["extra_views"]) == 1
    assert out["uploads_after_views"] == []
    assert out["views_too_many"]["category"] == "invalid_input"

    revision = imported(out["revision_operator"])
    assert revision["meta"]["ss_sampling_steps"] == 12 and revision["meta"]["mesh_simplify"] == 0.95
    assert "slat_sampling_steps" not in revision["meta"] and "ss_guidance_strength" not in revision["meta"]
    scene_on = imported(out["revision_scene_on"])
    assert scene_on["meta"]["ss_guidance_strength"] == 4.0 and scene_on["meta"]["temp"] == "yes"
    scene_off = imported(out["revision_scene_off"])
    assert "ss_guidance_strength" not in scene_off["meta"] and scene_off["params"]["temp"] is None
    bad = out["revision_bad"]
    assert '"Structure Steps"' in bad["error"] and "1 to 50" in bad["error"] and bad["objects"] == []  # its label

    jobs = {job["kind"]: job for job in fresh_server.stats()["jobs"]}
    assert jobs["text"]["kind"] == "text"
    assert sorted(job["views"] for job in fresh_server.stats()["jobs"]) == [1, 1, 1, 1, 1, 2, 2]


def submit_directly(server: ServerProcess) -> str:
    """A job started outside Blender with the same key (the CLI, a web app)."""
    url = server.upload(SIDE, key=BLENDER_KEY)
    answer = server.post("/api/v1/enterprise/3d/image_to_3d", {"key": BLENDER_KEY, "init_image": url, "resolution": 32})
    return str(answer.json()["id"])


def test_adopt_recall_and_again(user_dir: UserDir, extension_zip: Path, fresh_server: ServerProcess) -> None:
    remote_ids = [submit_directly(fresh_server), submit_directly(fresh_server)]
    out = run_driver(
        user_dir, extension_zip, fresh_server, "adopt_recall", params=FAST_PARAMS, remote_ids=remote_ids, image=FRONT
    )
    adopted = imported(out["adopt_operator"])
    assert adopted["remote_id"] == remote_ids[0] and adopted["extra"]["adopted"] is True
    assert "submitting" not in [entry[0] for entry in adopted["history"]]
    assert imported(out["adopt_script"])["remote_id"] == remote_ids[1]
    assert "Not a valid job id" in out["adopt_bad"]["error"] and out["adopt_bad"]["objects"] == []

    assert out["scene_after_recall"] == {
        "image_source": "FILE",
        "image_path": FRONT,
        "seed": 5,
        "resolution": FAST_PARAMS["resolution"],
        "ground": True,
        "target_height": 1.25,
    }
    again = imported(out["again"])
    first = out["first"]["record"]
    assert again["local_id"] != first["local_id"] and again["remote_id"] != first["remote_id"]
    assert again["params"]["seed"] not in (0, 5)
    assert {k: v for k, v in again["params"].items() if k not in ("seed", "init_image")} == {
        k: v for k, v in first["params"].items() if k not in ("seed", "init_image")
    }
    assert again["extra"]["import_options"] == first["extra"]["import_options"]
    assert "invalid_input" in out["recall_unknown"]["error"]
    # two jobs submitted from Blender (first, again) + the two submitted directly: adopting sent nothing
    assert fresh_server.stats()["submits"] == 4


@pytest.mark.parametrize("flavor", ["enterprise", "standard"])
def test_server_actions(user_dir: UserDir, extension_zip: Path, fresh_server: ServerProcess, flavor: str) -> None:
    out = run_driver(user_dir, extension_zip, fresh_server, "admin", prefs={"flavor": flavor})
    before = fresh_server.stats()["requests"]
    if flavor == "standard":
        for action, outcome in out.items():
            assert "invalid_input" in outcome["error"] and "enterprise" in outcome["status"], (action, outcome)
        assert not any("admin" in name or "system" in name for name in before), before
        return
    for action, outcome in out.items():
        assert outcome["result"] == ["FINISHED"] and outcome["error"] is None, (action, outcome)
    # each reports the server's own answer
    assert out["clear_cache"]["status"] == "Clear Cache: Cache cleared: 0 output file(s) deleted"
    assert out["clear_queue"]["status"] == "Clear Queue: Queue cleared: 0 queued job(s) removed"
    assert out["update_server"]["status"].startswith("Update Server: Server is up to date (version ")
    assert out["restart_server"]["status"].startswith("Restart Server: Server restarted: ")
    assert out["system_details"]["status"].startswith("System Details: ")
