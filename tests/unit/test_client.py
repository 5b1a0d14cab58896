"""ModelsLabClient against the real local server (and a tiny recording server for what the real one cannot show):
full jobs in both flavours, every response variant, transport settings, and where the key goes."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from api import __version__
from api.client import ClientConfig, JobStatus, ModelsLabClient, parse_response
from api.errors import Category, ModelsLabError
from api.params import GenerationParams
from tests.helpers.clients import assert_no_key, expect_error, make_client, run_in_threads
from tests.helpers.keys import CLIENT_KEY
from tests.helpers.paths import example_image
from tests.helpers.servers import ServerProcess, start_server, wait_until

EXAMPLE = example_image("vase_plain.png")


def raises(category: Category, call: Callable[[], object]) -> ModelsLabError:
    error = expect_error(category, call)
    assert type(error) is ModelsLabError
    return error


def wait_success(c: ModelsLabClient, job_id: str, timeout: float = 30) -> JobStatus:
    def done() -> JobStatus | None:
        status = c.fetch(job_id)
        return status if status.status == "success" else None

    return wait_until(done, timeout, 0.05, f"job {job_id}")


def run_job(c: ModelsLabClient, **params: Any) -> JobStatus:
    url = c.upload_image(EXAMPLE)
    submitted = c.submit(GenerationParams(init_image=url, resolution=32, **params))
    assert submitted.status == "processing" and submitted.job_id
    return wait_success(c, submitted.job_id)


# --- full jobs ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("flavor", "server_flavor"), [("enterprise", "enterprise"), ("standard", "v6")])
def test_full_job_in_both_flavours(
    fresh_server: ServerProcess, tmp_path: Path, flavor: str, server_flavor: str
) -> None:
    c = make_client(fresh_server.url, flavor=flavor)
    try:
        done = run_job(c)
        seen: list[tuple[int, int | None]] = []
        target = c.download(
            [*done.output, *done.proxy_links], tmp_path / "mesh.obj", progress=lambda n, t: seen.append((n, t))
        )
    finally:
        c.close()
    data = target.read_bytes()
    assert data.startswith(b"v ") or b"\nv " in data
    assert b"\nf " in data
    assert seen and seen[-1] == (len(data), len(data))
    assert [p.name for p in tmp_path.iterdir()] == ["mesh.obj"]
    stats = fresh_server.stats()
    assert stats["submits"] == 1 and [job["flavor"] for job in stats["jobs"]] == [server_flavor]
    assert stats["requests"]["download"] == 1


@pytest.mark.parametrize("fmt", ["glb", "ply", "stl"])
def test_other_formats_download_and_verify(client: ModelsLabClient, tmp_path: Path, fmt: str) -> None:
    done = run_job(client, output_format=fmt)
    target = client.download(done.output, tmp_path / f"mesh.{fmt}", expected_format=fmt)
    assert target.stat().st_size > 100
    if fmt != "obj":  # asking for the wrong format is caught by the format check
        raises(Category.BAD_MESH, lambda: client.download(done.output, tmp_path / "wrong.obj", expected_format="obj"))
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"mesh.{fmt}"]


def test_processing_and_success_variants(fresh_server: ServerProcess, client: ModelsLabClient) -> None:
    url = client.upload_image(EXAMPLE)
    odd_even = [client.submit(GenerationParams(init_image=url, resolution=32)) for _ in range(2)]
    for status in odd_even:
        assert status.status == "processing"
        assert status.output == []  # "" for odd ids, [] for even ones
        assert status.job_id is not None and status.job_id.isdigit()
        assert status.eta is not None and status.eta >= 0
        assert len(status.future_links) == 1 and status.meta["foreground_ratio"] == ".85"
        assert isinstance(status.raw, dict)
    assert {type(s.raw["output"]) for s in odd_even} == {str, list}
    finished = [wait_success(client, s.job_id or "") for s in odd_even]
    for status in finished:
        assert len(status.output) == 1 and len(status.proxy_links) == 1
    assert {s.raw["id"] is None for s in finished} == {True, False}  # id null for odd ids on success
    assert fresh_server.stats()["submits"] == 2


def test_wallet_and_system(fresh_server: ServerProcess, client: ModelsLabClient) -> None:
    assert client.wallet_balance() == {"balance": 100.0, "currency": "USD"}
    run_job(client)
    assert client.wallet_balance()["balance"] == pytest.approx(99.8)
    details = client.system_details()
    assert details["max_resolution"] == 512 and "obj" in details["output_formats"]


def test_threads_share_a_client(fresh_server: ServerProcess, client: ModelsLabClient) -> None:
    results: list[dict] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                results.append(client.wallet_balance())
        except BaseException as exc:  # reported below
            errors.append(exc)

    run_in_threads(work, 4)
    assert not errors and len(results) == 20
    assert len(client._sessions) == 4  # one requests.Session per thread
    client.close()
    assert client.wallet_balance()["currency"] == "USD"  # usable again after close()


# --- refused before any request ------------------------------------------------------------------------------------
def test_empty_key_is_auth_before_any_request(fresh_server: ServerProcess, tmp_path: Path) -> None:
    for key in ("", "   "):
        c = ModelsLabClient(key, ClientConfig(base_url=fresh_server.url))
        params = GenerationParams(init_image=fresh_server.url + "/uploads/x.png")
        calls: list[Callable[[], object]] = [
            lambda c=c, params=params: c.submit(params),
            lambda c=c: c.fetch("1000"),
            lambda c=c: c.upload_image(EXAMPLE),
            c.wallet_balance,
            c.system_details,
        ]
        for call in calls:
            error = raises(Category.AUTH, call)
            assert "API key" in error.message + error.fix
    assert sum(fresh_server.stats()["requests"].values()) == 0


def test_invalid_params_and_ids_send_nothing(fresh_server: ServerProcess, client: ModelsLabClient) -> None:
    raises(Category.INVALID_INPUT, lambda: client.submit(GenerationParams(init_image="", resolution=32)))
    raises(Category.INVALID_INPUT, lambda: client.submit(GenerationParams(init_image="ftp://x/y.png")))
    raises(Category.INVALID_INPUT, lambda: client.submit(GenerationParams(init_image="http://h/i.png", resolution=9)))
    for bad_id in ("", "../../__admin/reset", "1/2", "a b", "x" * 65, ".."):
        raises(Category.INVALID_INPUT, lambda bad_id=bad_id: client.fetch(bad_id))
    raises(Category.INVALID_INPUT, lambda: client.download([], Path("/tmp/x.obj"), expected_format="fbx"))
    assert sum(fresh_server.stats()["requests"].values()) == 0


def test_bad_base_url_and_flavour(fresh_server: ServerProcess) -> None:
    for base in ("modelslab.com", "ftp://modelslab.com", ""):
        raises(Category.INVALID_INPUT, make_client(base).wallet_balance)
    raises(Category.INVALID_INPUT, lambda: make_client(fresh_server.url, flavor="gold").fetch("1"))


def test_standard_flavour_ids_and_unknown_ids(fresh_server: ServerProcess) -> None:
    standard = make_client(fresh_server.url + "/", flavor="standard")  # a trailing slash is fine
    job = standard.submit(GenerationParams(init_image=standard.upload_image(EXAMPLE), resolution=32))
    assert job.raw["fetch_result"].endswith(f"/api/v6/3d/fetch/{job.job_id}")
    assert wait_success(standard, job.job_id or "").status == "success"
    raises(Category.EXPIRED, lambda: standard.fetch("999999"))  # unknown id: 404


def test_a_base_url_without_the_api_is_a_setup_error_not_expired(fresh_server: ServerProcess) -> None:
    """A 404 from submit/upload/wallet means the URL is wrong; only fetch's 404 means an expired job."""
    wrong = make_client(fresh_server.url + "/not-the-api")
    for call in (
        wrong.wallet_balance,
        wrong.system_details,
        lambda: wrong.submit(GenerationParams(init_image=fresh_server.url + "/uploads/x.png")),
        lambda: wrong.upload_image(EXAMPLE),
    ):
        error = raises(Category.SERVER, call)
        assert "flavour" in error.fix and "404" in error.message
    assert fresh_server.stats()["submits"] == 0
    raises(Category.EXPIRED, lambda: wrong.fetch("1000"))


