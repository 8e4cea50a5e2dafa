"""Small name -> object registries (Keras ``get()`` style).

Strings in the public API (``activation="relu"``, ``loss="cross_entropy"``, ``optimizer="adam"``)
resolve through a :class:`Registry`; an unknown name raises a ``ValueError`` listing the valid ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Registry:
    """Maps lower-case names (and aliases) to factories.

    Args:
        kind: what is registered ("activation", "loss", ...), used in error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Any] = {}
        self._canonical: list[str] = []

    def register(self, name: str, *aliases: str) -> Callable[[Any], Any]:
        """Decorator registering a class or function under ``name`` and ``aliases``."""

        def decorator(obj: Any) -> Any:
            self._canonical.append(name)
            for key in (name, *aliases):
                self._items[key.lower()] = obj
            return obj

        return decorator

    def names(self) -> list[str]:
        """The canonical names, in registration order."""
        return list(self._canonical)

    def lookup(self, name: str) -> Any:
        """The registered object for ``name`` (case-insensitive, '-' treated as '_')."""
        if not isinstance(name, str):
            raise TypeError(f"{self.kind} must be a name (str), got {type(name).__name__}")
        key = name.lower().replace("-", "_")
        if key not in self._items:
            raise ValueError(
                f"unknown {self.kind} {name!r}; valid names are: {', '.join(self.names())}"
            )
        return self._items[key]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower().replace("-", "_") in self._items
