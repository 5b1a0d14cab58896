"""An Enum whose members are their text values (what enum.StrEnum does on 3.11+, also on Python 3.10)."""

from __future__ import annotations

from enum import Enum


class TextEnum(str, Enum):  # not enum.StrEnum: that is 3.11+, and Blender 3.6/4.0 ship Python 3.10
    """Members equal, hash, format and print as their value: f"{Category.AUTH}" == str(Category.AUTH) == "auth"."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, format_spec: str) -> str:
        return format(str(self.value), format_spec)
