"""Driver that runs INSIDE a real Blender window (Debian's Blender 3.4 under Xvfb), started by
tests/gui/test_gui_sources.py, to use the sidebar's sources, its Import sub-panel and a job's Recall as an artist
does: set the scene's ModelsLab settings (what the sidebar's fields set), then run the operator the drawn button
runs, in the sidebar's context, and let the add-on's own timer import each result.

    blender --factory-startup --enable-event-simulate --python-exit-code 3 --python sources_window_driver.py -- CFG

One bpy.app.timers state machine (driver_common.SidebarDriver); the panels draw through a RecordingLayout. Steps:

1. install and enable the legacy add-on, open the sidebar, bring the ModelsLab tab forward (Ctrl+Tab); the Import
   sub-panel is registered open (an artist clicks its header; Python cannot open a panel in 3.4);
2. Source = Text with a prompt: the Generate button's operator, until the object is in the scene;
3. Source = Image with a generated image datablock (pixels painted here): the same;
4. the Import sub-panel's Ground and Height (0.5) with the 3D cursor moved: the next object's world-space bounds;
5. the text job's row selected: what its details draw (Recall, Again); the prompt changed, then Recall;
6. write the result JSON and quit.

The config holds no secret (the API key comes from MODELSLAB_API_KEY): zip, module, server_url, result, timeout,
prompt, other_prompt, cursor, target_height.
"""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path
from typing import Any

import bpy

sys.path.insert(0, str(Path(__file__).resolve().parent))  # driver_common.py sits next to this file
from driver_common import (
    CONFIG,
    RESULT,
    RUNNING_STATES,
    RecordingLayout,
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
IMAGE_NAME = "Painted Disc"
PANELS = ("MODELSLAB_PT_generate", "MODELSLAB_PT_import_options", "MODELSLAB_PT_jobs")


class ButtonLayout(RecordingLayout):
    """A RecordingLayout that also writes down what the draw code sets on an operator button (its "props")."""

    def __getattr__(self, name: str) -> Any:
        real = super().__getattr__(name)
        if name != "operator":
            return real
        items = self._items

        def operator(*args: Any, **kwargs: Any) -> Any:
            return ButtonProps(real(*args, **kwargs), items[-1])

        return operator


class ButtonProps:
    """An operator button's properties: set on the real button and recorded in its drawn entry."""

    def __init__(self, props: Any, entry: dict[str, Any]):
        object.__setattr__(self, "_props", props)
        object.__setattr__(self, "_entry", entry)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._props, name, value)
        self._entry.setdefault("props", {})[name] = value

    def __getattr__(self, name: str) -> Any:
        return getattr(self._props, name)


def paint_disc(name: str, size: int = 96) -> Any:
    """A generated image datablock holding a red disc on a transparent background (pixels set from Python)."""
    image = bpy.data.images.new(name, size, size, alpha=True)
    pixels = []
    centre, radius = (size - 1) / 2, size * 0.35
    for y in range(size):
        for x in range(size):
            inside = (x - centre) ** 2 + (y - centre) ** 2 <= radius**2
            pixels += [0.8, 0.1, 0.1, 1.0] if inside else [0.0, 0.0, 0.0, 0.0]
    image.pixels.foreach_set(pixels)
    image.update()
    return image


def world_bounds(obj: Any) -> dict[str, list[float]]:
    """The object's mesh in world space: lowest and highest corner of its vertices."""
    points = [obj.matrix_world @ vertex.co for vertex in obj.data.vertices]
    return {
        "min": [min(point[axis] for point in points) for axis in range(3)],
        "max": [max(point[axis] for point in points) for axis in range(3)],
    }


