"""The body of a fixture that lets a test start several child processes (Blenders, windows, runner children):
`yield from closing_each(make)` hands the test start(...) = make(...), and closes every one it made afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar


class Closable(Protocol):
    def close(self) -> Any: ...


Child = TypeVar("Child", bound=Closable)


def closing_each(make: Callable[..., Child]) -> Iterator[Callable[..., Child]]:
    """Yield start(...), which makes a child with make(...); after the test, close every child made, in order."""
    made: list[Child] = []

    def start(*args: Any, **kwargs: Any) -> Child:
        child = make(*args, **kwargs)
        made.append(child)
        return child

    yield start
    for child in made:
        child.close()
