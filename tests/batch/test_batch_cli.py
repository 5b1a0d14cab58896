"""scripts/batch.py end to end: real subprocesses, the real local server with faults, real bpy."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers.batch import EXPIRE_SECONDS, BatchHome, BatchRun, blend_summary
from tests.helpers.keys import BATCH_KEY
from tests.helpers.paths import BATCH_SCRIPT, BUILD_SCRIPT, EXAMPLE_IMAGES
from tests.helpers.servers import ServerProcess, wait_until

FAST = ["--resolution", "64"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def object_coverage(png: Path) -> float:
    """Share of the preview's pixels that differ clearly from its corner (background) colour."""
    from PIL import Image

    with Image.open(png) as image:
        rgb = image.convert("RGB").resize((64, 64))
    data = rgb.tobytes()
    pixels = [data[i : i + 3] for i in range(0, len(data), 3)]
    background = pixels[0]
    differs = sum(1 for p in pixels if sum(abs(a - b) for a, b in zip(p, background, strict=True)) > 40)
    return differs / len(pixels)


def test_usage_errors_exit_2_and_submit_nothing(batch_home: BatchHome, fresh_server: ServerProcess) -> None:
    image = str(EXAMPLE_IMAGES[0])
    cases = {
        "no input": [],
        "unknown option": ["--frobnicate", image],
        "bad choice": ["--format", "fbx", image],
        "not a number": ["--resolution", "big", image],
        "out of range (validated like the operator)": ["--resolution", "9999", image],
        "concurrency 0": ["--concurrency", "0", image],
    }
    for why, args in cases.items():
        run = batch_home.run(args)
        assert run.returncode == 2, f"{why}: {run.describe()}"
        assert run.stdout == "", f"{why}: usage errors print no JSON"
        assert "error:" in run.stderr, f"{why}: {run.stderr}"
    secret = "sk-never-on-the-command-line-123"
    run = batch_home.run(["--api-key", secret, image])
    assert run.returncode == 2
    assert "MODELSLAB_API_KEY" in run.stderr
    assert secret not in run.stderr + run.stdout
    assert fresh_server.stats()["submits"] == 0


def test_missing_key_is_an_auth_failure_per_input(batch_home: BatchHome, fresh_server: ServerProcess) -> None:
    run = batch_home.run([*FAST, str(EXAMPLE_IMAGES[0]), str(EXAMPLE_IMAGES[1])], key=None)
    assert run.returncode == 1, run.describe()
    rows = run.rows
    assert len(rows) == 2
    for row in rows:
        assert row["status"] == "failed"
        assert row["error"]["category"] == "auth"
        assert row["error"]["message"] and row["error"]["fix"]
    assert fresh_server.stats()["submits"] == 0


def test_happy_batch_renders_saves_and_keeps_the_key_out(batch_home: BatchHome, fresh_server: ServerProcess) -> None:
    blend = batch_home.root / "saved scenes" / "batch.blend"
    run = batch_home.run([*FAST, "--render", "--save-blend", str(blend), *map(str, EXAMPLE_IMAGES)])
    assert run.returncode == 0, run.describe()
    rows = run.rows
    assert [Path(r["image"]).name for r in rows if r["status"] == "imported"].__len__() == len(EXAMPLE_IMAGES), (
        run.describe()
    )
    server_jobs = {str(job["id"]): job for job in fresh_server.stats()["jobs"]}
    for row in rows:
        assert row["vertices"] == server_jobs[str(row["remote_id"])]["vertices"]
        assert Path(row["file"]).is_file() and Path(row["file"]).parent == batch_home.out / "meshes"
        preview = Path(row["preview"])
        assert preview.read_bytes()[:8] == PNG_MAGIC and preview.stat().st_size > 1000
        assert 0.05 < object_coverage(preview) < 0.9, f"{preview.name}: the object is not framed"
    assert fresh_server.stats()["submits"] == len(EXAMPLE_IMAGES)
    # results.jsonl holds the same rows as stdout.
    saved = [json.loads(line) for line in (batch_home.out / "results.jsonl").read_text().splitlines()]
    assert sorted(json.dumps(r, sort_keys=True) for r in saved) == sorted(json.dumps(r, sort_keys=True) for r in rows)
    # The .blend holds every imported object, with its provenance.
    summary = blend_summary(blend, batch_home.home)
    assert sorted(summary["objects"]) == sorted(row["object"] for row in rows)
    for row in rows:
        assert summary["objects"][row["object"]]["job_id"] == row["job_id"]
        assert summary["objects"][row["object"]]["vertices"] == row["vertices"]
    # Progress went to stderr, one line per state change and an overall count.
    assert "imported" in run.stderr and f"[{len(EXAMPLE_IMAGES)}/{len(EXAMPLE_IMAGES)} done" in run.stderr
    # The key is nowhere: output, results, journal, cache, previews, the .blend.
    assert BATCH_KEY not in run.stdout + run.stderr
    assert batch_home.files_containing(BATCH_KEY) == []
    assert BATCH_KEY.encode() not in blend.read_bytes()