class Driver(SidebarDriver):
    def __init__(self) -> None:
        super().__init__()
        self.ids: dict[str, str] = {}

    # --- Blender lookups ----------------------------------------------------------------------------
    @staticmethod
    def settings() -> Any:
        return bpy.context.scene.modelslab

    def call(self, operator: str, **props: Any) -> dict[str, Any]:
        """Run an operator ("modelslab.x") as a button in the sidebar does; what it returned and reported."""
        module, name = operator.split(".", 1)
        buffer = io.StringIO()
        outcome: Any
        with contextlib.redirect_stdout(buffer), self.override():
            try:
                outcome = sorted(getattr(getattr(bpy.ops, module), name)("INVOKE_DEFAULT", **props))
            except RuntimeError as exc:
                outcome = ["EXCEPTION", str(exc)]
        return {"operator": operator, "return": outcome, "reports": buffer.getvalue().splitlines()}

    def generate_button(self) -> str:
        """The operator of the Generate button the sidebar drew last."""
        buttons = [
            item
            for item in self.draws["MODELSLAB_PT_generate"]["items"]
            if item["call"] == "operator" and item.get("text") == "Generate"
        ]
        if len(buttons) != 1 or not buttons[0]["enabled"]:
            raise RuntimeError(f"no usable Generate button: {self.draws['MODELSLAB_PT_generate']['texts']}")
        return str(buttons[0]["operator"])

    def press_generate(self, step: dict[str, Any]) -> None:
        """Press the drawn Generate button (its operator, in the sidebar's context); the new row's id."""
        before = {row.local_id for row in self.rows()}
        step["generate"] = self.snapshot("MODELSLAB_PT_generate")
        step["call"] = self.call(self.generate_button())
        step["objects_before"] = sorted(obj.name for obj in bpy.data.objects)
        new = [row.local_id for row in self.rows() if row.local_id not in before]
        if len(new) != 1:
            raise RuntimeError(f"Generate did not add one job row: {step['call']}")
        step["local_id"] = new[0]

    def arrived(self, step: dict[str, Any]) -> bool | None:
        """True once the step's job is imported (step gets the row and object); None when it ended otherwise."""
        row = self.row(step["local_id"])
        if row.state in RUNNING_STATES or row.state == "downloaded":
            return False
        step["row"] = {"name": row.name, "state": row.state, "message": row.message, "object_name": row.object_name}
        obj = bpy.data.objects.get(row.object_name) if row.state == "imported" else None
        if obj is None:
            error(f"the job ended without an object in the scene: {step['row']}")
            return None
        step["object"] = {
            "name": obj.name,
            "type": obj.type,
            "vertices": len(obj.data.vertices) if obj.type == "MESH" else 0,
            "in_scene": obj.name in bpy.context.scene.objects,
            "was_there_before": obj.name in step["objects_before"],
            "bounds": world_bounds(obj) if obj.type == "MESH" else None,
        }
        return True

    # --- recording ------------------------------------------------------------------------------------
    def record(self) -> None:
        sidebar = self.addon("panels.sidebar")
        import_options = self.addon("panels.import_options")
        for cls in (
            sidebar.MODELSLAB_PT_generate,
            import_options.MODELSLAB_PT_import_options,
            sidebar.MODELSLAB_PT_jobs,
        ):
            cls.draw = recorded_draw(cls.draw, cls.__name__, self.draws, ButtonLayout)
        list_rows = self.list_rows

        def keep(item: Any, items: list[dict[str, Any]]) -> None:
            list_rows[item.local_id] = {"at": now(), "items": items, "texts": texts(items)}

        sidebar.MODELSLAB_UL_jobs.draw_item = recorded_draw_item(
            sidebar.MODELSLAB_UL_jobs.draw_item, keep, ButtonLayout
        )

    # --- the timer -------------------------------------------------------------------------------------
    def tab_in_front(self, region: Any) -> float | None:
        self.enter("text")
        return 0.05

    def source_job(self, name: str, prepare: Any, after: str) -> float | None:
        """One job from the sidebar: prepare() sets the scene's settings, the panels redraw, Generate is pressed,
        then wait for the object; then phase `after`."""
        step = RESULT["steps"].setdefault(name, {})
        if "prepared" not in step:
            prepare(step)
            step["prepared"] = True
            self.redraw()
            return 0.05
        if "local_id" not in step:
            if not self.drawn_since_mark(*PANELS[:2]):
                return self.wait("the Generate and Import panels did not redraw")
            step["import_panel"] = self.snapshot("MODELSLAB_PT_import_options")
            self.press_generate(step)
            self.ids[name] = step["local_id"]
            return 0.1
        done = self.arrived(step)
        if done is None:
            return self.finish()
        if not done:
            return self.wait(f"the {name} job's object did not arrive", 0.1)
        step["seconds"] = round(now() - self.phase_started, 3)
        self.enter(after)
        return 0.05

    def phase_text(self) -> float | None:
        def prepare(step: dict[str, Any]) -> None:
            settings = self.settings()
            step["source_items"] = [
                {"identifier": item.identifier, "name": item.name}
                for item in settings.bl_rna.properties["image_source"].enum_items
            ]
            settings.image_source = "TEXT"
            settings.prompt = CONFIG["prompt"]

        return self.source_job("text", prepare, "image")

    def phase_image(self) -> float | None:
        def prepare(step: dict[str, Any]) -> None:
            image = paint_disc(IMAGE_NAME)
            step["image"] = {"name": image.name, "size": list(image.size), "type": image.type, "source": image.source}
            settings = self.settings()
            settings.image_source = "IMAGE"
            settings.image_name = image.name
            settings.resolution = 64

        return self.source_job("image", prepare, "grounded")

    def phase_grounded(self) -> float | None:
        def prepare(step: dict[str, Any]) -> None:
            settings = self.settings()
            settings.ground = True
            settings.target_height = float(CONFIG["target_height"])
            bpy.context.scene.cursor.location = CONFIG["cursor"]
            step["cursor"] = list(bpy.context.scene.cursor.location)

        return self.source_job("grounded", prepare, "recall")

    def phase_recall(self) -> float | None:
        step = RESULT["steps"].setdefault("recall", {})
        wm = bpy.context.window_manager
        text_id = self.ids["text"]
        if "selected" not in step:
            wm.modelslab_jobs_index = next(i for i, row in enumerate(wm.modelslab_jobs) if row.local_id == text_id)
            step["selected"] = text_id
            self.redraw()
            return 0.05
        if not self.drawn_since_mark("MODELSLAB_PT_jobs"):
            return self.wait("the Jobs panel did not redraw")
        step["panel"] = self.snapshot("MODELSLAB_PT_jobs")
        step["list_row"] = self.list_rows.get(text_id)
        settings = self.settings()
        settings.prompt = CONFIG["other_prompt"]  # the artist has moved on to another prompt and source
        step["before"] = self.scene_state()
        buttons = [item for item in step["panel"]["items"] if item.get("operator") == "modelslab.recall_job"]
        if len(buttons) != 1:
            error(f"the selected job's details drew {len(buttons)} Recall buttons: {step['panel']['texts']}")
            return self.finish()
        step["call"] = self.call("modelslab.recall_job", **buttons[0].get("props", {}))  # the button, pressed
        step["after"] = self.scene_state()
        return self.finish()

    def scene_state(self) -> dict[str, Any]:
        settings = self.settings()
        names = ("image_source", "prompt", "image_name", "ground", "target_height")
        return {name: getattr(settings, name) for name in names}

    def finish(self) -> None:
        RESULT["phases"][self.phase] = round(now() - self.phase_started, 3)
        RESULT["ids"] = self.ids
        RESULT["rows"] = [{"name": row.name, "state": row.state, "local_id": row.local_id} for row in self.rows()]
        write_result()
        log("result written; quitting")
        bpy.ops.wm.quit_blender()
        return None


def open_import_panel(module: str) -> None:
    """Register the Import sub-panel again without DEFAULT_CLOSED: it starts open, as after a click on its
    header (a panel's open state is not reachable from Python in 3.4)."""
    cls = sys.modules[f"{module}.panels.import_options"].MODELSLAB_PT_import_options
    RESULT["import_panel_class"] = {
        "parent": cls.bl_parent_id,
        "label": cls.bl_label,
        "options": sorted(cls.bl_options),
    }
    bpy.utils.unregister_class(cls)
    cls.bl_options = set()
    bpy.utils.register_class(cls)


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
    open_import_panel(CONFIG["module"])
    driver = Driver()
    bpy.app.timers.register(driver.step, first_interval=0.3)


main()