def test_wrong_key_is_auth(tmp_path: Path) -> None:
    with start_server("--workers", "1", "--keys", "the-right-key") as srv:
        error = raises(Category.AUTH, make_client(srv.url).wallet_balance)
        assert error.http_status == 401 and "Invalid API key" in error.message
        assert srv.stats()["requests"]["wallet"] == 1  # auth errors are not retried


# --- parse_response: every variant of the contract -----------------------------------------------------------------
def parse_error(status: int, body: bytes | str, content_type: str = "application/json", **kw: Any) -> ModelsLabError:
    data = body.encode() if isinstance(body, str) else body
    with pytest.raises(ModelsLabError) as caught:
        parse_response(status, data, content_type, **kw)
    return caught.value


def test_parse_success_shapes() -> None:
    body = {"status": "success", "id": None, "output": ["https://x/o.obj"], "meta": {"foreground_ratio": ".85"}}
    assert parse_response(200, json.dumps(body).encode(), "application/json") == body
    status = JobStatus.from_payload({**body, "generationTime": "10.97", "proxy_links": "https://cdn/o.obj"})
    assert status.job_id is None and status.generation_time == pytest.approx(10.97)
    assert status.proxy_links == ["https://cdn/o.obj"]
    for raw_id, expected in ((81234, "81234"), ("81234", "81234"), ("", None)):
        processing = JobStatus.from_payload({"status": "processing", "id": raw_id, "output": "", "eta": "12.3"})
        assert processing.job_id == expected and processing.output == [] and processing.eta == pytest.approx(12.3)
    assert JobStatus.from_payload({"status": "queued", "eta": None}).status == "processing"
    with pytest.raises(ModelsLabError):
        JobStatus.from_payload({"status": "weird"})