def test_faults_give_one_categorised_row_per_input_and_no_double_submit(
    expiring_home: BatchHome, expiring_server_session: ServerProcess, images: list[Path]
) -> None:
    server = expiring_server_session
    server.set_faults(
        [
            {"fault": "job_failed", "endpoint": "submit", "times": 1, "text": "GPU fell over"},
            {"fault": "rate_limit", "endpoint": "submit", "times": 3, "retry_after": 1},
            {"fault": "processing_polls", "endpoint": "submit", "times": 2, "polls": 3},
            # The first download is told to come back later than the output lives: that output has expired.
            {"fault": "rate_limit", "endpoint": "download", "times": 1, "retry_after": EXPIRE_SECONDS + 2},
        ]
    )
    missing = images[0].parent / "not there.png"  # bad input: refused before any request
    run = expiring_home.run([*FAST, "--concurrency", "3", *map(str, images), str(missing)])
    assert run.returncode == 1, run.describe()
    rows = run.rows
    expected = sorted(p.name for p in [*images, missing])
    assert sorted(Path(r["image"]).name for r in rows) == expected, "one row per input"
    outcome = Counter(r["status"] if r["status"] == "imported" else r["error"]["category"] for r in rows)
    assert outcome == Counter({"imported": 4, "server": 1, "expired": 1, "invalid_input": 1}), run.describe()
    stats = server.stats()
    assert stats["faults_fired"]["by_kind"]["rate_limit"] == 4
    # Every input was accepted exactly once (429s are never charged, nothing was sent twice).
    assert stats["submits"] == len(images)
    assert len({str(r["remote_id"]) for r in rows if r.get("remote_id")}) == len(images)
    failed_on_server = {str(job["id"]) for job in stats["jobs"] if job["status"] == "failed"}
    failed_row = next(r for r in rows if r["status"] == "failed" and r["error"]["category"] == "server")
    assert failed_on_server == {str(failed_row["remote_id"])}
    assert "GPU fell over" in failed_row["error"]["message"]
    for row in rows:
        if row["status"] == "failed":
            assert row["error"]["message"] and row["error"]["fix"]
            assert "file" not in row
    assert BATCH_KEY not in run.stdout + run.stderr
    assert expiring_home.files_containing(BATCH_KEY) == []


def test_429_beyond_the_clients_retries_slows_down_instead_of_failing(
    batch_home: BatchHome, fresh_server: ServerProcess
) -> None:
    # More 429s than the client retries one submit: the batch waits, narrows its window and submits again.
    fresh_server.set_faults([{"fault": "rate_limit", "endpoint": "submit", "times": 12, "retry_after": 1}])
    run = batch_home.run([*FAST, "--concurrency", "2", *map(str, EXAMPLE_IMAGES[:2])])
    assert run.returncode == 0, run.describe()
    assert [r["status"] for r in run.rows] == ["imported", "imported"]
    stats = fresh_server.stats()
    assert stats["faults_fired"]["by_kind"]["rate_limit"] == 12
    assert stats["submits"] == 2
    assert "server busy (rate limited): at most 1 job(s) in flight" in run.stderr
    assert {r["state"] for r in batch_home.journal()} == {"imported"}, "refused submits leave no journal entry"


