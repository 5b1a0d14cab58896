"""Driver that runs INSIDE a real Blender window beside a headless batch (tests/gui/test_gui_window_and_batch.py):
two_blenders_driver.py's steered window plus two commands for the job's details in the sidebar.

    blender --factory-startup --python-exit-code 3 --python window_batch_driver.py -- CONFIG.json

- "details": draws the Jobs panel's details box for one job row (the sidebar's own draw code) into a popup menu
  through driver_common's RecordingLayout, and answers what it drew: texts and operator buttons.
- "press": runs the operator a details button names (e.g. modelslab.reimport_job, the row's Import) for the job,
  as a click on that button does.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling drivers

import bpy
import driver_common
import two_blenders_driver as window  # installs the add-on and starts the steered window

DETAILS_WIDTH = 60  # characters per wrapped line, about a wide sidebar's


def _row(local_id: str) -> Any:
    return next(row for row in bpy.context.window_manager.modelslab_jobs if row.local_id == local_id)


def do_details(self: Any, local_id: str) -> dict[str, Any]:
    jobs_panel = sys.modules[f"{window.CONFIG['module']}.panels.sidebar"].MODELSLAB_PT_jobs
    row = _row(local_id)
    items: list[dict[str, Any]] = []

    def draw(menu: Any, _context: Any) -> None:
        jobs_panel._draw_details(driver_common.RecordingLayout(menu.layout, items), row, DETAILS_WIDTH)

    win = bpy.context.window_manager.windows[0]
    with bpy.context.temp_override(window=win, screen=win.screen):
        bpy.context.window_manager.popup_menu(draw, title=row.name)
    buttons = [{"operator": item["operator"], "text": item.get("text", "")} for item in items if "operator" in item]
    return {"texts": driver_common.texts(items), "buttons": buttons, "view": window.view()}


def do_press(self: Any, local_id: str, operator: str) -> dict[str, Any]:
    module, name = operator.split(".", 1)
    with window.override():
        result = sorted(getattr(getattr(bpy.ops, module), name)(job_id=local_id))
    return {"return": result, "view": window.view()}


window.Steps.do_details = do_details  # type: ignore[attr-defined]
window.Steps.do_press = do_press  # type: ignore[attr-defined]
