"""Progress of long commands: a bar on a terminal, plain periodic lines elsewhere."""

from __future__ import annotations

import io

from mirror.cli.progress import Progress
from mirror.clock import ManualClock


def test_plain_lines_at_most_every_interval_and_always_the_last() -> None:
    out, clock = io.StringIO(), ManualClock()
    progress = Progress("verify", 5, out, unit="objects", interval=5.0, monotonic=clock.monotonic)

    progress.update(1, "0 bad")
    clock.advance(1.0)
    progress.update(2, "0 bad")
    clock.advance(5.0)
    progress.update(3, "1 bad")
    progress.update(5, "1 bad")
    progress.close()

    assert out.getvalue().splitlines() == [
        "verify: 1/5 objects, 0 bad",
        "verify: 3/5 objects, 1 bad",
        "verify: 5/5 objects, 1 bad",
    ]
    assert "\r" not in out.getvalue()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_progress_bar() -> None:
    out = Terminal()
    progress = Progress("verify", 4, out, unit="objects")

    for done in range(1, 5):
        progress.update(done, f"{done} MB")
    progress.close()

    text = out.getvalue()
    assert "\r" in text and "4/4" in text and "100%" in text and "objects" in text