def _polling(home: BatchHome, server: ServerProcess, count: int) -> bool:
    """count jobs accepted by the server and journaled as submitted/processing: the runner is in its poll loop."""
    journaled = [r for r in home.journal() if r.get("remote_id") and r["state"] in ("submitted", "processing")]
    return len(journaled) == count and server.stats()["submits"] == count


def test_resume_after_kill_finishes_without_resubmitting(
    slow_home: BatchHome, slow_server: ServerProcess, images: list[Path]
) -> None:
    inputs = [*FAST, *map(str, images[:3])]
    proc = slow_home.start(inputs)
    try:
        wait_until(lambda: _polling(slow_home, slow_server, 3), timeout=60, message="3 jobs polling")
        assert all(job["status"] != "success" for job in slow_server.stats()["jobs"]), "killed too late"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    run = slow_home.run(["--resume", *inputs])
    assert run.returncode == 0, run.describe()
    rows = run.rows
    assert len(rows) == 3 and all(r["status"] == "imported" and r.get("resumed") for r in rows), run.describe()
    assert slow_server.stats()["submits"] == 3, "resume must never submit again"
    assert {r["state"] for r in slow_home.journal()} == {"imported"}
    # Nothing left: a second --resume has nothing to do and submits nothing.
    again = slow_home.run(["--resume"])
    assert again.returncode == 0 and again.rows == [], again.describe()
    assert slow_server.stats()["submits"] == 3
    assert slow_home.files_containing(BATCH_KEY) == []


def test_resume_never_resubmits_a_submit_that_was_cut_off(
    batch_home: BatchHome, fresh_server: ServerProcess, images: list[Path]
) -> None:
    # The server takes (and charges for) the job but answers late; the batch is killed before the answer.
    fresh_server.set_faults([{"fault": "delay", "endpoint": "submit", "times": 1, "seconds": 30}])
    proc = batch_home.start([*FAST, str(images[0])])
    try:
        wait_until(lambda: fresh_server.stats()["submits"] == 1, timeout=60, message="the submit arrived")
        wait_until(lambda: [r["state"] for r in batch_home.journal()] == ["submitting"], timeout=30)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    fresh_server.clear_faults()

    run = batch_home.run(["--resume", *FAST, str(images[0])])
    assert run.returncode == 1, run.describe()
    [row] = run.rows
    assert row["status"] == "failed" and row["error"]["category"] == "network", row
    assert "not sent again" in row["error"]["fix"] or "double charge" in row["error"]["fix"], row
    assert fresh_server.stats()["submits"] == 1, "a submit that may have been charged is never sent again"
    again = batch_home.run(["--resume", *FAST, str(images[0])])
    assert [r["error"]["category"] for r in again.rows] == ["network"]
    assert fresh_server.stats()["submits"] == 1


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_stops_waiting_writes_rows_and_stays_resumable(
    slow_home: BatchHome, slow_server: ServerProcess, images: list[Path], stop_signal: int
) -> None:
    inputs = [*FAST, "--concurrency", "2", *map(str, images[:3])]
    proc = slow_home.start(inputs)
    wait_until(lambda: _polling(slow_home, slow_server, 2), timeout=60, message="2 jobs polling")
    proc.send_signal(stop_signal)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + stop_signal, f"{proc.returncode}\n{stdout}\n{stderr}"
    rows = [json.loads(line) for line in stdout.splitlines()]
    assert sorted(Path(r["image"]).name for r in rows) == sorted(p.name for p in images[:3])
    assert {r["status"] for r in rows} == {"interrupted"}
    assert sorted(r["resumable"] for r in rows) == [False, True, True]  # the third was never submitted
    assert "Traceback" not in stderr
    assert len((slow_home.out / "results.jsonl").read_text().splitlines()) == 3
    assert slow_server.stats()["submits"] == 2

    run = slow_home.run(["--resume", *inputs])
    assert run.returncode == 0, run.describe()
    assert sorted(r["status"] for r in run.rows) == ["imported"] * 3
    assert sum(1 for r in run.rows if r.get("resumed")) == 2
    assert slow_server.stats()["submits"] == 3  # the two resumed + the one never submitted before


