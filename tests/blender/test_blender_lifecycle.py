"""Enable/disable leaves nothing running; a job interrupted by a killed Blender resumes without a second submit."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.blender import (
    FAST_PARAMS,
    BlenderFn,
    BlenderOn,
    UserDir,
    files_containing,
    run_scenario,
    start_scenario,
)
from tests.helpers.keys import BLENDER_KEY
from tests.helpers.paths import example_image
from tests.helpers.servers import ServerProcess, serve, slow_server_args, wait_until

SLOW_JOB_SECONDS = 6


def test_disable_enable_cycles_leave_no_threads_and_keep_working(
    blender: BlenderFn, fresh_server: ServerProcess
) -> None:
    run = blender(
        "disable_enable_cycles",
        kwargs={"props": {"image": str(example_image()), **FAST_PARAMS}, "cycles": 3},
        timeout=240,
    )
    result = run.result
    baseline = result["baseline"]
    assert result["first"]["error"] is None, result["first"]["error"]
    assert len(result["first"]["new_objects"]) == 1
    for index, cycle in enumerate(result["cycles"]):
        disabled, enabled = cycle["disabled"], cycle["enabled"]
        assert disabled["threads"] == baseline, f"cycle {index}: threads left after disable: {disabled['threads']}"
        assert not disabled["operator_registered"], f"cycle {index}: operator still registered after disable"
        assert not disabled["script_alias"], f"cycle {index}: the script API is still reachable after disable"
        assert not disabled["top_level_alias"] and not enabled["top_level_alias"], "a top-level `modelslab` module"
        assert not disabled["scene_settings"], f"cycle {index}: Scene.modelslab still registered after disable"
        assert enabled["operator_registered"] and enabled["script_alias"], f"cycle {index}: not re-registered"
        assert enabled["threads"] == baseline, f"cycle {index}: enabling started threads: {enabled['threads']}"
    assert result["last"]["error"] is None, f"after the cycles the operator fails: {result['last']['error']}"
    assert len(result["last"]["new_objects"]) == 1
    assert result["threads_after_final_disable"] == baseline
    assert fresh_server.stats()["submits"] == 2


def journal_files(user_dir: UserDir) -> list[dict]:
    return [json.loads(path.read_text(encoding="utf-8")) for path in sorted(user_dir.home.rglob("jobs/*.json"))]


@pytest.fixture(scope="module")
def slow_server() -> Iterator[ServerProcess]:
    """A server whose every job takes several seconds: time to kill Blender while it waits for the result."""
    yield from serve(*slow_server_args(SLOW_JOB_SECONDS))


def test_job_interrupted_by_a_killed_blender_resumes_with_exactly_one_submit(
    user_dir: UserDir, extension_zip: Path, slow_server: ServerProcess
) -> None:
    slow_server.reset()
    prefs = {"base_url": slow_server.url}
    env = {"MODELSLAB_API_KEY": BLENDER_KEY}
    props = {"image": str(example_image("mushroom_rgba.png")), **FAST_PARAMS}
    first = start_scenario(user_dir, extension_zip, "start_and_hang", prefs=prefs, env=env, kwargs={"props": props})

    def journaled_as_submitted() -> bool:
        records = journal_files(user_dir)
        return first.poll() is not None or any(
            r.get("remote_id") and r.get("state") in ("submitted", "processing") for r in records
        )

    try:
        wait_until(journaled_as_submitted, timeout=60, message="the first Blender never journaled a submitted job")
        assert first.poll() is None, "the first Blender exited before it could be killed while waiting"
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(30)
    stats = slow_server.stats()
    assert stats["submits"] == 1
    assert stats["jobs"][0]["status"] in ("queued", "processing"), "the job was already done when Blender died"

    records = journal_files(user_dir)
    assert len(records) == 1, records
    interrupted = records[0]
    assert interrupted["state"] in ("submitted", "processing"), f"journal after the kill: {interrupted['state']}"

    second = run_scenario(
        user_dir, extension_zip, "resume_after_restart", install="none", prefs=prefs, env=env, timeout=180
    )
    result = second.result
    assert len(result["new_objects"]) == 1, f"no object after resume: {result['results']}"
    obj = result["new_objects"][0]
    stats = slow_server.stats()
    assert stats["submits"] == 1, f"resume submitted again: {stats['submits']} submits"
    assert obj["vertices"] == stats["jobs"][0]["vertices"]
    assert obj["custom"]["modelslab_job_id"] == interrupted["local_id"]
    assert obj["collections"] == ["ModelsLab"]
    final = [r for r in result["journal_at_end"] if r["local_id"] == interrupted["local_id"]]
    assert final and final[0]["state"] == "imported", final
    assert files_containing(user_dir.home, BLENDER_KEY.encode()) == []


def test_cancel_stops_waiting_and_says_the_server_may_charge(blender_on: BlenderOn, slow_server: ServerProcess) -> None:
    slow_server.reset()
    run = blender_on(slow_server)(
        "cancel_running_job", kwargs={"props": {"image": str(example_image()), **FAST_PARAMS}}
    )
    result = run.result
    assert result["cancel_result"] == ["FINISHED"]
    assert result["final_state"] == "cancelled"
    assert "charge" in (result["final_message"] or "").lower(), result["final_message"]
    assert result["new_objects"] == []
    (record,) = result["journal"]
    assert record["state"] == "cancelled" and record["remote_id"], record
    assert slow_server.stats()["submits"] == 1


def test_disabling_mid_job_stops_threads_keeps_the_job_and_resume_finishes_it(
    blender_on: BlenderOn, slow_server: ServerProcess
) -> None:
    slow_server.reset()
    props = {"image": str(example_image("vase_plain.png")), **FAST_PARAMS}
    run = blender_on(slow_server)("disable_mid_job", kwargs={"props": props})
    result = run.result
    assert any("modelslab" in name for name in result["threads_while_running"]), "no worker thread seen running"
    assert result["threads_after_disable"] == result["baseline"], result["threads_after_disable"]
    assert result["objects_after_disable"] == [], "a half-imported object after disable"
    (record,) = result["journal_after_disable"]
    assert record["state"] in ("submitted", "processing"), f"disable changed the job to {record['state']}"
    assert len(result["new_objects"]) == 1, result["results"]
    stats = slow_server.stats()
    assert stats["submits"] == 1
    assert result["new_objects"][0]["vertices"] == stats["jobs"][0]["vertices"]
    assert result["journal_at_end"][0]["state"] == "imported"
