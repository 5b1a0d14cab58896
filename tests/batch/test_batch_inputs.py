"""Inputs and results of the batch: one identity per input (resume never submits it twice), photos uploaded
upright, special files named for what they are, results.jsonl appended. Real bpy, real server, real files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.batch import SLOW_JOB_SECONDS, BatchHome, BatchRun
from tests.helpers.paths import BATCH_SCRIPT, EXAMPLE_IMAGE, REPO_ROOT
from tests.helpers.servers import ServerProcess, fresh, serve, slow_server_args, wait_until

FAST = ["--resolution", "48"]
DRIVER = Path(__file__).with_name("inputs_driver.py")
MARKER = "@@INPUTS_DRIVER@@ "
RELATIVE_EXAMPLE = os.path.join("..", "examples", EXAMPLE_IMAGE.name)  # as typed in scripts/


def run_in_bpy(check: str, work: Path) -> Any:
    """One check of inputs_driver.py in a fresh bpy process; its JSON result."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSLAB_")}
    env.update({"HOME": str(work), "XDG_CONFIG_HOME": str(work / ".config"), "PYTHONDONTWRITEBYTECODE": "1"})
    done = subprocess.run(
        [sys.executable, str(DRIVER), str(REPO_ROOT), str(work), check],
        env=env,
        cwd=str(work),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    for line in done.stdout.splitlines():
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER) :])
    raise AssertionError(f"{check}: no result (exit {done.returncode})\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}")


