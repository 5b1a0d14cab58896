"""Bad inputs are refused by JobRunner.submit before any request: ModelsLabError(invalid_input) with a message that
names the problem, the server's request counters stay at zero, nothing is journaled, no worker thread starts.
Odd-but-valid inputs (unicode and spaces in paths) must work end to end.
"""

from __future__ import annotations

import json
import os
import shutil
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.errors import Category, ModelsLabError
from api.params import GenerationParams
from tests.helpers.paths import EXAMPLE_IMAGE
from tests.helpers.reliability import (
    Workspace,
    assert_downloaded,
    assert_no_key,
    assert_no_temp_files,
    event_texts,
    no_new_threads,
)
from tests.helpers.servers import ServerProcess


@pytest.fixture
def ws(fresh_server: ServerProcess, tmp_path: Path) -> Iterator[Workspace]:
    workspace = Workspace(tmp_path / "user dir")
    with no_new_threads():
        workspace.open(fresh_server.url)
        yield workspace
        workspace.close()
    assert_no_temp_files(workspace.journal_dir, workspace.cache_dir)
    assert_no_key(event_texts(workspace), workspace.files())


def _png(width: int, height: int, rows: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 0)) + chunk(b"IEND", b"")


def _bad_file(kind: str, folder: Path) -> str:
    """Make the bad input of this kind inside folder; return the source string to submit."""
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "missing":
        return str(folder / "no such image.png")
    if kind == "directory":
        (folder / "a folder.png").mkdir()
        return str(folder / "a folder.png")
    path = folder / f"{kind}.png"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "not-an-image":
        path.write_text("this is a text file with a .png name\n" * 20)
    elif kind == "html-as-png":
        path.write_text("<!DOCTYPE html><html><body>login</body></html>")
    elif kind == "truncated-png":
        path.write_bytes(EXAMPLE_IMAGE.read_bytes()[:4000])
    elif kind == "oversize":
        # A real, valid PNG of 6 MB of incompressible pixels: over the 5 MB upload limit.
        side = 1450
        rows = b"".join(b"\x00" + os.urandom(side * 3) for _ in range(side))
        path.write_bytes(_png(side, side, rows))
        assert path.stat().st_size > 5 * 1024 * 1024
    elif kind == "gif":
        path = folder / "anim.gif"
        path.write_bytes(b"GIF89a" + b"\x00" * 200)
    else:  # pragma: no cover
        raise AssertionError(kind)
    return str(path)


BAD_FILES = ["missing", "directory", "empty", "not-an-image", "html-as-png", "truncated-png", "oversize", "gif"]


def _refused(
    ws: Workspace, server: ServerProcess, source: Any, params: GenerationParams | None = None
) -> ModelsLabError:
    with pytest.raises(ModelsLabError) as caught:
        ws.runner.submit(source, params or GenerationParams(resolution=32))
    error = caught.value
    assert error.category is Category.INVALID_INPUT, f"{error.category}: {error}"
    assert error.message and error.fix and "Traceback" not in error.message
    assert server.stats()["requests"] == {}, "a request was sent for a bad input"
    assert ws.runner.records() == [] and not list(ws.journal_dir.glob("*.json")), "a bad input was journaled"
    assert ws.runner.threads() == [], "a worker started for a bad input"
    return error


@pytest.mark.parametrize("kind", BAD_FILES)
def test_bad_image_file_is_refused_before_any_request(fresh_server: ServerProcess, ws: Workspace, kind: str) -> None:
    source = _bad_file(kind, ws.root.parent / "inputs")
    error = _refused(ws, fresh_server, source)
    if kind in ("missing", "directory", "empty", "oversize"):
        assert Path(source).name in error.message, f"the message does not name the file: {error.message}"
    if kind == "oversize":
        assert "5 MB" in error.message or "5 MB" in error.fix


BAD_PARAMS = [
    {"resolution": 0},
    {"resolution": 513},
    {"resolution": 256.5},
    {"resolution": True},
    {"foreground_ratio": 0.2},
    {"foreground_ratio": 1.5},
    {"foreground_ratio": float("nan")},
    {"chunk_size": 99_999},
    {"seed": -1},
    {"seed": 2**40},
    {"output_format": "fbx"},
    {"remove_bg": "yes"},
    {"webhook": "ftp://example.com/hook"},
    {"webhook": "file:///etc/passwd"},
    {"track_id": "x" * 300},
]


@pytest.mark.parametrize("bad", BAD_PARAMS, ids=lambda bad: json.dumps(bad, default=str)[:40])
def test_out_of_range_params_are_refused(fresh_server: ServerProcess, ws: Workspace, bad: dict) -> None:
    params = GenerationParams(**{"resolution": 32, **bad})
    error = _refused(ws, fresh_server, str(EXAMPLE_IMAGE), params)
    assert next(iter(bad)) in error.message, f"the message does not name the field: {error.message}"