INSTALL = """
import sys, bpy
bpy.ops.extensions.package_install_files(filepath=sys.argv[1], repo="user_default", enable_on_install=True)
"""
# A pipeline script that enables the installed extension, then runs the batch in the same process.
ENABLE_THEN_BATCH = """
import runpy, sys, bpy, addon_utils
addon_utils.enable("bl_ext.user_default.modelslab_3d")
sys.argv = ["batch.py", *sys.argv[1:]]
runpy.run_path(sys.argv.pop(1), run_name="__main__")
"""


def test_uses_the_installed_extension_when_it_is_enabled(
    batch_home: BatchHome, fresh_server: ServerProcess, tmp_path: Path
) -> None:
    build = subprocess.run(
        [sys.executable, str(BUILD_SCRIPT), "--output-dir", str(tmp_path / "dist")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    env = batch_home.env()
    install = subprocess.run(
        [sys.executable, "-c", INSTALL, str(tmp_path / "dist" / "modelslab_3d-0.1.0.zip")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    command = [
        sys.executable,
        "-c",
        ENABLE_THEN_BATCH,
        str(BATCH_SCRIPT),
        *batch_home.command([*FAST, str(EXAMPLE_IMAGES[0])])[2:],
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False, cwd=batch_home.root)
    run = BatchRun(done.returncode, done.stdout, done.stderr)
    assert run.returncode == 0, run.describe()
    assert "extension bl_ext.user_default.modelslab_3d (already enabled:" in run.stderr
    assert [r["status"] for r in run.rows] == ["imported"]
    # The installed extension keeps its journal in its own user directory (extension_path_user).
    journal = [p for p in batch_home.journal_files() if "extensions" in p.parts]
    assert len(journal) == 1 and ".user" in journal[0].parts, batch_home.journal_files()
    assert fresh_server.stats()["submits"] == 1


def test_a_batch_forgets_old_finished_jobs_from_the_journal(batch_home: BatchHome, fresh_server: ServerProcess) -> None:
    """The journal is read at every start: finished jobs older than the cache's retention (30 days) are pruned,
    unfinished and recent ones are kept."""
    first = batch_home.run([*FAST, str(EXAMPLE_IMAGES[0])])
    assert first.returncode == 0, first.describe()
    [recent] = batch_home.journal_files()
    record = json.loads(recent.read_text(encoding="utf-8"))
    old = time.time() - 60 * 86400
    planted = {}
    for state in ("imported", "failed", "timed_out"):
        local_id = f"{state[:2]}{'0' * 30}"
        aged = {**record, "local_id": local_id, "state": state, "created_at": old, "updated_at": old}
        if state == "timed_out":
            aged["remote_id"] = None  # nothing for a resume to fetch: it stays as it is
        path = recent.with_name(f"{local_id}.json")
        path.write_text(json.dumps(aged), encoding="utf-8")
        os.utime(path, (old, old))
        planted[state] = path
    second = batch_home.run([*FAST, str(EXAMPLE_IMAGES[1])])
    assert second.returncode == 0, second.describe()
    assert not planted["imported"].exists() and not planted["failed"].exists(), "old finished jobs kept"
    assert planted["timed_out"].exists(), "an unfinished job was pruned"
    assert recent.exists(), "a recent finished job was pruned"
