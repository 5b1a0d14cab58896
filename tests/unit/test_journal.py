"""JobJournal: one JSON file per job, atomic writes, no secrets, corrupt files skipped, clear errors on bad folders."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from api import Category, ModelsLabError, register_secret
from api.jobs import JobRecord, JobState
from api.journal import JobJournal
from tests.helpers.folders import read_only

SECRET = "sk-journal-test-secret-5f1e9a"


def make_record(local_id: str = "a" * 32, state: JobState = JobState.QUEUED, **fields) -> JobRecord:
    values = {
        "name": "duck",
        "source": "/tmp/duck.png",
        "params": {"resolution": 64, "output_format": "obj"},
        "base_url": "http://127.0.0.1:1",
        "flavor": "enterprise",
        **fields,
    }
    return JobRecord(local_id=local_id, state=state.value, **values)


def test_save_load_round_trip(tmp_path: Path) -> None:
    journal = JobJournal(tmp_path / "jobs")
    record = make_record(remote_id="1001", history=[["queued", 1.0]], extra={"import": {"scale": 2.0}})
    journal.save(record)
    assert (tmp_path / "jobs" / f"{record.local_id}.json").is_file()
    loaded = journal.load(record.local_id)
    assert loaded == record
    assert journal.load("b" * 32) is None
    assert [r.local_id for r in journal.all()] == [record.local_id]


def test_save_replaces_atomically_and_leaves_no_temp_files(tmp_path: Path) -> None:
    journal = JobJournal(tmp_path)
    record = make_record()
    stop = threading.Event()
    bad_reads: list[str] = []

    def reader() -> None:
        path = journal.path(record.local_id)
        while not stop.is_set():
            try:
                json.loads(path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                continue
            except ValueError as exc:  # a half-written file would show up here
                bad_reads.append(str(exc))

    journal.save(record)
    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(100):
            record.progress = i / 100
            record.meta = {"pad": "x" * (i * 50)}
            journal.save(record)
    finally:
        stop.set()
        thread.join()
    assert bad_reads == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{record.local_id}.json"]
    assert journal.load(record.local_id).progress == pytest.approx(99 / 100)


def test_journal_never_contains_the_key(tmp_path: Path) -> None:
    register_secret(SECRET)
    journal = JobJournal(tmp_path)
    record = make_record(
        source=f"https://example.com/img.png?key={SECRET}",
        error=ModelsLabError("auth", f"bad key {SECRET}").to_dict(),
        extra={"note": f"pasted {SECRET}", "key": 'unregistered-key-value "quoted"', SECRET: [SECRET]},
        meta={"echo": {"key": SECRET}},
    )
    journal.save(record)
    text = journal.path(record.local_id).read_text(encoding="utf-8")
    assert SECRET not in text
    assert "unregistered-key-value" not in text  # any "key": "..." pair is blanked too
    assert json.loads(text)["local_id"] == record.local_id


def test_corrupt_files_are_skipped_and_reported(tmp_path: Path) -> None:
    journal = JobJournal(tmp_path)
    good = make_record("1" * 32)
    journal.save(good)
    (tmp_path / ("2" * 32 + ".json")).write_text("{not json", encoding="utf-8")
    (tmp_path / ("3" * 32 + ".json")).write_text("[1, 2]", encoding="utf-8")
    (tmp_path / ("4" * 32 + ".json")).write_text("", encoding="utf-8")
    wrong_state = make_record("5" * 32).to_dict() | {"state": "exploded"}
    (tmp_path / ("5" * 32 + ".json")).write_text(json.dumps(wrong_state), encoding="utf-8")
    other_id = make_record("7" * 32).to_dict()  # file name and content disagree
    (tmp_path / ("6" * 32 + ".json")).write_text(json.dumps(other_id), encoding="utf-8")
    (tmp_path / "8.json").write_bytes(b"\xff\xfe\x00garbage")
    (tmp_path / "9.json").write_text("[" * 100_000, encoding="utf-8")  # nesting deeper than the recursion limit
    (tmp_path / ".leftover.tmp").write_text("{", encoding="utf-8")  # a temp file from a crash is not a record
    (tmp_path / ".old-crash.tmp").write_text("{", encoding="utf-8")
    os.utime(tmp_path / ".old-crash.tmp", (time.time() - 7200, time.time() - 7200))

    records = journal.all()
    assert [r.local_id for r in records] == [good.local_id]
    reported = sorted(Path(path).name for path, _ in journal.problems)
    assert reported == sorted(["2" * 32 + ".json", "3" * 32 + ".json", "4" * 32 + ".json", "5" * 32 + ".json"]
                              + ["6" * 32 + ".json", "8.json", "9.json"])  # fmt: skip
    assert all(reason for _, reason in journal.problems)
    assert journal.load("2" * 32) is None
    assert (tmp_path / ".leftover.tmp").exists() and not (tmp_path / ".old-crash.tmp").exists()  # stale ones go
    assert journal.unfinished() == records


def test_unfinished_is_everything_not_terminal(tmp_path: Path) -> None:
    journal = JobJournal(tmp_path)
    for index, state in enumerate(JobState):
        journal.save(make_record(f"{index:032x}", state, created_at=float(index)))
    unfinished = {r.state for r in journal.unfinished()}
    assert unfinished == {
        "queued",
        "uploading",
        "submitting",
        "submitted",
        "processing",
        "downloading",
        "downloaded",
        "timed_out",
    }
    assert [r.created_at for r in journal.all()] == sorted(r.created_at for r in journal.all())


def test_delete_and_hostile_ids(tmp_path: Path) -> None:
    journal = JobJournal(tmp_path / "jobs")
    record = make_record()
    journal.save(record)
    journal.delete(record.local_id)
    journal.delete(record.local_id)  # already gone: no error
    assert journal.all() == []
    for hostile in ("../escape", "/etc/passwd", "a/b", "", "x" * 65, "a.json"):
        with pytest.raises(ModelsLabError) as caught:
            journal.load(hostile)
        assert caught.value.category is Category.INVALID_INPUT
    with pytest.raises(ModelsLabError):
        journal.save(make_record("../../evil"))
    assert list(tmp_path.rglob("evil*")) == []


def test_from_dict_tolerates_unknown_keys_and_rejects_bad_types() -> None:
    data = make_record().to_dict() | {"added_by_a_newer_version": 1}
    assert JobRecord.from_dict(data).local_id == "a" * 32
    with pytest.raises((ValueError, TypeError)):
        JobRecord.from_dict(make_record().to_dict() | {"params": "nope"})
    with pytest.raises((ValueError, TypeError)):
        JobRecord.from_dict({"local_id": 5})
    assert JobRecord.from_dict(make_record().to_dict() | {"remote_id": 1234}).remote_id == "1234"


def test_journal_folder_that_cannot_be_created_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x", encoding="utf-8")
    with pytest.raises(ModelsLabError) as caught:
        JobJournal(blocker / "jobs")
    error = caught.value
    assert error.category is Category.INVALID_INPUT
    assert "journal" in error.message and str(blocker) in error.message
    assert "writable" in error.fix


def test_read_only_journal_folder_is_a_clear_error_and_leaves_nothing(tmp_path: Path) -> None:
    directory = tmp_path / "jobs"
    journal = JobJournal(directory)
    record = make_record()
    journal.save(record)
    before = journal.path(record.local_id).read_bytes()
    record.state = JobState.SUBMITTED.value
    with read_only(directory):
        with pytest.raises(ModelsLabError) as caught:
            journal.save(record)
        assert caught.value.category is Category.INVALID_INPUT
        assert "Cannot write the job journal" in caught.value.message
    assert journal.path(record.local_id).read_bytes() == before  # the old record is intact
    assert sorted(p.name for p in directory.iterdir()) == [f"{record.local_id}.json"]


def test_record_states_and_copies() -> None:
    record = make_record(state=JobState.DOWNLOADED)
    assert record.is_settled and not record.is_terminal
    assert make_record(state=JobState.TIMED_OUT).is_settled
    assert make_record(state=JobState.IMPORTED).is_terminal
    assert not make_record(state=JobState.PROCESSING).is_settled
    duplicate = record.copy()
    duplicate.history.append(["x", time.time()])
    assert record.history == []
    assert not make_record().was_submitted
    assert make_record(history=[["submitting", 1.0]]).was_submitted
