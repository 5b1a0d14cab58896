"""Which process owns a job: an OS file lock per session, so two Blenders (or a batch) sharing one
journal never poll, download or import each other's jobs.

Each process that runs jobs holds an exclusive lock on `<dir>/<session_id>.lock` for its lifetime. A job
record names its owner's session id. The OS drops the lock when the owner exits or crashes, so "is the
owner alive?" is a non-blocking lock attempt — never a PID that the system may have reused. Taking a job
over happens under a short folder-wide lock, so two survivors cannot both adopt the same job.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(handle: IO[bytes]) -> bool:
        try:
            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _lock_blocking(handle: IO[bytes]) -> None:
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)

    def _unlock(handle: IO[bytes]) -> None:
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(handle: IO[bytes]) -> bool:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            return False

    def _lock_blocking(handle: IO[bytes]) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)

    def _unlock(handle: IO[bytes]) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


_SESSION_RE = re.compile(r"[0-9a-f]{32}")
_TAKEOVER_NAME = ".takeover.lock"
# A lock file this young may belong to a process between creating and locking it: never remove it.
_FRESH_SECONDS = 60.0


class SessionLock:
    """This process's claim on the jobs it starts; held until release() or the process ends."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory).expanduser().absolute()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.session_id = uuid.uuid4().hex
        self._handle: IO[bytes] | None = open(self._path(self.session_id), "a+b")
        if not _try_lock(self._handle):  # a fresh uuid is never locked; this guards against a broken filesystem
            self._handle.close()
            self._handle = None
            raise OSError(f"cannot lock the session file in {self.directory}")

    def _path(self, session_id: str) -> Path:
        return self.directory / f"{session_id}.lock"

    @property
    def held(self) -> bool:
        """True until release()."""
        return self._handle is not None

    def owner_alive(self, session_id: str | None) -> bool:
        """True when another live process holds session_id's lock (this process counts as alive too)."""
        if not session_id:
            return False
        if session_id == self.session_id:
            return self.held
        if not _SESSION_RE.fullmatch(session_id):
            return False
        path = self._path(session_id)
        try:
            handle = open(path, "rb+")
        except FileNotFoundError:
            return False
        except OSError:
            return True  # cannot tell: never take over a job that may still be someone's
        try:
            if _try_lock(handle):
                _unlock(handle)
                return False
            return True
        finally:
            handle.close()

    @contextlib.contextmanager
    def takeover(self) -> Iterator[None]:
        """A folder-wide lock for the read-check-write of adopting a job whose owner is gone."""
        with open(self.directory / _TAKEOVER_NAME, "a+b") as handle:
            _lock_blocking(handle)
            try:
                yield
            finally:
                _unlock(handle)

    def remove_dead_sessions(self) -> int:
        """Delete lock files of sessions that have ended (best effort); returns how many."""
        removed = 0
        for path in self.directory.glob("*.lock"):
            session_id = path.stem
            if not _SESSION_RE.fullmatch(session_id) or session_id == self.session_id:
                continue
            with contextlib.suppress(OSError):
                if time.time() - path.stat().st_mtime < _FRESH_SECONDS or self.owner_alive(session_id):
                    continue
                path.unlink()
                removed += 1
        return removed

    def release(self) -> None:
        """Give up the claim (jobs become adoptable by other processes) and remove the lock file."""
        handle, self._handle = self._handle, None
        if handle is None:
            return
        with contextlib.suppress(OSError):
            self._path(self.session_id).unlink()
        with contextlib.suppress(OSError):
            _unlock(handle)
        handle.close()
