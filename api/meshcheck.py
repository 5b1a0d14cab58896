"""Is a downloaded mesh self-contained? Only such files may reach Blender's importers.

A mesh comes from a server we do not control. Formats that can name other files would make an importer
read them: a GLB buffer or image `uri` ("/dev/zero", "../../secret.bin"), an OBJ `mtllib` whose material
file names textures (`map_Kd /home/me/...`, or a UNC path on Windows). So:
- GLB: every `uri` in its JSON (buffers, images, extensions) is absent or a `data:` URI;
- OBJ: each `mtllib` resolves strictly inside the mesh's own folder, and a material file found there names
  only textures inside that folder too;
- PLY and STL name no other files.
Anything else is a `bad_mesh` error before any importer opens the file.
"""

from __future__ import annotations

import json
import os
import re
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import Category, ModelsLabError

GLB_MAGIC = b"glTF"
GLB_JSON_CHUNK = 0x4E4F534A
MAX_GLB_JSON = 64 << 20  # a glTF JSON chunk larger than this is not a mesh we asked for
_SCAN_CHUNK = 1 << 20
MAX_STATEMENTS = 4096  # distinct file names one mesh may name; more is refused, not tracked without bound
_TOO_MANY = "\0too many"  # stands for the names past MAX_STATEMENTS (no real name holds a NUL)
# OBJ statements that name another file; in a material file, the ones that name textures.
_OBJ_LIBRARY = re.compile(rb"(?im)^[ \t]*(mtllib)[ \t]+([^\r\n]*)")
_MTL_TEXTURE = re.compile(rb"(?im)^[ \t]*(map_\w+|bump|disp|decal|refl|norm)[ \t]+([^\r\n]*)")
_MTL_KEYWORDS = (b"map_", b"bump", b"disp", b"decal", b"refl", b"norm")
_BAD_MESH_FIX = (
    "The file was not opened. Generate the model again; if this keeps happening, the server (or something "
    "between you and it) is sending files that point at other files on your computer."
)


def check_self_contained(path: str | os.PathLike[str], fmt: str, display: str = "") -> None:
    """Raise ModelsLabError(bad_mesh) unless the mesh at path names no file outside its own folder.

    `display` names the file's origin in the message (e.g. the download host); the default is its name.
    """
    scan = MeshScan(fmt)
    mesh = Path(path)
    if scan.fmt == "obj":
        try:
            with open(mesh, "rb") as handle:
                while chunk := handle.read(_SCAN_CHUNK):
                    scan.feed(chunk)
        except OSError as exc:
            scan.refuse(mesh, display, f"it could not be read ({exc.strerror or type(exc).__name__})")
    scan.check(mesh, display)


