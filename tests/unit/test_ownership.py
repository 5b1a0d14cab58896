"""Job ownership across processes: real child processes hold session locks; SIGKILL frees them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from api.ownership import SessionLock

REPO = Path(__file__).resolve().parents[2]

HOLDER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[1])
    from api.ownership import SessionLock
    lock = SessionLock(sys.argv[2])
    print(lock.session_id, flush=True)
    sys.stdin.readline()  # hold the lock until told to go
    if sys.argv[3] == "release":
        lock.release()
        print("released", flush=True)
        sys.stdin.readline()
    """
)

ADOPTER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from api.ownership import SessionLock
    lock = SessionLock(sys.argv[2])
    record = Path(sys.argv[3])
    sys.stdin.readline()  # start together
    with lock.takeover():
        data = json.loads(record.read_text())
        if not lock.owner_alive(data["owner"]):
            data["owner"] = lock.session_id
            data["adopted"] = data.get("adopted", 0) + 1
            record.write_text(json.dumps(data))
            print("adopted", flush=True)
        else:
            print("left", flush=True)
    sys.stdin.readline()  # stay alive (holding the claim) until every adopter has answered
    """
)


def start(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, str(REPO), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def lock_dir(tmp_path: Path) -> Path:
    return tmp_path / "sessions"


def test_live_owner_in_another_process_is_seen_alive(lock_dir: Path) -> None:
    holder = start(HOLDER, str(lock_dir), "hold")
    try:
        owner = holder.stdout.readline().strip()  # type: ignore[union-attr]
        mine = SessionLock(lock_dir)
        assert mine.owner_alive(owner)
        assert mine.owner_alive(mine.session_id)
        assert mine.remove_dead_sessions() == 0
        assert (lock_dir / f"{owner}.lock").exists()
    finally:
        holder.kill()
        holder.wait()


def test_owner_killed_with_sigkill_is_gone(lock_dir: Path) -> None:
    holder = start(HOLDER, str(lock_dir), "hold")
    owner = holder.stdout.readline().strip()  # type: ignore[union-attr]
    mine = SessionLock(lock_dir)
    assert mine.owner_alive(owner)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert not mine.owner_alive(owner)


def test_released_owner_is_gone_and_its_file_removed(lock_dir: Path) -> None:
    holder = start(HOLDER, str(lock_dir), "release")
    try:
        owner = holder.stdout.readline().strip()  # type: ignore[union-attr]
        mine = SessionLock(lock_dir)
        holder.stdin.write("go\n")  # type: ignore[union-attr]
        holder.stdin.flush()  # type: ignore[union-attr]
        assert holder.stdout.readline().strip() == "released"  # type: ignore[union-attr]
        assert not mine.owner_alive(owner)
        assert not (lock_dir / f"{owner}.lock").exists()
    finally:
        holder.kill()
        holder.wait()


def test_unknown_or_malformed_owner_is_not_alive(lock_dir: Path) -> None:
    mine = SessionLock(lock_dir)
    assert not mine.owner_alive(None)
    assert not mine.owner_alive("0" * 32)
    assert not mine.owner_alive("../../etc/passwd")
    mine.release()
    assert not mine.held
    assert not mine.owner_alive(mine.session_id)


def test_dead_session_files_are_removed_only_when_old(lock_dir: Path) -> None:
    holder = start(HOLDER, str(lock_dir), "hold")
    owner = holder.stdout.readline().strip()  # type: ignore[union-attr]
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    mine = SessionLock(lock_dir)
    assert mine.remove_dead_sessions() == 0  # too fresh: may be a process between creating and locking
    old = 1_000_000_000
    os.utime(lock_dir / f"{owner}.lock", (old, old))
    assert mine.remove_dead_sessions() == 1
    assert not (lock_dir / f"{owner}.lock").exists()
    assert (lock_dir / f"{mine.session_id}.lock").exists()


def test_two_survivors_adopt_an_orphaned_job_exactly_once(lock_dir: Path, tmp_path: Path) -> None:
    holder = start(HOLDER, str(lock_dir), "hold")
    owner = holder.stdout.readline().strip()  # type: ignore[union-attr]
    record = tmp_path / "job.json"
    record.write_text(json.dumps({"owner": owner}))
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    adopters = [start(ADOPTER, str(lock_dir), str(record)) for _ in range(4)]
    for proc in adopters:
        proc.stdin.write("go\n")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
    answers = sorted(proc.stdout.readline().strip() for proc in adopters)  # type: ignore[union-attr]
    for proc in adopters:
        proc.communicate(timeout=30)
    assert answers == ["adopted", "left", "left", "left"]
    assert '"adopted": 1' in record.read_text()
