"""Hostile mesh files: a real mesh rewritten so that opening it would make an importer read other files.

They exist so a client can prove it refuses such downloads before any importer sees them. Each function
rewrites, in place, a file that server/reconstruct.py wrote.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

GLB_MAGIC = b"glTF"
JSON_CHUNK = 0x4E4F534A
BIN_CHUNK = 0x004E4942


def read_glb(data: bytes) -> tuple[dict[str, Any], bytes]:
    """(glTF JSON, BIN chunk) of a binary glTF (the BIN chunk may be empty)."""
    if data[:4] != GLB_MAGIC or len(data) < 20:
        raise ValueError("not a GLB file")
    length, kind = struct.unpack_from("<II", data, 12)
    if kind != JSON_CHUNK:
        raise ValueError("the first GLB chunk is not JSON")
    document = json.loads(data[20 : 20 + length])
    offset = 20 + length
    binary = b""
    if offset + 8 <= len(data):
        size, kind = struct.unpack_from("<II", data, offset)
        if kind == BIN_CHUNK:
            binary = data[offset + 8 : offset + 8 + size]
    return document, binary


def write_glb(document: dict[str, Any], binary: bytes | None) -> bytes:
    """A binary glTF from its JSON and optional BIN chunk (both padded to 4 bytes as the format requires)."""
    text = json.dumps(document, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    chunks = struct.pack("<II", len(text), JSON_CHUNK) + text
    if binary is not None:
        binary += b"\0" * (-len(binary) % 4)
        chunks += struct.pack("<II", len(binary), BIN_CHUNK) + binary
    return GLB_MAGIC + struct.pack("<II", 2, 12 + len(chunks)) + chunks


def glb_buffer_uri(path: Path, uri: str) -> None:
    """Move the mesh's binary data out of the file: buffer 0 names `uri` (byteLength stays the data's size)."""
    document, _ = read_glb(path.read_bytes())
    document["buffers"][0]["uri"] = uri
    path.write_bytes(write_glb(document, None))


def glb_image_uri(path: Path, uri: str) -> None:
    """Keep the mesh embedded, but give it a base-colour texture whose image is the external file `uri`."""
    document, binary = read_glb(path.read_bytes())
    primitive = document["meshes"][0]["primitives"][0]
    count = document["accessors"][primitive["attributes"]["POSITION"]]["count"]
    binary += b"\0" * (-len(binary) % 4)
    document["bufferViews"].append({"buffer": 0, "byteOffset": len(binary), "byteLength": 8 * count})
    binary += bytes(8 * count)  # every vertex at UV (0, 0)
    document["buffers"][0]["byteLength"] = len(binary)
    document["accessors"].append(
        {"bufferView": len(document["bufferViews"]) - 1, "componentType": 5126, "count": count, "type": "VEC2"}
    )
    primitive["attributes"]["TEXCOORD_0"] = len(document["accessors"]) - 1
    document["images"] = [{"uri": uri}]
    document["textures"] = [{"source": 0}]
    document["materials"] = [{"name": "hostile", "pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}}]
    primitive["material"] = 0
    path.write_bytes(write_glb(document, binary))


def obj_mtllib(path: Path, mtllib: str, material: str) -> None:
    """Make the OBJ load its materials from `mtllib` and use `material` from it (the .mtl itself is not served)."""
    text = path.read_bytes()
    header, _, body = text.partition(b"\nv ")
    lines = f"\nmtllib {mtllib}\nusemtl {material}".encode()
    path.write_bytes(header + lines + b"\nv " + body)


def apply(path: Path, kind: str, params: dict[str, Any]) -> None:
    """Rewrite the mesh at path as the hostile-mesh fault `kind` asks."""
    if kind == "glb_buffer_uri":
        glb_buffer_uri(path, str(params["uri"]))
    elif kind == "glb_image_uri":
        glb_image_uri(path, str(params["uri"]))
    elif kind == "obj_mtllib":
        obj_mtllib(path, str(params["mtllib"]), str(params["material"]))
    else:
        raise ValueError(f"not a hostile-mesh fault: {kind}")
