"""Driver that runs INSIDE a real Blender window (Debian's Blender 3.4 under Xvfb), started by
tests/gui/test_gui_sidebar.py, to check the sidebar as an artist meets it, at the sidebar's default width:

    blender --factory-startup --enable-event-simulate --python-exit-code 3 --python sidebar_driver.py -- CONFIG.json

Every step runs in one bpy.app.timers state machine, so Blender's main loop, the add-on's own timer and the
panels' drawing all run as they do for a user. What the panels show is recorded while they draw: each ModelsLab
panel's draw function (and the job list's draw_item) runs through a RecordingLayout that forwards every call to
Blender's layout and writes down what it drew (label, button, property, progress), its text, icon and enabled
state, and which row/column it sits in (for the width check). The steps:

1. install and enable the legacy add-on, open the sidebar at its default width, bring the ModelsLab tab forward
   (Ctrl+Tab until a ModelsLab panel draws);
2. image paths, each recorded as the Generate panel draws it: missing, a text file, a FIFO, a PNG over the
   upload limit, a good image;
3. a job the server fails (fault `job_failed`, text naming API fields): its row and details;
4. a job that stays processing (fault `processing_forever`), and the same image twice: time left counting down,
   the bar moving, numbered names, "taking longer than expected", imports; Cancel the slow one;
5. Re-import the first job later: its "Took" line stays;
6. delete an imported object: the row says so and offers Import; rows of a job another Blender owns;
7. Clear Finished, Resume with nothing to resume, Open Folder (the operators' reports, captured);
8. the Info log (what the status bar showed): copied with Blender's own info.report_copy;
9. write the result JSON and quit.

The config holds no secret (the API key comes from MODELSLAB_API_KEY): zip, module, images, server_url,
result, category, timeout, workdir.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
import urllib.request
from pathlib import Path
from typing import Any

import blf
import bpy

sys.path.insert(0, str(Path(__file__).resolve().parent))  # driver_common.py sits next to this file
from driver_common import (
    CONFIG,
    RESULT,
    RUNNING_STATES,
    SidebarDriver,
    error,
    log,
    now,
    recorded_draw,
    recorded_draw_item,
    texts,
    write_result,
)

RESULT["steps"] = {}
FAILURE_TEXT = "The reconstruction came out empty; try remove_bg or a higher foreground_ratio"


def admin(path: str, body: dict[str, Any]) -> None:
    """POST to the local server's admin endpoint (loopback)."""
    request = urllib.request.Request(
        CONFIG["server_url"] + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        answer.read()


def text_width(text: str) -> float:
    """How wide Blender's UI font draws text, in pixels (the label style's size at the current UI scale)."""
    points = bpy.context.preferences.ui_styles[0].widget_label.points
    scale = bpy.context.preferences.view.ui_scale
    blf.size(0, points * scale)  # as Blender sizes its UI font (72 dpi; 3.4 ignores a dpi argument)
    return float(blf.dimensions(0, text)[0])


class Driver(SidebarDriver):
    def __init__(self) -> None:
        super().__init__()
        self.image_cases: list[tuple[str, str]] = []
        self.ids: dict[str, str] = {}
        self.samples: list[dict[str, Any]] = []

    # --- Blender lookups ----------------------------------------------------------------------------
    def select(self, local_id: str) -> None:
        wm = bpy.context.window_manager
        wm.modelslab_jobs_index = next(i for i, row in enumerate(wm.modelslab_jobs) if row.local_id == local_id)
        self.redraw()

    def call(self, operator: str, **props: Any) -> dict[str, Any]:
        """Run modelslab.<operator> in the sidebar's context; what it returned and reported (stdout)."""
        buffer = io.StringIO()
        outcome: Any
        with contextlib.redirect_stdout(buffer), self.override():
            try:
                outcome = sorted(getattr(bpy.ops.modelslab, operator)("INVOKE_DEFAULT", **props))
            except RuntimeError as exc:
                outcome = ["EXCEPTION", str(exc)]
        return {"return": outcome, "reports": buffer.getvalue().splitlines(), "at": round(now(), 3)}

    def submit(self, image: str) -> str:
        before = {row.local_id for row in self.rows()}
        outcome = self.call("image_to_3d", image=image, resolution=64)
        RESULT.setdefault("submits", []).append({"image": image, **outcome})
        new = [row.local_id for row in self.rows() if row.local_id not in before]
        if len(new) != 1:
            raise RuntimeError(f"submitting {image} did not add one row: {outcome}")
        return new[0]

    # --- recording ------------------------------------------------------------------------------------
    def record(self) -> None:
        sidebar = self.addon("panels.sidebar")
        for cls in (sidebar.MODELSLAB_PT_generate, sidebar.MODELSLAB_PT_jobs):
            cls.draw = recorded_draw(cls.draw, cls.__name__, self.draws)
        list_rows = self.list_rows

        def keep(item: Any, items: list[dict[str, Any]]) -> None:
            list_rows[item.local_id] = {"at": now(), "items": items, "texts": texts(items)}

        sidebar.MODELSLAB_UL_jobs.draw_item = recorded_draw_item(sidebar.MODELSLAB_UL_jobs.draw_item, keep)

    # --- the timer -------------------------------------------------------------------------------------
    def tab_in_front(self, region: Any) -> float | None:
        RESULT["sidebar_width"] = region.width
        self.enter("images")
        return 0.1

    def phase_images(self) -> float | None:
        settings = bpy.context.scene.modelslab
        if not self.image_cases:
            work = Path(CONFIG["workdir"])
            text = work / "notes.txt"
            text.write_text("not a picture\n", encoding="utf-8")
            fifo = work / "pipe.png"
            if not fifo.exists():
                os.mkfifo(fifo)
            big = work / "huge.png"
            with big.open("wb") as handle:  # a PNG start and 6 MB: over the 5 MB upload limit
                handle.write(b"\x89PNG\r\n\x1a\n" + b"\0" * (6 << 20))
            self.image_cases = [
                ("missing", str(work / "gone" / "missing.png")),
                ("text", str(text)),
                ("fifo", str(fifo)),
                ("large", str(big)),
                ("good", CONFIG["images"][0]),
            ]
            self.case = -1
        if self.case >= 0:
            if not self.drawn_since_mark("MODELSLAB_PT_generate"):
                return self.wait("the Generate panel did not redraw")
            name = self.image_cases[self.case][0]
            RESULT["steps"].setdefault("images", {})[name] = self.snapshot("MODELSLAB_PT_generate")
        self.case += 1
        if self.case >= len(self.image_cases):
            self.enter("fail")
            return 0.05
        settings.image_source = "FILE"
        settings.image_path = self.image_cases[self.case][1]
        self.redraw()
        return 0.1

    def phase_fail(self) -> float | None:
        if "failed" not in self.ids:
            admin("/__admin/faults", {"rules": [{"fault": "job_failed", "endpoint": "submit", "times": 1,
                                                 "text": FAILURE_TEXT}]})  # fmt: skip
            self.ids["failed"] = self.submit(CONFIG["images"][1])
            return 0.1
        row = self.row(self.ids["failed"])
        if row.state in RUNNING_STATES:
            return self.wait("the failing job did not fail", 0.1)
        if "selected" not in self.ids:
            self.ids["selected"] = row.local_id
            self.select(row.local_id)
            return 0.1
        if not self.drawn_since_mark("MODELSLAB_PT_jobs"):
            return self.wait("the job list did not redraw", 0.05)
        RESULT["steps"]["failed"] = {
            "state": row.state,
            "message": row.message,
            "fix": row.fix,
            "category": row.category,
            "panel": self.snapshot("MODELSLAB_PT_jobs"),
            "list_row": self.list_rows.get(row.local_id),
        }
        self.enter("slow")
        return 0.05

    def phase_slow(self) -> float | None:
        if "slow" not in self.ids:
            admin("/__admin/faults", {"rules": [{"fault": "processing_forever", "endpoint": "submit", "times": 1}]})
            self.ids["slow"] = self.submit(CONFIG["images"][2])
            return 0.1
        row = self.row(self.ids["slow"])
        if row.state not in ("submitted", "processing"):
            return self.wait(f"the slow job never reached the server: {row.state}", 0.1)
        admin("/__admin/faults", {"rules": []})
        self.ids["first"] = self.submit(CONFIG["images"][0])
        self.ids["second"] = self.submit(CONFIG["images"][0])
        self.select(self.ids["first"])
        self.enter("running")
        return 0.1

    def phase_running(self) -> float | None:
        # Sample the first job's details while it runs (a second apart): time left and the bar.
        row = self.row(self.ids["first"])
        if row.state in ("submitted", "processing") and self.drawn_since_mark("MODELSLAB_PT_jobs"):
            panel = self.snapshot("MODELSLAB_PT_jobs")
            if not self.samples:
                with self.override():
                    bpy.ops.screen.screenshot(filepath=str(Path(CONFIG["workdir"]) / "running.png"))
            self.samples.append(
                {
                    "at": round(now(), 3),
                    "state": row.state,
                    "bar": row.bar,
                    "progress": row.progress,
                    "texts": panel["texts"],
                    "progress_items": [item for item in panel["items"] if item["call"] in ("progress", "prop")],
                    "list_row": self.list_rows.get(row.local_id),
                }
            )
            self.redraw()
            return 1.0
        if row.state in RUNNING_STATES:
            self.redraw()
            return self.wait("the first job did not finish", 0.1)
        RESULT["steps"]["running_samples"] = self.samples
        self.enter("imports")
        return 0.05

    def phase_imports(self) -> float | None:
        rows = [self.row(self.ids[name]) for name in ("first", "second")]
        if any(row.state != "imported" for row in rows):
            if any(row.state not in RUNNING_STATES | {"downloaded", "imported"} for row in rows):
                error(f"a job ended without an object: {[row.state for row in rows]}")
                return self.finish()
            return self.wait("the two jobs did not import", 0.1)
        self.select(self.ids["slow"])
        self.enter("late")
        return 0.1

    def phase_late(self) -> float | None:
        row = self.row(self.ids["slow"])
        shown = " ".join(self.draws.get("MODELSLAB_PT_jobs", {}).get("texts", []))
        if "Taking longer than expected" not in shown or not self.drawn_since_mark("MODELSLAB_PT_jobs"):
            if now() - self.mark > 0.5:
                self.redraw()
            return self.wait(f"the slow job never said it is late: {shown}", 0.2)
        RESULT["steps"]["late"] = {
            "state": row.state,
            "panel": self.snapshot("MODELSLAB_PT_jobs"),
            "list_row": self.list_rows.get(row.local_id),
            "bar": row.bar,
        }
        RESULT["steps"]["cancel"] = self.call("cancel_job", job_id=row.local_id)
        self.select(self.ids["first"])
        self.enter("took")
        return 0.1

    def phase_took(self) -> float | None:
        if not self.drawn_since_mark("MODELSLAB_PT_jobs"):
            return self.wait("no redraw", 0.05)
        step = RESULT["steps"].setdefault("reimport", {})
        if "before" not in step:
            step["before"] = self.snapshot("MODELSLAB_PT_jobs")["texts"]
            step["list_names"] = [row.name for row in self.rows()]
            step["objects_before"] = len(bpy.data.objects)
            step["waited_from"] = now()
            return 2.5  # the re-import comes a while after the job: its duration must not grow by this wait
        if "call" not in step:
            step["call"] = self.call("reimport_job", job_id=self.ids["first"])
            step["objects_after"] = len(bpy.data.objects)
            self.redraw()
            return 0.1
        step["after"] = self.snapshot("MODELSLAB_PT_jobs")["texts"]
        step["row_message"] = self.row(self.ids["first"]).message
        self.enter("elsewhere")
        return 0.05

    def phase_elsewhere(self) -> float | None:
        step = RESULT["steps"].setdefault("elsewhere", {})
        row = self.row(self.ids["second"])
        if "object" not in step:
            step["object"] = row.object_name
            bpy.data.objects.remove(bpy.data.objects[row.object_name])
            self.select(row.local_id)
            return 0.1
        if not self.drawn_since_mark("MODELSLAB_PT_jobs"):
            return self.wait("no redraw", 0.05)
        step["panel"] = self.snapshot("MODELSLAB_PT_jobs")
        step["list_row"] = self.list_rows.get(row.local_id)
        self.enter("other")
        return 0.05

    def phase_other(self) -> float | None:
        # How rows read when session.ownership_of() says another live Blender owns a job, or that this one took it
        # over from a closed session: stand-ins answer "other" for the slow job and "recovered" for the first.
        session = self.addon("blender.session")
        rows_module = self.addon("blender.rows")
        step = RESULT["steps"].setdefault("other", {})
        names = ("ownership", "ownership_of")
        if "had_ownership" not in step:
            step["had_ownership"] = [name for name in names if hasattr(session, name)]
            self.saved_ownership = {name: getattr(session, name) for name in names if hasattr(session, name)}
            says = {self.ids["slow"]: "other", self.ids["first"]: "recovered"}
            session.ownership = lambda record: says.get(record.local_id, "mine")
            session.ownership_of = lambda local_id: says.get(local_id, "mine")
            rows_module.sync_rows()
            self.select(self.ids["slow"])
            return 0.1
        if not self.drawn_since_mark("MODELSLAB_PT_jobs"):
            return self.wait("no redraw")
        if "panel" not in step:
            step["panel"] = self.snapshot("MODELSLAB_PT_jobs")
            step["list_row"] = self.list_rows.get(self.ids["slow"])
            self.select(self.ids["first"])
            return 0.1
        step["recovered_panel"] = self.snapshot("MODELSLAB_PT_jobs")
        step["recovered_list_row"] = self.list_rows.get(self.ids["first"])
        for name in names:
            if name in self.saved_ownership:
                setattr(session, name, self.saved_ownership[name])
            else:
                delattr(session, name)
        rows_module.sync_rows()
        self.enter("widths")
        return 0.05

    def phase_widths(self) -> float | None:
        # Every text the panels drew must fit the sidebar as wide as it is by default.
        _, region, _ = self.view3d()
        width = region.width
        scale = bpy.context.preferences.view.ui_scale
        overflow = []
        layouts = [("images/" + name, snap) for name, snap in RESULT["steps"]["images"].items()]
        layouts += [("failed", RESULT["steps"]["failed"]["panel"]), ("late", RESULT["steps"]["late"]["panel"])]
        layouts += [("elsewhere", RESULT["steps"]["elsewhere"]["panel"]), ("other", RESULT["steps"]["other"]["panel"])]
        layouts += [("recovered", RESULT["steps"]["other"]["recovered_panel"])]
        for where, snap in layouts:
            overflow += self.overflowing(where, snap["items"], width - 30 * scale)
        for local_id, drawn in self.list_rows.items():
            overflow += self.overflowing(f"list row {local_id}", drawn["items"], width - 50 * scale)
        RESULT["steps"]["widths"] = {"sidebar_width": width, "ui_scale": scale, "overflow": overflow}
        self.enter("clear")
        return 0.05

    @staticmethod
    def overflowing(where: str, items: list[dict[str, Any]], room: float) -> list[dict[str, Any]]:
        """Texts that would not fit: each container row's items share its width (labels, buttons, bars)."""
        scale = bpy.context.preferences.view.ui_scale
        kinds = {item["id"]: item["kind"] for item in items if "kind" in item}
        by_row: dict[int, list[dict[str, Any]]] = {}
        for item in items:
            if item["call"] in ("label", "operator", "prop", "progress") and (item.get("text") or "value" in item):
                container = item["container"]
                key = container if kinds.get(container) == "row" else -len(by_row) - 1  # columns: one per line
                by_row.setdefault(key, []).append(item)
        found = []
        for members in by_row.values():
            needed = 0.0
            for item in members:
                icon = item.get("icon", "NONE")
                needed += text_width(item.get("text") or "") + 10 * scale
                needed += 22 * scale if icon and icon != "NONE" else 0
                if item["call"] == "prop":  # a slider shows its value after the text
                    needed += text_width(": 100%")
            if needed > room:
                shown = [member.get("text") for member in members]
                found.append({"where": where, "texts": shown, "needed": needed, "room": room})
        return found

    def phase_clear(self) -> float | None:
        step = RESULT["steps"].setdefault("clear", {})
        if "call" not in step:
            step["call"] = self.call("clear_finished_jobs")
            step["rows_after"] = len(self.rows())
            self.redraw()
            return 0.1
        if not self.drawn_since_mark("MODELSLAB_PT_jobs"):
            return self.wait("no redraw", 0.05)
        step["panel"] = self.snapshot("MODELSLAB_PT_jobs")
        step["resume"] = self.call("resume_jobs")
        step["folder"] = self.call("open_job_folder", job_id=self.ids["first"])
        step["xdg_open"] = shutil.which("xdg-open")
        step["clear_again"] = self.call("clear_finished_jobs")
        self.enter("info")
        return 0.05

    def phase_info(self) -> float | None:
        # The status bar shows the newest report; the Info log keeps them all. Copy them with Blender's own
        # operator from an Info editor (the 3D view turned into one for a moment).
        if not hasattr(self, "info_area"):
            notices = self.addon("blender.rows").notices
            RESULT["notices"] = [list(entry) for entry in notices]
            self.info_area = self.view3d()[0]
            self.info_area.type = "INFO"
            return 0.3
        RESULT["info_log"] = self.copy_info_log(self.info_area)
        self.info_area.type = "VIEW_3D"
        return self.finish()

    def finish(self) -> None:
        RESULT["phases"][self.phase] = round(now() - self.phase_started, 3)
        RESULT["ids"] = self.ids
        RESULT["rows"] = [
            {"name": row.name, "state": row.state, "object_name": row.object_name, "message": row.message}
            for row in self.rows()
        ]
        write_result()
        log("result written; quitting")
        bpy.ops.wm.quit_blender()
        return None


def main() -> None:
    preferences = bpy.context.preferences
    preferences.view.show_splash = False
    preferences.system.use_region_overlap = False
    bpy.ops.preferences.addon_install(overwrite=True, filepath=CONFIG["zip"])
    outcome = bpy.ops.preferences.addon_enable(module=CONFIG["module"])
    RESULT["enable"] = sorted(outcome)
    addon = preferences.addons.get(CONFIG["module"])
    if addon is None:
        error("the add-on is not enabled")
        write_result()
        bpy.ops.wm.quit_blender()
        return
    addon.preferences.base_url = CONFIG["server_url"]
    driver = Driver()
    bpy.app.timers.register(driver.step, first_interval=0.3)


main()
