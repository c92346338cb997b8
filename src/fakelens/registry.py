"""A tiny typed registry: ``register(name)`` as a decorator, ``create(name, **kw)``, ``names()``."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from fakelens.errors import UnknownNameError

T = TypeVar("T")


def _origin(factory: Callable[..., object]) -> tuple[str, str]:
    return getattr(factory, "__module__", ""), getattr(factory, "__qualname__", repr(factory))


class Registry(Generic[T]):
    """Maps names to factories (classes or functions) of one kind of thing.

    Duplicate names raise at import time, except that the same factory (same module and qualified name, as
    when a notebook cell runs again) replaces itself; unknown names raise :class:`UnknownNameError` naming the
    closest registered names, so a typo on the command line gets a useful one-line message.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            old = self._items.get(name)
            if old is not None and (_origin(old) != _origin(factory) or "<lambda>" in _origin(factory)[1]):
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = factory
            return factory

        return deco

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._items[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._items, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}{hint} (known: {', '.join(sorted(self._items))})"
            ) from None

    def create(self, name: str, **kwargs: object) -> T:
        return self.get(name)(**kwargs)

    def names(self) -> list[str]:
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
