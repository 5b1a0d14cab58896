"""check_image_file refuses bad local images with clear invalid_input errors, and upload_image sends nothing then."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from api.client import ClientConfig, ModelsLabClient
from api.errors import Category, ModelsLabError
from api.images import MAX_IMAGE_BYTES, check_image_file
from tests.helpers.paths import EXAMPLES_DIR
from tests.helpers.servers import ServerProcess

KEY = "img-test-key-77aa21"


def encoded(fmt: str, size: tuple[int, int] = (16, 12)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 40, 10)).save(buffer, format=fmt)
    return buffer.getvalue()


def refused(path: object) -> ModelsLabError:
    with pytest.raises(ModelsLabError) as caught:
        check_image_file(path)  # type: ignore[arg-type]
    assert caught.value.category is Category.INVALID_INPUT
    return caught.value


@pytest.mark.parametrize(
    ("fmt", "mime"), [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp"), ("BMP", "image/bmp")]
)
def test_supported_types_are_recognised_by_their_bytes(tmp_path: Path, fmt: str, mime: str) -> None:
    data = encoded(fmt)
    path = tmp_path / "picture.dat"  # the extension does not matter, the magic bytes do
    path.write_bytes(data)
    assert check_image_file(path) == (mime, len(data))
    assert check_image_file(str(path)) == (mime, len(data))


def test_example_images_pass() -> None:
    for path in EXAMPLES_DIR.glob("*.png"):
        mime, size = check_image_file(path)
        assert mime == "image/png" and size == path.stat().st_size


def test_missing_file(tmp_path: Path) -> None:
    error = refused(tmp_path / "nope.png")
    assert "not found" in error.message and "nope.png" in error.message


def test_empty_path() -> None:
    assert "No image" in refused("").message
    assert "No image" in refused("   ").message


def test_directory(tmp_path: Path) -> None:
    assert "folder" in refused(tmp_path).message


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    assert "empty" in refused(path).message


def test_too_large(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    with path.open("wb") as handle:
        handle.write(encoded("PNG"))
        handle.truncate(MAX_IMAGE_BYTES + 1)
    error = refused(path)
    assert "5 MB" in error.message and "Resize" in error.fix


def png_of_size(size: int) -> bytes:
    """A valid PNG of exactly size bytes (padded with an uncompressed tEXt chunk)."""
    from PIL.PngImagePlugin import PngInfo

    def build(text_length: int) -> bytes:
        info = PngInfo()
        info.add_text("padding", "x" * text_length)
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8)).save(buffer, format="PNG", pnginfo=info)
        return buffer.getvalue()

    data = build(size - len(build(0)))
    assert len(data) == size
    return data


def test_the_limit_is_exactly_5_mib(tmp_path: Path) -> None:
    path = tmp_path / "limit.png"
    path.write_bytes(png_of_size(MAX_IMAGE_BYTES))
    assert check_image_file(path) == ("image/png", MAX_IMAGE_BYTES)
    path.write_bytes(png_of_size(MAX_IMAGE_BYTES + 1))
    assert "5 MB" in refused(path).message


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"GIF89a" + b"\0" * 40, "GIF"),
        (b"<!DOCTYPE html><html><body>Not found</body></html>", "HTML"),
        (b"just some text, not an image at all", "not an image"),
        (b"\0\0\0\x18ftypheic" + b"\0" * 40, "HEIC"),
    ],
)
def test_not_an_image(tmp_path: Path, content: bytes, words: str) -> None:
    path = tmp_path / "fake.png"
    path.write_bytes(content)
    error = refused(path)
    assert words in error.message and "PNG" in error.fix


def test_truncated_png(tmp_path: Path) -> None:
    data = (EXAMPLES_DIR / "vase_plain.png").read_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    assert "truncated" in refused(path).message


def test_truncated_webp(tmp_path: Path) -> None:
    data = encoded("WEBP", (64, 64))
    path = tmp_path / "cut.webp"
    path.write_bytes(data[: len(data) - 10])
    assert "truncated" in refused(path).message


def test_upload_refuses_before_any_request(fresh_server: ServerProcess, tmp_path: Path) -> None:
    client = ModelsLabClient(KEY, ClientConfig(base_url=fresh_server.url))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    big = tmp_path / "big.png"
    with big.open("wb") as handle:
        handle.write(encoded("PNG"))
        handle.truncate(MAX_IMAGE_BYTES + 100)
    try:
        for path in (bad, big, tmp_path / "missing.png", tmp_path):
            with pytest.raises(ModelsLabError) as caught:
                client.upload_image(path)
            assert caught.value.category is Category.INVALID_INPUT
    finally:
        client.close()
    assert fresh_server.stats()["requests"].get("upload", 0) == 0


def test_upload_sends_the_right_data_url(fresh_server: ServerProcess, tmp_path: Path) -> None:
    import requests

    client = ModelsLabClient(KEY, ClientConfig(base_url=fresh_server.url))
    try:
        for fmt, suffix in (("JPEG", ".jpg"), ("WEBP", ".webp"), ("PNG", ".png")):
            path = tmp_path / f"upload{suffix}"
            data = encoded(fmt)
            path.write_bytes(data)
            url = client.upload_image(path)
            assert url.startswith(fresh_server.url + "/uploads/") and url.endswith(suffix)
            assert requests.get(url, timeout=10).content == data  # decoded on the server to the same bytes
    finally:
        client.close()
    assert fresh_server.stats()["requests"]["upload"] == 3
