"""Two processes, one journal: each runs a JobRunner with its own SessionLock against the local server.

Real child processes (not threads) share one user folder (sessions/, jobs/, meshes/). A live owner's job is
never polled, downloaded or changed by another process; once the owner is gone (SIGKILL, or a clean exit)
exactly one survivor adopts it and finishes it; the server's counters show one submit and one completed
download per job.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from api.journal import JobJournal
from api.records import JobRecord
from tests.helpers.children import closing_each
from tests.helpers.servers import ServerProcess, wait_until

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")

REPO = Path(__file__).resolve().parents[2]
DUCK = REPO / "examples" / "duck_512.png"
KEY = "sk-ownership-test-key-51c0"

CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from api import ClientConfig, GenerationParams, JobRunner, ModelsLabClient
    from api.cache import MeshCache
    from api.journal import JobJournal
    from api.ownership import SessionLock

    url, user, key, poll_timeout = sys.argv[2], Path(sys.argv[3]), sys.argv[4], float(sys.argv[5])
    lock = SessionLock(user / "sessions")
    client = ModelsLabClient(key, ClientConfig(base_url=url, max_retries=2, backoff_base=0.05))
    calls = {"fetch": 0, "probe": 0, "download": 0}

    def counted(name, method):
        def call(*args, **kwargs):
            calls[name] += 1
            return method(*args, **kwargs)
        return call

    for name in calls:
        setattr(client, name, counted(name, getattr(client, name)))
    runner = JobRunner(
        client, JobJournal(user / "jobs"), MeshCache(user / "meshes"), max_workers=2,
        poll_timeout=poll_timeout, poll_interval_min=0.05, poll_interval_max=0.2, owner=lock,
    )

    def answer(**data):
        print(json.dumps(data), flush=True)

    answer(session=lock.session_id)
    for line in sys.stdin:
        order = json.loads(line)
        cmd = order["cmd"]
        try:
            if cmd == "submit":
                record = runner.submit(order["url"], GenerationParams(resolution=48))
                answer(local_id=record.local_id)
            elif cmd == "resume":
                resumed = runner.resume_unfinished()
                answer(resumed=[r.local_id for r in resumed], foreign=[r.local_id for r in runner.foreign()])
            elif cmd == "resume_one":
                answer(state=runner.resume(order["id"]).state)
            elif cmd == "wait":
                answer(state=runner.wait(order["id"], timeout=order.get("timeout", 60)).state)
            elif cmd == "calls":
                answer(**calls, held=[r.local_id for r in runner.records()])
            elif cmd == "exit":
                runner.shutdown()
                lock.release()
                answer(bye=True)
                break
        except Exception as exc:
            answer(error=f"{type(exc).__name__}: {exc}")
    """
)


class Child:
    """One process with a JobRunner and a SessionLock on the shared user folder, driven line by line."""

    def __init__(self, srv: ServerProcess, user: Path, poll_timeout: float = 60.0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(REPO), srv.url, str(user), KEY, str(poll_timeout)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=str(REPO),
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.session = self.read()["session"]

    def send(self, cmd: str, **fields: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd, **fields}) + "\n")
        self.proc.stdin.flush()

    def read(self, *, error: bool = False) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, f"the child process ended (exit code {self.proc.poll()})"
        data = json.loads(line)
        assert ("error" in data) is error, data
        return data

    def ask(self, cmd: str, *, error: bool = False, **fields: Any) -> dict[str, Any]:
        self.send(cmd, **fields)
        return self.read(error=error)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.ask("exit")
            except (AssertionError, OSError, ValueError):  # it may have died with the test
                pass
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture
def children(fresh_server: ServerProcess, tmp_path: Path) -> Iterator[Any]:
    yield from closing_each(lambda poll_timeout=60.0: Child(fresh_server, tmp_path / "user", poll_timeout))


def journaled(tmp_path: Path, local_id: str) -> JobRecord:
    record = JobJournal(tmp_path / "user" / "jobs").load(local_id)
    assert record is not None
    return record


HOLD_JOB = {"fault": "hold_job", "endpoint": "submit"}


def submit_duck(server: ServerProcess, child: Any, fault: dict[str, Any]) -> str:
    """With `fault` the server's one fault rule, `child` submits the duck (uploaded first); its local id."""
    server.set_faults([fault])
    image = server.upload(DUCK, key=KEY)
    return str(child.ask("submit", url=image)["local_id"])


def remote_id_of(tmp_path: Path, local_id: str) -> str:
    def processing() -> str | None:
        record = journaled(tmp_path, local_id)
        return record.remote_id if record.state == "processing" else None

    return str(wait_until(processing, timeout=30, message="the owner polling its job"))


def polling_owner(server: ServerProcess, children: Any, tmp_path: Path) -> tuple[Any, str, str]:
    """A child that submitted the duck and polls it while the server holds it: (the child, local id, remote id)."""
    owner = children()
    local_id = submit_duck(server, owner, HOLD_JOB)
    return owner, local_id, remote_id_of(tmp_path, local_id)


def adopted_and_finished(children: Any, tmp_path: Path, local_id: str) -> JobRecord:
    """A new child resumes the job its closed owner left and downloads it; the journal record says it adopted it."""
    child = children()
    assert child.ask("resume")["resumed"] == [local_id]
    assert child.ask("wait", id=local_id)["state"] == "downloaded"
    record = journaled(tmp_path, local_id)
    assert record.owner == child.session and record.adopted_from_closed_session
    return record


