"""A ModelsLabClient for tests: short backoffs and timeouts, so a retried fault costs milliseconds (needs requests)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from api.client import ClientConfig, ModelsLabClient
from api.errors import ModelsLabError
from tests.helpers.keys import CLIENT_KEY

CLIENT_RETRIES = 2  # max_retries of make_client()


def make_client(url: str, *, key: str = CLIENT_KEY, **overrides: Any) -> ModelsLabClient:
    """A client of the server at url; overrides are ClientConfig fields."""
    options: dict[str, Any] = {
        "base_url": url,
        "connect_timeout": 5.0,
        "read_timeout": 20.0,
        "backoff_base": 0.01,
        "backoff_max": 0.05,
        "max_retries": CLIENT_RETRIES,
    }
    options.update(overrides)
    return ModelsLabClient(key, ClientConfig(**options))


def client_for(server: Any) -> Iterator[ModelsLabClient]:
    """Fixture body: make_client() for the server, closed after the test."""
    client = make_client(server.url)
    yield client
    client.close()


def error_texts(error: BaseException) -> list[str]:
    """Every text an error shows a user or a log: str, repr, and a ModelsLabError's message, fix and dict."""
    texts = [str(error), repr(error)]
    if isinstance(error, ModelsLabError):
        texts += [error.message, error.fix, str(error.server_message), str(error.to_dict())]
        texts.append(json.dumps(error.to_dict()))
    return texts


def assert_no_key(error: BaseException, key: str = CLIENT_KEY) -> None:
    """The API key is in none of the error's texts."""
    for text in error_texts(error):
        assert key not in text, text


def expect_error(category: Any, call: Callable[[], object]) -> ModelsLabError:
    """call() raises a ModelsLabError of that category whose texts hold no key; returns it."""
    with pytest.raises(ModelsLabError) as caught:
        call()
    error = caught.value
    assert error.category is category, f"{error.category}: {error}"
    assert_no_key(error)
    return error


def run_in_threads(work: Callable[[], None], count: int, timeout: float = 30.0) -> None:
    """Run work() on `count` threads at once (one client shared between them) and wait for them all."""
    threads = [threading.Thread(target=work) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
