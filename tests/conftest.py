"""Fixtures every layer shares: the local server as a real subprocess on a loopback port.

Layers that need other server options (the gui layer, slow-job modules) define their own server fixtures.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.serverproc import ServerProcess, start_server  # noqa: E402


@pytest.fixture(scope="session")
def server() -> Iterator[ServerProcess]:
    """One local server for the whole session (default options, 2 workers)."""
    with start_server("--workers", "2") as srv:
        yield srv


@pytest.fixture
def fresh_server(server: ServerProcess) -> Iterator[ServerProcess]:
    """The session server with no jobs, uploads, faults or counters, and a full wallet."""
    server.reset()
    yield server
    server.clear_faults()
