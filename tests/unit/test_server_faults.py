"""Every fault kind of the local server does what docs/ARCHITECTURE.md says, observed over real HTTP."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import unquote

import pytest
import requests

from tests.helpers.servers import ServerProcess, start_server, wait_until

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
KEY = "test-key"
SUBMIT = "/api/v1/enterprise/3d/image_to_3d"
FETCH = "/api/v1/enterprise/3d/fetch/"
WALLET = "/api/wallet_balance"


def submit(srv: ServerProcess, **extra: object) -> dict:
    url = srv.upload(EXAMPLES / "vase_plain.png")
    response = srv.post(SUBMIT, {"key": KEY, "init_image": url, "resolution": 32, **extra})
    assert response.status_code == 200, response.text
    return response.json()


def fetch(srv: ServerProcess, job_id: object) -> requests.Response:
    return srv.post(f"{FETCH}{job_id}", {"key": KEY})


def wait_done(srv: ServerProcess, job_id: object, timeout: float = 20) -> dict:
    def done() -> dict | None:
        body = fetch(srv, job_id).json()
        return body if body["status"] != "processing" else None

    return wait_until(done, timeout, 0.05, f"job {job_id} still processing")


def finished_job(srv: ServerProcess) -> dict:
    """Submit and wait for success; returns the success answer."""
    return wait_done(srv, submit(srv)["id"])


def test_http_error_json_and_html(fresh_server: ServerProcess) -> None:
    srv = fresh_server
    srv.set_faults([{"fault": "http_error", "endpoint": "wallet", "status": 503}])
    response = srv.post(WALLET, {"key": KEY})
    assert response.status_code == 503 and response.json()["status"] == "error"
    assert srv.post(WALLET, {"key": KEY}).status_code == 200  # times defaults to 1
    srv.set_faults([{"fault": "http_error", "endpoint": "any", "status": 502, "body": "html"}])
    page = srv.post("/api/v1/enterprise/3d/system_details", {"key": KEY})
    assert page.status_code == 502 and page.headers["Content-Type"].startswith("text/html")
    assert "<html>" in page.text and "502 Bad Gateway" in page.text


def test_faulted_submit_creates_no_job_and_costs_nothing(fresh_server: ServerProcess) -> None:
    srv = fresh_server
    url = srv.upload(EXAMPLES / "vase_plain.png")
    rules = [
        {"fault": "http_error", "endpoint": "submit", "status": 500},
        {"fault": "rate_limit", "endpoint": "submit", "retry_after": 7},
        {"fault": "malformed_json", "endpoint": "submit"},
        {"fault": "status_error", "endpoint": "submit"},
    ]
    for rule in rules:
        srv.set_faults([rule])
        response = srv.post(SUBMIT, {"key": KEY, "init_image": url, "resolution": 32})
        assert response.status_code in (200, 429, 500)
        if rule["fault"] == "rate_limit":
            assert response.status_code == 429 and response.headers["Retry-After"] == "7"
            assert response.json() == {"status": "error", "message": "Too many requests", "retry_after": 7}
    stats = srv.stats()
    assert stats["submits"] == 0 and stats["jobs"] == [] and stats["wallet"]["balance"] == 100.0
    assert stats["requests"]["submit"] == 4
    assert stats["faults_fired"]["total"] == 4


def test_malformed_json_and_status_error_spellings(fresh_server: ServerProcess) -> None:
    srv = fresh_server
    srv.set_faults([{"fault": "malformed_json", "endpoint": "wallet"}])
    response = srv.post(WALLET, {"key": KEY})
    assert response.status_code == 200
    with pytest.raises(ValueError):
        json.loads(response.text)
    srv.set_faults(
        [
            {"fault": "status_error", "endpoint": "wallet", "spelling": "messege", "text": "Queue full"},
            {"fault": "status_error", "endpoint": "wallet"},
        ]
    )
    legacy = srv.post(WALLET, {"key": KEY})
    assert legacy.status_code == 200 and legacy.json() == {"status": "error", "messege": "Queue full"}
    modern = srv.post(WALLET, {"key": KEY})
    assert modern.status_code == 200 and modern.json()["status"] == "error" and "message" in modern.json()


def test_job_failed(fresh_server: ServerProcess) -> None:
    srv = fresh_server
    srv.set_faults([{"fault": "job_failed", "endpoint": "submit", "text": "GPU exploded"}])
    job = submit(srv)
    failed = wait_done(srv, job["id"])
    assert failed["status"] == "failed" and failed["message"] == "GPU exploded"
    assert requests.head(job["future_links"][0], timeout=5).status_code == 404
    assert srv.stats()["submits"] == 1


def test_processing_polls_after_the_mesh_exists(fresh_server: ServerProcess) -> None:
    srv = fresh_server
    srv.set_faults([{"fault": "processing_polls", "endpoint": "submit", "polls": 3}])
    job = submit(srv)
    link = job["future_links"][0]
    wait_until(lambda: requests.head(link, timeout=5).status_code == 200, 20, 0.05, "mesh never appeared")
    answers = [fetch(srv, job["id"]).json()["status"] for _ in range(4)]
    assert answers == ["processing", "processing", "processing", "success"]


def test_processing_forever(fresh_server: ServerProcess) -> None:
    srv = fresh_server
    srv.set_faults([{"fault": "processing_forever", "endpoint": "submit"}])
    job = submit(srv)
    for _ in range(3):
        body = fetch(srv, job["id"]).json()
        assert body["status"] == "processing" and body["eta"] > 0
    assert requests.head(job["future_links"][0], timeout=5).status_code == 404
    assert srv.job(job["id"])["finished_at"] is None


def test_expired_on_fetch_and_download(fresh_server: ServerProcess) -> None:
    srv = fresh_server
    done = finished_job(srv)
    srv.set_faults([{"fault": "expired", "endpoint": "download"}, {"fault": "expired", "endpoint": "fetch"}])
    gone = requests.get(done["output"][0], timeout=5)
    assert gone.status_code == 404 and gone.json()["status"] == "error"
    assert fetch(srv, srv.stats()["jobs"][0]["id"]).status_code == 404
    assert requests.get(done["output"][0], timeout=5).status_code == 200  # each rule fired once


def test_truncate_sends_full_length_then_closes(fresh_server: ServerProcess) -> None:
    srv = fresh_server
    done = finished_job(srv)
    size = int(requests.head(done["output"][0], timeout=5).headers["Content-Length"])
    srv.set_faults([{"fault": "truncate", "bytes": 1000}])
    received = bytearray()
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        with requests.get(done["output"][0], stream=True, timeout=5) as response:
            assert int(response.headers["Content-Length"]) == size
            for chunk in response.iter_content(100):
                received.extend(chunk)
    assert len(received) == 1000 < size


def test_html_and_corrupt_meshes(fresh_server: ServerProcess) -> None:
    srv = fresh_server
    done = finished_job(srv)
    link = done["output"][0]
    srv.set_faults(
        [
            {"fault": "html_mesh", "endpoint": "download"},
            {"fault": "corrupt_mesh", "endpoint": "download", "bytes": 0},
            {"fault": "corrupt_mesh", "endpoint": "download", "bytes": 64},
        ]
    )
    html = requests.get(link, timeout=5)
    assert html.status_code == 200 and html.headers["Content-Type"].startswith("text/html") and "<html" in html.text
    empty = requests.get(link, timeout=5)
    assert empty.status_code == 200 and empty.content == b""
    garbage = requests.get(link, timeout=5)
    assert garbage.status_code == 200 and len(garbage.content) == 64 and b"\nv " not in garbage.content
    good = requests.get(link, timeout=5)
    assert b"\nv " in good.content and b"\nf " in good.content


def test_slow_download_is_throttled(fresh_server: ServerProcess) -> None:
    srv = fresh_server
    done = finished_job(srv)
    size = len(requests.get(done["output"][0], timeout=5).content)
    rate = size / 0.6  # the whole file should take ~0.6 s
    srv.set_faults([{"fault": "slow_download", "bytes_per_second": rate}])
    start = time.monotonic()
    slow = requests.get(done["output"][0], timeout=10)
    assert len(slow.content) == size
    assert time.monotonic() - start >= 0.5


def test_drop_connection_on_submit_still_creates_exactly_one_job(fresh_server: ServerProcess) -> None:
    srv = fresh_server
    url = srv.upload(EXAMPLES / "vase_plain.png")
    srv.set_faults([{"fault": "drop_connection", "endpoint": "submit"}])
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(srv.url + SUBMIT, json={"key": KEY, "init_image": url, "resolution": 32}, timeout=10)
    stats = srv.stats()
    assert stats["submits"] == 1 and len(stats["jobs"]) == 1
    assert stats["wallet"]["balance"] < 100.0  # it was charged: a blind retry would pay twice
    wait_until(lambda: srv.stats()["jobs"][0]["status"] == "success", 20, 0.05)


def test_drop_connection_on_fetch_then_recovers(fresh_server: ServerProcess) -> None:
    srv = fresh_server
    job = submit(srv)
    srv.set_faults([{"fault": "drop_connection", "endpoint": "fetch"}])
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(srv.url + FETCH + str(job["id"]), json={"key": KEY}, timeout=10)
    assert wait_done(srv, job["id"])["status"] == "success"


def test_delay_causes_read_timeouts(fresh_server: ServerProcess) -> None:
    srv = fresh_server
    srv.set_faults([{"fault": "delay", "endpoint": "wallet", "seconds": 1.0, "times": 2}])
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(srv.url + WALLET, json={"key": KEY}, timeout=(5, 0.3))
    start = time.monotonic()
    assert srv.post(WALLET, {"key": KEY}).status_code == 200
    assert time.monotonic() - start >= 1.0


def test_hostile_names_still_download(fresh_server: ServerProcess) -> None:
    srv = fresh_server
    srv.set_faults([{"fault": "hostile_names", "endpoint": "submit"}])
    job = submit(srv)
    assert any("../" in unquote(link) for link in job["future_links"])
    done = wait_done(srv, job["id"])
    assert "../" in done["meta"]["file_prefix"]
    urls = done["output"] + done["proxy_links"]
    names = [unquote(url.split("/out/", 1)[1]) for url in urls]
    assert any(name.startswith("../../etc/") for name in names)
    assert any(name.startswith("/") for name in names)
    assert any(";" in name or "$(" in name for name in names)
    bodies = [requests.get(url, timeout=5) for url in urls]
    assert all(body.status_code == 200 for body in bodies)
    assert len({body.content for body in bodies}) == 1 and b"\nf " in bodies[0].content


def test_pad_output_makes_a_big_valid_obj(fresh_server: ServerProcess) -> None:
    srv = fresh_server
    srv.set_faults([{"fault": "pad_output", "endpoint": "submit", "bytes": 5_000_000}])
    done = wait_done(srv, submit(srv)["id"])
    data = requests.get(done["output"][0], timeout=10).content
    assert 5_000_000 <= len(data) <= 5_000_100
    assert data.count(b"\nv ") > 100 and data.count(b"\nf ") > 100
    assert all(line.startswith((b"v ", b"f ", b"#")) for line in data.splitlines())


def test_head_never_consumes_download_faults(fresh_server: ServerProcess) -> None:
    srv = fresh_server
    done = finished_job(srv)
    srv.set_faults([{"fault": "http_error", "endpoint": "download", "status": 500}])
    assert requests.head(done["output"][0], timeout=5).status_code == 200
    assert requests.get(done["output"][0], timeout=5).status_code == 500
    assert requests.get(done["output"][0], timeout=5).status_code == 200


def test_times_forever_add_clear_and_counts(fresh_server: ServerProcess) -> None:
    srv = fresh_server
    srv.set_faults([{"fault": "http_error", "endpoint": "wallet", "status": 500, "times": 2}])
    codes = [srv.post(WALLET, {"key": KEY}).status_code for _ in range(3)]
    assert codes == [500, 500, 200]
    srv.add_faults([{"fault": "http_error", "endpoint": "wallet", "status": 403, "times": -1}])
    assert [srv.post(WALLET, {"key": KEY}).status_code for _ in range(3)] == [403, 403, 403]
    assert [rule["times"] for rule in srv.faults()] == [0, -1]
    stats = srv.stats()
    assert stats["faults_fired"] == {"total": 5, "by_kind": {"http_error": 5}}
    assert stats["requests"]["wallet"] == 6
    srv.clear_faults()
    assert srv.post(WALLET, {"key": KEY}).status_code == 200
    assert srv.faults() == []


@pytest.mark.parametrize(
    "rule",
    [
        {"fault": "no_such_fault"},
        {"fault": "http_error", "endpoint": "nowhere"},
        {"fault": "truncate", "endpoint": "wallet"},
        {"fault": "rate_limit", "retry-after": 3},
        {"fault": "delay", "seconds": -1},
        {"fault": "http_error", "probability": 2},
    ],
)
def test_bad_rules_are_refused(fresh_server: ServerProcess, rule: dict) -> None:
    with pytest.raises(RuntimeError, match="400"):
        fresh_server.set_faults([rule])


def test_cli_faults_and_seeded_probability() -> None:
    rule = json.dumps({"fault": "rate_limit", "endpoint": "wallet", "times": -1, "probability": 0.5})
    first_rule = json.dumps({"fault": "http_error", "endpoint": "wallet", "status": 402})
    sequences = []
    for _ in range(2):
        with start_server("--fault", first_rule, "--fault", rule, "--fault-seed", "7") as srv:
            codes = [srv.post(WALLET, {"key": KEY}).status_code for _ in range(31)]
            assert codes[0] == 402
            sequences.append(codes[1:])
    assert sequences[0] == sequences[1]
    assert 3 <= sequences[0].count(429) <= 27 and set(sequences[0]) == {200, 429}
