"""Runs INSIDE one Blender process (the bpy module) that the ownership test steers line by line.

`<bpy venv python> ownership_driver.py` reads one JSON command per stdin line and answers each with one line
`@@MODELSLAB_OWNERSHIP@@ {json}` on stdout, so a test can run two Blenders side by side and interleave them
(A submits, B starts, the server releases the job, A imports ...). Only the extension's public surface and its
session module are used; every HTTP request line the process sends is recorded (an audit hook), so a test can
tell which process polled or downloaded what.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

MARKER = "@@MODELSLAB_OWNERSHIP@@ "
HERE = Path(__file__).resolve().parent

requests_sent: list[str] = []


def _audit(event: str, args: tuple) -> None:
    if event == "http.client.send":
        data = args[1]
        if isinstance(data, bytes | bytearray) and data[:8].split(b" ")[0] in (b"GET", b"POST", b"HEAD", b"PUT"):
            requests_sent.append(bytes(data).split(b"\r\n", 1)[0].decode("latin-1"))  # the request line only


class Driver:
    def __init__(self) -> None:
        self.module = ""

    def session(self) -> Any:
        return sys.modules[f"{self.module}.blender.session"]

    def runtime(self) -> Any:
        return sys.modules[f"{self.module}.blender.runtime"]

    def modelslab(self) -> Any:
        """The script API (`import modelslab` in the legacy add-on; the extension's module path otherwise)."""
        return sys.modules[f"{self.module}.blender.scripting"]

    # --- commands ---------------------------------------------------------------------------------------------
    def start(self, zip: str, install: str, prefs: dict[str, Any]) -> dict[str, Any]:
        sys.path.insert(0, str(HERE))
        import bpy
        from scenario_driver import ensure_enabled

        self.module = ensure_enabled(zip, install)
        addon_prefs = bpy.context.preferences.addons[self.module].preferences
        for name, value in prefs.items():
            setattr(addon_prefs, name, value)
        sys.addaudithook(_audit)
        return {"module": self.module}

    def open(self, path: str) -> dict[str, Any]:
        import bpy

        if Path(path).is_file():
            bpy.ops.wm.open_mainfile(filepath=path)
        else:
            bpy.ops.wm.save_as_mainfile(filepath=path)
        return {"filepath": bpy.data.filepath}

    def save(self) -> dict[str, Any]:
        import bpy

        bpy.ops.wm.save_mainfile()
        return {"filepath": bpy.data.filepath}

    def submit(self, image: str, params: dict[str, Any]) -> dict[str, Any]:
        modelslab = self.modelslab()
        record = modelslab.submit(image, **params)
        return {"local_id": record.local_id, "session": self.session().session_lock().session_id}

    def wait_state(self, local_id: str, states: list[str], timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        record = None
        while time.monotonic() < deadline:
            self.runtime().pump(max_events=None, max_imports=0)
            record = self.session().get_record(local_id)
            if record is not None and str(record.state) in states:
                break
            time.sleep(0.05)
        return {"state": str(record.state) if record else None}

    def finish(self, local_id: str, timeout: float) -> dict[str, Any]:
        modelslab = self.modelslab()
        record = modelslab.wait(local_id, timeout=timeout)
        obj = modelslab.object_or_raise(record)
        return {"object": obj.name}

    def resume(self, timeout: float) -> dict[str, Any]:
        modelslab = self.modelslab()
        return {"results": modelslab.resume(timeout=timeout)}

    def view(self) -> dict[str, Any]:
        import bpy

        session = self.session()
        self.runtime().pump(max_events=None, max_imports=0)  # events not applied yet (e.g. the last import)
        runner = session.peek_runner()
        records = []
        for record in session.journal().all():
            records.append(
                {
                    "local_id": record.local_id,
                    "remote_id": record.remote_id,
                    "state": str(record.state),
                    "owner": record.owner,
                    "adopted": bool(getattr(record, "adopted_from_closed_session", False)),
                    "blend_file": (record.extra or {}).get("blend_file"),
                    "output_urls": list(record.output_urls or []),
                    "ownership": session.ownership(record),
                }
            )
        return {
            "session": session.state.lock.session_id if session.state.lock is not None else None,
            "journal": records,
            "runner_jobs": [r.local_id for r in runner.records()] if runner is not None else [],
            "objects": {o.name: o.get("modelslab_job_id", "") for o in bpy.data.objects},
            "filepath": bpy.data.filepath,
            "requests": list(requests_sent),
            "money": session.money(),
            "ledger": session.ledger().read(),
        }

    def objects_in(self, path: str) -> dict[str, Any]:
        """The ModelsLab objects saved in a .blend (read without opening it)."""
        import bpy

        with bpy.data.libraries.load(path) as (data_from, _data_to):
            names = list(data_from.objects)
        return {"objects": names}

    def quit(self) -> dict[str, Any]:
        modelslab = self.modelslab()
        modelslab.shutdown(wait=True)
        return {}


def main() -> int:
    if not os.environ.get("MODELSLAB_TEST_HOME") or os.environ.get("MODELSLAB_TEST_HOME") != os.environ.get("HOME"):
        sys.exit("ownership_driver.py: HOME is not the test's temporary user dir; refusing to run")
    import bpy  # noqa: F401  (Blender starts here)

    driver = Driver()
    print(MARKER + json.dumps({"ok": True, "ready": True}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        command = json.loads(line)
        name = command.pop("cmd")
        try:
            answer: dict[str, Any] = {"ok": True, **getattr(driver, name)(**command)}
        except BaseException as exc:
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        print(MARKER + json.dumps(answer, default=str), flush=True)
        if name == "quit":
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
