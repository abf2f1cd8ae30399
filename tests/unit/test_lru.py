"""The bounded in-memory map behind the record memos and the manifest body cache."""

from __future__ import annotations

from mirror.lru import Lru


def test_count_bound_drops_the_least_recently_used() -> None:
    lru: Lru[str, int] = Lru(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1  # a is now the most recent
    lru.put("c", 3)
    assert lru.get("b") is None
    assert (lru.get("a"), lru.get("c")) == (1, 3)


def test_weight_bound_and_oversized_values() -> None:
    lru: Lru[str, bytes] = Lru(100, len, max_share=4)
    lru.put("big", b"x" * 26)  # over 100 // 4: not kept
    assert lru.get("big") is None
    for name in "abcd":
        lru.put(name, b"x" * 25)
    lru.put("e", b"x" * 25)
    assert lru.get("a") is None and lru.get("e") is not None
    lru.put("e", b"y" * 10)  # replacing counts the new weight only
    lru.drop("b")
    lru.put("f", b"x" * 25)
    lru.put("g", b"x" * 25)  # 25 + 25 + 10 + 25 + 25 > 100: the oldest, c, goes
    assert [lru.get(k) is not None for k in "cdefg"] == [False, True, True, True, True]
