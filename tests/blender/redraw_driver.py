"""The sidebar redraw policy of the add-on's event pump, run INSIDE a fresh Blender process (the bpy module).

`<bpy venv python> redraw_driver.py SPEC.json`, like scenario_driver.py (installs and enables the built extension),
running `redraw_policy`: job events are fed to blender.runtime.pump() through a stand-in runner on a clock the
scenario moves, and every sidebar redraw the pump asks for is counted.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


class StandInRunner:
    """What pump() uses of a JobRunner: queued events, handed out once."""

    def __init__(self) -> None:
        self.queued: list[Any] = []
        self.closed = False

    def drain_events(self, max_events: int | None = None) -> list[Any]:
        taken, self.queued = self.queued, []
        return taken

    def records(self) -> list[Any]:
        return []


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def redraw_policy(context: Any) -> dict[str, Any]:
    """Steps of (seconds later, state of the one job or None for no event); after each, pump() once. Reports the
    number of redraws asked for so far and pump()'s answer (work left) after each step."""
    import bpy

    runtime = sys.modules[f"{context.module}.blender.runtime"]
    records = sys.modules[f"{context.module}.api.records"]
    runner, clock, redraws = StandInRunner(), Clock(), []
    saved = (runtime.peek_runner, runtime.tag_redraw, runtime.time)
    runtime.peek_runner = lambda: runner
    runtime.tag_redraw = lambda: redraws.append(clock.now)
    runtime.time = clock  # the pump reads time.monotonic()
    record = records.JobRecord(
        local_id="redraw-policy-job", name="duck", source="/tmp/duck.png", params={}, base_url="", flavor=""
    )
    steps = [(0.0, "queued"), (0.2, "uploading"), (0.3, "submitted"), (0.6, None), (0.2, "processing"),
             (0.1, "processing"), (0.1, "failed"), (0.1, None), (2.0, None)]  # fmt: skip
    seen = []
    try:
        for later, job_state in steps:
            clock.now += later
            if job_state is not None:
                record.state = job_state
                record.progress = min(1.0, record.progress + 0.1)
                snapshot = records.JobRecord.from_dict(record.to_dict())
                runner.queued.append(records.JobEvent(record.local_id, job_state, snapshot.progress, "", snapshot))
            busy = runtime.pump(max_imports=0)
            seen.append({"state": job_state, "redraws": len(redraws), "busy": bool(busy)})
    finally:
        runtime.peek_runner, runtime.tag_redraw, runtime.time = saved
    rows = bpy.context.window_manager.modelslab_jobs
    return {"steps": seen, "row_state": rows[-1].state if len(rows) else None}


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    import scenario_driver
    import scenarios

    scenarios.redraw_policy = redraw_policy  # type: ignore[attr-defined]  # scenario_driver runs scenarios.<name>
    sys.exit(scenario_driver.main())
