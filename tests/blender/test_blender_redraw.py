"""The sidebar is redrawn at once for what the user waits to see (a job listed, a job ended) and otherwise at most
once a second while jobs run: each redraw costs Blender a whole window update, which on software OpenGL stalls the
main loop for several of its ticks (bench/ui_window.py measures it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.helpers.blender import UserDir, run_scenario
from tests.helpers.keys import BLENDER_KEY

DRIVER = Path(__file__).resolve().parent / "redraw_driver.py"


def test_progress_is_redrawn_once_a_second_and_a_new_or_ended_job_at_once(
    user_dir: UserDir, extension_zip: Path
) -> None:
    result: dict[str, Any] = run_scenario(
        user_dir, extension_zip, "redraw_policy", env={"MODELSLAB_API_KEY": BLENDER_KEY}, driver=DRIVER
    ).result
    steps = [(step["state"], step["redraws"]) for step in result["steps"]]
    assert steps == [
        ("queued", 1),  # the job is listed: at once
        ("uploading", 1),  # progress and intermediate states wait for the once-a-second redraw
        ("submitted", 1),
        (None, 2),  # a second after the last redraw, the running job's time labels move
        ("processing", 2),
        ("processing", 2),
        ("failed", 3),  # the job ended: at once
        (None, 3),  # nothing runs and nothing waits to be shown: no redraw
        (None, 3),
    ], steps
    assert [step["busy"] for step in result["steps"]][-2:] == [False, False], result["steps"]
    assert result["row_state"] == "failed", result
