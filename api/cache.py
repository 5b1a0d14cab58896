"""Where downloaded meshes live: one file per job, names made safe, old meshes pruned.

A mesh is `<cache>/<safe stem>-<local id>.<fmt>`, the local id being the runner's uuid4 hex. The cache folder
is a preference, so it may be a folder the user also keeps other files in: pruning deletes only regular
files with exactly that name shape (and the partial downloads `.<that name>.<random>.part` or `.<that
name>.part` beside them), never anything else, never a symlink or what one points to, never a subfolder.
Every version of the add-on wrote that shape, so meshes already in users' caches stay readable and age out.
"""

from __future__ import annotations

import os
import re
import stat
import time
import unicodedata
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from .errors import ModelsLabError, invalid_input
from .params import OUTPUT_FORMATS
from .records import JobRecord

MAX_STEM_LENGTH = 80
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_PART_SUFFIX = ".part"
_FORMATS = "|".join(OUTPUT_FORMATS)
_UUID4_HEX = r"[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}"  # how the runner makes local ids
_MESH_NAME = rf"[A-Za-z0-9][A-Za-z0-9._-]*-{_UUID4_HEX}\.(?:{_FORMATS})"
# The mesh, or a partial download of it (this version's unique temp names, or the fixed one of earlier ones).
_OWNED_FILE = re.compile(rf"{_MESH_NAME}|\.{_MESH_NAME}(?:\.[A-Za-z0-9_]+)?{re.escape(_PART_SUFFIX)}")


def safe_name(text: str, fallback: str = "mesh") -> str:
    """text reduced to [A-Za-z0-9._-], without '..', leading dots or separators; fallback when nothing is left."""
    # Undo percent-encoding (a few rounds: hostile names may be encoded twice), then keep only the last path part.
    for _ in range(3):
        decoded = unquote(text)
        if decoded == text:
            break
        text = decoded
    text = re.split(r"[/\\]", text)[-1]
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = _UNSAFE.sub("_", text)
    while ".." in text:
        text = text.replace("..", ".")
    text = text.strip("._-")[:MAX_STEM_LENGTH].strip("._-")
    return text or fallback


class MeshCache:
    """A directory of downloaded meshes; every path it hands out is inside that directory."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory).expanduser().absolute()

    def ensure(self) -> Path:
        """Create the directory if needed; a directory that cannot be made is a clear error."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ModelsLabError(
                "invalid_input",
                f"Cannot create the mesh cache folder {self.directory}: {exc.strerror or exc}.",
                "Choose a writable cache folder in the add-on preferences, or free some disk space.",
            ) from None
        return self.directory

    def path_for(self, record: JobRecord, url: str | None = None) -> Path:
        """<dir>/<safe stem>-<local id>.<fmt> for the job's mesh; creates the directory, never escapes it."""
        fmt = str(record.params.get("output_format") or "").lower()
        url_name = ""
        if url:
            url_name = PurePosixPath(urlsplit(url).path).name
        if fmt not in OUTPUT_FORMATS:
            suffix = PurePosixPath(safe_name(url_name, "")).suffix.lstrip(".").lower()
            fmt = suffix if suffix in OUTPUT_FORMATS else "obj"
        stem_source = str(record.meta.get("file_prefix") or "") if isinstance(record.meta, dict) else ""
        if not stem_source and url_name:
            stem_source = url_name.rsplit(".", 1)[0] if "." in url_name else url_name
        if not stem_source:
            stem_source = record.remote_id or record.name or "mesh"
        # The local id keeps two jobs (e.g. the same remote id on two servers) from ever sharing a file.
        name = f"{safe_name(stem_source)}-{safe_name(record.local_id, 'job')[:32]}.{fmt}"
        directory = self.ensure()
        path = directory / name
        if path.parent != directory or not path.resolve().is_relative_to(directory.resolve()):
            raise invalid_input(f"Refusing a mesh file name outside the cache folder: {name!r}.")
        return path

    def contains(self, path: str | os.PathLike[str]) -> bool:
        """True when path is a file inside the cache directory."""
        try:
            resolved = Path(path).resolve()
        except OSError:
            return False
        return resolved.is_relative_to(self.directory.resolve()) and resolved.is_file()

    def files(self) -> list[Path]:
        """The files the add-on wrote here (meshes and leftover partial downloads), sorted by name."""
        owned: list[Path] = []
        for entry in _entries(self.directory):
            if _OWNED_FILE.fullmatch(entry.name) and _is_plain_file(entry):
                owned.append(Path(entry.path))
        return sorted(owned)

    def prune(self, older_than_days: float, keep: Iterable[str | os.PathLike[str]] = ()) -> int:
        """Delete the add-on's files (see the module docstring) not modified for older_than_days, except those
        in keep; return how many. Nothing the add-on did not write is touched."""
        if not isinstance(older_than_days, int | float) or isinstance(older_than_days, bool) or older_than_days < 0:
            raise invalid_input(f"older_than_days must be a number >= 0, got {older_than_days!r}.")
        cutoff = time.time() - float(older_than_days) * 86400.0
        kept = {os.path.abspath(p) for p in keep}
        removed = 0
        for path in self.files():
            try:
                if os.path.abspath(path) in kept or path.lstat().st_mtime > cutoff:
                    continue
                path.unlink()
                removed += 1
            except OSError:  # gone meanwhile, or not deletable: pruning is best effort
                continue
        return removed


def _entries(directory: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as entries:
            return list(entries)
    except OSError:
        return []


def _is_plain_file(entry: os.DirEntry[str]) -> bool:
    """A regular file itself, not a symlink (to anything) and not a folder."""
    try:
        return stat.S_ISREG(entry.stat(follow_symlinks=False).st_mode)
    except OSError:
        return False
