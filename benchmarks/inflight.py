"""What the upstream saw at once: requests in flight, from ``docker-registry``'s own log, and
TCP connections it held, sampled from ``/proc/net/tcp``.

The registry writes one logrus line per finished request to stderr (``registry.log``)::

    time="2026-12-01T11:54:08.055117893Z" level=info msg="response completed" ...
    http.request.method=GET ... http.request.uri=/v2/r/blobs/sha256:... ...
    http.response.duration=14.916101ms http.response.status=200 ...

so each request is the interval ``[time - duration, time]`` as the upstream measured it, and
the peak overlap of those intervals is the most requests it served at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from benchmarks.clients import PeakSampler

_LINE = re.compile(
    r'^time="(?P<time>[^"]+)" .*msg="response completed" .*'
    r"http\.request\.method=(?P<method>[A-Z]+) .*http\.request\.uri=(?P<uri>\S+) "
    r'(?:.*?http\.request\.useragent=(?P<agent>"[^"]*"|\S+))?'
    r".*http\.response\.duration=(?P<duration>\S+)"
)
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
ESTABLISHED = "01"


@dataclass(frozen=True, slots=True)
class Served:
    """One request the upstream served, from its start to its end (epoch seconds)."""

    method: str
    uri: str
    start: float
    end: float
    # The client's User-Agent ("" when the line has none).
    agent: str = ""


def go_duration(text: str) -> float:
    """Seconds in a Go ``time.Duration`` string (``1m2.5s``, ``14.9ms``, ``850µs``)."""
    parts = _DURATION_PART.findall(text)
    if not parts:
        raise ValueError(f"not a Go duration: {text!r}")
    return sum(float(n) * _UNIT[unit] for n, unit in parts)


def _epoch(stamp: str) -> float:
    """RFC 3339 with nanoseconds (Python parses microseconds: the rest is cut)."""
    head, _, frac = stamp.rstrip("Z").partition(".")
    base = datetime.fromisoformat(head + "+00:00").timestamp()
    return base + (float(f"0.{frac}") if frac else 0.0)


def parse_served(text: str) -> list[Served]:
    """The finished requests in a registry log's ``text``; other lines are ignored."""
    served = []
    for line in text.splitlines():
        match = _LINE.match(line)
        if match:
            end = _epoch(match["time"])
            start = end - go_duration(match["duration"])
            agent = (match["agent"] or "").strip('"')
            served.append(Served(match["method"], match["uri"], start, end, agent))
    return served


def peak_overlap(served: list[Served]) -> int:
    """The most requests of ``served`` in flight at the same instant (an end at the instant
    another starts does not overlap it)."""
    events = sorted([(s.start, 1) for s in served] + [(s.end, -1) for s in served])
    peak = current = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


def established(port: int, table: str = "/proc/net/tcp") -> int:
    """How many distinct ESTABLISHED TCP connections have local port ``port`` (the server's
    side).

    The kernel hands ``/proc/net/tcp`` out a page (27 sockets) per ``read``, resuming at a hash
    bucket and an offset in it; a socket added at the head of that bucket between two reads
    shifts it, so the row at the resume point is listed twice. With scenario 12's thousands
    of TIME_WAIT rows a scan took 88-90 reads and up to 70 ms (measured, load 2), so each
    connection is counted once per peer address, and the table is read whole before it is
    parsed to keep the scan short. A connection closed in a bucket already read while a new
    one opens in a bucket not yet read is still seen as both: a sample is an upper bound.
    """
    with open(table, "rb") as tcp:
        text = tcp.read().decode()
    peers = set()
    for line in text.splitlines()[1:]:
        fields = line.split()
        if fields[3] == ESTABLISHED and int(fields[1].rsplit(":", 1)[1], 16) == port:
            peers.add(fields[2])
    return len(peers)


class ConnectionSampler(PeakSampler):
    """Samples :func:`established` for ``port`` every ``interval`` seconds; ``peak`` after.
    Within ``excluded()`` nothing is counted (another client's connections to the port)."""

    def __init__(self, port: int, interval: float = 0.01) -> None:
        super().__init__(self._count, interval)
        self.port = port
        self._exclusions = 0  # how many exclusions began: a scan across one is dropped
        self._excluding = False

    def _count(self) -> int:
        began = (self._exclusions, self._excluding)
        count = established(self.port)
        return count if began == (self._exclusions, False) and not self._excluding else 0

    @contextmanager
    def excluded(self) -> Iterator[None]:
        """Count nothing while inside (a scan that overlapped the start is dropped too)."""
        self._exclusions += 1
        self._excluding = True
        try:
            yield
        finally:
            self._excluding = False


def read_from(path: Path, mark: int) -> str:
    """The text of ``path`` after byte ``mark``."""
    with path.open("rb") as log:
        log.seek(mark)
        return log.read().decode(errors="replace")
