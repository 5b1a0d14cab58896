"""GUI layer: the sidebar's sources, Import options and Recall in Debian's Blender 3.4 window (Xvfb), against the
local server on loopback. One session (tests/gui/sources_window_driver.py, module fixture) sets the scene's
ModelsLab settings as the sidebar's fields do and runs the operator the drawn Generate button runs: a text prompt
(answered by the server's offline stand-in), a generated image datablock, then Ground with a height of 0.5 at a
moved 3D cursor; then Recall on the text job's row. Each test checks one promise from the driver's JSON: what the
panels drew, the objects the add-on's timer imported, their world-space bounds and the scene settings.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import gui
from tests.helpers.keys import gui_key
from tests.helpers.paths import REPO_ROOT
from tests.helpers.servers import start_server

REASON = gui.unavailable_reason()
if REASON:
    pytest.skip(f"gui layer skipped: {REASON}", allow_module_level=True)

DRIVER = REPO_ROOT / "tests" / "gui" / "sources_window_driver.py"
PROMPT = "a small wooden chair"
OTHER_PROMPT = "a brass lantern"
CURSOR = [0.4, -0.3, 0.25]
TARGET_HEIGHT = 0.5
SOURCES = ["File", "URL", "Image", "Camera", "Viewport", "Clipboard", "Text"]


Session = gui.DriverSession


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    workdir = tmp_path_factory.mktemp("gui-sources")
    zip_path, origin = gui.legacy_zip(workdir)
    api_key = gui_key()
    with start_server("--workers", "2") as server:
        config = {
            "zip": str(zip_path),
            "module": gui.MODULE,
            "server_url": server.url,
            "timeout": 30,
            "prompt": PROMPT,
            "other_prompt": OTHER_PROMPT,
            "cursor": CURSOR,
            "target_height": TARGET_HEIGHT,
        }
        env = gui.blender_env(workdir / "home", api_key=api_key, base_url=server.url)
        run = gui.run_driver(DRIVER, config, workdir=workdir, env=env, timeout=150)
        stats = server.stats()
    run.notes.append(f"add-on zip: {origin}")
    result = run.payload
    if result is None:
        pytest.fail(f"the driver wrote no result:\n{run.report()}", pytrace=False)
    if result["errors"]:
        pytest.fail(f"the driver reported errors: {result['errors']}\n{run.report()}", pytrace=False)
    assert api_key not in run.stdout + run.stderr, "the API key was printed"
    result["server_jobs"] = stats["jobs"]
    return Session(result, run.stdout + run.stderr)


def drawn(items: list[dict[str, Any]], call: str, **match: Any) -> list[dict[str, Any]]:
    return [item for item in items if item["call"] == call and all(item.get(k) == v for k, v in match.items())]


def assert_object_arrived(step: dict[str, Any]) -> None:
    assert step["call"]["return"] == ["FINISHED"], step["call"]
    assert step["row"]["state"] == "imported", step["row"]
    obj = step["object"]
    assert obj["type"] == "MESH" and obj["in_scene"] and not obj["was_there_before"], obj
    assert obj["vertices"] > 100, obj


# --- sources ------------------------------------------------------------------------------------------------
def test_a_text_prompt_becomes_an_object_in_the_window(session: Session) -> None:
    step = session.step("text")
    items = step["generate"]["items"]
    assert drawn(items, "prop", prop="image_source", value="TEXT"), step["generate"]["texts"]
    assert drawn(items, "prop", prop="prompt", value=PROMPT), step["generate"]["texts"]
    assert drawn(items, "operator", operator="modelslab.text_to_3d", text="Generate", enabled=True), items
    assert step["call"]["operator"] == "modelslab.text_to_3d"
    assert_object_arrived(step)
    assert step["row"]["name"] == PROMPT, step["row"]  # a text job is named after its prompt
    # the server's first job was a text job, the next two image jobs
    kinds = [job["kind"] for job in sorted(session.result["server_jobs"], key=lambda job: job["created_at"])]
    assert kinds == ["text", "image", "image"], kinds


def test_an_image_datablock_with_pixels_becomes_an_object(session: Session) -> None:
    step = session.step("image")
    assert step["image"]["source"] == "GENERATED" and step["image"]["size"] == [96, 96], step["image"]
    items = step["generate"]["items"]
    assert drawn(items, "prop", prop="image_source", value="IMAGE"), step["generate"]["texts"]
    assert drawn(items, "prop_search", text=""), items  # the image picker
    assert drawn(items, "operator", operator="modelslab.image_to_3d", text="Generate", enabled=True), items
    assert_object_arrived(step)
    assert step["row"]["name"].startswith(step["image"]["name"]), step["row"]


# --- the Import sub-panel's options ---------------------------------------------------------------------------
def test_ground_and_height_stand_the_next_object_on_the_cursor(session: Session) -> None:
    step = session.step("grounded")
    assert_object_arrived(step)
    panel = step["import_panel"]
    assert drawn(panel["items"], "prop", prop="ground", value="True"), panel["items"]
    assert drawn(panel["items"], "prop", prop="target_height", value=str(TARGET_HEIGHT)), panel["items"]
    cursor = step["cursor"]
    low, high = step["object"]["bounds"]["min"], step["object"]["bounds"]["max"]
    assert low[2] == pytest.approx(cursor[2], abs=1e-3), (low, cursor)
    assert high[2] - low[2] == pytest.approx(TARGET_HEIGHT, abs=1e-3), (low, high)
    centre = [(low[axis] + high[axis]) / 2 for axis in (0, 1)]
    assert centre == pytest.approx(cursor[:2], abs=1e-3), (centre, cursor)  # standing on the cursor, centred
    # the objects before were placed as the service made them: not grounded, not that tall
    before = session.step("image")["object"]["bounds"]
    assert abs(before["max"][2] - before["min"][2] - TARGET_HEIGHT) > 1e-2, before


# --- a job's row: Recall and Again --------------------------------------------------------------------------
def test_the_job_row_offers_recall_and_again(session: Session) -> None:
    step = session.step("recall")
    items = step["panel"]["items"]
    recall = drawn(items, "operator", operator="modelslab.recall_job", text="Recall")
    again = drawn(items, "operator", operator="modelslab.again_job", text="Again")
    assert len(recall) == 1 and len(again) == 1, step["panel"]["texts"]
    assert recall[0]["enabled"] and again[0]["enabled"], (recall, again)
    # both act on the selected row: the text job
    assert recall[0]["props"] == again[0]["props"] == {"job_id": step["selected"]}, (recall, again)
    assert step["selected"] == session.step("text")["local_id"]


def test_recall_puts_the_jobs_prompt_back_into_the_scene_settings(session: Session) -> None:
    step = session.step("recall")
    assert step["before"]["prompt"] == OTHER_PROMPT and step["before"]["image_source"] == "IMAGE", step["before"]
    assert step["call"]["return"] == ["FINISHED"], step["call"]
    after = step["after"]
    assert after["image_source"] == "TEXT" and after["prompt"] == PROMPT, after
    # and the job's own import options: it was made before Ground and Height were set
    assert after["ground"] is False and after["target_height"] == 0.0, after


# --- what the sidebar offers ----------------------------------------------------------------------------------
def test_the_source_menu_lists_every_source(session: Session) -> None:
    items = session.step("text")["source_items"]
    assert [item["name"] for item in items] == SOURCES, items
    generate = session.step("text")["generate"]["items"]
    assert drawn(generate, "prop", prop="image_source"), generate


def test_the_sidebar_draws_the_import_sub_panel(session: Session) -> None:
    registered = session.result["import_panel_class"]
    assert registered["parent"] == "MODELSLAB_PT_generate" and registered["label"] == "Import", registered
    items = session.step("text")["import_panel"]["items"]
    props = [item["prop"] for item in drawn(items, "prop")]
    assert props == ["ground", "target_height", "fit_to_selected", "facing", "as_asset", "bake_size"], props
