"""A JobRunner wired to the real local server in a throwaway workspace, and the checks every fault case ends
with: a categorised error with a message and a fix, the journal telling the truth, no temp files, no key anywhere,
no thread left behind. Used by the api-level fault tests (tests/unit/test_reliability_*.py, test_tls.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers.keys import RELIABILITY_KEY as API_KEY
from tests.helpers.servers import wait_until

TEMP_SUFFIXES = (".part", ".tmp", ".partial", ".download")

# Short timeouts and backoffs: every fault case ends in seconds, not minutes.
FAST_CLIENT = {
    "connect_timeout": 2.0,
    "read_timeout": 5.0,
    "max_retries": 2,
    "backoff_base": 0.01,
    "backoff_max": 0.05,
    "max_retry_after": 5.0,
}
FAST_RUNNER = {"max_workers": 2, "poll_timeout": 20.0, "poll_interval_min": 0.05, "poll_interval_max": 0.2}


@dataclass
class Workspace:
    """A job runner's world: its journal and cache folders, and everything it said (events)."""

    root: Path
    runner: Any = None
    client: Any = None
    events: list[Any] = field(default_factory=list)

    @property
    def journal_dir(self) -> Path:
        return self.root / "jobs"

    @property
    def cache_dir(self) -> Path:
        return self.root / "meshes"

    def open(self, base_url: str, *, key: str = API_KEY, client: dict | None = None, runner: dict | None = None):
        """(Re)create the client and runner (a previous runner is shut down first)."""
        from api.cache import MeshCache
        from api.client import ClientConfig, ModelsLabClient
        from api.jobs import JobRunner
        from api.journal import JobJournal

        self.close()
        self.client = ModelsLabClient(key, ClientConfig(base_url=base_url, **{**FAST_CLIENT, **(client or {})}))
        self.runner = JobRunner(
            self.client, JobJournal(self.journal_dir), MeshCache(self.cache_dir), **{**FAST_RUNNER, **(runner or {})}
        )
        return self.runner

    def run(self, source: str | os.PathLike, timeout: float = 60.0, **params: Any):
        """Submit one job and wait until it is settled; returns its final record."""
        from api.params import GenerationParams

        params.setdefault("resolution", 32)
        record = self.runner.submit(str(source), GenerationParams(**params))
        final = self.runner.wait(record.local_id, timeout)
        self.drain()
        assert final.is_settled, f"job not settled after {timeout:g} s: {final.state} {final.message}"
        return final

    def drain(self) -> list[Any]:
        if self.runner is not None:
            self.events.extend(self.runner.drain_events())
        return self.events

    def close(self) -> None:
        """Shut the runner down (joining its threads) and close the client's sessions."""
        if self.runner is not None:
            self.runner.shutdown(wait=True, timeout=15)
            self.drain()
            assert not [t.name for t in self.runner.threads() if t.is_alive()], "runner threads still alive"
            self.runner = None
        if self.client is not None:
            self.client.close()
            self.client = None

    def journal_record(self, local_id: str) -> dict:
        """The job's journal file as JSON (what a restarted Blender would read)."""
        return json.loads((self.journal_dir / f"{local_id}.json").read_text(encoding="utf-8"))

    def files(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*") if p.is_file())


# --- checks ---------------------------------------------------------------------------------------------------------


def assert_failed(ws: Workspace, record: Any, category: str, *words: str) -> dict:
    """FAILED in memory and in the journal, with that category, a message, a fix, and no traceback."""
    assert record.state == "failed", f"expected failed({category}), got {record.state}: {record.message}"
    error = record.error or {}
    assert error.get("category") == category, f"expected {category}, got {error}"
    assert error.get("message") and error.get("fix"), error
    text = f"{error['message']} {error['fix']} {record.message}"
    assert "Traceback" not in text and 'File "' not in text, text
    assert "bug in the add-on" not in text, f"an expected fault was reported as an internal bug: {text}"
    for word in words:
        assert word.lower() in text.lower(), f"{word!r} not in {text!r}"
    journaled = journal_settles(ws, record.local_id, "failed")
    assert journaled["error"] == error, (journaled["error"], error)
    return error


def assert_downloaded(ws: Workspace, record: Any, *, fmt: str = "obj") -> Path:
    """DOWNLOADED in memory and in the journal; the mesh is complete, valid and inside the cache folder."""
    assert record.state == "downloaded", f"expected downloaded, got {record.state}: {record.message} {record.error}"
    path = Path(record.file_path)
    assert path.is_file() and path.stat().st_size == record.file_bytes > 0
    assert path.resolve().parent == ws.cache_dir.resolve(), path
    assert path.suffix == f".{fmt}"
    if fmt == "obj":
        data = path.read_bytes()
        assert b"\nv " in data and b"\nf " in data
    journaled = journal_settles(ws, record.local_id, "downloaded")
    assert journaled["file_path"] == record.file_path and journaled["file_bytes"] == record.file_bytes
    assert journaled["error"] is None
    return path


def journal_settles(ws: Workspace, local_id: str, state: str) -> dict:
    """The journal file on disk already says `state`: JobRunner writes it before it wakes wait() and emits the
    event, so a caller that saw the state (and a process killed right then) finds it journaled."""
    data = ws.journal_record(local_id)
    assert data.get("state") == state, f"the runner said {state!r} but its journal says {data.get('state')!r}"
    return data


def assert_no_temp_files(*directories: Path) -> None:
    """No partial downloads or half-written journal files anywhere under the folders."""
    leftovers = [
        str(p)
        for directory in directories
        if directory.exists()
        for p in directory.rglob("*")
        if p.is_file() and (p.name.endswith(TEMP_SUFFIXES) or p.name.startswith("."))
    ]
    assert leftovers == [], leftovers


def assert_no_key(texts: Iterable[str] = (), paths: Iterable[Path] = (), key: str = API_KEY) -> int:
    """The key is in none of the texts nor the files (utf-8, JSON-escaped, UTF-16). Returns how many files it read."""
    needles = [key.encode(), json.dumps(key).strip('"').encode(), key.encode("utf-16-le")]
    for text in texts:
        assert key not in text, f"API key leaked in text: {text[:200]!r}"
    count = 0
    for path in paths:
        data = path.read_bytes()
        count += 1
        for needle in needles:
            assert needle not in data, f"API key leaked in {path}"
    return count


def event_texts(ws: Workspace) -> list[str]:
    """Everything the runner told its caller: event messages and the error texts of their records."""
    texts = []
    for event in ws.drain():
        texts.append(event.message)
        texts.append(json.dumps(event.record.to_dict()))
    return texts


@contextlib.contextmanager
def no_new_threads(timeout: float = 10.0) -> Iterator[None]:
    """Fail if threads started inside the block are still alive shortly after it ends."""
    before = set(threading.enumerate())

    def leftovers() -> list[str]:
        return [t.name for t in threading.enumerate() if t not in before and t.is_alive()]

    yield
    try:
        wait_until(lambda: not leftovers(), timeout, 0.05)
    except AssertionError:
        raise AssertionError(f"threads left behind: {leftovers()}") from None
