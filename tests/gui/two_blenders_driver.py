"""Driver that runs INSIDE a real Blender window (Debian's Blender under Xvfb); tests/gui/test_gui_two_blenders.py
starts two of them side by side and steers each one through files.

    blender --factory-startup --python-exit-code 3 --python two_blenders_driver.py -- CONFIG.json

It installs and enables the legacy add-on, then a persistent timer (so Blender's main loop, and the add-on's own
timers, keep running) looks for `<signals>/<role>.cmd.<n>.json`, runs command n and writes the answer to
`<signals>/<role>.ans.<n>.json`. Waiting commands ("wait_row", "wait_objects") are re-checked on every tick
until they hold or time out. Every HTTP request line the process sends is recorded (an audit hook), so the
test can tell which Blender polled or downloaded what. The API key only travels in MODELSLAB_API_KEY.
Config keys: zip, module, prefs, signals, role.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import bpy

CONFIG: dict[str, Any] = json.loads(Path(sys.argv[sys.argv.index("--") + 1]).read_text(encoding="utf-8"))
SIGNALS = Path(CONFIG["signals"])
ROLE = CONFIG["role"]
TICK = 0.1
REQUESTS: list[str] = []


def _audit(event: str, args: tuple) -> None:
    if event == "http.client.send":
        data = args[1]
        if isinstance(data, (bytes, bytearray)) and data[:8].split(b" ")[0] in (b"GET", b"POST", b"HEAD", b"PUT"):
            REQUESTS.append(bytes(data).split(b"\r\n", 1)[0].decode("latin-1"))  # the request line only


def session() -> Any:
    return sys.modules[f"{CONFIG['module']}.blender.session"]


def rows() -> list[dict[str, Any]]:
    found = []
    for row in getattr(bpy.context.window_manager, "modelslab_jobs", None) or []:
        found.append(
            {
                "local_id": row.local_id,
                "name": row.name,
                "state": row.state,
                "message": row.message,
                "ownership": session().ownership_of(row.local_id),
            }
        )
    return found


def modelslab_objects() -> dict[str, str]:
    return {obj.name: obj["modelslab_job_id"] for obj in bpy.data.objects if obj.get("modelslab_job_id")}


def view() -> dict[str, Any]:
    state = session().state
    return {
        "session": state.lock.session_id if state.lock is not None else None,
        "rows": rows(),
        "objects": modelslab_objects(),
        "filepath": bpy.data.filepath,
        "requests": list(REQUESTS),
        "money": session().money(),
    }


def override() -> Any:
    window = bpy.context.window_manager.windows[0]
    for area in window.screen.areas:
        if area.type == "VIEW_3D":
            region = next(r for r in area.regions if r.type == "WINDOW")
            return bpy.context.temp_override(window=window, screen=window.screen, area=area, region=region)
    raise RuntimeError("no 3D viewport")


class Steps:
    def __init__(self) -> None:
        self.number = 1
        self.command: dict[str, Any] | None = None
        self.started = 0.0

    def tick(self) -> float | None:
        try:
            if self.command is None:
                path = SIGNALS / f"{ROLE}.cmd.{self.number}.json"
                if not path.is_file():
                    return TICK
                self.command = json.loads(path.read_text(encoding="utf-8"))
                self.started = time.monotonic()
            command = self.command
            answer = getattr(self, "do_" + command["cmd"])(**command.get("args", {}))
            if answer is None:  # still waiting
                if time.monotonic() - self.started > float(command.get("timeout", 60)):
                    answer = {"ok": False, "error": f"timed out waiting: {command}", "view": view()}
                else:
                    return TICK
        except Exception:
            answer = {"ok": False, "error": traceback.format_exc()}
        self.answer(answer)
        if self.command and self.command["cmd"] == "quit":
            bpy.ops.wm.quit_blender()
            return None
        self.command = None
        self.number += 1
        return TICK

    def answer(self, answer: dict[str, Any]) -> None:
        answer.setdefault("ok", True)
        path = SIGNALS / f"{ROLE}.ans.{self.number}.json"
        partial = path.with_name(path.name + ".part")
        partial.write_text(json.dumps(answer, default=str), encoding="utf-8")
        os.replace(partial, path)

    # --- commands (None = not yet) ---------------------------------------------------------------------------
    def do_view(self) -> dict[str, Any]:
        return view()

    def do_save_as(self, path: str) -> dict[str, Any]:
        bpy.ops.wm.save_as_mainfile(filepath=path)
        return {"filepath": bpy.data.filepath}

    def do_save(self) -> dict[str, Any]:
        bpy.ops.wm.save_mainfile()
        return {"filepath": bpy.data.filepath}

    def do_open(self, path: str) -> dict[str, Any]:
        bpy.ops.wm.open_mainfile(filepath=path)
        return {"filepath": bpy.data.filepath}

    def do_submit(self, image: str, props: dict[str, Any]) -> dict[str, Any]:
        before = {row["local_id"] for row in rows()}
        with override():
            result = sorted(bpy.ops.modelslab.image_to_3d("INVOKE_DEFAULT", image=image, **props))
        new = [row["local_id"] for row in rows() if row["local_id"] not in before]
        return {"return": result, "local_id": new[0] if new else None, "view": view()}

    def do_wait_row(self, local_id: str, states: list[str], ownership: list[str] | None = None) -> Any:
        for row in rows():
            if row["local_id"] == local_id and row["state"] in states:
                if ownership is None or row["ownership"] in ownership:
                    return {"row": row, "view": view()}
        return None

    def do_wait_objects(self, count: int) -> Any:
        objects = modelslab_objects()
        return {"view": view()} if len(objects) >= count else None

    def do_wait_money(self, charged_jobs: int) -> Any:
        """Until the session counts charged_jobs and the wallet was asked again after the last of them."""
        money = session().money()
        if money["charged_jobs"] >= charged_jobs and money["spent"]:
            return {"money": money}
        return None

    def do_quit(self) -> dict[str, Any]:
        return view()


def main() -> None:
    sys.addaudithook(_audit)
    preferences = bpy.context.preferences
    preferences.view.show_splash = False
    bpy.ops.preferences.addon_install(overwrite=True, filepath=CONFIG["zip"])
    bpy.ops.preferences.addon_enable(module=CONFIG["module"])
    addon = preferences.addons[CONFIG["module"]]
    for key, value in CONFIG.get("prefs", {}).items():
        setattr(addon.preferences, key, value)
    steps = Steps()
    bpy.app.timers.register(steps.tick, first_interval=TICK, persistent=True)
    print(f"[two-blenders {ROLE}] ready, Blender {bpy.app.version_string}", flush=True)


main()