@pytest.mark.parametrize(
    ("status", "payload", "category"),
    [
        (200, {"status": "error", "message": "Invalid API key"}, Category.AUTH),
        (200, {"status": "error", "messege": "Invalid Api Key provided"}, Category.AUTH),
        (400, {"status": "error", "message": "Invalid API key"}, Category.AUTH),
        (401, {"status": "error", "message": "nope"}, Category.AUTH),
        (403, {"status": "error", "message": "Forbidden"}, Category.AUTH),
        (402, {"status": "error", "message": "pay"}, Category.CREDITS),
        (200, {"status": "error", "message": "Insufficient balance"}, Category.CREDITS),
        (429, {"status": "error", "message": "Too many requests", "retry_after": 30}, Category.RATE_LIMITED),
        (404, {"status": "error", "message": "Request not found"}, Category.EXPIRED),
        (200, {"status": "error", "message": "Request expired"}, Category.EXPIRED),
        (400, {"status": "error", "message": "resolution must be at most 512"}, Category.INVALID_INPUT),
        (422, {"status": "error", "message": {"init_image": ["The init image field is required."]}}, "invalid_input"),
        (200, {"status": "error", "message": "The init image field is required."}, Category.INVALID_INPUT),
        (500, {"status": "error", "message": "Internal server error"}, Category.SERVER),
        (503, {"status": "error", "messege": "busy"}, Category.SERVER),
        (200, {"status": "error", "message": "Server is busy, please try again later"}, Category.SERVER),
        (200, {"status": "error"}, Category.SERVER),
        (200, {"status": "failed", "message": "Generation failed"}, Category.SERVER),
    ],
)
def test_parse_error_variants(status: int, payload: dict, category: str) -> None:
    error = parse_error(status, json.dumps(payload))
    assert error.category == category
    text = payload.get("message") or payload.get("messege")
    if isinstance(text, str):
        assert text in error.message and error.server_message == text
    if status >= 400:
        assert error.http_status == status


def test_parse_retry_after_from_body_or_header() -> None:
    assert parse_error(429, '{"status":"error","retry_after":30}').retry_after == 30
    assert parse_error(429, '{"status":"error"}', retry_after_header="7").retry_after == 7
    assert parse_error(429, "<html>slow down</html>", "text/html", retry_after_header="2").retry_after == 2
    assert parse_error(429, '{"status":"error"}').retry_after is None


@pytest.mark.parametrize(
    ("status", "body", "content_type", "category"),
    [
        (200, '{"status": "processing", "eta": 1', "application/json", Category.SERVER),
        (200, "", "application/json", Category.SERVER),
        (200, "[1, 2]", "application/json", Category.SERVER),
        (200, "<html><body>captive portal</body></html>", "text/html", Category.SERVER),
        (502, "<html><head><title>502 Bad Gateway</title></head></html>", "text/html", Category.SERVER),
        (503, "Service Unavailable", "text/plain", Category.SERVER),
        (401, "<html>401</html>", "text/html", Category.AUTH),
        (404, "<html>404</html>", "text/html", Category.EXPIRED),
        (302, '{"status": "success"}', "application/json", Category.SERVER),
        (200, b"\xff\xfe\x00garbage", "application/json", Category.SERVER),
    ],
)
def test_parse_non_json_and_html(status: int, body: str | bytes, content_type: str, category: Category) -> None:
    error = parse_error(status, body, content_type)
    assert error.category is category
    assert "Traceback" not in error.message


