"""The job journal: one JSON file per job, written atomically, never holding the API key."""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from .errors import ModelsLabError, redact
from .records import TERMINAL_STATES, JobRecord

log = logging.getLogger(__name__)

STALE_TEMP_SECONDS = 3600.0
_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_JOURNAL_FIX = (
    "Free some disk space or make the folder writable, then resume the job; "
    "until then jobs cannot be recorded for resume."
)


def journal_error(directory: Path, action: str, exc: OSError) -> ModelsLabError:
    """The categorised error for a journal folder that cannot be written (read-only, disk full, missing)."""
    reason = exc.strerror or type(exc).__name__
    return ModelsLabError("invalid_input", f"Cannot {action} the job journal in {directory}: {reason}.", _JOURNAL_FIX)


def _redacted(value: Any) -> Any:
    """value with every registered secret removed from its text and any "key" field blanked (stays valid JSON)."""
    if isinstance(value, dict):
        return {redact(str(k)): ("***" if k == "key" and item else _redacted(item)) for k, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(item) for item in value]
    if isinstance(value, str):
        return redact(value)
    return value


def replace_retrying(source: str | os.PathLike[str], target: Path, attempts: int = 5, pause: float = 0.02) -> None:
    """os.replace, retried briefly: on Windows it fails while another thread or process has the target open."""
    for attempt in range(attempts):
        try:
            os.replace(source, target)
            return
        except PermissionError:
            if attempt == attempts - 1:
                raise
            time.sleep(pause * (attempt + 1))  # nothing to wait on: the other side holds the file for milliseconds


class JobJournal:
    """A directory of <local_id>.json files. Unreadable files are skipped and listed in `problems`."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory).expanduser().absolute()
        self.problems: list[tuple[str, str]] = []  # (file, reason) of files skipped by the last all()
        self._lock = threading.Lock()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise journal_error(self.directory, "create", exc) from None

    def path(self, local_id: str) -> Path:
        """The journal file of a job; ids are plain names so they can never point outside the folder."""
        if not isinstance(local_id, str) or not _ID_RE.fullmatch(local_id):
            raise ModelsLabError("invalid_input", f"Not a job id: {str(local_id)[:80]!r}.")
        return self.directory / f"{local_id}.json"

    def save(self, record: JobRecord, *, durable: bool = True) -> None:
        """Write the record atomically (temp file in the same folder, fsync, os.replace); secrets redacted.

        durable=False skips the fsync: still atomic for every reader, but a power cut may undo it (for states
        that are free to reach again, where waiting for the disk would only delay the job).
        """
        target = self.path(record.local_id)
        text = json.dumps(_redacted(record.to_dict()), indent=1, sort_keys=True, ensure_ascii=False)
        tmp_name: str | None = None
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=f".{record.local_id}.", suffix=".tmp", dir=self.directory)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                if durable:
                    os.fsync(handle.fileno())
            replace_retrying(tmp_name, target)
            tmp_name = None
        except OSError as exc:
            raise journal_error(self.directory, "write", exc) from None
        finally:
            if tmp_name is not None:
                try:
                    os.unlink(tmp_name)
                except OSError:
                    pass

    def _read(self, path: Path) -> JobRecord:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        record = JobRecord.from_dict(data)
        if f"{record.local_id}.json" != path.name:
            raise ValueError(f"file name does not match its job id {record.local_id!r}")
        return record

    def load(self, local_id: str) -> JobRecord | None:
        """The saved record, or None when there is none or it cannot be read (then it is in `problems`)."""
        path = self.path(local_id)
        if not path.exists():
            return None
        try:
            return self._read(path)
        except (OSError, ValueError, TypeError, KeyError, RecursionError) as exc:
            problem = self._report(path, exc)
            with self._lock:
                self.problems.append(problem)
            return None

    def all(self) -> list[JobRecord]:
        """Every readable record, oldest first; unreadable files are skipped, logged and listed in `problems`."""
        problems: list[tuple[str, str]] = []
        records: list[JobRecord] = []
        try:
            paths = sorted(self.directory.glob("*.json"))
        except OSError as exc:
            raise journal_error(self.directory, "read", exc) from None
        for path in paths:
            try:
                records.append(self._read(path))
            except (OSError, ValueError, TypeError, KeyError, RecursionError) as exc:
                problems.append(self._report(path, exc))
        self._remove_stale_temp_files()
        with self._lock:
            self.problems = problems
        records.sort(key=lambda r: (r.created_at, r.local_id))
        return records

    def unfinished(self) -> list[JobRecord]:
        """Records not terminal: still running, resumable, or downloaded but not imported yet."""
        return [record for record in self.all() if not record.is_terminal]

    def delete(self, local_id: str) -> None:
        """Remove a job's file (no error when it is already gone)."""
        try:
            self.path(local_id).unlink(missing_ok=True)
        except OSError as exc:
            raise journal_error(self.directory, "delete from", exc) from None

    def prune(self, older_than_days: float) -> int:
        """Delete the files of finished jobs (imported, failed, cancelled) untouched for older_than_days; return
        how many. Unfinished jobs, unreadable files and files other than <local_id>.json are kept. Reading every
        file, it belongs off the UI thread, like all()."""
        if not isinstance(older_than_days, int | float) or isinstance(older_than_days, bool) or older_than_days < 0:
            raise ModelsLabError("invalid_input", f"older_than_days must be a number >= 0, got {older_than_days!r}.")
        cutoff = time.time() - float(older_than_days) * 86400.0
        try:
            paths = sorted(self.directory.glob("*.json"))
        except OSError as exc:
            raise journal_error(self.directory, "read", exc) from None
        removed = 0
        for path in paths:
            try:
                if path.is_symlink() or path.stat().st_mtime > cutoff:
                    continue
                record = self._read(path)
                if record.state not in TERMINAL_STATES or max(record.updated_at, record.created_at) > cutoff:
                    continue
                if path.stat().st_mtime > cutoff:
                    continue  # saved again meanwhile (another process resumed it)
                path.unlink()
                removed += 1
            except (OSError, ValueError, TypeError, KeyError, RecursionError):
                continue  # unreadable or gone: all() reports it, pruning leaves it
        return removed

    def _remove_stale_temp_files(self) -> None:
        """Temp files of writes interrupted by a crash; only old ones, a live write may be using a fresh one."""
        cutoff = time.time() - STALE_TEMP_SECONDS
        for path in self.directory.glob(".*.tmp"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
            except OSError:
                continue

    @staticmethod
    def _report(path: Path, exc: BaseException) -> tuple[str, str]:
        reason = redact(f"{type(exc).__name__}: {exc}")[:300]
        log.warning("Skipping unreadable job journal file %s (%s)", path, reason)
        return str(path), reason