def run_from_scripts(home: BatchHome, args: list[str]) -> BatchRun:
    """The batch started from the scripts/ folder, as the issue's user did (inputs given relative to it)."""
    done = subprocess.run(
        home.command(args),
        cwd=str(BATCH_SCRIPT.parent),
        env=home.env(),
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    return BatchRun(done.returncode, done.stdout, done.stderr)


# --- one identity per input ---------------------------------------------------------------------------------------
def test_resume_of_a_finished_batch_with_a_dotdot_path_submits_nothing(
    batch_home: BatchHome, fresh_server: ServerProcess
) -> None:
    first = run_from_scripts(batch_home, [*FAST, RELATIVE_EXAMPLE])
    assert first.returncode == 0 and [r["status"] for r in first.rows] == ["imported"], first.describe()

    again = run_from_scripts(batch_home, ["--resume", *FAST, RELATIVE_EXAMPLE])
    assert again.returncode == 0, again.describe()
    assert fresh_server.stats()["submits"] == 1, "the same input, resumed, must not be submitted (and charged) again"
    assert again.rows == [], "reported as imported by the first run: nothing new to report"
    assert [r["state"] for r in batch_home.journal()] == ["imported"]


@pytest.fixture(scope="module")
def slow_inputs_server() -> Iterator[ServerProcess]:
    yield from serve(*slow_server_args(SLOW_JOB_SECONDS, workers=2))


@pytest.fixture
def slow_inputs_home(tmp_path: Path, slow_inputs_server: ServerProcess) -> Iterator[BatchHome]:
    for server in fresh(slow_inputs_server):
        yield BatchHome(tmp_path, server.url)


def test_resume_after_kill_with_a_dotdot_path_follows_the_job_instead_of_resubmitting(
    slow_inputs_home: BatchHome, slow_inputs_server: ServerProcess
) -> None:
    home, server = slow_inputs_home, slow_inputs_server
    proc = subprocess.Popen(
        home.command([*FAST, RELATIVE_EXAMPLE]),
        cwd=str(BATCH_SCRIPT.parent),
        env=home.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(
            lambda: server.stats()["submits"] == 1 and any(r.get("remote_id") for r in home.journal()),
            timeout=60,
            message="the job was accepted and journaled",
        )
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)

    run = run_from_scripts(home, ["--resume", *FAST, RELATIVE_EXAMPLE])
    assert run.returncode == 0, run.describe()
    assert [(r["status"], r.get("resumed")) for r in run.rows] == [("imported", True)], run.describe()
    assert server.stats()["submits"] == 1, "resumed with `..` in the path: submitted (and charged) twice"


def test_one_identity_for_every_spelling_of_a_path(tmp_path: Path) -> None:
    result = run_in_bpy("identity", tmp_path)
    expected = result["expected"]
    assert result["identity"] == dict.fromkeys(result["identity"], expected), result
    assert result["original"] == result["identity"], "the journal stores what the batch compares"
    assert result["url"] == "https://example.com/a/../b.png?x=1", "URLs are left as given"
    assert result["unsaved_blend"] == "//../pictures/duck.png", "`//` of an unsaved file stays as given"


# --- special files ------------------------------------------------------------------------------------------------
def test_a_fifo_or_a_device_is_named_for_what_it_is(tmp_path: Path) -> None:
    result = run_in_bpy("special_files", tmp_path)
    assert all(entry["raised"] and entry["category"] == "invalid_input" for entry in result.values()), result
    assert "named pipe (FIFO)" in result["fifo"]["message"], result["fifo"]
    assert "character device" in result["device"]["message"], result["device"]
    assert "folder" in result["folder"]["message"], result["folder"]
    assert result["missing"]["message"].startswith("Image file not found"), result["missing"]
    for name in ("fifo", "device", "folder"):
        assert "not found" not in result[name]["message"], result[name]


# --- photos upright -----------------------------------------------------------------------------------------------
def test_every_exif_orientation_is_turned_upright_like_pillow_does(tmp_path: Path) -> None:
    result = run_in_bpy("orientations", tmp_path)
    assert result.pop("png") == {"found": 1}
    assert len(result) == 16, result
    for name, entry in result.items():
        orientation = int(name[1])
        assert entry["found"] == orientation, (name, entry)
        assert entry["shape"] == entry["pillow_shape"], (name, entry)
        assert entry["mean_difference"] < 2.0, (name, entry)


def _portrait_photo(path: Path) -> tuple[int, int]:
    """A phone-style JPEG over 5 MB: stored landscape with EXIF orientation 6, upright it is a portrait with a red
    band at the top and a blue one at the bottom (noise keeps the JPEG large). Returns the upright (w, h)."""
    import numpy as np
    from PIL import Image

    width, height = 2400, 3200  # upright
    rng = np.random.default_rng(7)
    upright = np.full((height, width, 3), 235, dtype=np.int16)
    upright[: height // 4] = (220, 30, 30)
    upright[-height // 4 :] = (30, 30, 220)
    upright += rng.integers(-40, 41, size=upright.shape, dtype=np.int16)
    picture = Image.fromarray(np.clip(upright, 0, 255).astype(np.uint8))
    stored = picture.transpose(Image.Transpose.ROTATE_90)  # turned a quarter counter-clockwise, as the sensor saw it
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    stored.save(path, quality=97, exif=exif.tobytes())
    assert path.stat().st_size > 5 << 20, path.stat().st_size
    return width, height


@pytest.fixture
def recording_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server that keeps its uploads in a folder this test can read."""
    yield from serve("--workers", "2", "--data-dir", str(tmp_path / "server-data"))


def test_a_large_portrait_photo_is_uploaded_upright(tmp_path: Path, recording_server: ServerProcess) -> None:
    from PIL import Image

    photo = tmp_path / "portrait.jpg"
    width, height = _portrait_photo(photo)
    home = BatchHome(tmp_path / "batch", recording_server.url)
    run = home.run([*FAST, str(photo)])
    assert recording_server.stats()["submits"] == 1, run.describe()
    [upload] = list((tmp_path / "server-data" / "uploads").iterdir())
    with Image.open(upload) as received:
        assert received.format == "PNG", received.format  # re-encoded by Blender: the JPEG was over 5 MB
        assert received.getexif().get(0x0112, 1) == 1
        up_w, up_h = received.size
        rgb = received.convert("RGB")
        top = rgb.getpixel((up_w // 2, up_h // 10))
        bottom = rgb.getpixel((up_w // 2, up_h - up_h // 10))
    assert up_h > up_w and abs(up_w / up_h - width / height) < 0.01, (up_w, up_h)
    assert isinstance(top, tuple) and isinstance(bottom, tuple)
    assert top[0] > 150 and top[2] < 100, f"the top of the upload is not the photo's red top band: {top}"
    assert bottom[2] > 150 and bottom[0] < 100, f"the bottom of the upload is not the blue band: {bottom}"
    assert run.returncode == 0 and [r["status"] for r in run.rows] == ["imported"], run.describe()


# --- results.jsonl ------------------------------------------------------------------------------------------------
def test_results_are_appended_and_later_rows_supersede_earlier_ones(tmp_path: Path) -> None:
    result = run_in_bpy("results_log", tmp_path)
    assert result["lines_after_three"] == 3 and result["same_inode"], "each result is appended to the same file"
    assert result["reported_before"] == ["jc"]
    final = [json.loads(line) for line in result["final_lines"]]  # every line whole: the cut-off one is gone
    assert [(r["image"], r["status"]) for r in final] == [
        ("a.png", "interrupted"),
        ("b.png", "interrupted"),
        ("c.png", "imported"),
        ("a.png", "imported"),
        ("b.png", "imported"),
    ]
    assert result["rows"] == {"jb": "imported", "jc": "imported", "ja": "imported"}
    assert [json.loads(line)["image"] for line in result["fresh_lines"]] == ["z.png"], "without --resume: a new file"
