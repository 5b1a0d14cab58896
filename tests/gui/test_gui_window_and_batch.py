"""GUI layer: a Blender window (Debian's Blender 3.4 under Xvfb, legacy install) beside a headless batch
(`blender -b --python scripts/batch.py`, the same add-on installed in its own HOME) sharing one add-on user folder
(MODELSLAB_USER_DIR) and one local server, as a farm batch running beside an artist's open Blender does.

The window runs tests/gui/two_blenders_driver.py (steered through command files, see test_gui_two_blenders.py); the
batch is a real process that the test waits for or SIGKILLs. Everything asserted comes from the window's job list
and scene, the request lines the window sent, the shared journal, the saved .blend files (read back by another
`blender -b`) and the server's counters (submits, per-job downloads).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import gui
from tests.helpers.children import closing_each, kill_group
from tests.helpers.keys import gui_key
from tests.helpers.paths import BATCH_SCRIPT, example_image
from tests.helpers.servers import ServerProcess, only_job, serve, wait_until

REASON = gui.unavailable_reason()
if REASON:
    pytest.skip(f"gui layer skipped: {REASON}", allow_module_level=True)

from tests.gui import test_gui_two_blenders as two_blenders  # noqa: E402
from tests.gui.test_gui_two_blenders import Window, journal_record, touched  # noqa: E402

DRIVER = Path(__file__).resolve().parent / "window_batch_driver.py"  # two_blenders_driver + the job's details

RESOLUTION = 48
PADDED_MESH_BYTES = 2 * 1024 * 1024  # a mesh big enough that a throttled download takes seconds
OBJECTS_SCRIPT = (
    "import bpy, json\n"
    "print('OBJECTS' + json.dumps({o.name: o['modelslab_job_id'] for o in bpy.data.objects"
    " if o.get('modelslab_job_id')}))\n"
)


class Batch:
    """scripts/batch.py under `blender -b` with the legacy add-on installed in its own HOME and the shared user
    folder; started at once, then waited for or killed."""

    def __init__(self, workdir: Path, zip_path: Path, shared: Path, server: ServerProcess, key: str, args: list[str]):
        self.workdir = workdir
        env = gui.blender_env(workdir / "home", api_key=key)
        install = gui.install_addon_background(zip_path, env)
        assert install.returncode == 0, install.report()
        env["MODELSLAB_USER_DIR"] = str(shared)
        command = ["blender", "-b", "--python-exit-code", "3", "--python", str(BATCH_SCRIPT), "--"]
        command += ["--base-url", server.url, "--out", str(workdir / "out"), "--resolution", str(RESOLUTION)]
        self.stdout_path, self.stderr_path = workdir / "batch.out", workdir / "batch.err"
        self.stdout, self.stderr = open(self.stdout_path, "w"), open(self.stderr_path, "w")
        self.process = subprocess.Popen(
            [*command, *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.stdout,
            stderr=self.stderr,
            start_new_session=True,
        )

    def wait(self, timeout: float = 180) -> list[dict[str, Any]]:
        """Wait for the batch to end; its JSON rows (one per input)."""
        self.process.wait(timeout)
        self.stdout.flush()
        return [json.loads(line) for line in self.stdout_path.read_text().splitlines() if line.startswith("{")]

    def kill(self) -> None:
        """SIGKILL the batch (Blender and anything it started): no handler runs, no lock is released by it."""
        kill_group(self.process)

    def close(self) -> None:
        if self.process.poll() is None:
            kill_group(self.process)
        self.stdout.close()
        self.stderr.close()

    def report(self) -> str:
        return (
            f"--- batch exit {self.process.returncode}\n{self.stdout_path.read_text()}\n"
            f"--- batch stderr (tail)\n{self.stderr_path.read_text(errors='replace')[-5000:]}"
        )


@pytest.fixture
def server() -> Iterator[ServerProcess]:
    yield from serve("--workers", "2")


class Setup:
    """What a test starts: window(role) and batch(*args) share tmp_path/shared, the server and one key; the batch
    is stopped before the windows close (a window outliving it must not take its jobs over)."""

    def __init__(self, tmp_path: Path, server: ServerProcess):
        self.tmp_path = tmp_path
        self.shared = tmp_path / "shared"
        zip_path, _origin = gui.legacy_zip(tmp_path)
        key = gui_key()
        self._batches = closing_each(
            lambda *args: Batch(tmp_path / "batch", zip_path, self.shared, server, key, list(args))
        )
        self._windows = closing_each(
            lambda role, **options: Window(role, tmp_path, zip_path, self.shared, server, key, **options)
        )
        self.batch: Callable[..., Batch] = next(self._batches)
        self.window: Callable[..., Window] = next(self._windows)

    def close(self) -> None:
        for children in (self._batches, self._windows):
            next(children, None)  # closing_each closes every child it made


@pytest.fixture
def setup(tmp_path: Path, server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    monkeypatch.setattr(two_blenders, "DRIVER", DRIVER)  # the window runs this file's driver
    made = Setup(tmp_path, server)
    yield made
    made.close()


def the_only_record(shared: Path) -> dict[str, Any]:
    """The shared journal's one job (waits until the batch journaled it)."""
    wait_until(lambda: len(list((shared / "jobs").glob("*.json"))) == 1, timeout=120, message="no journaled job")
    (path,) = (shared / "jobs").glob("*.json")
    return json.loads(path.read_text(encoding="utf-8"))


