"""The money ledger: real child processes append at once; every line survives whole and in each writer's order."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from api.errors import register_secret
from api.ledger import Ledger, entry_for
from api.records import JobRecord, JobState

REPO = Path(__file__).resolve().parents[2]
LINES_PER_WRITER = 400
FILLER = 3000  # bytes per line: big enough that a writer using several writes per line would interleave

WRITER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[1])
    from api.ledger import Ledger
    ledger = Ledger(sys.argv[2])
    name, count, filler = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    print("ready", flush=True)
    sys.stdin.readline()  # every writer starts at once
    for seq in range(count):
        ledger.append({"writer": name, "seq": seq, "pad": name * filler})
    print("done", flush=True)
    """
)


def _record(**changes: object) -> JobRecord:
    values: dict = {
        "local_id": "a" * 32,
        "name": "duck",
        "source": "/tmp/uploads/prepared.png",
        "params": {"resolution": 64},
        "base_url": "http://127.0.0.1:1",
        "flavor": "enterprise",
        "extra": {"original_source": "/home/me/duck.png", "origin": "operator"},
    }
    values.update(changes)
    return JobRecord(**values)  # type: ignore[arg-type]


def failed_at_submit(category: str, message: str) -> dict:
    """The ledger entry of a job that failed while submitting, with this error."""
    error = {"category": category, "message": message, "fix": ""}
    history = [["submitting", 1.0], ["failed", 2.0]]
    return entry_for(_record(state=JobState.FAILED.value, history=history, error=error))


def test_two_processes_append_whole_lines_in_order(tmp_path: Path) -> None:
    path = tmp_path / "user" / "ledger.jsonl"
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(REPO), str(path), name, str(LINES_PER_WRITER), str(FILLER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("A", "B")
    ]
    try:
        for writer in writers:
            assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        for writer in writers:
            assert writer.stdin is not None
            writer.stdin.write("go\n")
            writer.stdin.flush()
        for writer in writers:
            assert writer.stdout is not None and writer.stdout.readline().strip() == "done"
            assert writer.wait(timeout=60) == 0
    finally:
        for writer in writers:
            if writer.poll() is None:
                writer.kill()
                writer.wait()

    raw_lines = path.read_bytes().splitlines()
    assert len(raw_lines) == 2 * LINES_PER_WRITER
    entries = [json.loads(line) for line in raw_lines]  # every line is whole JSON
    for name in ("A", "B"):
        mine = [entry for entry in entries if entry["writer"] == name]
        assert [entry["seq"] for entry in mine] == list(range(LINES_PER_WRITER))
        assert all(entry["pad"] == name * FILLER for entry in mine)
    writers_seen = "".join(entry["writer"] for entry in entries)
    assert "AB" in writers_seen or "BA" in writers_seen  # both wrote; the file holds both
    assert Ledger(path).read() == entries


def test_read_skips_a_line_cut_short_by_a_crash(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.jsonl")
    ledger.append({"job": "1"})
    with open(ledger.path, "ab") as handle:
        handle.write(b'{"job": "2", "sta')  # the process died mid-line
    ledger.append({"job": "3"})
    assert [entry["job"] for entry in ledger.read()] == ["1", "3"]


def test_entry_says_whether_the_job_may_have_been_charged() -> None:
    accepted = entry_for(_record(state=JobState.IMPORTED.value, remote_id="123456789"))
    assert accepted["may_have_been_charged"] is True
    assert accepted["remote_id"] == "123456789"
    assert accepted["source"] == "/home/me/duck.png"
    assert accepted["origin"] == "operator"
    refused = failed_at_submit("credits", "Not enough credits")
    assert refused["may_have_been_charged"] is False
    assert refused["category"] == "credits"
    cut_off = failed_at_submit("network", "connection reset")
    assert cut_off["may_have_been_charged"] is True


def test_the_key_never_reaches_the_ledger(tmp_path: Path) -> None:
    key = "ledger-test-secret-key-0123456789"
    register_secret(key)
    ledger = Ledger(tmp_path / "ledger.jsonl")
    ledger.record(_record(source=f"https://example.com/img.png?key={key}", extra={}, state="failed"))
    assert key not in ledger.path.read_text(encoding="utf-8")
