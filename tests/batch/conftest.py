"""Fixtures of the batch layer: the local server, a private HOME per test, input images."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for path in (str(HERE.parents[1]), str(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)

from batchtools import EXAMPLES, EXPIRE_SECONDS, SLOW_JOB_SECONDS, BatchHome  # noqa: E402

from tests.serverproc import ServerProcess, start_server  # noqa: E402


@pytest.fixture
def batch_home(tmp_path: Path, fresh_server: ServerProcess) -> BatchHome:
    """A private HOME and --out folder pointed at the fresh server."""
    return BatchHome(tmp_path, fresh_server.url)


@pytest.fixture(scope="session")
def expiring_server_session() -> Iterator[ServerProcess]:
    """A server whose outputs expire EXPIRE_SECONDS after a job finished (a late download meets a 404)."""
    with start_server("--workers", "2", "--expire-seconds", str(EXPIRE_SECONDS)) as srv:
        yield srv


@pytest.fixture
def expiring_home(tmp_path: Path, expiring_server_session: ServerProcess) -> Iterator[BatchHome]:
    """A private HOME and --out folder pointed at the (reset) expiring server."""
    expiring_server_session.reset()
    yield BatchHome(tmp_path, expiring_server_session.url)
    expiring_server_session.clear_faults()


@pytest.fixture(scope="session")
def slow_server_session() -> Iterator[ServerProcess]:
    """A server whose every job takes SLOW_JOB_SECONDS: time to kill or interrupt a batch mid-poll."""
    with start_server("--workers", "3", "--job-seconds", str(SLOW_JOB_SECONDS)) as srv:
        yield srv


@pytest.fixture
def slow_server(slow_server_session: ServerProcess) -> Iterator[ServerProcess]:
    """The slow server with no jobs, faults or counters."""
    slow_server_session.reset()
    yield slow_server_session
    slow_server_session.clear_faults()


@pytest.fixture
def slow_home(tmp_path: Path, slow_server: ServerProcess) -> BatchHome:
    """A private HOME and --out folder pointed at the slow server."""
    return BatchHome(tmp_path, slow_server.url)


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    """Six distinct input files made from the example images (unique names -> unique object names)."""
    folder = tmp_path / "in put"  # a space in the path on purpose
    folder.mkdir()
    made = []
    for index in range(6):
        source = EXAMPLES[index % len(EXAMPLES)]
        target = folder / f"{source.stem}_{index}.png"
        shutil.copyfile(source, target)
        made.append(target)
    return made