BAD_URLS = [
    "file:///etc/passwd",
    "ftp://example.com/duck.png",
    "javascript:alert(1)",
    "http://127.0.0.1/" + "a" * 3000 + ".png",
    "http://[::1/duck.png",
    "http://127.0.0.1:99999/duck.png",
    "http:///duck.png",
]


@pytest.mark.parametrize("url", BAD_URLS, ids=lambda url: url[:30])
def test_bad_image_urls_are_refused(fresh_server: ServerProcess, ws: Workspace, url: str) -> None:
    _refused(ws, fresh_server, url)


@pytest.mark.parametrize("source", [None, "", "   ", 42, Path("relative/none.png")])
def test_no_image_is_refused(fresh_server: ServerProcess, ws: Workspace, source: Any) -> None:
    _refused(ws, fresh_server, source)


def test_unicode_and_spaces_in_paths_work(fresh_server: ServerProcess, tmp_path: Path) -> None:
    """An image in a folder with spaces and non-ASCII letters, and a user folder that has them too: it works."""
    root = tmp_path / "Ünïcødé user dir ✓"
    image = tmp_path / "mes images 图像" / "my duck 🦆 (copy).png"
    image.parent.mkdir(parents=True)
    shutil.copy(EXAMPLE_IMAGE, image)
    ws = Workspace(root)
    with no_new_threads():
        ws.open(fresh_server.url)
        record = ws.run(image)
        ws.close()
    path = assert_downloaded(ws, record)
    assert record.name == "my duck 🦆 (copy)" and record.source == str(image)
    assert path.name.isascii() and " " not in path.name
    journal_file = ws.journal_dir / f"{record.local_id}.json"
    assert json.loads(journal_file.read_text(encoding="utf-8"))["source"] == str(image)
    assert fresh_server.stats()["submits"] == 1
    assert_no_temp_files(ws.journal_dir, ws.cache_dir)


def test_a_valid_url_source_works(fresh_server: ServerProcess, ws: Workspace) -> None:
    url = fresh_server.upload(EXAMPLE_IMAGE)
    record = ws.run(url)
    assert_downloaded(ws, record)
    assert record.image_url == url and fresh_server.stats()["requests"].get("upload", 0) == 1  # ours, not the runner's


def test_corrupt_journal_files_do_not_stop_resume(fresh_server: ServerProcess, ws: Workspace) -> None:
    """A journal folder with garbage in it (other versions, crashes, hand edits): resume skips and reports them."""
    ws.journal_dir.mkdir(parents=True, exist_ok=True)
    garbage = {
        "notjson.json": b"{not json",
        "list.json": b"[1, 2, 3]",
        "binary.json": os.urandom(64),
        "empty.json": b"",
        "wrongtypes.json": json.dumps({"local_id": 5, "name": [], "state": "bogus"}).encode(),
        "badstate.json": json.dumps(
            {"local_id": "badstate", "name": "x", "source": "x", "base_url": "x", "flavor": "x", "state": "exploded"}
        ).encode(),
        "deep.json": b"[" * 50_000 + b"]" * 50_000,
    }
    for name, data in garbage.items():
        (ws.journal_dir / name).write_bytes(data)
    resumed = ws.runner.resume_unfinished()
    assert resumed == []
    assert len(ws.runner.journal.problems) == len(garbage)
    assert fresh_server.stats()["requests"] == {}
    record = ws.run(EXAMPLE_IMAGE)  # and the runner still works
    assert_downloaded(ws, record)
    for name in garbage:  # the unreadable files are left for the user, not deleted
        assert (ws.journal_dir / name).exists()


_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
_json = st.recursive(
    _json_leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=15,
)
_RECORD_FIELDS = ["local_id", "name", "source", "params", "base_url", "flavor", "state", "remote_id", "history"]
_records = st.fixed_dictionaries(
    {},
    optional={
        name: st.one_of(_json, st.sampled_from(["job1", "queued", "processing", "timed_out", "failed"]))
        for name in _RECORD_FIELDS
    },
)


@settings(max_examples=60, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(content=_records)
def test_any_journal_file_content_is_loaded_or_reported(
    content: dict, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Whatever a journal file holds, listing/resuming never raises: the file is a record or a reported problem."""
    from api.journal import JobJournal

    folder = tmp_path_factory.mktemp("journal")
    local_id = content.get("local_id") if isinstance(content.get("local_id"), str) else "job1"
    name = f"{local_id}.json" if local_id.isalnum() else "job1.json"
    (folder / name).write_text(json.dumps(content), encoding="utf-8")
    journal = JobJournal(folder)
    records = journal.all()
    assert len(records) + len(journal.problems) == 1
    journal.unfinished()
    for record in records:
        json.dumps(record.to_dict())  # what was loaded can be written back