def test_a_live_owners_job_is_never_touched_by_another_process(
    fresh_server: ServerProcess, children: Any, tmp_path: Path
) -> None:
    owner, local_id, remote_id = polling_owner(fresh_server, children, tmp_path)

    other = children()
    assert other.ask("resume") == {"resumed": [], "foreign": [local_id]}
    refused = other.ask("resume_one", id=local_id, error=True)
    assert "another Blender" in refused["error"]

    fresh_server.release()
    assert owner.ask("wait", id=local_id)["state"] == "downloaded"
    assert other.ask("resume") == {"resumed": [], "foreign": [local_id]}  # downloaded, not imported: still its
    assert other.ask("calls") == {"fetch": 0, "probe": 0, "download": 0, "held": []}
    record = journaled(tmp_path, local_id)
    assert record.owner == owner.session and not record.adopted_from_closed_session
    stats = fresh_server.stats()
    assert stats["submits"] == 1
    assert wait_until(lambda: fresh_server.downloads(remote_id)["completed"] == 1, timeout=10)


def test_after_sigkill_of_the_owner_exactly_one_survivor_adopts_and_finishes(
    fresh_server: ServerProcess, children: Any, tmp_path: Path
) -> None:
    owner, local_id, remote_id = polling_owner(fresh_server, children, tmp_path)
    survivors = [children(), children()]
    for survivor in survivors:
        assert survivor.ask("resume") == {"resumed": [], "foreign": [local_id]}

    owner.kill()
    for survivor in survivors:  # both ask at once
        survivor.send("resume")
    answers = [survivor.read() for survivor in survivors]
    adopted = [s for s, a in zip(survivors, answers, strict=True) if a["resumed"] == [local_id]]
    assert len(adopted) == 1, answers
    (adopter,) = adopted
    (bystander,) = [s for s in survivors if s is not adopter]
    assert answers[survivors.index(bystander)] == {"resumed": [], "foreign": [local_id]}

    fresh_server.release()
    assert adopter.ask("wait", id=local_id)["state"] == "downloaded"
    record = journaled(tmp_path, local_id)
    assert record.owner == adopter.session and record.adopted_from_closed_session
    assert Path(record.file_path or "").is_file()
    assert bystander.ask("calls") == {"fetch": 0, "probe": 0, "download": 0, "held": []}
    assert fresh_server.stats()["submits"] == 1
    assert wait_until(lambda: fresh_server.downloads(remote_id)["completed"] == 1, timeout=10)


def test_sigkill_mid_download_the_survivor_downloads_it_once(
    fresh_server: ServerProcess, children: Any, tmp_path: Path
) -> None:
    owner = children()
    slow_download = {"fault": "slow_download", "endpoint": "download", "bytes_per_second": 20000}
    local_id = submit_duck(fresh_server, owner, slow_download)

    def downloading() -> str | None:
        record = journaled(tmp_path, local_id)
        if record.remote_id and fresh_server.downloads(record.remote_id)["started"] >= 1:
            return record.remote_id
        return None

    remote_id = str(wait_until(downloading, timeout=30, message="the owner downloading"))
    owner.kill()
    record = adopted_and_finished(children, tmp_path, local_id)
    assert Path(record.file_path or "").stat().st_size == record.file_bytes
    counts = fresh_server.downloads(remote_id)
    assert counts["started"] == 2 and wait_until(lambda: fresh_server.downloads(remote_id)["completed"] == 1)
    assert fresh_server.stats()["submits"] == 1


def test_a_timed_out_job_is_resumed_by_the_next_process(
    fresh_server: ServerProcess, children: Any, tmp_path: Path
) -> None:
    first = children(poll_timeout=1.0)
    local_id = submit_duck(fresh_server, first, HOLD_JOB)
    assert first.ask("wait", id=local_id)["state"] == "timed_out"
    first.close()  # a clean exit releases the session

    fresh_server.release()
    adopted_and_finished(children, tmp_path, local_id)
    assert fresh_server.stats()["submits"] == 1


# --- the record side, pure ---------------------------------------------------------------------------------------
def make_record(**fields: Any) -> JobRecord:
    base: dict[str, Any] = {
        "local_id": "d" * 32,
        "name": "duck",
        "source": "https://example.invalid/duck.png",
        "params": {},
        "base_url": "https://example.invalid",
        "flavor": "enterprise",
    }
    return JobRecord(**{**base, **fields})


def test_owner_and_adoption_survive_the_journal(tmp_path: Path) -> None:
    journal = JobJournal(tmp_path / "jobs")
    journal.save(make_record(owner="a" * 32, adopted_from_closed_session=True))
    loaded = journal.load("d" * 32)
    assert loaded is not None and loaded.owner == "a" * 32 and loaded.adopted_from_closed_session is True
    legacy = make_record().to_dict()
    del legacy["owner"], legacy["adopted_from_closed_session"]  # written before ownership existed
    assert JobRecord.from_dict(legacy).owner is None
    with pytest.raises(ValueError):
        JobRecord.from_dict({**legacy, "owner": 42})


@pytest.mark.parametrize(
    ("fields", "charged"),
    [
        ({}, False),  # never sent
        ({"remote_id": "123"}, True),
        ({"history": [["submitting", 1.0]]}, True),  # cut off unanswered: it may have reached the server
        ({"history": [["submitting", 1.0]], "error": {"category": "rate_limited"}}, False),  # refused
        ({"history": [["submitting", 1.0]], "error": {"category": "credits"}}, False),
        ({"history": [["submitting", 1.0]], "error": {"category": "network"}}, True),
        ({"remote_id": "123", "error": {"category": "invalid_input"}}, True),  # the server had taken it
    ],
)
def test_may_have_been_charged(fields: dict[str, Any], charged: bool) -> None:
    from api.records import may_have_been_charged

    assert may_have_been_charged(make_record(**fields)) is charged
