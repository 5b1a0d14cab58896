"""Fixtures of the batch layer: the local server, a private HOME per test, input images."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.batch import EXPIRE_SECONDS, SLOW_JOB_SECONDS, BatchHome
from tests.helpers.paths import EXAMPLE_IMAGES
from tests.helpers.servers import ServerProcess, fresh, serve, slow_server_args


@pytest.fixture
def batch_home(tmp_path: Path, fresh_server: ServerProcess) -> BatchHome:
    """A private HOME and --out folder pointed at the fresh server."""
    return BatchHome(tmp_path, fresh_server.url)


@pytest.fixture(scope="session")
def expiring_server_session() -> Iterator[ServerProcess]:
    """A server whose outputs expire EXPIRE_SECONDS after a job finished (a late download meets a 404)."""
    yield from serve("--workers", "2", "--expire-seconds", str(EXPIRE_SECONDS))


@pytest.fixture
def expiring_home(tmp_path: Path, expiring_server_session: ServerProcess) -> Iterator[BatchHome]:
    """A private HOME and --out folder pointed at the (reset) expiring server."""
    for server in fresh(expiring_server_session):
        yield BatchHome(tmp_path, server.url)


@pytest.fixture(scope="session")
def slow_server_session() -> Iterator[ServerProcess]:
    """A server whose every job takes SLOW_JOB_SECONDS: time to kill or interrupt a batch mid-poll."""
    yield from serve(*slow_server_args(SLOW_JOB_SECONDS, workers=3))


@pytest.fixture
def slow_server(slow_server_session: ServerProcess) -> Iterator[ServerProcess]:
    """The slow server with no jobs, faults or counters."""
    yield from fresh(slow_server_session)


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
        source = EXAMPLE_IMAGES[index % len(EXAMPLE_IMAGES)]
        target = folder / f"{source.stem}_{index}.png"
        shutil.copyfile(source, target)
        made.append(target)
    return made