def objects_in(blend: Path, home: Path) -> dict[str, str]:
    """The ModelsLab objects (name -> job id) a saved .blend holds, read by a fresh `blender -b`."""
    args = ["-b", "--factory-startup", str(blend), "--python-expr", OBJECTS_SCRIPT]
    run = gui.run_blender(args, env=gui.blender_env(home), timeout=120, window=False)
    lines = [line for line in run.stdout.splitlines() if line.startswith("OBJECTS")]
    assert run.returncode == 0 and lines, run.report()
    return json.loads(lines[-1][len("OBJECTS") :])


def test_a_window_leaves_a_still_processing_batch_job_to_the_batch(setup: Setup, server: ServerProcess) -> None:
    server.set_faults([{"fault": "hold_job", "endpoint": "submit"}])
    batch_blend, window_blend = setup.tmp_path / "batch.blend", setup.tmp_path / "window.blend"
    batch = setup.batch("--save-blend", str(batch_blend), str(example_image()))
    wait_until(lambda: only_job(server).get("fetches", 0) >= 1, timeout=120, message="the batch never polled")
    local_id = the_only_record(setup.shared)["local_id"]

    # The window starts while the job is held on the server: it lists the batch's job as another process's.
    window = setup.window("W")
    window.ask("save_as", timeout=120, path=str(window_blend))
    window.ask("wait_row", local_id=local_id, states=["submitted", "processing"], ownership=["other"])

    remote_id = only_job(server)["id"]
    server.release([remote_id])
    rows = batch.wait()
    assert batch.process.returncode == 0, batch.report()
    assert [row["status"] for row in rows] == ["imported"], batch.report()
    # The window follows the job in the journal until the batch imported it, and never touches it.
    window.ask("wait_row", local_id=local_id, states=["imported"])
    window.ask("save")
    view = window.ask("view")

    record = journal_record(setup.shared, local_id)
    assert record["state"] == "imported" and record["owner"] != view["session"]
    assert not record.get("adopted_from_closed_session")
    assert server.stats()["submits"] == 1
    wait_until(lambda: server.downloads(remote_id)["completed"] >= 1, timeout=10)
    assert server.downloads(remote_id) == {"started": 1, "completed": 1}
    assert touched(view["requests"], remote_id, record["output_urls"]) == []
    assert view["objects"] == {}
    home = setup.tmp_path / "reader"
    assert list(objects_in(batch_blend, home).values()) == [local_id]
    assert objects_in(window_blend, home) == {}


