"""The local server as an offline backend on a shared network, and as a hostile server for the client's tests.

Bound to 0.0.0.0, it must keep each key's jobs to that key, never fetch its own machine's loopback services for
someone else nor tell open from closed ports, and accept back the links it hands out. Its hostile-mesh faults
must really serve files that point outside themselves, and the counters and held jobs that multi-process tests
rely on must be there. A "remote" client here connects from 127.0.0.2, which the server is told to treat as
another machine.
"""

from __future__ import annotations

import base64
import json
import struct
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from server.process import ServerProcess, start_server, wait_until
from tests.helpers.sockets import closed_port, webhook_receiver

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
IMAGE = EXAMPLES / "vase_plain.png"
KEY_A = "key-a-4f1c9e"
KEY_B = "key-b-7d20aa"
SUBMIT = "/api/v1/enterprise/3d/image_to_3d"
FETCH = "/api/v1/enterprise/3d/fetch/"


# Every byte stays on loopback: the server treats clients connecting from this address as on another machine.
LAN = "127.0.0.2"


class SourceAddressAdapter(requests.adapters.HTTPAdapter):
    """Connects from a chosen local address (the "remote" client's)."""

    def __init__(self, source: str) -> None:
        self.source = source
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.source, 0)
        super().init_poolmanager(*args, **kwargs)


class Client:
    """Talks to a server at one address (loopback or the LAN one) with one key."""

    def __init__(self, server: ServerProcess, host: str, key: str):
        self.base = f"http://{host}:{server.port}"
        self.key = key
        self.session = requests.Session()
        self.session.trust_env = False
        if host == LAN:
            self.session.mount("http://", SourceAddressAdapter(LAN))

    def post(self, path: str, **body: Any) -> requests.Response:
        return self.session.post(self.base + path, json={"key": self.key, **body}, timeout=30)

    def upload(self, image: Path = IMAGE) -> str:
        response = self.post("/api/v6/base64_to_url", base64_string=base64.b64encode(image.read_bytes()).decode())
        assert response.status_code == 200, response.text
        return str(response.json()["output"][0])

    def submit(self, **extra: Any) -> requests.Response:
        return self.post(SUBMIT, **{"init_image": self.upload(), "resolution": 32, **extra})

    def fetch(self, job_id: object) -> requests.Response:
        return self.post(f"{FETCH}{job_id}")

    def wait_done(self, job_id: object, timeout: float = 30) -> dict:
        def done() -> dict | None:
            body = self.fetch(job_id).json()
            return body if body["status"] != "processing" else None

        return wait_until(done, timeout, 0.05, f"job {job_id} still processing")


