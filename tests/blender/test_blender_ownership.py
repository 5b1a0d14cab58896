"""Two Blender processes sharing one user folder and one server: a job belongs to the Blender that started it.

Each Blender is a real bpy process (tests/blender/ownership_driver.py) steered line by line, so the test can
interleave them. What each asserts comes from the server's counters (submits, per-job fetches and downloads),
the request lines each process sent, the shared journal and ledger, and the saved .blend files.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.blender import FAST_PARAMS, UserDir
from tests.helpers.children import closing_each, kill_group, quit_or_kill
from tests.helpers.keys import BLENDER_KEY
from tests.helpers.paths import example_image
from tests.helpers.servers import ServerProcess, only_job, wait_until

DRIVER = Path(__file__).resolve().parent / "ownership_driver.py"
MARKER = "@@MODELSLAB_OWNERSHIP@@ "


class Steered:
    """One Blender process running ownership_driver.py; ask() sends a command and returns its answer."""

    def __init__(self, user_dir: UserDir, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.log = user_dir.root / f"{name}.log"
        self.stderr = open(self.log, "w", encoding="utf-8")
        self.process = subprocess.Popen(
            [sys.executable, str(DRIVER)],
            cwd=str(user_dir.root),
            env=user_dir.env(env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            start_new_session=True,
        )
        self.answers: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, name=f"read-{name}", daemon=True).start()
        self._next(60)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            if line.startswith(MARKER):
                self.answers.put(json.loads(line[len(MARKER) :]))
        self.answers.put(None)

    def _next(self, timeout: float) -> dict[str, Any]:
        try:
            answer = self.answers.get(timeout=timeout)
        except queue.Empty:
            answer = None
        if answer is None or not answer.get("ok"):
            raise AssertionError(f"Blender {self.name}: {answer}\n{self.report()}")
        return answer

    def ask(self, cmd: str, reply_within: float = 180.0, **args: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
        self.process.stdin.flush()
        return self._next(reply_within)

    def kill(self) -> None:
        kill_group(self.process)

    def close(self) -> None:
        quit_or_kill(self.process, lambda: self.ask("quit", reply_within=30), grace=30)
        self.stderr.close()

    def report(self) -> str:
        tail = self.log.read_text(encoding="utf-8", errors="replace")[-4000:] if self.log.exists() else ""
        return f"--- {self.name} stdout ---\n{''.join(self.output)[-4000:]}\n--- {self.name} stderr ---\n{tail}"


@pytest.fixture
def blenders(user_dir: UserDir, tmp_path: Path) -> Any:
    """start(name): a steered Blender with the shared MODELSLAB_USER_DIR; all are closed after the test."""
    env = {"MODELSLAB_API_KEY": BLENDER_KEY, "MODELSLAB_USER_DIR": str(tmp_path / "shared")}
    yield from closing_each(lambda name: Steered(user_dir, name, env))


def record_of(view: dict[str, Any], local_id: str) -> dict[str, Any]:
    found = [r for r in view["journal"] if r["local_id"] == local_id]
    assert len(found) == 1, view["journal"]
    return found[0]


def modelslab_objects(view: dict[str, Any]) -> dict[str, str]:
    return {name: job for name, job in view["objects"].items() if job}


def test_a_running_job_is_left_to_the_blender_that_started_it(
    blenders: Any, extension_zip: Path, fresh_server: ServerProcess, tmp_path: Path
) -> None:
    fresh_server.set_faults([{"fault": "hold_job", "endpoint": "submit"}])
    prefs = {"base_url": fresh_server.url}
    a = blenders("A")
    a.ask("start", zip=str(extension_zip), install="extension", prefs=prefs)
    a_blend, b_blend = str(tmp_path / "a.blend"), str(tmp_path / "b.blend")
    a.ask("open", path=a_blend)
    local_id = a.ask("submit", image=str(example_image()), params=FAST_PARAMS)["local_id"]
    a.ask("wait_state", local_id=local_id, states=["processing"], timeout=60)
    wait_until(lambda: only_job(fresh_server).get("fetches", 0) >= 1, timeout=30, message="A never polled its job")

    # B starts while A's job is held on the server, and asks to resume the journal's unfinished jobs.
    b = blenders("B")
    b.ask("start", zip=str(extension_zip), install="none", prefs=prefs)
    b.ask("open", path=b_blend)
    assert b.ask("resume", timeout=3)["results"] == []
    seen_by_b = record_of(b.ask("view"), local_id)
    assert seen_by_b["ownership"] == "other"
    assert seen_by_b["state"] == "processing"

    remote_id = only_job(fresh_server)["id"]
    assert fresh_server.release([remote_id]) == [remote_id]
    imported = a.ask("finish", local_id=local_id, timeout=60)["object"]
    a.ask("save")
    assert b.ask("resume", timeout=3)["results"] == []  # A's job is finished: still nothing for B to do
    b.ask("save")
    view_a, view_b = a.ask("view"), b.ask("view")

    # One submit, one completed download, and only A's requests ever named the job or its file.
    assert fresh_server.stats()["submits"] == 1
    assert fresh_server.downloads(remote_id)["completed"] == 1
    final = record_of(view_a, local_id)
    assert final["state"] == "imported" and final["ownership"] == "mine" and final["blend_file"] == a_blend
    job_paths = [f"/fetch/{remote_id}"] + [url.split("://", 1)[1].split("/", 1)[1] for url in final["output_urls"]]
    assert any(f"/fetch/{remote_id}" in line for line in view_a["requests"])
    b_touched = [line for line in view_b["requests"] if any(path in line for path in job_paths)]
    assert b_touched == [], f"B polled or downloaded A's job: {b_touched}"
    assert local_id not in view_b["runner_jobs"]

    # The object is in A's scene and saved .blend, never in B's.
    assert modelslab_objects(view_a) == {imported: local_id}
    assert modelslab_objects(view_b) == {}
    assert imported in b.ask("objects_in", path=a_blend)["objects"]
    assert imported not in a.ask("objects_in", path=b_blend)["objects"]

    # Money: A's ledger lines say the job may have been charged; A counts one charged job, B none.
    lines = [entry for entry in view_b["ledger"] if entry["job"] == local_id]
    assert [entry["state"] for entry in lines] == ["downloaded", "imported"]
    assert all(entry["may_have_been_charged"] and entry["remote_id"] == str(remote_id) for entry in lines)
    assert view_a["money"]["charged_jobs"] == 1
    assert view_b["money"]["charged_jobs"] == 0


def test_a_job_whose_blender_was_killed_mid_download_is_finished_once_from_its_own_blend(
    blenders: Any, extension_zip: Path, fresh_server: ServerProcess, tmp_path: Path
) -> None:
    fresh_server.set_faults(
        [
            {"fault": "pad_output", "endpoint": "submit", "bytes": 2 * 1024 * 1024},
            {"fault": "slow_download", "endpoint": "download", "bytes_per_second": 131072},
        ]
    )
    prefs = {"base_url": fresh_server.url}
    a = blenders("A")
    a.ask("start", zip=str(extension_zip), install="extension", prefs=prefs)
    a_blend = str(tmp_path / "a.blend")
    a.ask("open", path=a_blend)
    local_id = a.ask("submit", image=str(example_image()), params=FAST_PARAMS)["local_id"]
    a_session = a.ask("view")["session"]
    wait_until(  # the body is flowing and A's journal says so (it is written with the first bytes)
        lambda: (
            only_job(fresh_server).get("downloads_started", 0) >= 1
            and record_of(a.ask("view"), local_id)["state"] == "downloading"
        ),
        timeout=60,
        message="A never began the download",
    )
    remote_id = only_job(fresh_server)["id"]
    a.kill()
    assert fresh_server.downloads(remote_id)["completed"] == 0

    # B opens the .blend the job was started from; its resume takes the job over and finishes it.
    b = blenders("B")
    b.ask("start", zip=str(extension_zip), install="none", prefs=prefs)
    b.ask("open", path=a_blend)
    before = record_of(b.ask("view"), local_id)
    assert before["owner"] == a_session and before["state"] == "downloading"
    results = b.ask("resume", timeout=90)["results"]
    assert [(r["job_id"], r["status"]) for r in results] == [(local_id, "imported")], results
    b.ask("save")
    view_b = b.ask("view")

    record = record_of(view_b, local_id)
    assert record["owner"] == view_b["session"] != a_session
    assert record["adopted"] and record["ownership"] == "recovered"
    assert record["state"] == "imported"
    assert fresh_server.stats()["submits"] == 1
    wait_until(lambda: fresh_server.downloads(remote_id)["completed"] == 1, timeout=10)
    assert fresh_server.downloads(remote_id)["completed"] == 1
    assert list(modelslab_objects(view_b).values()) == [local_id]
    b.ask("quit")
    reader = blenders("reader")  # reads the saved .blend from outside
    reader.ask("start", zip=str(extension_zip), install="none", prefs=prefs)
    assert set(modelslab_objects(view_b)) <= set(reader.ask("objects_in", path=a_blend)["objects"])
