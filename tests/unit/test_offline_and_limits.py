"""With online access off, no host but this machine is contacted — whatever host a server names for a
download, a probe or a redirect. The whole download phase has a time limit, the size-cap error names a
limit that exists, and the journal forgets finished jobs after the retention period."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from api.client import JobStatus, ModelsLabClient
from api.errors import Category
from api.journal import JobJournal
from api.params import GenerationParams
from api.records import JobRecord
from api.transport import is_loopback
from tests.helpers.clients import expect_error, make_client
from tests.helpers.paths import example_image
from tests.helpers.servers import ServerProcess, wait_until

REMOTE = "http://modelslab-test.invalid/out/x.obj"  # contacting it would fail as DNS (network), not offline


def lan_address() -> str | None:
    """This machine's outgoing non-loopback IPv4 address (no packet is sent), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if is_loopback(f"http://{address}/") or address == "0.0.0.0" else address


LAN = lan_address()


def finished(client: ModelsLabClient) -> JobStatus:
    status = client.submit(GenerationParams(init_image=client.upload_image(example_image()), resolution=32))

    def done() -> JobStatus | None:
        answer = client.fetch(status.job_id or "")
        return answer if answer.status == "success" else None

    return wait_until(done, 30, 0.05, "job")


class Counting(BaseHTTPRequestHandler):
    """Counts requests; /redirect answers 302 to the server's `location`, anything else 200 with a tiny OBJ."""

    hits: list[str]
    location: str = ""

    def _answer(self, body: bytes) -> None:
        self.hits.append(self.path)
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", self.location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer(b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")

    def do_HEAD(self) -> None:
        self._answer(b"")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def counting() -> Iterator[tuple[ThreadingHTTPServer, list[str]]]:
    hits: list[str] = []
    handler = type("Handler", (Counting,), {"hits": hits})
    server = ThreadingHTTPServer(("0.0.0.0", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, hits
    server.shutdown()
    server.server_close()


def test_loopback_means_this_machine() -> None:
    for url in ("http://127.0.0.1:8765/x", "http://127.8.9.10/x", "http://[::1]:1/x", "http://localhost./x"):
        assert is_loopback(url), url
    assert is_loopback("http://[::ffff:127.0.0.1]/x")
    for url in ("http://127.evil.example/x", "http://10.0.0.1/x", "http://localhost.example/x", "http://[::2]/x"):
        assert not is_loopback(url), url


def test_offline_download_refuses_remote_hosts_but_uses_a_loopback_mirror(
    fresh_server: ServerProcess, tmp_path: Path
) -> None:
    online = make_client(fresh_server.url)
    offline = make_client(fresh_server.url, online_access=False)
    try:
        job = finished(offline)  # the base URL is loopback: allowed
        expect_error(Category.NETWORK, lambda: online.download([REMOTE], tmp_path / "a.obj"))
        error = expect_error(Category.OFFLINE, lambda: offline.download([REMOTE], tmp_path / "a.obj"))
        assert "modelslab-test.invalid" in error.message and "online access" in error.fix.lower()
        assert offline.download([REMOTE, *job.output], tmp_path / "b.obj").is_file()
        assert offline.probe(REMOTE) is False
    finally:
        online.close()
        offline.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.obj"]


def test_offline_refuses_a_redirect_to_a_remote_host(
    counting: tuple[ThreadingHTTPServer, list[str]], tmp_path: Path
) -> None:
    server, hits = counting
    server.RequestHandlerClass.location = REMOTE  # type: ignore[attr-defined]
    local = f"http://127.0.0.1:{server.server_address[1]}"
    offline = make_client(local, online_access=False)
    online = make_client(local)
    try:
        error = expect_error(Category.OFFLINE, lambda: offline.download([f"{local}/redirect"], tmp_path / "m.obj"))
        assert "modelslab-test.invalid" in error.message
        assert offline.probe(f"{local}/redirect") is False
        expect_error(Category.NETWORK, lambda: online.download([f"{local}/redirect"], tmp_path / "m.obj"))
    finally:
        offline.close()
        online.close()
    assert hits.count("/redirect") >= 3


@pytest.mark.skipif(LAN is None, reason="this machine has no non-loopback IPv4 address")
def test_offline_never_contacts_a_lan_host(counting: tuple[ThreadingHTTPServer, list[str]], tmp_path: Path) -> None:
    server, hits = counting
    lan = f"http://{LAN}:{server.server_address[1]}"
    offline = make_client("http://127.0.0.1:1", online_access=False)
    online = make_client("http://127.0.0.1:1")
    try:
        assert offline.probe(f"{lan}/mesh.obj") is False
        expect_error(Category.OFFLINE, lambda: offline.download([f"{lan}/mesh.obj"], tmp_path / "m.obj"))
        assert hits == []
        assert online.probe(f"{lan}/mesh.obj") is True  # the same calls do reach it when allowed
        assert online.download([f"{lan}/mesh.obj"], tmp_path / "m.obj").is_file()
    finally:
        offline.close()
        online.close()
    assert len(hits) == 2


def test_the_whole_download_has_a_time_limit(closed_port: int, tmp_path: Path) -> None:
    """Dead links each cost their retries; the phase as a whole stops at its limit."""
    client = make_client(f"http://127.0.0.1:{closed_port}", backoff_base=0.5, backoff_max=8.0, max_retries=4)
    dead = [f"http://127.0.0.1:{closed_port}/out/{n}.obj" for n in range(20)]  # 20 x 7.5 s of retries unbounded
    started = time.monotonic()
    try:
        error = expect_error(Category.NETWORK, lambda: client.download(dead, tmp_path / "m.obj", time_limit=1.0))
    finally:
        client.close()
    assert time.monotonic() - started < 3.0
    assert "Gave up" in error.message and "connection refused" in error.message
    assert "without a new charge" in error.fix
    assert list(tmp_path.iterdir()) == []


def test_size_cap_error_names_a_limit_that_exists(fresh_server: ServerProcess, tmp_path: Path) -> None:
    client = make_client(fresh_server.url, max_download_bytes=1000)
    try:
        job = finished(client)
        error = expect_error(Category.BAD_MESH, lambda: client.download(job.output, tmp_path / "m.obj"))
    finally:
        client.close()
    assert "ClientConfig(max_download_bytes" in error.fix and "lower resolution" in error.fix


def test_journal_prune_forgets_only_finished_old_jobs(tmp_path: Path) -> None:
    journal = JobJournal(tmp_path)
    long_ago = time.time() - 40 * 86400

    def saved(local_id: str, state: str, when: float) -> Path:
        record = JobRecord(local_id, "duck", "/tmp/duck.png", {}, "http://127.0.0.1:1", "enterprise", state=state)
        record.created_at = record.updated_at = when
        journal.save(record)
        path = journal.path(local_id)
        os.utime(path, (when, when))
        return path

    gone = [saved(f"old{state}", state, long_ago) for state in ("imported", "failed", "cancelled")]
    kept = [saved(f"old{state}", state, long_ago) for state in ("processing", "downloaded", "timed_out")]
    kept.append(saved("recent", "imported", time.time() - 86400))
    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    os.utime(broken, (long_ago, long_ago))
    other = tmp_path / "notes.txt"
    other.write_text("x", encoding="utf-8")
    assert journal.prune(30) == 3
    assert not any(p.exists() for p in gone)
    assert all(p.exists() for p in [*kept, broken, other])
    assert journal.prune(30) == 0
    assert {r.local_id for r in journal.all()} == {"oldprocessing", "olddownloaded", "oldtimed_out", "recent"}
