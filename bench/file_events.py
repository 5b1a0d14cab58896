"""When a file became complete in a watched folder, by one observer for every client (Linux inotify via ctypes).

The kernel stamps a file's mtime with its coarse clock (one tick, 4 ms on these machines), so an mtime reads up to
a tick early; a client's own clock reads the moment it chose. Here one thread in the bench process stamps each
event with time.time() as it arrives: a file closed after writing (IN_CLOSE_WRITE: the official CLI writes its
output in place) or renamed into the folder (IN_MOVED_TO: the project renames a checked temp file into place).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import struct
import threading
import time
from pathlib import Path

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of NUL-padded name


class FileEvents:
    """Watch folders; `completed(path)` is when path was last closed after writing or renamed into its folder."""

    def __init__(self) -> None:
        libc_name = ctypes.util.find_library("c")
        if not libc_name or not hasattr(os, "O_CLOEXEC"):
            raise OSError("inotify needs Linux")
        self._libc = ctypes.CDLL(libc_name, use_errno=True)
        self._fd = self._libc.inotify_init1(os.O_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self._stop_r, self._stop_w = os.pipe()
        self._folders: dict[int, Path] = {}
        self._times: dict[str, float] = {}
        self._lock = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="bench-file-events", daemon=True)
        self._thread.start()

    def watch(self, folder: str | os.PathLike[str]) -> Path:
        """Start watching an existing folder (before anything is written into it); returns it."""
        path = Path(folder)
        wd = self._libc.inotify_add_watch(self._fd, os.fsencode(path), IN_CLOSE_WRITE | IN_MOVED_TO)
        if wd < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch failed for {path}")
        with self._lock:
            self._folders[wd] = path
        return path

    def completed(self, path: str | os.PathLike[str], timeout: float = 2.0) -> float | None:
        """time.time() of the last close-after-write or rename-into-place seen for path (waiting up to timeout for
        its event to be read), or None."""
        key = str(Path(path))
        with self._lock:
            self._lock.wait_for(lambda: key in self._times, timeout)
            return self._times.get(key)

    def close(self) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join(timeout=5)
        for fd in (self._fd, self._stop_r, self._stop_w):
            os.close(fd)

    def _run(self) -> None:
        while True:
            ready, _, _ = select.select([self._fd, self._stop_r], [], [])
            if self._stop_r in ready:
                return
            data = os.read(self._fd, 64 * 1024)
            at = time.time()
            offset = 0
            while offset + _EVENT.size <= len(data):
                wd, _mask, _cookie, length = _EVENT.unpack_from(data, offset)
                name = data[offset + _EVENT.size : offset + _EVENT.size + length].rstrip(b"\0")
                offset += _EVENT.size + length
                with self._lock:
                    folder = self._folders.get(wd)
                    if folder is not None and name:
                        self._times[str(folder / os.fsdecode(name))] = at
                        self._lock.notify_all()
