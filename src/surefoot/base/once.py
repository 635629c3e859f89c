"""Work done once per process for every caller that asks for it side by side: a rollout's
servers prepare in threads, and the first to need an image built, saved or pushed does it while
the others wait for it and take its result."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class KeyedLocks(Generic[K]):
    """One lock per key, made when the key is first asked for."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[K, threading.Lock] = {}

    def __call__(self, key: K) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())


class Once(Generic[K, V]):
    """``make()`` run once per key; callers of one key at once wait for the first. Only a result
    that ``keep`` accepts is kept (a failure, raised or returned, is tried again by the next caller)."""

    def __init__(self, keep: Callable[[V], bool] = lambda value: True) -> None:
        self._keep = keep
        self._locks: KeyedLocks[K] = KeyedLocks()
        self._made: dict[K, V] = {}

    def get(self, key: K, make: Callable[[], V]) -> tuple[V, bool]:
        """The key's result and whether this call made it."""
        with self._locks(key):
            if key in self._made:
                return self._made[key], False
            value = make()
            if self._keep(value):
                self._made[key] = value
            return value, True