def test_a_slow_batch_download_beside_a_window_completes_once_into_the_batch_blend(
    setup: Setup, server: ServerProcess
) -> None:
    server.set_faults(
        [
            {"fault": "pad_output", "endpoint": "submit", "bytes": PADDED_MESH_BYTES},
            {"fault": "slow_download", "endpoint": "download", "bytes_per_second": 262144},
        ]
    )
    batch_blend, window_blend = setup.tmp_path / "batch.blend", setup.tmp_path / "window.blend"
    window = setup.window("W")
    window.ask("save_as", timeout=120, path=str(window_blend))
    batch = setup.batch("--save-blend", str(batch_blend), str(example_image()))
    wait_until(lambda: only_job(server).get("downloads_started", 0) >= 1, timeout=120, message="no download began")
    local_id = the_only_record(setup.shared)["local_id"]
    # While the batch downloads (about 8 s), the window lists the job as running in another process.
    window.ask("wait_row", local_id=local_id, states=["downloading"], ownership=["other"])

    rows = batch.wait()
    assert batch.process.returncode == 0, batch.report()
    assert [row["status"] for row in rows] == ["imported"], batch.report()
    window.ask("wait_row", local_id=local_id, states=["imported"])
    window.ask("save")
    view = window.ask("view")

    remote_id = only_job(server)["id"]
    record = journal_record(setup.shared, local_id)
    assert record["state"] == "imported" and record["owner"] != view["session"]
    assert server.stats()["submits"] == 1
    wait_until(lambda: server.downloads(remote_id)["completed"] >= 1, timeout=10)
    assert server.downloads(remote_id) == {"started": 1, "completed": 1}
    assert touched(view["requests"], remote_id, record["output_urls"]) == []
    assert view["objects"] == {}
    home = setup.tmp_path / "reader"
    assert list(objects_in(batch_blend, home).values()) == [local_id]
    assert objects_in(window_blend, home) == {}


def test_a_killed_batchs_job_is_taken_over_by_the_window_but_not_imported_into_its_scene(
    setup: Setup, server: ServerProcess
) -> None:
    server.set_faults(
        [
            {"fault": "pad_output", "endpoint": "submit", "bytes": PADDED_MESH_BYTES},
            {"fault": "slow_download", "endpoint": "download", "bytes_per_second": 131072},
        ]
    )
    window_blend = setup.tmp_path / "window.blend"
    window = setup.window("W")
    window.ask("save_as", timeout=120, path=str(window_blend))
    batch = setup.batch(str(example_image()))  # no .blend of its own: nothing says where the object belongs
    wait_until(lambda: only_job(server).get("downloads_started", 0) >= 1, timeout=120, message="no download began")
    local_id = the_only_record(setup.shared)["local_id"]
    batch_session = journal_record(setup.shared, local_id)["owner"]
    remote_id = only_job(server)["id"]
    batch.kill()
    assert server.downloads(remote_id)["completed"] == 0

    # The window notices that the batch is gone, takes the job over and downloads it, but leaves the import to
    # the user: the row is "downloaded" and its details offer Import; the window's unrelated scene gets no object.
    seen = window.ask("wait_row", timeout=120, local_id=local_id, states=["downloaded"], ownership=["recovered"])
    assert seen["row"]["state"] == "downloaded" and seen["row"]["ownership"] == "recovered"
    window.ask("save")
    details = window.ask("details", local_id=local_id)
    assert "Recovered from a closed session" in details["texts"], details["texts"]
    assert {"operator": "modelslab.reimport_job", "text": "Import"} in details["buttons"], details["buttons"]
    view = details["view"]
    assert view["objects"] == {}
    record = journal_record(setup.shared, local_id)
    assert record["owner"] == view["session"] != batch_session
    assert record["adopted_from_closed_session"] and record["state"] == "downloaded"
    assert touched(view["requests"], remote_id, record["output_urls"])
    assert server.stats()["submits"] == 1
    wait_until(lambda: server.downloads(remote_id)["completed"] >= 1, timeout=10)
    assert server.downloads(remote_id)["completed"] == 1
    assert objects_in(window_blend, setup.tmp_path / "reader") == {}

    # The user asks for it: Import brings the mesh from the cache into this scene, with no new download.
    pressed = window.ask("press", local_id=local_id, operator="modelslab.reimport_job")
    assert pressed["return"] == ["FINISHED"]
    assert list(pressed["view"]["objects"].values()) == [local_id]
    assert journal_record(setup.shared, local_id)["state"] == "imported"
    assert server.downloads(remote_id)["completed"] == 1