class MeshScan:
    """The self-containment check fed with the file's bytes as they arrive (a download checks its mesh while
    streaming it, not in a second pass): feed() every chunk in order, then check() the finished file."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt.lower().lstrip(".")
        self._libraries = _StatementScan(_OBJ_LIBRARY, (b"mtllib",)) if self.fmt == "obj" else None

    def feed(self, chunk: bytes) -> None:
        """The next bytes of the file (only OBJ needs them: a GLB's JSON is read from the file at check())."""
        if self._libraries is not None:
            self._libraries.feed(chunk)

    def check(self, path: str | os.PathLike[str], display: str = "") -> None:
        """Raise ModelsLabError(bad_mesh) unless the file fed (now at path) names no file outside its folder."""
        mesh = Path(path)
        try:
            if self.fmt == "glb":
                problem = _glb_problem(mesh)
            elif self._libraries is not None:
                problem = _obj_problem(mesh, self._libraries.finish())
            else:
                problem = None  # PLY and STL cannot reference other files
        except OSError as exc:
            problem = f"it could not be read ({exc.strerror or type(exc).__name__})"
        if problem is not None:
            self.refuse(mesh, display, problem)

    @staticmethod
    def refuse(mesh: Path, display: str, problem: str) -> None:
        raise ModelsLabError(
            Category.BAD_MESH, f"The mesh from {display or mesh.name} was refused: {problem}.", _BAD_MESH_FIX
        ) from None


# --- GLB -----------------------------------------------------------------------------------------------------------
def _glb_problem(path: Path) -> str | None:
    with open(path, "rb") as handle:
        header = handle.read(20)
        if len(header) < 20 or header[:4] != GLB_MAGIC:
            return "not a GLB file"
        version, total = struct.unpack_from("<II", header, 4)
        length, kind = struct.unpack_from("<II", header, 12)
        if version != 2:
            return f"unsupported glTF version {version}"
        if kind != GLB_JSON_CHUNK:
            return "its first chunk is not the glTF JSON"
        if length > MAX_GLB_JSON or 20 + length > total:
            return "its JSON chunk is larger than the file"
        text = handle.read(length)
    if len(text) != length:
        return "its JSON chunk is cut short"
    try:
        document = json.loads(text.decode("utf-8"))
    except (ValueError, RecursionError):
        return "its glTF JSON is not valid"
    if not isinstance(document, dict):
        return "its glTF JSON is not an object"
    for where, uri in _uris(document, "gltf"):
        if not uri.lower().startswith("data:"):
            return f"{where} refers to an external file {_shown(uri)} instead of embedding it"
    return None


def _uris(value: Any, where: str, depth: int = 0) -> Iterator[tuple[str, str]]:
    """(JSON path, value) of every "uri" member anywhere in the document (core buffers/images and extensions)."""
    if depth > 64:
        yield where, "(nested too deeply to check)"
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "uri":
                yield where, item if isinstance(item, str) else repr(item)
            else:
                yield from _uris(item, f"{where}.{key}", depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _uris(item, f"{where}[{index}]", depth + 1)


# --- OBJ -----------------------------------------------------------------------------------------------------------
def _obj_problem(path: Path, libraries: list[str]) -> str | None:
    folder = Path(os.path.realpath(path.parent))
    for library in libraries:
        outside = _outside(library, folder)
        if outside is not None:
            return f"its line {_shown('mtllib ' + library)} points outside the mesh's folder ({outside})"
        for name in _names(library):
            material = folder / name
            if not material.is_file():
                continue  # a missing material file is only a warning for the importer
            for texture in _statements(material, _MTL_TEXTURE, _MTL_KEYWORDS):
                outside = _outside(texture, folder)
                if outside is not None:
                    return (
                        f"its material file {_shown(name)} names a texture {_shown(texture)} outside the "
                        f"mesh's folder ({outside})"
                    )
    return None


def _statements(path: Path, pattern: re.Pattern[bytes], keywords: tuple[bytes, ...]) -> list[str]:
    """The argument text of each statement of the file at path matching pattern (see _StatementScan)."""
    scan = _StatementScan(pattern, keywords)
    with open(path, "rb") as handle:
        while chunk := handle.read(_SCAN_CHUNK):
            scan.feed(chunk)
    return scan.finish()


class _StatementScan:
    """Collects the argument text of each statement matching pattern from chunks fed in order (distinct ones, at
    most MAX_STATEMENTS). A trailing backslash continues a line (as Blender's OBJ reader does), so continued lines
    are joined before matching. Text where a byte every keyword ends with (either case) does not occur is skipped
    unparsed: a single-byte search runs at memory speed, so a 200 MB mesh costs a few milliseconds."""

    def __init__(self, pattern: re.Pattern[bytes], keywords: tuple[bytes, ...]) -> None:
        self.pattern = pattern
        self.keywords = keywords
        self.sentinels = tuple(dict.fromkeys(b for k in keywords for b in (k[-1:].lower(), k[-1:].upper())))
        self.carry = b""  # the start of a line not ended yet
        self.found: dict[str, None] = {}

    def _may_match(self, data: bytes) -> bool:
        return any(sentinel in data for sentinel in self.sentinels)

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        if not self._may_match(chunk) and not self._may_match(self.carry):
            cut = _last_line_end(chunk)
            before = cut
            while before > 0 and chunk[before - 1] == 0x0D:
                before -= 1
            if before > 0:  # whether that newline ends a line is decided within this chunk
                self.carry = chunk[cut + 1 :]
                return
        data = self.carry + chunk
        cut = _last_line_end(data)
        if cut < 0:
            self.carry = data[: 2 * _SCAN_CHUNK]  # a line this long keeps only its start: what the patterns read
            return
        self.carry = data[cut + 1 :]
        self._match(data[: cut + 1])

    def finish(self) -> list[str]:
        """Match the last line (no line end) and return the arguments found, in the order first seen."""
        carry, self.carry = self.carry, b""
        if carry:
            self._match(carry)
        return list(self.found)

    def _match(self, data: bytes) -> None:
        if not self._may_match(data):
            return
        lowered = data.lower()
        if not any(keyword in lowered for keyword in self.keywords):
            return
        if b"\\" in data:
            data = re.sub(rb"\\\r?\n", b" ", data)
        for match in self.pattern.finditer(data):
            if len(self.found) >= MAX_STATEMENTS:
                self.found.setdefault(_TOO_MANY, None)
                return
            self.found.setdefault(match.group(2).decode("utf-8", "replace").strip(), None)


def _last_line_end(data: bytes) -> int:
    """Index of the last newline that ends a line (not one continued by a backslash), or -1."""
    cut = data.rfind(b"\n")
    while cut >= 0:
        before = cut
        while before > 0 and data[before - 1] == 0x0D:  # \r
            before -= 1
        if before == 0 or data[before - 1] != 0x5C:  # a backslash
            return cut
        cut = data.rfind(b"\n", 0, cut)
    return cut


def _names(argument: str) -> list[str]:
    """The file names an argument may mean: the whole text (names with spaces) and each word."""
    words = argument.split()
    return list(dict.fromkeys([argument, *words])) if argument else []


def _outside(argument: str, folder: Path) -> str | None:
    """Why a file name from the mesh is not strictly inside folder, or None when every reading of it is."""
    if argument == _TOO_MANY:
        return f"more than {MAX_STATEMENTS} different file names"
    for name in _names(argument):
        if name.startswith("-"):
            continue  # a texture option such as -bm, -clamp or -o; its values are checked as names
        posix = name.replace("\\", "/")
        if ":" in posix or posix.startswith("/") or posix.startswith("~"):
            return "an absolute, drive or network path"
        resolved = Path(os.path.realpath(folder / posix))
        if resolved == folder or not resolved.is_relative_to(folder):
            return "it leaves the folder"
    return None


def _shown(text: str) -> str:
    """A server-supplied name as shown in a message: quoted, printable, at most 80 characters."""
    printable = "".join(ch if ch.isprintable() else "?" for ch in text)
    return repr(printable[:80] + ("…" if len(printable) > 80 else ""))
