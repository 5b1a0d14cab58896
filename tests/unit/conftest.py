"""Fixtures of the unit layer (the dev venv): a fast-retrying client of the fresh local server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from api.client import ModelsLabClient
from tests.helpers.clients import client_for
from tests.helpers.servers import ServerProcess


@pytest.fixture
def client(fresh_server: ServerProcess) -> Iterator[ModelsLabClient]:
    """tests.helpers.clients.make_client() for the fresh server, closed after the test."""
    yield from client_for(fresh_server)
