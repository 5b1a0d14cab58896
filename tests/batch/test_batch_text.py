"""scripts/batch.py with inputs other than image files: --prompt/--prompts (text to 3D), --camera (a .blend's
active camera rendered), --adopt (a job submitted elsewhere), and the newer revision's fields as flags."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers.batch import BatchHome
from tests.helpers.keys import BATCH_KEY
from tests.helpers.paths import example_image
from tests.helpers.servers import ServerProcess

FAST = ["--resolution", "48"]


def make_blend(path: Path, *, empty: bool) -> Path:
    """A .blend of the default scene (a cube in front of the camera), or with nothing in front of it."""
    code = (
        "import bpy, sys\n"
        "bpy.ops.wm.read_factory_settings(use_empty=False)\n"
        "if sys.argv[2] == 'empty':\n"
        "    [bpy.data.objects.remove(o) for o in list(bpy.data.objects) if o.type == 'MESH']\n"
        "bpy.ops.wm.save_as_mainfile(filepath=sys.argv[1])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path), "empty" if empty else "cube"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0 and path.is_file(), done.stderr[-3000:]
    return path


def test_prompts_from_flags_and_a_file(batch_home: BatchHome, fresh_server: ServerProcess, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a blue vase\n\n  a green lamp  \n", encoding="utf-8")
    run = batch_home.run(["--prompt", "a red chair", "--prompts", str(prompts), "--seed", "9", "--guidance-scale", "6"])
    assert run.returncode == 0, run.describe()
    rows = run.rows
    assert sorted(row["image"] for row in rows) == ["text:a blue vase", "text:a green lamp", "text:a red chair"]
    assert all(row["status"] == "imported" and row["vertices"] > 0 for row in rows), run.describe()
    jobs = fresh_server.stats()["jobs"]
    assert sorted(job["kind"] for job in jobs) == ["text"] * 3
    assert fresh_server.stats()["requests"].get("upload", 0) == 0
    records = {record["extra"]["original_source"]: record for record in batch_home.journal()}
    assert (
        records["text:a red chair"]["meta"]["guidance_scale"] == 6 and records["text:a red chair"]["meta"]["seed"] == 9
    )


def test_bad_prompts_and_fields_are_usage_errors(
    batch_home: BatchHome, fresh_server: ServerProcess, tmp_path: Path
) -> None:
    cases = {
        "empty prompt": ["--prompt", "  "],
        "missing prompts file": ["--prompts", str(tmp_path / "nope.txt")],
        "guidance out of range": ["--prompt", "a chair", "--guidance-scale", "50"],
        "newer field out of range": ["--ss-sampling-steps", "99", str(example_image())],
        "camera without a .blend": ["--camera"],
        "camera on a non-blend": ["--camera", str(example_image())],
    }
    for why, args in cases.items():
        run = batch_home.run(args)
        assert run.returncode == 2 and run.stdout == "", f"{why}: {run.describe()}"
    assert fresh_server.stats()["submits"] == 0


def test_newer_fields_are_sent_only_when_given(batch_home: BatchHome, fresh_server: ServerProcess) -> None:
    image = str(example_image())
    run = batch_home.run([*FAST, "--ss-sampling-steps", "10", "--mesh-simplify", "0.95", "--temp", "yes", image])
    assert run.returncode == 0, run.describe()
    meta = batch_home.journal()[0]["meta"]
    assert meta["ss_sampling_steps"] == 10 and meta["mesh_simplify"] == 0.95 and meta["temp"] == "yes"
    assert "slat_sampling_steps" not in meta and "ss_guidance_strength" not in meta


def test_camera_of_a_blend(batch_home: BatchHome, fresh_server: ServerProcess, tmp_path: Path) -> None:
    run = batch_home.run([*FAST, "--camera", str(make_blend(tmp_path / "cube.blend", empty=False))])
    assert run.returncode == 0, run.describe()
    (row,) = run.rows
    assert row["image"] == "camera:Camera" and row["status"] == "imported" and row["vertices"] > 0
    assert fresh_server.stats()["requests"]["upload"] == 1
    assert not list(batch_home.home.rglob("uploads/capture-*.png"))  # the render is removed after the job

    run = batch_home.run([*FAST, "--camera", str(make_blend(tmp_path / "empty.blend", empty=True))])
    assert run.returncode == 1, run.describe()
    (row,) = run.rows
    assert row["status"] == "failed" and row["error"]["category"] == "invalid_input", row
    assert "empty" in row["error"]["message"]
    assert fresh_server.stats()["submits"] == 1 and fresh_server.stats()["requests"]["upload"] == 1


def test_adopt_a_job_submitted_elsewhere(batch_home: BatchHome, fresh_server: ServerProcess) -> None:
    url = fresh_server.upload(example_image("vase_plain.png"), key=BATCH_KEY)
    answer = fresh_server.post("/api/v1/enterprise/3d/image_to_3d", {"key": BATCH_KEY, "init_image": url})
    remote_id = str(answer.json()["id"])
    run = batch_home.run(["--adopt", remote_id, "--adopt", "../bad"])
    assert run.returncode == 1, run.describe()
    rows = {row["image"]: row for row in run.rows}
    good, bad = rows[f"remote:{remote_id}"], rows["remote:../bad"]
    assert good["image"] == f"remote:{remote_id}" and good["status"] == "imported" and good["vertices"] > 0
    assert good["remote_id"] == remote_id
    assert bad["status"] == "failed" and bad["error"]["category"] == "invalid_input"
    assert fresh_server.stats()["submits"] == 1  # only the direct submit: adopting sends none