class ImageServer:
    """A loopback HTTP service standing for whatever else runs on the server's machine; counts its requests."""

    def __init__(self, host: str = "127.0.0.1"):
        image = IMAGE.read_bytes()
        self.paths: list[str] = []
        paths = self.paths

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                paths.append(self.path)
                body = image if self.path == "/vase.png" else b"<html>internal dashboard</html>"
                self.send_response(200 if self.path in ("/vase.png", "/page") else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def open_server() -> Iterator[ServerProcess]:
    """Bound to every interface with two keys: the offline backend the README offers to a studio network."""
    with start_server(
        "--host", "0.0.0.0", "--keys", f"{KEY_A},{KEY_B}", "--workers", "2", "--remote-peers", LAN
    ) as srv:
        yield srv


@pytest.fixture
def images() -> Iterator[ImageServer]:
    service = ImageServer("0.0.0.0")
    yield service
    service.close()


@pytest.fixture(scope="module")
def lab() -> Iterator[ServerProcess]:
    """A loopback server for the fault and counter tests."""
    with start_server("--workers", "2") as srv:
        yield srv


@pytest.fixture
def fresh_lab(lab: ServerProcess) -> Iterator[ServerProcess]:
    lab.reset()
    yield lab
    lab.clear_faults()


# --- bound beyond loopback -----------------------------------------------------------------------------------------
def test_binding_beyond_loopback_warns(open_server: ServerProcess, lab: ServerProcess) -> None:
    warning = open_server.stderr_text()
    assert "warning" in warning and "0.0.0.0" in warning and "README" in warning
    assert "warning" not in lab.stderr_text()


def test_a_key_reads_only_its_own_jobs(open_server: ServerProcess) -> None:
    a = Client(open_server, "127.0.0.1", KEY_A)
    b = Client(open_server, "127.0.0.1", KEY_B)
    first, second = (a.submit().json()["id"] for _ in range(2))
    stolen = b.fetch(first)
    unknown = b.fetch(123)
    assert stolen.status_code == unknown.status_code == 404
    assert stolen.json() == unknown.json()  # another key's job is indistinguishable from no job
    assert 100_000_000 <= first <= 999_999_999 and abs(first - second) != 1  # not a counter another key can walk
    done = a.wait_done(first)
    assert done["status"] == "success"
    # Names derived from the id (the hostile_names fault's) serve nothing for a job that never handed them out.
    guessed = requests.get(f"{a.base}/out/..%2F..%2Fetc%2Fx{first}.obj", timeout=10)
    assert guessed.status_code == 404
    assert b.fetch(first).status_code == 404 and a.fetch(first).status_code == 200


def test_links_built_from_the_host_header_are_accepted_back(open_server: ServerProcess) -> None:
    remote = Client(open_server, str(LAN), KEY_A)
    upload = remote.upload()
    assert upload.startswith(f"http://{LAN}:{open_server.port}/uploads/")
    response = remote.post(SUBMIT, init_image=upload, resolution=32)
    assert response.status_code == 200, response.text
    done = remote.wait_done(response.json()["id"])
    assert done["output"][0].startswith(remote.base + "/out/")
    assert requests.get(done["output"][0], timeout=10).status_code == 200


def test_a_remote_client_cannot_make_it_fetch_loopback_services(
    open_server: ServerProcess, images: ImageServer
) -> None:
    remote = Client(open_server, str(LAN), KEY_A)
    local = Client(open_server, "127.0.0.1", KEY_A)
    before = open_server.stats()["submits"]
    for url in (
        f"http://127.0.0.1:{images.port}/vase.png",
        f"http://localhost:{images.port}/vase.png",
        f"http://0.0.0.0:{images.port}/vase.png",
        f"http://127.1:{images.port}/vase.png",
        f"http://[::ffff:127.0.0.1]:{images.port}/vase.png",
        f"http://{LAN}:{images.port}/vase.png",
    ):
        refused = remote.post(SUBMIT, init_image=url, resolution=32)
        assert refused.status_code == 400, url
        assert "image URL not reachable" in refused.json()["message"]
    assert images.paths == []
    assert open_server.stats()["submits"] == before
    # The same URL from a client on the machine itself (which could fetch it anyway) still works.
    allowed = local.post(SUBMIT, init_image=f"http://127.0.0.1:{images.port}/vase.png", resolution=32)
    assert allowed.status_code == 200 and images.paths == ["/vase.png"]


def test_image_errors_do_not_tell_open_from_closed_ports(open_server: ServerProcess, images: ImageServer) -> None:
    local = Client(open_server, "127.0.0.1", KEY_A)
    answers = {
        name: local.post(SUBMIT, init_image=url, resolution=32)
        for name, url in {
            "closed port": f"http://127.0.0.1:{closed_port()}/vase.png",
            "open port, 404": f"http://127.0.0.1:{images.port}/missing.png",
            "open port, not an image": f"http://127.0.0.1:{images.port}/page",
            "this server, not an upload": f"http://127.0.0.1:{open_server.port}/api/wallet_balance",
            "unknown upload": f"http://127.0.0.1:{open_server.port}/uploads/{'0' * 32}.png",
        }.items()
    }
    bodies = {name: (response.status_code, response.json()) for name, response in answers.items()}
    assert len({json.dumps(body) for body in bodies.values()}) == 1, bodies
    assert next(iter(bodies.values()))[0] == 400


def test_webhooks_carry_the_clients_address_and_only_local_clients_reach_loopback(open_server: ServerProcess) -> None:
    with webhook_receiver() as (webhook, received):
        local = Client(open_server, "127.0.0.1", KEY_A)
        local_id = local.submit(webhook=webhook).json()["id"]
        wait_until(lambda: received, 30, 0.05, "webhook not called")
        remote = Client(open_server, str(LAN), KEY_A)
        remote_id = remote.submit(webhook=webhook).json()["id"]
        status = wait_until(lambda: (open_server.job(remote_id) or {}).get("webhook_status"), 30, 0.05)
    assert received[0]["id"] in (local_id, None)
    assert received[0]["output"][0].startswith(local.base + "/out/")  # not http://0.0.0.0:...
    assert status.startswith("skipped") and len(received) == 1


def test_with_remote_images_private_and_loopback_addresses_stay_refused(images: ImageServer) -> None:
    with start_server("--host", "0.0.0.0", "--allow-remote-images", "--remote-peers", LAN) as srv:
        remote = Client(srv, LAN, "k")
        for url in (
            f"http://0.0.0.0:{images.port}/vase.png",
            f"http://127.1:{images.port}/vase.png",
            f"http://2130706433:{images.port}/vase.png",
            f"http://[::ffff:127.0.0.1]:{images.port}/vase.png",
            f"http://{LAN}:{images.port}/vase.png",
        ):
            refused = remote.post(SUBMIT, init_image=url, resolution=32)
            assert refused.status_code == 400 and "image URL not reachable" in refused.json()["message"], url
        assert images.paths == []
        assert srv.stats()["submits"] == 0


# --- hostile meshes ------------------------------------------------------------------------------------------------
def glb_parts(data: bytes) -> tuple[dict, bytes | None]:
    assert data[:4] == b"glTF" and struct.unpack_from("<I", data, 8)[0] == len(data)
    length, kind = struct.unpack_from("<II", data, 12)
    assert kind == 0x4E4F534A
    document = json.loads(data[20 : 20 + length])
    rest = data[20 + length :]
    if not rest:
        return document, None
    size, kind = struct.unpack_from("<II", rest, 0)
    assert kind == 0x004E4942 and len(rest) == 8 + size
    return document, rest[8:]


def hostile_download(srv: ServerProcess, rule: dict, fmt: str) -> tuple[bytes, dict]:
    srv.set_faults([rule])
    client = Client(srv, "127.0.0.1", "k")
    job_id = client.submit(output_format=fmt).json()["id"]
    done = client.wait_done(job_id)
    assert done["status"] == "success"
    body = requests.get(done["output"][0], timeout=10)
    mirror = requests.get(done["proxy_links"][0], timeout=10)
    assert body.status_code == 200 and body.content == mirror.content  # the job's file itself is hostile
    assert int(body.headers["Content-Length"]) == len(body.content)
    assert srv.job(job_id)["mesh_fault"] == rule["fault"]  # type: ignore[index]
    return body.content, done


@pytest.mark.parametrize("uri", ["/dev/zero", "../../secret.bin"])
def test_glb_buffer_uri_points_outside(fresh_lab: ServerProcess, uri: str) -> None:
    data, _ = hostile_download(fresh_lab, {"fault": "glb_buffer_uri", "uri": uri}, "glb")
    document, binary = glb_parts(data)
    assert binary is None
    assert document["buffers"] == [{"byteLength": document["buffers"][0]["byteLength"], "uri": uri}]
    assert document["buffers"][0]["byteLength"] > 0 and document["accessors"]


def test_glb_image_uri_points_outside(fresh_lab: ServerProcess) -> None:
    data, _ = hostile_download(fresh_lab, {"fault": "glb_image_uri", "uri": "../../../home/me/photo.png"}, "glb")
    document, binary = glb_parts(data)
    assert binary is not None and "uri" not in document["buffers"][0]
    assert len(binary) >= document["buffers"][0]["byteLength"]
    assert document["images"] == [{"uri": "../../../home/me/photo.png"}]
    primitive = document["meshes"][0]["primitives"][0]
    texture = document["materials"][primitive["material"]]["pbrMetallicRoughness"]["baseColorTexture"]
    assert document["textures"][texture["index"]]["source"] == 0
    uv = document["accessors"][primitive["attributes"]["TEXCOORD_0"]]
    assert uv["count"] == document["accessors"][primitive["attributes"]["POSITION"]]["count"]


@pytest.mark.parametrize("mtllib", ["/abs/path.mtl", "../x.mtl", "model.mtl"])
def test_obj_mtllib(fresh_lab: ServerProcess, mtllib: str) -> None:
    data, _ = hostile_download(fresh_lab, {"fault": "obj_mtllib", "mtllib": mtllib}, "obj")
    lines = data.decode().splitlines()
    assert f"mtllib {mtllib}" in lines and "usemtl hostile" in lines
    assert (
        lines.index(f"mtllib {mtllib}")
        < lines.index("usemtl hostile")
        < next(i for i, line in enumerate(lines) if line.startswith("f "))
    )
    assert sum(line.startswith("v ") for line in lines) > 100


def test_mesh_faults_wait_for_a_job_of_their_format(fresh_lab: ServerProcess) -> None:
    srv = fresh_lab
    srv.set_faults([{"fault": "obj_mtllib"}, {"fault": "glb_buffer_uri"}])
    client = Client(srv, "127.0.0.1", "k")
    ply = client.wait_done(client.submit(output_format="ply").json()["id"])
    assert ply["status"] == "success"
    assert [rule["times"] for rule in srv.faults()] == [1, 1]
    obj_id = client.submit(output_format="obj").json()["id"]
    assert [rule["times"] for rule in srv.faults()] == [0, 1]
    client.wait_done(obj_id)
    assert srv.job(obj_id)["mesh_fault"] == "obj_mtllib"  # type: ignore[index]


@pytest.mark.parametrize(
    ("rule", "reason"),
    [
        ({"fault": "obj_mtllib", "mtllib": "x.mtl\nmtllib /etc/y.mtl"}, "control characters"),
        ({"fault": "glb_buffer_uri", "uri": ""}, "uri must be text"),
        ({"fault": "glb_image_uri", "uri": 5}, "uri must be text"),
        ({"fault": "obj_mtllib", "endpoint": "download"}, "cannot fire on download"),
    ],
)
def test_bad_mesh_fault_rules_are_refused(fresh_lab: ServerProcess, rule: dict, reason: str) -> None:
    response = requests.post(fresh_lab.url + "/__admin/faults", json={"rules": [rule]}, timeout=10)
    assert response.status_code == 400 and reason in response.json()["message"]
    assert rule["fault"] in response.json()["message"]


# --- held jobs and counters ----------------------------------------------------------------------------------------
def test_held_job_stays_processing_until_released(fresh_lab: ServerProcess) -> None:
    srv = fresh_lab
    srv.set_faults([{"fault": "hold_job"}])
    client = Client(srv, "127.0.0.1", "k")
    held = client.submit().json()["id"]
    free = client.submit().json()["id"]
    assert client.wait_done(free)["status"] == "success"
    wait_until(lambda: (srv.job(held) or {}).get("vertices"), 30, 0.05, "the held job's mesh was never built")
    assert client.fetch(held).json()["status"] == "processing"  # the mesh exists, the job still processes
    assert srv.job(held)["held"] is True  # type: ignore[index]
    assert srv.release() == [held]
    assert client.wait_done(held)["status"] == "success"
    assert srv.release() == []


def test_counters_submits_per_key_and_downloads_per_job(fresh_lab: ServerProcess) -> None:
    srv = fresh_lab
    srv.set_faults([{"fault": "pad_output", "bytes": 1_200_000}])
    a = Client(srv, "127.0.0.1", KEY_A)
    b = Client(srv, "127.0.0.1", KEY_B)
    job_id = a.submit().json()["id"]
    b.submit()
    b.submit()
    assert (srv.submits_for(KEY_A), srv.submits_for(KEY_B), srv.submits_for("nobody")) == (1, 2, 0)
    link = a.wait_done(job_id)["output"][0]
    assert srv.job(job_id)["fetches"] >= 1  # type: ignore[index]

    assert requests.head(link, timeout=10).status_code == 200
    assert srv.downloads(job_id) == {"started": 0, "completed": 0}
    srv.set_faults([{"fault": "slow_download", "bytes_per_second": 1 << 20}])
    start = time.monotonic()
    slow = requests.get(link, timeout=30)
    assert len(slow.content) >= 1_200_000 and time.monotonic() - start >= 1.0  # ~1.15 s at 1 MiB/s
    wait_until(lambda: srv.downloads(job_id)["completed"] == 1, 10, 0.02, "the whole body was sent")
    srv.set_faults([{"fault": "truncate", "bytes": 1000}])
    with pytest.raises(requests.exceptions.RequestException):
        requests.get(link, timeout=10).raise_for_status()
    assert srv.downloads(job_id) == {"started": 2, "completed": 1}
