"""The local server speaks the ModelsLab contract over real HTTP (both flavours, uploads, wallet, keys, expiry)."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from tests.helpers.servers import ServerProcess, serve, slow_server_args, start_server, wait_until
from tests.helpers.sockets import webhook_receiver

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
KEY = "test-key"
SUBMIT = {"enterprise": "/api/v1/enterprise/3d/image_to_3d", "v6": "/api/v6/3d/image_to_3d"}
FETCH = {"enterprise": "/api/v1/enterprise/3d/fetch/", "v6": "/api/v6/3d/fetch/"}


@pytest.fixture(scope="module")
def slow_server() -> Iterator[ServerProcess]:
    """Every job takes at least 0.8 s, so the processing phase is observable."""
    yield from serve(*slow_server_args(0.8))


def fetch(srv: ServerProcess, flavor: str, job_id: object) -> requests.Response:
    return srv.post(f"{FETCH[flavor]}{job_id}", {"key": KEY})


def wait_done(srv: ServerProcess, flavor: str, job_id: object, timeout: float = 20) -> dict:
    def done() -> dict | None:
        body = fetch(srv, flavor, job_id).json()
        return body if body["status"] != "processing" else None

    return wait_until(done, timeout, 0.05, f"job {job_id} still processing")


@pytest.mark.parametrize("flavor", ["enterprise", "v6"])
def test_submit_processing_then_success_then_download(slow_server: ServerProcess, flavor: str) -> None:
    srv = slow_server
    image_url = srv.upload(EXAMPLES / "vase_plain.png")
    response = srv.post(SUBMIT[flavor], {"key": KEY, "init_image": image_url, "resolution": 48, "track_id": "t-1"})
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "processing"
    assert body["message"] == "Request processing"
    assert isinstance(body["id"], int)
    assert isinstance(body["eta"], float | int) and body["eta"] > 0
    assert body["fetch_result"] == f"{srv.url}{FETCH[flavor]}{body['id']}"
    assert body["output"] in ([], "")
    assert isinstance(body["tip"], str) and body["tip"]
    meta = body["meta"]
    assert meta["foreground_ratio"] == ".85"
    assert meta["resolution"] == 48 and meta["chunk_size"] == 8192
    assert meta["remove_bg"] is False and meta["render"] is False and meta["temp"] == "no"
    assert meta["image"] == image_url and meta["output_format"] == "obj"
    assert isinstance(meta["seed"], int) and meta["seed"] > 0  # 0 = random, echoed as the seed used
    (future,) = body["future_links"]
    assert future.startswith(srv.url + "/out/") and meta["file_prefix"] in future
    assert requests.head(future, timeout=5).status_code == 404
    processing = fetch(srv, flavor, body["id"]).json()
    assert processing["status"] == "processing" and processing["eta"] > 0

    done = wait_done(srv, flavor, body["id"])
    assert done["status"] == "success"
    assert done["id"] in (body["id"], None)  # the real service sometimes answers "id": null
    assert done["output"] == [future]
    (proxy,) = done["proxy_links"]
    assert proxy.startswith(srv.url + "/cdn/out/")
    assert done["nsfw_content_detected"] is False and done["webhook_status"] == ""
    assert done["generationTime"] >= 0.8
    assert done["meta"] == meta
    head = requests.head(future, timeout=5)
    assert head.status_code == 200
    primary = requests.get(future, timeout=10)
    mirror = requests.get(proxy, timeout=10)
    assert primary.status_code == mirror.status_code == 200
    assert int(head.headers["Content-Length"]) == len(primary.content) == int(primary.headers["Content-Length"])
    assert primary.content == mirror.content
    text = primary.content.decode()
    assert "\nv " in text and "\nf " in text

    job = srv.job(body["id"])
    assert job is not None and job["flavor"] == flavor and job["status"] == "success"
    assert job["created_at"] <= job["started_at"] <= job["finished_at"]
    assert job["finished_at"] - job["started_at"] >= 0.8
    assert srv.stats()["submits_by_track_id"]["t-1"] >= 1


def test_fetch_accepts_string_ids_and_rejects_unknown(fresh_server: ServerProcess) -> None:
    srv = fresh_server
    url = srv.upload(EXAMPLES / "vase_plain.png")
    job_id = srv.post(SUBMIT["enterprise"], {"key": KEY, "image": url, "resolution": 32}).json()["id"]
    assert wait_done(srv, "enterprise", f"{job_id}")["status"] == "success"  # `image` alias, id in the path
    missing = fetch(srv, "v6", 999999)
    assert missing.status_code == 404 and missing.json()["status"] == "error"
    bad = fetch(srv, "enterprise", "not-a-number")
    assert bad.status_code == 404 and bad.json()["status"] == "error"


def test_output_and_id_variants_alternate(fresh_server: ServerProcess) -> None:
    srv = fresh_server
    url = srv.upload(EXAMPLES / "vase_plain.png")
    bodies = [srv.post(SUBMIT["v6"], {"key": KEY, "init_image": url, "resolution": 32}).json() for _ in range(2)]
    assert sorted(type(b["output"]).__name__ for b in bodies) == ["list", "str"]
    ids = [wait_done(srv, "v6", b["id"])["id"] for b in bodies]
    assert None in ids and any(isinstance(i, int) for i in ids)


def test_upload_round_trip_and_refusals(fresh_server: ServerProcess) -> None:
    srv = fresh_server
    data = (EXAMPLES / "mushroom_rgba.png").read_bytes()
    encoded = base64.b64encode(data).decode()
    for text in (encoded, "data:image/png;base64," + encoded):
        body = srv.post("/api/v6/base64_to_url", {"key": KEY, "base64_string": text}).json()
        assert body["status"] == "success" and body["id"] is not None
        assert requests.get(body["output"][0], timeout=5).content == data
    too_big = base64.b64encode(b"\x89PNG" + bytes(5 * 1024 * 1024)).decode()
    for payload in (too_big, base64.b64encode(b"plain text, not an image").decode(), "%%%not base64%%%"):
        response = srv.post("/api/v6/base64_to_url", {"key": KEY, "base64_string": payload})
        assert response.status_code == 400 and response.json()["status"] == "error"
    assert srv.stats()["uploads"] == 2


def test_wallet_debits_and_system_details(fresh_server: ServerProcess) -> None:
    srv = fresh_server
    wallet = srv.post("/api/wallet_balance", {"key": KEY}).json()
    assert wallet == {"status": "success", "data": {"balance": 100.0, "currency": "USD"}}
    url = srv.upload(EXAMPLES / "vase_plain.png")
    srv.post(SUBMIT["enterprise"], {"key": KEY, "init_image": url, "resolution": 32})
    assert srv.post("/api/wallet_balance", {"key": KEY}).json()["data"]["balance"] < 100.0
    system = srv.post("/api/v1/enterprise/3d/system_details", {"key": KEY}).json()
    assert system["status"] == "success" and system["data"]["workers"] == 2


@pytest.mark.parametrize(
    ("change", "word"),
    [
        ({"resolution": 4096}, "resolution"),
        ({"resolution": "high"}, "resolution"),
        ({"foreground_ratio": 3}, "foreground_ratio"),
        ({"chunk_size": 50000}, "chunk_size"),
        ({"output_format": "fbx"}, "output_format"),
        ({"remove_bg": "maybe"}, "remove_bg"),
        ({"init_image": "ftp://127.0.0.1/x.png"}, "init_image"),
        ({"init_image": None}, "init_image"),
        ({"webhook": "javascript:alert(1)"}, "webhook"),
    ],
)
def test_invalid_submits_are_refused_without_a_job(fresh_server: ServerProcess, change: dict, word: str) -> None:
    srv = fresh_server
    body = {"key": KEY, "init_image": f"{srv.url}/uploads/none.png", **change}
    response = srv.post(SUBMIT["enterprise"], body)
    assert response.status_code == 400
    assert response.json()["status"] == "error" and word in response.json()["message"]
    stats = srv.stats()
    assert stats["submits"] == 0 and stats["jobs"] == []
    assert stats["wallet"]["balance"] == 100.0


def test_remote_images_are_refused_but_other_loopback_servers_work(fresh_server: ServerProcess) -> None:
    srv = fresh_server
    remote = srv.post(SUBMIT["v6"], {"key": KEY, "init_image": "https://example.com/cat.png"})
    assert remote.status_code == 400 and "image URL not reachable" in remote.json()["message"]

    image = (EXAMPLES / "vase_plain.png").read_bytes()

    class Images(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path == "/vase.png"
            self.send_response(200 if found else 404)
            self.send_header("Content-Length", str(len(image) if found else 0))
            self.end_headers()
            if found:
                self.wfile.write(image)

        def log_message(self, *args: object) -> None:
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Images) as other:
        thread = threading.Thread(target=other.serve_forever, daemon=True)
        thread.start()
        try:
            base = f"http://127.0.0.1:{other.server_address[1]}"
            missing = srv.post(SUBMIT["v6"], {"key": KEY, "init_image": base + "/nope.png"})
            assert missing.status_code == 400 and "image URL not reachable" in missing.json()["message"]
            ok = srv.post(SUBMIT["v6"], {"key": KEY, "init_image": base + "/vase.png", "resolution": 32})
            assert ok.status_code == 200 and ok.json()["status"] == "processing"
        finally:
            other.shutdown()
    assert srv.stats()["submits"] == 1


def test_unknown_paths_and_methods_answer_json_errors(fresh_server: ServerProcess) -> None:
    srv = fresh_server
    for response in (
        srv.post("/api/v6/nothing", {"key": KEY}),
        requests.get(srv.url + "/out/unknown.obj", timeout=5),
        requests.get(srv.url + "/nothing", timeout=5),
    ):
        assert response.status_code == 404
        assert response.json()["status"] == "error"
    broken = requests.post(srv.url + "/api/wallet_balance", data=b"{not json", timeout=5)
    assert broken.status_code == 400 and broken.json()["status"] == "error"


def test_stats_never_hold_the_key(fresh_server: ServerProcess) -> None:
    srv = fresh_server
    secret = "sk-very-secret-key-123456"
    url = srv.upload(EXAMPLES / "vase_plain.png", key=secret)
    srv.post(SUBMIT["enterprise"], {"key": secret, "init_image": url, "resolution": 32, "track_id": "abc"})
    stats = srv.stats()
    assert stats["submits"] == 1 and list(stats["submits_by_key"].values()) == [1]
    assert stats["submits_by_track_id"] == {"abc": 1}
    assert secret not in json.dumps(stats)
    assert secret not in srv.stdout_text() + srv.stderr_text()


def test_key_restriction() -> None:
    with start_server("--keys", "good-1,good-2") as srv:
        for body in ({"key": "wrong"}, {}, {"key": ""}):
            response = srv.post("/api/wallet_balance", body)
            assert response.status_code == 401
            assert response.json()["status"] == "error"
            assert response.json()["message"] == "Invalid API key"
        assert srv.post("/api/wallet_balance", {"key": "good-2"}).status_code == 200
        refused = srv.post(SUBMIT["v6"], {"key": "wrong", "init_image": srv.url + "/uploads/x.png"})
        assert refused.status_code == 401
        assert srv.stats()["submits"] == 0


def test_outputs_expire() -> None:
    with start_server("--expire-seconds", "1") as srv:
        url = srv.upload(EXAMPLES / "vase_plain.png")
        job_id = srv.post(SUBMIT["v6"], {"key": KEY, "init_image": url, "resolution": 32}).json()["id"]
        done = wait_done(srv, "v6", job_id)
        assert requests.get(done["output"][0], timeout=5).status_code == 200
        wait_until(lambda: fetch(srv, "v6", job_id).status_code == 404, 5, 0.1, "fetch should expire")
        gone = requests.get(done["output"][0], timeout=5)
        assert gone.status_code == 404 and gone.json()["status"] == "error"
        assert requests.get(done["proxy_links"][0], timeout=5).status_code == 404
        assert requests.get(url, timeout=5).status_code == 404  # uploads expire too


def test_webhook_receives_the_result(fresh_server: ServerProcess) -> None:
    srv = fresh_server
    with webhook_receiver() as (webhook, received):
        url = srv.upload(EXAMPLES / "vase_plain.png")
        body = {"key": KEY, "init_image": url, "resolution": 32, "webhook": webhook, "track_id": "w-7"}
        job_id = srv.post(SUBMIT["enterprise"], body).json()["id"]
        wait_until(lambda: received, 20, 0.05, "webhook not called")
    assert received[0]["status"] == "success" and received[0]["track_id"] == "w-7"
    assert received[0]["output"][0].endswith(".obj")
    job = srv.job(job_id)
    assert job is not None
    wait_until(lambda: (srv.job(job_id) or {}).get("webhook_status", "").startswith("sent"), 5)


def test_eta_counts_the_queue(slow_server: ServerProcess) -> None:
    srv = slow_server
    srv.reset()
    url = srv.upload(EXAMPLES / "vase_plain.png")
    etas = [srv.post(SUBMIT["v6"], {"key": KEY, "init_image": url, "resolution": 32}).json()["eta"] for _ in range(3)]
    assert 0.5 <= etas[0] <= 1.2 and 0.5 <= etas[1] <= 1.2  # two workers: both start at once
    assert etas[2] >= etas[0] + 0.5  # the third waits for a free worker
    stats = srv.stats()
    assert stats["submits"] == 3 and stats["queue_depth"] + stats["running"] >= 2
