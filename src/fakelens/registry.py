"""A tiny typed registry: ``register(name)`` as a decorator, ``create(name, **kw)``, ``names()``."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from fakelens.errors import ConfigError, UnknownNameError

T = TypeVar("T")


def _origin(factory: Callable[..., object]) -> tuple[str, str]:
    return getattr(factory, "__module__", ""), getattr(factory, "__qualname__", repr(factory))


def _where(factory: Callable[..., object]) -> str:
    module, qualname = _origin(factory)
    return f"{module}.{qualname}" if module else qualname


class Registry(Generic[T]):
    """Maps names to factories (classes or functions) of one kind of thing.

    Duplicate names raise :class:`ConfigError` (a ``ValueError``) at import time, naming where the first
    registration came from, except that the same factory (same module and qualified name, as when a notebook
    cell runs again) replaces itself; unknown names raise :class:`UnknownNameError` naming the closest
    registered names, so a typo on the command line gets a useful one-line message. Registries made with
    ``shares_names_with`` draw on one set of names (the CAMs and the other explanation methods are both
    picked by ``--method NAME``): a name registered in one is refused in the other, which it would shadow.
    """

    def __init__(self, kind: str, *, shares_names_with: Registry[Any] | None = None) -> None:
        self.kind = kind
        self._items: dict[str, Callable[..., T]] = {}
        self._peers: list[Registry[Any]] = []
        if shares_names_with is not None:
            self._peers = [shares_names_with, *shares_names_with._peers]
            for peer in self._peers:
                peer._peers.append(self)

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            old = self._items.get(name)
            if old is not None and (_origin(old) != _origin(factory) or "<lambda>" in _origin(factory)[1]):
                raise ConfigError(
                    f"{self.kind} {name!r} is registered twice: first by {_where(old)}, "
                    f"again by {_where(factory)}"
                )
            for peer in self._peers:
                if name in peer:
                    raise ConfigError(
                        f"{self.kind} {name!r} (by {_where(factory)}) clashes with the {peer.kind} {name!r} "
                        f"registered by {_where(peer.get(name))}: a method name must be unique"
                    )
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
