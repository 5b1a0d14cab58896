"""Key hygiene at the api level: after successes, failures and a server that echoes the key back, the key is in no
file the runner wrote (journal, cache), no event, no error text, no log record (ours or urllib3's), and never in a
URL the server saw. (Headers and JSON bodies on the wire: tests/unit/test_client.py's recording server.)
"""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.paths import EXAMPLE_IMAGE
from tests.helpers.reliability import (
    API_KEY,
    Workspace,
    assert_no_key,
    assert_no_temp_files,
    event_texts,
    no_new_threads,
)
from tests.helpers.servers import ServerProcess, start_server

ECHOING_FAULTS = [
    {"fault": "status_error", "endpoint": "submit", "text": f"Invalid key {API_KEY}"},
    {"fault": "job_failed", "endpoint": "submit", "text": f"failed for key={API_KEY}"},
    {"fault": "http_error", "endpoint": "upload", "status": 401, "message": f'{{"key": "{API_KEY}"}} rejected'},
    {"fault": "http_error", "endpoint": "download", "status": 403, "message": f"no access for {API_KEY}", "times": -1},
]


@pytest.fixture(scope="module")
def logging_server() -> Iterator[ServerProcess]:
    """A server that logs every request line (method, path, query) on stderr."""
    with start_server("--workers", "2", "--log-requests") as srv:
        yield srv


def test_nothing_written_said_or_logged_holds_the_key(
    logging_server: ServerProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    logging_server.reset()
    ws = Workspace(tmp_path / "user dir")
    records = []
    caplog.set_level(logging.DEBUG)  # every logger, urllib3's connection lines included
    with no_new_threads():
        ws.open(logging_server.url)
        records.append(ws.run(EXAMPLE_IMAGE))  # a success
        for rule in ECHOING_FAULTS:  # failures whose server text carries the key
            logging_server.set_faults([rule])
            records.append(ws.run(EXAMPLE_IMAGE))
        logging_server.clear_faults()
        ws.close()
    assert [r.state for r in records] == ["downloaded"] + ["failed"] * len(ECHOING_FAULTS), [
        (r.state, r.message) for r in records
    ]
    assert logging_server.stats()["faults_fired"]["total"] >= len(ECHOING_FAULTS)
    # The server really echoed the key: the texts kept their words, with the key masked.
    assert any("***" in (r.error or {}).get("message", "") for r in records[1:]), [r.error for r in records]

    files = ws.files()
    assert {p.suffix for p in files} >= {".json", ".obj"}
    texts = event_texts(ws)
    for record in records:
        texts.append(json.dumps(record.to_dict()))
        if record.error:
            texts.extend(record.error.values())
    texts.extend(caplog.messages)
    texts.extend(record.getMessage() for record in caplog.records)
    texts.append(repr(ws.runner) if ws.runner else "")
    assert_no_key(texts, files)
    assert_no_temp_files(ws.journal_dir, ws.cache_dir)
    # The server logged every request line: the key never travelled in a URL.
    log_text = logging_server.stderr_text()
    assert "POST /api/v1/enterprise/3d/image_to_3d" in log_text, "the server did not log requests"
    assert API_KEY not in log_text


def test_errors_and_clients_do_not_carry_the_key(fresh_server: ServerProcess) -> None:
    from api.client import ClientConfig, ModelsLabClient
    from api.errors import ModelsLabError

    client = ModelsLabClient(API_KEY, ClientConfig(base_url=fresh_server.url, max_retries=0))
    try:
        assert API_KEY not in repr(client) and API_KEY not in repr(client.config)
        fresh_server.set_faults([{"fault": "status_error", "endpoint": "wallet", "text": f"key {API_KEY} blocked"}])
        with pytest.raises(ModelsLabError) as caught:
            client.wallet_balance()
    finally:
        client.close()
    error = caught.value
    copied = pickle.loads(pickle.dumps(error))
    texts = [str(error), repr(error), error.message, error.fix, error.server_message or "", str(copied)]
    texts.append(json.dumps(error.to_dict()))
    texts.append(str(error.args))
    assert_no_key(texts)
    assert "blocked" in error.message or "blocked" in (error.server_message or "")  # the rest of the text survives
