"""Results shared by every browser session for a moment (twenty Run pages polling cost one query)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class TTLCache:
    """A small thread-safe cache whose entries expire after the `ttl` each read asks for."""

    def __init__(self) -> None:
        self._items: dict[Any, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Any, ttl: float, compute: Callable[[], T]) -> T:
        now = time.monotonic()
        with self._lock:
            hit = self._items.get(key)
            if hit and now - hit[0] < ttl:
                return hit[1]
        value = compute()
        with self._lock:
            self._items[key] = (now, value)
            if len(self._items) > 256:
                self._items.clear()
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


SHARED = TTLCache()
