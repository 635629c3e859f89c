"""base/once.py: work done once per process for callers side by side."""

from __future__ import annotations

import threading
import time

import pytest

from surefoot.base.once import KeyedLocks, Once


def test_callers_of_one_key_at_once_share_the_first_s_result() -> None:
    once: Once[str, int] = Once()
    calls: list[int] = []
    started = threading.Event()

    def make() -> int:
        calls.append(1)
        started.set()
        time.sleep(0.2)  # the others arrive while it works
        return 7

    results: list[tuple[int, bool]] = []
    threads = [threading.Thread(target=lambda: results.append(once.get("a", make))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(calls) == 1
    assert sorted(results) == [(7, False), (7, False), (7, False), (7, True)]
    assert once.get("b", lambda: 8) == (8, True)  # another key is its own


def test_a_failure_is_tried_again_by_the_next_caller() -> None:
    once: Once[str, int] = Once(keep=lambda code: code == 0)
    assert once.get("build", lambda: 1) == (1, True)
    assert once.get("build", lambda: 0) == (0, True)
    assert once.get("build", lambda: 2) == (0, False)

    def fails() -> int:
        raise RuntimeError("push refused")

    with pytest.raises(RuntimeError):
        once.get("push", fails)
    assert once.get("push", lambda: 0) == (0, True)


def test_one_lock_per_key() -> None:
    locks: KeyedLocks[str] = KeyedLocks()
    assert locks("web1") is locks("web1")
    assert locks("web1") is not locks("web2")
