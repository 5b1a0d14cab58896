"""Fixtures every layer shares: the local server as a real subprocess on a loopback port, and a closed port.

Layers that need other server options (slow jobs, expiring outputs, a key list, TLS) define their own server
fixtures with tests.helpers.servers.serve() and fresh().
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # `tests.helpers` and `server` for every layer

from tests.helpers import sockets  # noqa: E402
from tests.helpers.servers import ServerProcess, fresh, serve  # noqa: E402


@pytest.fixture(scope="session")
def server() -> Iterator[ServerProcess]:
    """One local server for the whole session (default options, 2 workers)."""
    yield from serve("--workers", "2")


@pytest.fixture
def fresh_server(server: ServerProcess) -> Iterator[ServerProcess]:
    """The session server with no jobs, uploads, faults or counters, and a full wallet."""
    yield from fresh(server)


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (connection refused)."""
    return sockets.closed_port()
