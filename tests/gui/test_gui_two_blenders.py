"""GUI layer: two Blender windows (Debian's Blender 3.4 under Xvfb, legacy install) share one add-on user folder
and one local server, as an artist with two Blenders open does.

Each window runs tests/gui/two_blenders_driver.py and is steered through command files. Everything asserted comes
from the windows' own job lists and scenes, the request lines each process sent, the shared journal and the
server's counters (submits, per-job fetches and downloads).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import gui
from tests.helpers.children import closing_each, kill_group, quit_or_kill
from tests.helpers.keys import gui_key
from tests.helpers.paths import example_image
from tests.helpers.servers import ServerProcess, only_job, serve, wait_until

REASON = gui.unavailable_reason()
if REASON:
    pytest.skip(f"gui layer skipped: {REASON}", allow_module_level=True)

DRIVER = Path(__file__).resolve().parent / "two_blenders_driver.py"
PROPS = {"resolution": 48}
JOB_PRICE = 0.2  # what the local server takes from the wallet per accepted submit (server/README.md)


class Window:
    """One Blender window running the driver; ask() writes a command file and waits for its answer file."""

    def __init__(
        self,
        role: str,
        workdir: Path,
        zip_path: Path,
        shared: Path,
        server: ServerProcess,
        key: str,
        *,
        prefs: dict[str, Any] | None = None,
        blend: str | None = None,
    ):
        self.role = role
        self.signals = workdir / "signals"
        self.signals.mkdir(parents=True, exist_ok=True)
        self.number = 0
        home = workdir / role
        env = gui.blender_env(home, api_key=key)
        env["MODELSLAB_USER_DIR"] = str(shared)
        config = {
            "zip": str(zip_path),
            "module": gui.MODULE,
            "prefs": {"base_url": server.url, "auto_import": True, **(prefs or {})},
            "signals": str(self.signals),
            "role": role,
        }
        config_path = home / "config.json"
        config_path.write_text(json.dumps(config), encoding="utf-8")
        self.log = home / "blender.log"
        self.log_handle = open(self.log, "w", encoding="utf-8")
        command = ["xvfb-run", "-a", "-s", f"-screen 0 {gui.DEFAULT_SCREEN}", "blender", *([blend] if blend else [])]
        command.append("--factory-startup")
        command += ["--python-exit-code", "3", "--python", str(DRIVER), "--", str(config_path)]
        self.process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log_handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def ask(self, cmd: str, timeout: float = 60.0, **args: Any) -> dict[str, Any]:
        self.number += 1
        command = self.signals / f"{self.role}.cmd.{self.number}.json"
        command.write_text(json.dumps({"cmd": cmd, "args": args, "timeout": timeout}), encoding="utf-8")
        answer_path = self.signals / f"{self.role}.ans.{self.number}.json"
        deadline = time.monotonic() + timeout + 60  # the first command also waits for Blender to start
        while not answer_path.is_file():
            if self.process.poll() is not None:
                raise AssertionError(f"Blender {self.role} exited ({self.process.returncode})\n{self.report()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"Blender {self.role} never answered {cmd}\n{self.report()}")
            time.sleep(0.05)
        answer = json.loads(answer_path.read_text(encoding="utf-8"))
        if not answer.get("ok"):
            raise AssertionError(f"Blender {self.role}: {cmd} failed: {answer}\n{self.report()}")
        return answer

    def kill(self) -> None:
        """SIGKILL the whole window (xvfb-run, Xvfb, Blender)."""
        kill_group(self.process)

    def close(self) -> None:
        quit_or_kill(self.process, lambda: self.ask("quit", timeout=30), grace=60)
        self.log_handle.close()

    def report(self) -> str:
        return f"--- {self.role} output (tail) ---\n" + self.log.read_text(encoding="utf-8", errors="replace")[-5000:]


@pytest.fixture
def server() -> Iterator[ServerProcess]:
    yield from serve("--workers", "2")


@pytest.fixture
def windows(tmp_path: Path, server: ServerProcess) -> Iterator[Any]:
    zip_path, _origin = gui.legacy_zip(tmp_path)
    key = gui_key()
    yield from closing_each(
        lambda role, **options: Window(role, tmp_path, zip_path, tmp_path / "shared", server, key, **options)
    )


def journal_record(shared: Path, local_id: str) -> dict[str, Any]:
    return json.loads((shared / "jobs" / f"{local_id}.json").read_text(encoding="utf-8"))


def touched(requests: list[str], remote_id: Any, output_urls: list[str]) -> list[str]:
    """The request lines that polled or downloaded the job."""
    paths = [f"/fetch/{remote_id}"] + ["/" + url.split("://", 1)[1].split("/", 1)[1] for url in output_urls]
    return [line for line in requests if any(path in line for path in paths)]


def test_a_second_window_leaves_a_running_job_to_the_window_that_started_it(
    windows: Any, server: ServerProcess, tmp_path: Path
) -> None:
    server.set_faults([{"fault": "hold_job", "endpoint": "submit"}])
    a = windows("A")
    a.ask("save_as", timeout=120, path=str(tmp_path / "a.blend"))
    submitted = a.ask("submit", image=str(example_image()), props=PROPS)
    local_id = submitted["local_id"]
    assert submitted["return"] == ["FINISHED"] and local_id
    wait_until(lambda: only_job(server).get("fetches", 0) >= 1, timeout=60, message="A never polled its job")

    b = windows("B")
    b.ask("save_as", timeout=120, path=str(tmp_path / "b.blend"))
    # B's start-up scan lists A's job as running in another Blender.
    seen = b.ask("wait_row", local_id=local_id, states=["processing", "submitted"], ownership=["other"])
    assert seen["row"]["ownership"] == "other"

    remote_id = only_job(server)["id"]
    server.release([remote_id])
    a.ask("wait_objects", count=1)
    a.ask("save")
    # B follows A's job in the journal (off its main thread) until A imported it, and never touches it.
    b.ask("wait_row", local_id=local_id, states=["imported"])
    b.ask("save")
    view_a, view_b = a.ask("view"), b.ask("view")

    record = journal_record(tmp_path / "shared", local_id)
    assert record["state"] == "imported" and record["owner"] == view_a["session"]
    assert server.stats()["submits"] == 1
    assert server.downloads(remote_id)["completed"] == 1
    assert touched(view_a["requests"], remote_id, record["output_urls"])
    assert touched(view_b["requests"], remote_id, record["output_urls"]) == []
    assert list(view_a["objects"].values()) == [local_id]
    assert view_b["objects"] == {}
    # Money: A counts one charged job and its balance went down by one job's price; B spent nothing.
    money_a = a.ask("wait_money", charged_jobs=1)["money"]
    assert money_a["spent"] == pytest.approx(JOB_PRICE)
    assert money_a["balance"]["balance"] == pytest.approx(server.stats()["wallet"]["balance"])
    assert view_b["money"]["charged_jobs"] == 0
    ledger = [json.loads(line) for line in (tmp_path / "shared" / "ledger.jsonl").read_text().splitlines()]
    assert [(entry["job"], entry["state"], entry["may_have_been_charged"]) for entry in ledger] == [
        (local_id, "downloaded", True),
        (local_id, "imported", True),
    ]


def test_a_killed_windows_job_is_taken_over_and_lands_only_in_its_own_blend(
    windows: Any, server: ServerProcess, tmp_path: Path
) -> None:
    server.set_faults(
        [
            {"fault": "pad_output", "endpoint": "submit", "bytes": 2 * 1024 * 1024},
            {"fault": "slow_download", "endpoint": "download", "bytes_per_second": 131072},
        ]
    )
    a_blend, b_blend = str(tmp_path / "a.blend"), str(tmp_path / "b.blend")
    a = windows("A")
    a.ask("save_as", timeout=120, path=a_blend)
    b = windows("B")
    b.ask("save_as", timeout=120, path=b_blend)
    local_id = a.ask("submit", image=str(example_image()), props=PROPS)["local_id"]
    a_session = a.ask("view")["session"]
    wait_until(
        lambda: only_job(server).get("downloads_started", 0) >= 1, timeout=60, message="A never began the download"
    )
    remote_id = only_job(server)["id"]
    a.kill()
    assert server.downloads(remote_id)["completed"] == 0

    # B notices that A is gone, takes the job over and downloads it, but b.blend is not where it was asked for.
    b.ask("wait_row", timeout=90, local_id=local_id, states=["downloaded"], ownership=["recovered"])
    record = journal_record(tmp_path / "shared", local_id)
    assert record["owner"] != a_session and record["adopted_from_closed_session"]
    assert b.ask("view")["objects"] == {}
    b.ask("save")
    # Opening the .blend the job was started from imports it there.
    b.ask("open", timeout=120, path=a_blend)
    imported = b.ask("wait_objects", count=1)["view"]
    assert list(imported["objects"].values()) == [local_id]
    b.ask("save")
    b.ask("open", timeout=120, path=b_blend)
    assert b.ask("view")["objects"] == {}

    assert journal_record(tmp_path / "shared", local_id)["state"] == "imported"
    assert server.stats()["submits"] == 1
    wait_until(lambda: server.downloads(remote_id)["completed"] == 1, timeout=10)
    assert server.downloads(remote_id)["completed"] == 1


def test_a_timed_out_job_resumes_by_itself_when_its_blend_is_opened_in_a_new_blender(
    windows: Any, server: ServerProcess, tmp_path: Path
) -> None:
    server.set_faults([{"fault": "hold_job", "endpoint": "submit"}])
    a_blend = str(tmp_path / "a.blend")
    a = windows("A", prefs={"poll_timeout": 10})
    a.ask("save_as", timeout=120, path=a_blend)
    local_id = a.ask("submit", image=str(example_image()), props=PROPS)["local_id"]
    a.ask("wait_row", timeout=60, local_id=local_id, states=["timed_out"])
    a.ask("save")
    a.close()
    remote_id = only_job(server)["id"]
    server.release([remote_id])

    # A new Blender started on a.blend (default poll timeout) resumes the job at start-up and imports it there.
    again = windows("again", blend=a_blend)
    view = again.ask("wait_objects", timeout=90, count=1)["view"]
    assert list(view["objects"].values()) == [local_id]
    assert [row["ownership"] for row in view["rows"] if row["local_id"] == local_id] == ["recovered"]
    record = journal_record(tmp_path / "shared", local_id)
    assert record["state"] == "imported" and record["owner"] == view["session"]
    assert server.stats()["submits"] == 1
