"""The piece buffers of a process's warm sealed sends: a send alone takes the largest pieces,
concurrent sends share the budget, a send never waits for it, and every buffer is given back."""

from __future__ import annotations

from contextlib import ExitStack

import pytest

from mirror.blobstore.piece_budget import PieceBudget
from mirror.crypto.envelope import TAG_SIZE

MiB = 1024 * 1024
CHUNK = MiB
STEP = CHUNK + TAG_SIZE  # one sealed chunk, tag included
GiB = 1024 * MiB


def test_a_send_alone_takes_the_largest_pieces() -> None:
    budget = PieceBudget(total=64 * MiB, largest=4 * MiB)
    with budget.pieces(CHUNK, GiB, 2) as given:
        assert given.size == 4 * MiB
        assert [len(b) for b in given.buffers] == [4 * STEP, 4 * STEP]
        assert budget.taken == 8 * STEP
    assert budget.taken == 0


def test_concurrent_sends_share_the_budget_and_never_wait_for_it() -> None:
    budget = PieceBudget(total=64 * MiB, largest=4 * MiB)
    sizes = []
    with ExitStack() as held:
        for _ in range(16):
            given = held.enter_context(budget.pieces(CHUNK, GiB, 2))
            sizes.append(given.size)
            assert len(given.buffers) == 2
        # Seven sends take two 4 MiB pieces' chunks each; the eighth what is left (3 chunks a
        # buffer); the rest one chunk a buffer, past the budget by no more than that.
        assert sizes == [4 * MiB] * 7 + [3 * MiB] + [1 * MiB] * 8
        assert budget.taken <= 64 * MiB + 8 * 2 * STEP
    assert budget.taken == 0


def test_a_short_send_takes_fewer_and_smaller_buffers() -> None:
    budget = PieceBudget(total=64 * MiB, largest=4 * MiB)
    with budget.pieces(CHUNK, 100, 3) as given:
        # 100 bytes may straddle a chunk boundary (two chunks a buffer) and a piece boundary
        # (two pieces: two buffers, not three).
        assert [len(b) for b in given.buffers] == [2 * STEP, 2 * STEP]
    with budget.pieces(CHUNK, 0, 3) as given:
        assert given.buffers == []
    assert budget.taken == 0


def test_the_buffers_go_back_when_the_send_fails() -> None:
    budget = PieceBudget(total=64 * MiB, largest=4 * MiB)
    with pytest.raises(ConnectionResetError), budget.pieces(CHUNK, GiB, 2):
        raise ConnectionResetError("client went away")
    assert budget.taken == 0


@pytest.mark.parametrize("chunk", [4096, 64 * 1024, 3 * MiB, 8 * MiB], ids=str)
def test_pieces_are_whole_chunks_at_least_one(chunk: int) -> None:
    budget = PieceBudget(total=64 * MiB, largest=4 * MiB)
    with budget.pieces(chunk, GiB, 2) as given:
        assert given.size % chunk == 0 and given.size >= chunk
        assert given.size <= max(chunk, 4 * MiB)
        assert all(len(b) == given.size // chunk * (chunk + TAG_SIZE) for b in given.buffers)
