"""Progress of a long command on stderr: a tqdm bar on a terminal, and plain lines at most
every ``interval`` seconds (plus the last one) when stderr is a file or a pipe, so logs and
CI output stay readable."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from tqdm import tqdm


class Progress:
    """Reports ``done`` of ``total`` items of one command, with a short note (e.g. bad count)."""

    def __init__(
        self,
        label: str,
        total: int,
        out: TextIO,
        *,
        unit: str = "items",
        interval: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
        terminal: bool | None = None,
    ) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self._out = out
        self._interval = interval
        self._monotonic = monotonic
        self._last: float | None = None
        self._done = 0
        is_terminal = out.isatty() if terminal is None else terminal
        self._bar: tqdm[None] | None = None
        if is_terminal:
            # Imported only for a terminal: a piped run (the benchmarks, CI) starts faster.
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=label, file=out, unit=f" {unit}")

    def update(self, done: int, note: str = "") -> None:
        """Now ``done`` items are finished."""
        if self._bar is not None:
            self._bar.update(done - self._done)
            if note:
                self._bar.set_postfix_str(note, refresh=False)
        else:
            now = self._monotonic()
            if done >= self.total or self._last is None or now - self._last >= self._interval:
                self._last = now
                extra = f", {note}" if note else ""
                print(
                    f"{self.label}: {done}/{self.total} {self.unit}{extra}",
                    file=self._out,
                    flush=True,
                )
        self._done = done

    def close(self) -> None:
        """End the bar (a no-op for plain lines)."""
        if self._bar is not None:
            self._bar.close()
