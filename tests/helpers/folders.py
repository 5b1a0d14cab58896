"""Folders that refuse writes (chmod for a normal user, the immutable flag for root)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def make_unwritable(directory: Path) -> str | None:
    """Make directory refuse new files (chmod, or chattr +i for root); return how, or None if impossible here."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o555)
    if not _writable(directory):
        return "chmod"
    if subprocess.run(["chattr", "+i", str(directory)], capture_output=True).returncode == 0 and not _writable(
        directory
    ):
        return "chattr"
    os.chmod(directory, 0o755)
    return None


def make_writable(directory: Path) -> None:
    subprocess.run(["chattr", "-i", str(directory)], capture_output=True)
    os.chmod(directory, 0o755)


def _writable(directory: Path) -> bool:
    probe = directory / ".write-probe"
    try:
        probe.write_bytes(b"x")
    except OSError:
        return False
    probe.unlink()
    return True


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """Directory refuses new files inside the block; the test is skipped when this system cannot do that."""
    how = make_unwritable(directory)
    if how is None:
        pytest.skip(f"cannot make a folder read-only here (uid {os.geteuid()})")
    try:
        yield
    finally:
        make_writable(directory)
