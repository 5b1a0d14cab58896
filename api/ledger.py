"""The money ledger: one JSON line per settled job, appended by every process that shares the user folder.

A user can hand this file to support: when each job settled, its local and remote ids, the image, how it
ended, and whether it may have cost credits. Lines are only ever appended. Each line is one `os.write` on a
file opened with O_APPEND, under an exclusive OS lock on the file, so lines of two processes never interleave
or overwrite each other. Never holds the API key.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from .errors import Category, ModelsLabError, redact
from .records import JobRecord, may_have_been_charged

if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_LOCK, 1)

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


LEDGER_NAME = "ledger.jsonl"
MAX_TEXT = 300  # characters kept of free text (image paths, messages): a line stays one small write


def _clip(value: Any) -> Any:
    return redact(value)[:MAX_TEXT] if isinstance(value, str) else value


def entry_for(record: JobRecord, origin: str = "") -> dict[str, Any]:
    """The ledger line for a job in its current state (JSON-safe; no key, no URLs that could carry one)."""
    error = record.error or {}
    extra = record.extra or {}
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "job": record.local_id,
        "remote_id": record.remote_id,
        "name": _clip(record.name),
        "source": _clip(str(extra.get("original_source") or record.source)),
        "origin": _clip(str(origin or extra.get("origin") or "")),
        "state": str(record.state),
        "may_have_been_charged": may_have_been_charged(record),
        "category": error.get("category") or "",
        "base_url": _clip(record.base_url),
    }


class Ledger:
    """An append-only JSON-lines file shared by every process using the same user folder."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser().absolute()

    def append(self, entry: dict[str, Any]) -> None:
        """Append one line; ModelsLabError(invalid_input) when the folder cannot be written."""
        line = (json.dumps(entry, sort_keys=True, default=str, ensure_ascii=True) + "\n").encode("ascii")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o600)
        except OSError as exc:
            raise self._error("create", exc) from None
        try:
            _lock(fd)
            try:
                if not self._ends_with_newline(fd):
                    line = b"\n" + line  # a line cut short by a crash stays alone (and is skipped by read())
                written = os.write(fd, line)
            finally:
                _unlock(fd)
        except OSError as exc:
            raise self._error("write", exc) from None
        finally:
            os.close(fd)
        if written != len(line):
            raise self._error("write", OSError(f"short write: {written} of {len(line)} bytes"))

    @staticmethod
    def _ends_with_newline(fd: int) -> bool:
        size = os.fstat(fd).st_size
        if size == 0:
            return True
        os.lseek(fd, size - 1, os.SEEK_SET)
        return os.read(fd, 1) == b"\n"

    def record(self, record: JobRecord, origin: str = "") -> dict[str, Any]:
        """Append the line for record (see entry_for); returns it."""
        entry = entry_for(record, origin)
        self.append(entry)
        return entry

    def read(self) -> list[dict[str, Any]]:
        """Every readable line (a line cut short by a crash, or not JSON, is skipped); [] without a file."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise self._error("read", exc) from None
        entries = []
        for raw in data.splitlines():
            try:
                value = json.loads(raw)
            except ValueError:
                continue
            if isinstance(value, dict):
                entries.append(value)
        return entries

    def _error(self, action: str, exc: OSError) -> ModelsLabError:
        return ModelsLabError(
            Category.INVALID_INPUT,
            f"Could not {action} the ledger file {self.path}: {exc.strerror or exc}.",
            "Check that the add-on's user folder is writable.",
        )