def test_parse_never_echoes_request_body() -> None:
    # The server's message may quote things back; a registered key is redacted from it.
    ModelsLabClient(CLIENT_KEY)  # registers the key as a secret
    error = parse_error(400, json.dumps({"status": "error", "message": f"bad key {CLIENT_KEY} in body"}))
    assert_no_key(error)
    assert "***" in error.message


# --- transport: headers, body, redirects, proxies, via a recording server ------------------------------------------
class Recorder(ThreadingHTTPServer):
    """Records every request and answers with `answer(handler) -> (status, headers, body)`."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RecordingHandler)
        self.requests: list[dict[str, Any]] = []
        self.answer: Callable[[BaseHTTPRequestHandler], tuple[int, dict[str, str], bytes]] = lambda h: (
            200,
            {"Content-Type": "application/json"},
            b'{"status": "success", "data": {"balance": 5, "currency": "EUR"}}',
        )
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self.thread.join(5)


class _RecordingHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Recorder

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def handle_any(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.requests.append(
            {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
        )
        status, headers, data = self.server.answer(self)
        if not isinstance(data, bytes):  # an iterator of pieces: no length, the body ends when the connection closes
            self.protocol_version = "HTTP/1.0"
            self.close_connection = True
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if isinstance(data, bytes) and "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if isinstance(data, bytes):
            self.wfile.write(data)
        else:
            try:
                for piece in data:
                    self.wfile.write(piece)
            except OSError:
                pass  # the client hung up (e.g. its size cap tripped)

    do_GET = do_POST = handle_any


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    yield server
    server.stop()


def test_headers_and_the_key_only_in_the_json_body(recorder: Recorder) -> None:
    c = make_client(recorder.url)
    assert c.wallet_balance() == {"balance": 5.0, "currency": "EUR"}
    c.fetch("42")
    seen = recorder.requests
    assert [r["path"] for r in seen] == ["/api/wallet_balance", "/api/v1/enterprise/3d/fetch/42"]
    for request in seen:
        assert request["method"] == "POST"
        assert request["headers"]["User-Agent"] == f"modelslab-blender/{__version__}"
        assert request["headers"]["Content-Type"] == "application/json"
        assert json.loads(request["body"])["key"] == CLIENT_KEY
        assert CLIENT_KEY not in request["path"] and CLIENT_KEY not in json.dumps(request["headers"])
    assert json.loads(seen[1]["body"]) == {"key": CLIENT_KEY}


def test_fetch_never_follows_the_servers_fetch_result(recorder: Recorder) -> None:
    elsewhere = Recorder()
    try:
        recorder.answer = lambda h: (
            200,
            {"Content-Type": "application/json"},
            json.dumps(
                {"status": "processing", "id": 7, "output": "", "fetch_result": elsewhere.url + "/steal/7"}
            ).encode(),
        )
        c = make_client(recorder.url, flavor="standard")
        job = c.submit(GenerationParams(init_image="https://example.com/a.png"))
        assert c.fetch(job.job_id or "").job_id == "7"
        assert [r["path"] for r in recorder.requests] == ["/api/v6/3d/image_to_3d", "/api/v6/3d/fetch/7"]
        assert elsewhere.requests == []
    finally:
        elsewhere.stop()


def test_redirects_are_not_followed_with_the_key(recorder: Recorder) -> None:
    other = Recorder()
    try:
        recorder.answer = lambda h: (307, {"Location": other.url + "/api/wallet_balance"}, b"")
        error = raises(Category.SERVER, make_client(recorder.url).wallet_balance)
        assert "redirect" in error.message and "base URL" in error.fix
        assert other.requests == []  # the key never went to the other host
    finally:
        other.stop()


def test_explicit_proxy_is_used_and_beats_the_environment(
    recorder: Recorder, monkeypatch: pytest.MonkeyPatch, closed_port: int
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port}")
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{closed_port}")
    c = make_client("http://api.example.invalid", proxy=recorder.url)
    assert c.wallet_balance()["currency"] == "EUR"
    assert recorder.requests[0]["path"] == "http://api.example.invalid/api/wallet_balance"  # absolute: a proxy request
    # Without an explicit proxy the environment's proxy is used (here: unreachable -> network error).
    raises(Category.NETWORK, make_client("http://api.example.invalid").wallet_balance)


def test_loopback_never_goes_through_a_proxy(
    fresh_server: ServerProcess, monkeypatch: pytest.MonkeyPatch, closed_port: int
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port}")
    c = make_client(fresh_server.url, proxy=f"http://127.0.0.1:{closed_port}")
    assert c.wallet_balance()["currency"] == "USD"


def test_download_size_cap_without_content_length(recorder: Recorder, tmp_path: Path) -> None:
    pieces = [b"v 0 0 0\n" * 1000] * 50  # 400 kB, no Content-Length: the cap must trip while streaming
    recorder.answer = lambda h: (200, {"Content-Type": "model/obj"}, iter(pieces))
    c = make_client(recorder.url, max_download_bytes=100_000)
    error = raises(Category.BAD_MESH, lambda: c.download([recorder.url + "/out/a.obj"], tmp_path / "a.obj"))
    assert "limit" in error.message
    assert list(tmp_path.iterdir()) == []


def test_download_follows_cdn_redirects(recorder: Recorder, tmp_path: Path) -> None:
    mesh = b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"

    def answer(handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        if handler.path == "/out/a.obj":
            return 302, {"Location": "/cdn/a.obj"}, b""
        return 200, {"Content-Type": "model/obj"}, mesh

    recorder.answer = answer
    target = make_client(recorder.url).download([recorder.url + "/out/a.obj"], tmp_path / "a.obj")
    assert target.read_bytes() == mesh


def test_probe_future_links(fresh_server: ServerProcess, client: ModelsLabClient, recorder: Recorder) -> None:
    fresh_server.set_faults([{"fault": "processing_forever", "endpoint": "submit"}])
    never = client.submit(GenerationParams(init_image=client.upload_image(EXAMPLE), resolution=32))
    assert client.probe(never.future_links[0]) is False  # 404: not there (and never will be)
    done = run_job(client)
    assert client.probe(done.output[0]) is True and client.probe(done.proxy_links[0]) is True
    assert fresh_server.stats()["requests"].get("download", 0) == 0  # HEAD only, no body fetched
    assert client.probe("http://127.0.0.1:1/out/x.obj") is False
    assert client.probe("not a url") is False
    assert client.probe(recorder.url + "/out/x.obj") is None  # this server does not do HEAD (501)


def test_a_get_probe_hands_its_open_answer_to_the_download(
    fresh_server: ServerProcess, client: ModelsLabClient, tmp_path: Path
) -> None:
    fresh_server.set_faults(
        [
            {"fault": "processing_forever", "endpoint": "submit"},
            {"fault": "http_error", "endpoint": "download", "status": 500},  # for the real download only
        ]
    )
    never = client.submit(GenerationParams(init_image=client.upload_image(EXAMPLE), resolution=32))
    assert client.open_if_ready(never.future_links[0]) is None  # 404 while processing: no fault consumed
    requests_seen = fresh_server.stats()["requests"]
    assert requests_seen.get("download_wait") == 1 and requests_seen.get("download", 0) == 0
    assert "http_error" not in fresh_server.stats()["faults_fired"]["by_kind"]
    fresh_server.clear_faults()
    done = run_job(client)
    answer = client.open_if_ready(done.output[0])
    assert answer is not None and answer.status_code == 200
    target = client.download([done.output[0], *done.proxy_links], tmp_path / "m.obj", opened=answer)
    assert target.stat().st_size > 0
    assert fresh_server.stats()["requests"]["download"] == 1  # the probe's answer was the download
    unused = client.open_if_ready(done.output[0])
    assert unused is not None
    client.download([done.output[0]], tmp_path / "m.obj", opened=unused)  # the file is there: nothing to fetch
    assert unused.raw.closed  # ...and the held answer was closed, not leaked
    fresh_server.set_faults([{"fault": "rate_limit", "endpoint": "download", "times": 1, "retry_after": 7}])
    later = client.open_if_ready(done.output[0])  # "come back later" is for download() to honour, not to drop
    assert later is not None and later.status_code == 429
    later.close()
    assert client.open_if_ready("http://127.0.0.1:1/out/x.obj") is None
    assert client.open_if_ready("not a url") is None
